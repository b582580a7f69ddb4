-- Each side's clock offset (client clock minus matchmaker clock, ms) and its
-- uncertainty (half the best probe's round trip), measured on the client's
-- Session stream. Set when that side's client stages were moved onto the
-- matchmaker's clock; NULL when the client answered no clock probe (its
-- stages are then on its own clock).
ALTER TABLE calls
    ADD COLUMN clock_offset_a_ms double precision,
    ADD COLUMN clock_uncertainty_a_ms double precision,
    ADD COLUMN clock_offset_b_ms double precision,
    ADD COLUMN clock_uncertainty_b_ms double precision,
    ADD CONSTRAINT calls_clock_a_complete CHECK ((clock_offset_a_ms IS NULL) = (clock_uncertainty_a_ms IS NULL)),
    ADD CONSTRAINT calls_clock_b_complete CHECK ((clock_offset_b_ms IS NULL) = (clock_uncertainty_b_ms IS NULL));

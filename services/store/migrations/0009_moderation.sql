-- Moderation: a moderator's review of a reported user. Reports made before a
-- user's latest review no longer count toward a hold; the reports stay.
CREATE TABLE reviews (
    review_id       bigserial PRIMARY KEY,
    user_id         text NOT NULL REFERENCES users (user_id),
    reviewer        text NOT NULL,
    note            text NOT NULL DEFAULT '',
    reports_cleared integer NOT NULL CHECK (reports_cleared > 0),
    reviewed_at     timestamptz NOT NULL DEFAULT clock_timestamp()
);
CREATE INDEX reviews_user ON reviews (user_id, reviewed_at DESC);
-- Holds are found by counting reports per reported user since their last review.
CREATE INDEX reports_reported_at ON reports (reported, created_at);

-- Safety: blocks and reports between users (written by the matchmaker).

-- blocker never meets blocked again (the matchmaker reads both directions).
CREATE TABLE blocks (
    blocker    text NOT NULL REFERENCES users (user_id),
    blocked    text NOT NULL REFERENCES users (user_id),
    call_id    text NOT NULL,
    created_at timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (blocker, blocked),
    CHECK (blocker <> blocked)
);
CREATE INDEX blocks_blocked ON blocks (blocked);

-- One report per reporter per call; a user's standing counts distinct reporters.
CREATE TABLE reports (
    reporter   text NOT NULL REFERENCES users (user_id),
    reported   text NOT NULL REFERENCES users (user_id),
    call_id    text NOT NULL,
    reason     text NOT NULL DEFAULT '',
    created_at timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (reporter, call_id),
    CHECK (reporter <> reported)
);
CREATE INDEX reports_reported ON reports (reported);

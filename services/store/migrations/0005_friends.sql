-- Friends (the private-domain loop) and complete call records.

-- One row per user who asked to be friends with the partner of a call and has
-- not been asked back yet. When the other asks too, both rows go and a
-- friendship is made.
CREATE TABLE friend_requests (
    requester  text NOT NULL REFERENCES users (user_id),
    requested  text NOT NULL REFERENCES users (user_id),
    call_id    text NOT NULL,
    created_at timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (requester, requested),
    CHECK (requester <> requested)
);
CREATE INDEX friend_requests_requested ON friend_requests (requested);

-- One row per pair of friends, the smaller user id first, so a pair has one row.
CREATE TABLE friends (
    user_lo    text NOT NULL REFERENCES users (user_id),
    user_hi    text NOT NULL REFERENCES users (user_id),
    call_id    text NOT NULL,
    created_at timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (user_lo, user_hi),
    CHECK (user_lo < user_hi)
);
CREATE INDEX friends_user_hi ON friends (user_hi);

-- Call records: what kind of call ('match' from the pool, 'friend' for a friend
-- call), and how long it lasted (ended_at - created_at, ms, set when it ends).
ALTER TABLE calls
    ADD COLUMN kind text NOT NULL DEFAULT 'match' CHECK (kind IN ('match', 'friend')),
    ADD COLUMN duration_ms double precision;

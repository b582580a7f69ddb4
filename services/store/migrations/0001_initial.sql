-- Duet initial schema: users, matchmaking tickets, call records with their
-- stage timings, and the routing service's topology snapshot.

CREATE TABLE users (
    user_id      text PRIMARY KEY,
    display_name text NOT NULL DEFAULT '',
    created_at   timestamptz NOT NULL DEFAULT now()
);

-- One row per time a user waited in the pool. closed_at/outcome are set when
-- the wait ends ('matched', 'replaced', 'cancelled: ...').
CREATE TABLE tickets (
    ticket_id  text PRIMARY KEY,
    user_id    text NOT NULL REFERENCES users (user_id),
    session_id text NOT NULL,
    edge_id    text NOT NULL,
    queued_at  timestamptz NOT NULL,
    closed_at  timestamptz,
    outcome    text,
    CHECK ((closed_at IS NULL) = (outcome IS NULL))
);
-- A user waits in the pool at most once at a time.
CREATE UNIQUE INDEX tickets_one_open_per_user ON tickets (user_id) WHERE closed_at IS NULL;

-- Stage timings (epoch milliseconds) reported by each side, merged by key.
CREATE TABLE calls (
    call_id      text PRIMARY KEY,
    user_a       text NOT NULL REFERENCES users (user_id),
    user_b       text NOT NULL REFERENCES users (user_id),
    edge_a       text NOT NULL,
    edge_b       text NOT NULL,
    leg_a        text NOT NULL,
    leg_b        text NOT NULL,
    route        text[] NOT NULL DEFAULT '{}',
    route_rtt_ms double precision NOT NULL DEFAULT 0,
    state        text NOT NULL,
    end_reason   text,
    stages_a     jsonb NOT NULL DEFAULT '{}'::jsonb CHECK (jsonb_typeof(stages_a) = 'object'),
    stages_b     jsonb NOT NULL DEFAULT '{}'::jsonb CHECK (jsonb_typeof(stages_b) = 'object'),
    created_at   timestamptz NOT NULL DEFAULT now(),
    ended_at     timestamptz
);
CREATE INDEX calls_created_at ON calls (created_at DESC);
CREATE INDEX calls_user_a ON calls (user_a);
CREATE INDEX calls_user_b ON calls (user_b);

-- Topology snapshot written by the routing service.
CREATE TABLE edges (
    edge_id          text PRIMARY KEY,
    region           text NOT NULL,
    control_address  text NOT NULL,
    backbone_address text NOT NULL,
    media_host       text NOT NULL,
    state            text NOT NULL,
    registered_at    timestamptz NOT NULL DEFAULT now()
);

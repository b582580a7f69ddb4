-- Topology changes made through the routing service's admin API: who made
-- each one, when, what changed, and the declared topology it left behind.
-- The newest row is the topology the routing service restores at start.

CREATE TABLE topology_changes (
    change_id      bigserial PRIMARY KEY,
    applied_at     timestamptz NOT NULL DEFAULT now(),
    actor          text NOT NULL,
    action         text NOT NULL,            -- 'apply', 'drain', 'undrain', 'edge state', 'link', 'load file'
    changes        jsonb NOT NULL DEFAULT '[]'::jsonb CHECK (jsonb_typeof(changes) = 'array'),
    version_before bigint NOT NULL CHECK (version_before >= 0),
    version_after  bigint NOT NULL CHECK (version_after >= 0),
    topology       jsonb NOT NULL CHECK (jsonb_typeof(topology) = 'object')
);
CREATE INDEX topology_changes_applied_at ON topology_changes (applied_at DESC);

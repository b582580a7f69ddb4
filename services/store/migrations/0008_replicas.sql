-- Matchmaker replicas (docs/replicas.md): a ticket carries what its wait needs
-- to be restored by another replica (the region of the user's edge, the shard
-- that region belongs to, and the preferences as given), and each shard's
-- current owner is recorded with the address other replicas forward to.
ALTER TABLE tickets
    ADD COLUMN region      text NOT NULL DEFAULT '',
    ADD COLUMN shard       text NOT NULL DEFAULT '',
    ADD COLUMN preferences jsonb NOT NULL DEFAULT '{}'::jsonb CHECK (jsonb_typeof(preferences) = 'object');
-- A new owner loads its shard's open tickets.
CREATE INDEX tickets_open_by_shard ON tickets (shard, queued_at) WHERE closed_at IS NULL;

-- Written by a replica while it holds the shard's advisory lock; a row whose
-- lock nobody holds is stale (its owner died) and is replaced by the next owner.
CREATE TABLE matchmaker_shards (
    shard      text PRIMARY KEY,
    replica_id text NOT NULL,
    address    text NOT NULL,
    backend_pid integer NOT NULL,  -- the owner's database session: its lock proves the row current
    since      timestamptz NOT NULL DEFAULT now()
);

-- The shard a call was made in: a new owner ends the calls its dead predecessor
-- left live (nobody is left to end them).
ALTER TABLE calls ADD COLUMN shard text NOT NULL DEFAULT '';
CREATE INDEX calls_live_by_shard ON calls (shard) WHERE state <> 'ended';

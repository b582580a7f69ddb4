"""Two matchmaker replicas on one PostgreSQL, the shard owner SIGKILLed mid-load.

Real processes (PostgreSQL, routing, two matchmakers, two edges) and SDK
clients with synthetic cameras on both replicas. Some users are in calls and
some are waiting when the owner of the (single, ``world``) shard is killed.
The survivor must hold the shard within seconds; every waiting user
reconnects (the SDK does, over its address list), keeps their ticket and its
queued_at, and is matched once a compatible partner arrives; nobody is ever
in two calls at once or matched with themselves. The takeover time is
printed (from the SIGKILL to the survivor holding the lock, and to the first
match after it).
"""

from __future__ import annotations

import asyncio
import itertools
import os
import signal
import time
from pathlib import Path

import asyncpg
import pytest

from duet.services.devkit.local_cluster import LocalCluster
from duet.services.devkit.scratch_database import scratch_database
from tests.system.replica_load import REGIONS, ReplicaLoad, shard_owner

pytestmark = pytest.mark.slow

TAKEOVER_BOUND_S = 5.0


@pytest.mark.parametrize("victim", ["owner", "forwarder"])
async def test_a_replica_killed_mid_load_loses_nobody_and_matches_nobody_twice(
    database_url: str, tmp_path: Path, victim: str
) -> None:
    """``victim``: kill the shard's owner (the other replica takes it over), or the replica that only
    forwarded its clients' streams (the owner keeps their tickets for them to resume)."""
    async with (
        scratch_database(database_url, prefix="replicas") as dsn,
        LocalCluster(state_dir=tmp_path / "state", database=dsn, regions=REGIONS, matchmakers=2) as info,
    ):
        load = ReplicaLoad(info, await asyncpg.connect(dsn))
        db = load.db
        try:
            owner = await shard_owner(db)
            assert owner in info.matchmakers, f"no replica owns the shard: {owner!r} not in {info.matchmakers}"
            other = next(a for a in info.matchmakers if a != owner)
            killed, survivor = (owner, other) if victim == "owner" else (other, owner)
            # Mid-load: a call live, four users waiting, when the replica dies.
            await load.start(owner, other)

            kill_wall = time.time()
            kill_at = time.monotonic()
            os.kill(info.matchmaker_pids[killed], signal.SIGKILL)
            while (now_owner := await shard_owner(db)) != survivor:
                assert now_owner != killed or time.monotonic() - kill_at < 1, "the dead replica still holds the shard"
                assert time.monotonic() - kill_at < TAKEOVER_BOUND_S, "the survivor did not take the shard over"
                await asyncio.sleep(0.01)
            takeover_s = time.monotonic() - kill_at

            first_match_s = await load.partners_arrive(survivor, killed, owner_went=victim == "owner") - kill_wall
            print(
                f"\n{victim} killed: SIGKILL -> survivor holds the shard lock {takeover_s * 1000:.0f} ms; "
                f"-> first match after it {first_match_s * 1000:.0f} ms; "
                f"reconnects per waiting user {load.reconnects()}"
            )
            assert takeover_s < TAKEOVER_BOUND_S
            await load.tickets_were_kept()

            # Nobody matched with themselves, nor in two calls at once (the dead owner's calls were ended).
            calls = await db.fetch(
                "SELECT call_id, user_a, user_b, created_at, ended_at, state FROM calls ORDER BY created_at"
            )
            assert all(c["user_a"] != c["user_b"] for c in calls)
            assert len(calls) == 1 + len(load.waiters)
            far = calls[-1]["created_at"].timestamp() + 3600
            spans: dict[str, list[tuple[float, float]]] = {}
            for c in calls:
                end = c["ended_at"].timestamp() if c["ended_at"] else far
                for u in (c["user_a"], c["user_b"]):
                    spans.setdefault(u, []).append((c["created_at"].timestamp(), end))
            for user, intervals in spans.items():
                intervals.sort()
                for (_, end), (start, _) in itertools.pairwise(intervals):
                    assert start >= end, f"{user} was in two calls at once"
            if victim == "owner":
                early_ids = {r.call_id for r in load.early}
                for c in calls:
                    if c["call_id"] in early_ids:
                        assert c["state"] == "ended", "the dead owner's live call was not ended by the survivor"
        finally:
            await load.close()

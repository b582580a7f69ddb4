"""Shard ownership: the in-memory fake and PostgreSQL (two replicas on two connections to one database)."""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator

import asyncpg
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from duet.services.devkit.scratch_database import scratch_database
from duet.services.matchmaker.replicas.fake_ownership import InMemoryShardOwnership, ShardRegistry
from duet.services.matchmaker.replicas.ownership import OwnershipChange, fair_share, keep_shards
from duet.services.matchmaker.replicas.pg_ownership import PostgresShardOwnership, ReplicaIdInUse
from duet.services.store.postgres import Store

SHARDS = ("emea", "apac", "amer")


@pytest.fixture
async def db(database_url: str) -> AsyncIterator[str]:
    async with scratch_database(database_url) as dsn:
        store = await Store.open(dsn)  # migrated: matchmaker_shards exists
        await store.close()
        yield dsn


def test_fair_share() -> None:
    assert fair_share(3, 1) == 3
    assert fair_share(3, 2) == 2
    assert fair_share(1, 2) == 1
    assert fair_share(4, 0) == 4


# -- the fake -------------------------------------------------------------------------


async def test_fake_hands_a_dead_replicas_shards_to_the_survivor() -> None:
    reg = ShardRegistry()
    a = InMemoryShardOwnership(reg, "a", "127.0.0.1:1", SHARDS)
    b = InMemoryShardOwnership(reg, "b", "127.0.0.1:2", SHARDS)
    assert (await a.poll()).acquired == ("emea", "apac")  # its share of 3 with 2 alive
    assert (await b.poll()).acquired == ("amer",)
    assert b.owner_of("emea") is not None and b.owner_of("emea").address == "127.0.0.1:1"  # type: ignore[union-attr]
    a.kill()
    assert (await a.poll()).lost == ("apac", "emea")
    assert set((await b.poll()).acquired) == {"emea", "apac"}
    assert all(b.owns(s) for s in SHARDS)


@settings(max_examples=60, deadline=None)
@given(
    st.lists(
        st.tuples(st.sampled_from(["poll", "kill", "spawn"]), st.integers(min_value=0, max_value=3)),
        max_size=30,
    )
)
def test_fake_never_lets_two_replicas_own_one_shard(steps: list[tuple[str, int]]) -> None:
    async def run() -> None:
        reg = ShardRegistry()
        replicas = [InMemoryShardOwnership(reg, f"r{i}", f"a{i}", SHARDS) for i in range(2)]
        for action, i in steps:
            if action == "spawn":
                replicas.append(InMemoryShardOwnership(reg, f"r{len(replicas)}", "x", SHARDS))
                continue
            r = replicas[i % len(replicas)]
            if action == "kill":
                r.kill()
            else:
                await r.poll()
            for shard in SHARDS:
                assert sum(x.owns(shard) for x in replicas if x.replica_id in reg.live) <= 1
        # Whoever is still alive ends up owning everything, each shard once.
        alive = [x for x in replicas if x.replica_id in reg.live]
        for _ in range(2):
            for x in alive:
                await x.poll()
        if alive:
            assert sorted(s for x in alive for s in SHARDS if x.owns(s)) == sorted(SHARDS)

    asyncio.run(run())


# -- PostgreSQL -------------------------------------------------------------------------


async def test_postgres_replicas_split_the_shards_and_publish_their_addresses(db: str) -> None:
    a = PostgresShardOwnership(db, "a", "127.0.0.1:1001", SHARDS)
    b = PostgresShardOwnership(db, "b", "127.0.0.1:1002", SHARDS)
    await a.connect()
    await b.connect()
    try:
        got_a = (await a.poll()).acquired
        got_b = (await b.poll()).acquired
        assert len(got_a) == 2 and len(got_b) == 1  # shares of 3 shards between 2 live replicas
        assert set(got_a).isdisjoint(got_b) and set(got_a) | set(got_b) == set(SHARDS)
        await a.poll()  # refresh a's view of b's shard
        for shard in got_b:
            owner = a.owner_of(shard)
            assert owner is not None and owner.replica_id == "b" and owner.address == "127.0.0.1:1002"
        assert (await a.poll()) == OwnershipChange()  # nothing changes while both live
    finally:
        await a.close()
        await b.close()


async def test_postgres_connection_loss_hands_shards_to_the_other_replica(db: str) -> None:
    a = PostgresShardOwnership(db, "a", "127.0.0.1:1001", SHARDS)
    await a.connect()
    assert set((await a.poll()).acquired) == set(SHARDS)  # alone: all of them
    b = PostgresShardOwnership(db, "b", "127.0.0.1:1002", SHARDS)
    await b.connect()
    try:
        assert (await b.poll()).acquired == ()  # all held
        assert b.owner_of("emea") is not None and b.owner_of("emea").replica_id == "a"  # type: ignore[union-attr]
        # The owner's session dies the way a SIGKILLed process's does: the server ends it.
        pid = a._conn.get_server_pid()  # type: ignore[union-attr]
        admin = await asyncpg.connect(db)
        try:
            await admin.execute("SELECT pg_terminate_backend($1)", pid)
        finally:
            await admin.close()
        t0 = time.monotonic()
        while set(b.owned()) != set(SHARDS):
            assert time.monotonic() - t0 < 5, "the survivor did not take the shards over"
            await b.poll()
            await asyncio.sleep(0.05)
        assert b.owner_of("apac") is not None and b.owner_of("apac").replica_id == "b"  # type: ignore[union-attr]
        # The dead one finds out on its next poll: every shard it had is lost, and it takes none back.
        change = await a.poll()
        assert set(change.lost) == set(SHARDS) and change.acquired == ()
        assert not any(a.owns(s) for s in SHARDS)
    finally:
        await a.close()
        await b.close()


async def test_postgres_no_shard_is_owned_twice_under_concurrent_polls(db: str) -> None:
    replicas = [PostgresShardOwnership(db, f"r{i}", f"127.0.0.1:{2000 + i}", SHARDS) for i in range(4)]
    for r in replicas:
        await r.connect()
    try:
        for _ in range(3):
            await asyncio.gather(*(r.poll() for r in replicas))
            for shard in SHARDS:
                assert sum(r.owns(shard) for r in replicas) <= 1
        assert sorted(s for r in replicas for s in SHARDS if r.owns(s)) == sorted(SHARDS)
    finally:
        for r in replicas:
            await r.close()


async def test_postgres_refuses_a_second_replica_with_the_same_id(db: str) -> None:
    a = PostgresShardOwnership(db, "same", "x", SHARDS)
    await a.connect()
    try:
        with pytest.raises(ReplicaIdInUse, match="--replica-id"):
            await PostgresShardOwnership(db, "same", "y", SHARDS).connect()
    finally:
        await a.close()


async def test_keep_shards_tells_the_listener() -> None:
    reg = ShardRegistry()
    a = InMemoryShardOwnership(reg, "a", "x", ("world",))
    events: asyncio.Queue[tuple[str, str]] = asyncio.Queue()

    class Listener:
        async def shard_acquired(self, shard: str) -> None:
            events.put_nowait(("acquired", shard))

        async def shard_lost(self, shard: str) -> None:
            events.put_nowait(("lost", shard))

    task = asyncio.create_task(keep_shards(a, Listener(), interval_s=0.01))
    try:
        assert await asyncio.wait_for(events.get(), 2) == ("acquired", "world")
        a.kill()
        assert await asyncio.wait_for(events.get(), 2) == ("lost", "world")
    finally:
        task.cancel()
        await asyncio.gather(task, return_exceptions=True)

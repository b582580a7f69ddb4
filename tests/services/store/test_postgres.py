"""Migrations and the Store, against a real PostgreSQL (one fresh database per test)."""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator

import asyncpg
import pytest

from duet.services.devkit.scratch_database import scratch_database
from duet.services.store.migrate import Migration, load_migrations, migrate
from duet.services.store.postgres import CallRow, EdgeRow, Store
from duet.services.store.records import DuplicateRecord, UnknownUser


@pytest.fixture
async def empty_db(database_url: str) -> AsyncIterator[str]:
    async with scratch_database(database_url) as dsn:
        yield dsn


async def _versions(conn: asyncpg.Connection) -> list[tuple[int, str]]:
    return [
        (r["version"], r["name"])
        for r in await conn.fetch("SELECT version, name FROM schema_migrations ORDER BY version")
    ]


# -- migrations -----------------------------------------------------------------


def test_packaged_migrations_are_ordered_from_1() -> None:
    ms = load_migrations()
    assert ms[0].version == 1 and ms[0].name == "initial"
    assert [m.version for m in ms] == sorted({m.version for m in ms})


async def test_migrate_is_idempotent_and_records_versions(empty_db: str) -> None:
    conn = await asyncpg.connect(empty_db)
    try:
        expected = [m.version for m in load_migrations()]
        assert await migrate(conn) == expected
        assert await migrate(conn) == []
        assert await _versions(conn) == [(m.version, m.name) for m in load_migrations()]
        assert await conn.fetchval("SELECT count(*) FROM schema_migrations WHERE applied_at IS NULL") == 0
        tables = {
            r["tablename"] for r in await conn.fetch("SELECT tablename FROM pg_tables WHERE schemaname = 'public'")
        }
        assert {"users", "tickets", "calls", "edges", "schema_migrations"} <= tables
    finally:
        await conn.close()


async def test_concurrent_migrate_applies_each_version_once(empty_db: str) -> None:
    conns = [await asyncpg.connect(empty_db) for _ in range(4)]
    try:
        results = await asyncio.gather(*(migrate(c) for c in conns))
        applied = sorted(v for r in results for v in r)
        assert applied == [m.version for m in load_migrations()]
        assert len(await _versions(conns[0])) == len(load_migrations())
    finally:
        for c in conns:
            await c.close()


async def test_migrate_accepts_a_pool(empty_db: str) -> None:
    pool = await asyncpg.create_pool(empty_db, min_size=1, max_size=2)
    try:
        assert await migrate(pool) == [m.version for m in load_migrations()]
        assert await migrate(pool) == []
    finally:
        await pool.close()


async def test_failed_migration_rolls_back_and_keeps_earlier_ones(empty_db: str) -> None:
    ms = [
        Migration(1, "first", "CREATE TABLE one (v int)"),
        Migration(2, "broken", "CREATE TABLE two (v int); SELECT 1 / 0"),
    ]
    conn = await asyncpg.connect(empty_db)
    try:
        with pytest.raises(RuntimeError, match="0002_broken"):
            await migrate(conn, ms)
        assert await _versions(conn) == [(1, "first")]
        assert await conn.fetchval("SELECT to_regclass('two') IS NULL")
        fixed = [ms[0], Migration(2, "broken", "CREATE TABLE two (v int)")]
        assert await migrate(conn, fixed) == [2]
    finally:
        await conn.close()


async def test_migrations_apply_in_version_order(empty_db: str) -> None:
    ms = [Migration(2, "second", "ALTER TABLE t ADD COLUMN w int"), Migration(1, "first", "CREATE TABLE t (v int)")]
    conn = await asyncpg.connect(empty_db)
    try:
        assert await migrate(conn, ms) == [1, 2]
    finally:
        await conn.close()


async def test_duplicate_versions_are_rejected(empty_db: str) -> None:
    conn = await asyncpg.connect(empty_db)
    try:
        with pytest.raises(RuntimeError, match="share version 1"):
            await migrate(conn, [Migration(1, "a", "SELECT 1"), Migration(1, "b", "SELECT 1")])
    finally:
        await conn.close()


async def test_store_open_twice_on_one_database(empty_db: str) -> None:
    first = await Store.open(empty_db)
    second = await Store.open(empty_db)
    try:
        await first.upsert_user("ana", "Ana")
        assert (await second.get_user("ana")) is not None
    finally:
        await first.close()
        await second.close()


# -- users, tickets and calls --------------------------------------------------------
# What the matchmaker relies on is tested against this Store and the in-memory one
# alike, in test_match_store_contract.py; here only what is PostgreSQL's own.


def call(call_id: str) -> CallRow:
    return CallRow(call_id, "ana", "ben", "fra-1", "nyc-1", "la", "lb", ["fra-1", "nyc-1"], 81.5, "bridged")


@pytest.fixture
async def users(store: Store) -> Store:
    await store.upsert_user("ana", "Ana")
    await store.upsert_user("ben", "Ben")
    return store


async def test_integrity_errors_keep_the_database_error_as_their_cause(users: Store) -> None:
    with pytest.raises(UnknownUser) as unknown:
        await users.open_ticket("t1", "ghost", "s1", "fra-1", 1.0)
    assert isinstance(unknown.value.__cause__, asyncpg.ForeignKeyViolationError)
    await users.create_call(call("c1"))
    with pytest.raises(DuplicateRecord) as duplicate:
        await users.create_call(call("c1"))
    assert isinstance(duplicate.value.__cause__, asyncpg.UniqueViolationError)


async def test_list_calls_newest_first_with_limit(users: Store) -> None:
    for i in range(5):
        await users.create_call(call(f"c{i}"))
    calls = await users.list_calls()
    assert [c.call_id for c in calls] == ["c4", "c3", "c2", "c1", "c0"]
    assert [c.call_id for c in await users.list_calls(limit=2)] == ["c4", "c3"]
    with pytest.raises(ValueError):
        await users.list_calls(limit=-1)


# -- edges ----------------------------------------------------------------------


async def test_upsert_and_list_edges(store: Store) -> None:
    await store.upsert_edge(EdgeRow("nyc-1", "us-east", "127.0.0.1:7001", "127.0.0.1:7101", "127.0.0.1", "up"))
    await store.upsert_edge(
        EdgeRow("fra-1", "eu-central", "127.0.0.1:7000", "127.0.0.1:7100", "127.0.0.1", "up", 1_700_000_000.0)
    )
    await store.upsert_edge(EdgeRow("nyc-1", "us-east", "127.0.0.1:7002", "127.0.0.1:7102", "127.0.0.1", "draining"))
    edges = await store.list_edges()
    assert [e.edge_id for e in edges] == ["fra-1", "nyc-1"]
    assert edges[0].registered_at == 1_700_000_000.0
    assert (edges[1].control_address, edges[1].state) == ("127.0.0.1:7002", "draining")
    assert edges[1].registered_at is not None and abs(edges[1].registered_at - time.time()) < 60

"""Migrations and the Store, against a real PostgreSQL (one fresh database per test)."""

from __future__ import annotations

import asyncio
import math
import random
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


# -- users and tickets ------------------------------------------------------------


async def test_upsert_user_updates_the_display_name(store: Store) -> None:
    await store.upsert_user("ana", "Ana")
    await store.upsert_user("ana", "Ana B.")
    user = await store.get_user("ana")
    assert user is not None and user.display_name == "Ana B."
    assert abs(user.created_at - time.time()) < 60
    assert await store.get_user("nobody") is None


async def test_opening_a_ticket_replaces_the_users_open_one(store: Store) -> None:
    await store.upsert_user("ana", "Ana")
    await store.open_ticket("t1", "ana", "s1", "fra-1", 1_700_000_000.25)
    await store.open_ticket("t2", "ana", "s2", "nyc-1", 1_700_000_005.5)
    old, new = await store.get_ticket("t1"), await store.get_ticket("t2")
    assert old is not None and new is not None
    assert old.outcome == "replaced" and old.closed_at is not None
    assert new.outcome is None and new.closed_at is None
    assert new.queued_at == 1_700_000_005.5 and new.edge_id == "nyc-1" and new.session_id == "s2"
    assert [t.ticket_id for t in await store.open_tickets("ana")] == ["t2"]


async def test_concurrent_opens_leave_exactly_one_open_ticket(store: Store) -> None:
    await store.upsert_user("ana", "Ana")
    await store.upsert_user("ben", "Ben")
    await store.open_ticket("b1", "ben", "sb", "fra-1", 1.0)
    await asyncio.gather(*(store.open_ticket(f"t{i}", "ana", f"s{i}", "fra-1", 100.0 + i) for i in range(12)))
    open_ = await store.open_tickets("ana")
    assert len(open_) == 1
    replaced = [await store.get_ticket(f"t{i}") for i in range(12)]
    assert sum(1 for t in replaced if t is not None and t.outcome == "replaced") == 11
    # Other users are untouched.
    assert [t.ticket_id for t in await store.open_tickets("ben")] == ["b1"]
    assert {t.user_id for t in await store.open_tickets()} == {"ana", "ben"}


async def test_close_ticket_once_and_keep_the_first_outcome(store: Store) -> None:
    await store.upsert_user("ana", "Ana")
    await store.open_ticket("t1", "ana", "s1", "fra-1", 10.0)
    assert await store.close_ticket("t1", "matched") is True
    assert await store.close_ticket("t1", "cancelled: left") is False
    t = await store.get_ticket("t1")
    assert t is not None and t.outcome == "matched" and t.closed_at is not None
    assert await store.close_ticket("missing", "matched") is False
    assert await store.open_tickets("ana") == []
    # After closing, a new ticket opens without replacing anything.
    await store.open_ticket("t2", "ana", "s1", "fra-1", 20.0)
    t1 = await store.get_ticket("t1")
    assert t1 is not None and t1.outcome == "matched"


async def test_ticket_input_is_checked(store: Store) -> None:
    await store.upsert_user("ana", "Ana")
    with pytest.raises(ValueError, match="queued_at"):
        await store.open_ticket("t1", "ana", "s1", "fra-1", math.nan)
    with pytest.raises(UnknownUser):
        await store.open_ticket("t1", "ghost", "s1", "fra-1", 1.0)
    await store.open_ticket("t1", "ana", "s1", "fra-1", 1.0)
    with pytest.raises(DuplicateRecord):
        await store.open_ticket("t1", "ana", "s2", "fra-1", 2.0)
    # The failed duplicate rolled back: the original ticket is still open.
    assert [t.ticket_id for t in await store.open_tickets("ana")] == ["t1"]
    with pytest.raises(ValueError):
        await store.close_ticket("t1", "")


# -- calls --------------------------------------------------------------------


def call(call_id: str = "c1", **kw: object) -> CallRow:
    fields: dict[str, object] = dict(
        call_id=call_id,
        user_a="ana",
        user_b="ben",
        edge_a="fra-1",
        edge_b="nyc-1",
        leg_a="la",
        leg_b="lb",
        route=["fra-1", "lon-1", "nyc-1"],
        route_rtt_ms=81.5,
        state="bridged",
        end_reason=None,
        stages_a={"queued": 1000.0, "matched": 1500.5},
        stages_b={"queued": 1200.0},
    )
    fields.update(kw)
    return CallRow(**fields)  # type: ignore[arg-type]


@pytest.fixture
async def users(store: Store) -> Store:
    await store.upsert_user("ana", "Ana")
    await store.upsert_user("ben", "Ben")
    return store


async def test_create_and_get_call(users: Store) -> None:
    c = call()
    await users.create_call(c)
    got = await users.get_call("c1")
    assert got is not None
    assert got.created_at is not None and abs(got.created_at - time.time()) < 60
    assert got.ended_at is None
    got.created_at = None
    assert got == c


async def test_get_missing_call_is_none(store: Store) -> None:
    assert await store.get_call("nope") is None


async def test_merge_stages_adds_and_overwrites_keys_on_one_side(users: Store) -> None:
    await users.create_call(call())
    assert await users.merge_stages("c1", "a", {"first_frame": 2000.0, "matched": 1600.0}) is True
    assert await users.merge_stages("c1", "b", {}) is True
    got = await users.get_call("c1")
    assert got is not None
    assert got.stages_a == {"queued": 1000.0, "matched": 1600.0, "first_frame": 2000.0}
    assert got.stages_b == {"queued": 1200.0}


async def test_merge_stages_matches_a_dict_model(users: Store) -> None:
    await users.create_call(call(stages_a={}, stages_b={}))
    rng = random.Random(7)
    model: dict[str, dict[str, float]] = {"a": {}, "b": {}}
    keys = ["queued", "matched", "route_picked", "bridged", "leg_connected", "first_frame"]
    for _ in range(40):
        side = rng.choice("ab")
        update = {k: rng.uniform(0, 2e12) for k in rng.sample(keys, rng.randint(0, 3))}
        model[side].update(update)
        await users.merge_stages("c1", side, update)
    got = await users.get_call("c1")
    assert got is not None and got.stages_a == model["a"] and got.stages_b == model["b"]


async def test_merge_stages_checks_its_input(users: Store) -> None:
    await users.create_call(call())
    with pytest.raises(ValueError, match="side"):
        await users.merge_stages("c1", "c", {"x": 1.0})
    with pytest.raises(ValueError, match="finite"):
        await users.merge_stages("c1", "a", {"x": math.inf})
    with pytest.raises(ValueError):
        await users.merge_stages("c1", "a", {"x": "soon"})  # type: ignore[dict-item]
    assert await users.merge_stages("missing", "a", {"x": 1.0}) is False


async def test_call_state_and_ended_at(users: Store) -> None:
    await users.create_call(call())
    assert await users.set_call_state("c1", "connected") is True
    got = await users.get_call("c1")
    assert got is not None and got.state == "connected" and got.ended_at is None and got.end_reason is None

    assert await users.set_call_state("c1", "ended", "hangup by a") is True
    got = await users.get_call("c1")
    assert got is not None and got.state == "ended" and got.end_reason == "hangup by a"
    assert got.ended_at is not None and got.created_at is not None and got.ended_at >= got.created_at

    # Ended is final: a late report neither revives the call nor rewrites its reason.
    assert await users.set_call_state("c1", "connected") is False
    assert await users.set_call_state("c1", "ended", "timeout") is False
    again = await users.get_call("c1")
    assert again is not None and (again.state, again.end_reason, again.ended_at) == (
        "ended",
        "hangup by a",
        got.ended_at,
    )
    assert await users.set_call_state("missing", "ended") is False


async def test_create_call_rejects_unknown_users_and_bad_stages(users: Store) -> None:
    with pytest.raises(UnknownUser):
        await users.create_call(call(user_b="ghost"))
    with pytest.raises(ValueError):
        await users.create_call(call(stages_b={"queued": math.nan}))
    assert await users.list_calls() == []


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

"""Durable tickets for replicas: what a wait carries, its resumption, and the both-open close of a pair.

Each test runs on the in-memory store and on PostgreSQL; the concurrent-close
test uses two connections to one real database.
"""

from __future__ import annotations

import asyncio
import time

import pytest

from duet.services.matchmaker.fakes import InMemoryStore
from duet.services.store.postgres import Store
from duet.services.store.records import CallRow, DuplicateRecord, UnknownUser

AnyStore = InMemoryStore | Store

PREFS = {"languages": ["en", "pt"], "interests": ["film"], "scope": "near", "gender": "female"}


@pytest.fixture(params=["memory", "postgres"])
def any_store(request: pytest.FixtureRequest) -> AnyStore:
    return InMemoryStore() if request.param == "memory" else request.getfixturevalue("store")


@pytest.fixture
async def tickets(any_store: AnyStore) -> AnyStore:
    s = any_store
    for u in ("ana", "ben", "cy"):
        await s.upsert_user(u, u.title())
    return s


async def test_a_ticket_keeps_region_shard_and_preferences(tickets: AnyStore) -> None:
    now = time.time()
    await tickets.open_ticket("t1", "ana", "s1", "fra-1", now, region="Frankfurt", shard="emea", preferences=PREFS)
    await tickets.open_ticket("t2", "ben", "s2", "sin-1", now + 1, region="Singapore", shard="apac")
    [row] = await tickets.open_tickets_in_shard("emea")
    assert (row.ticket_id, row.region, row.shard, row.preferences) == ("t1", "Frankfurt", "emea", PREFS)
    assert row.queued_at == pytest.approx(now, abs=1e-3)
    assert [t.ticket_id for t in await tickets.open_tickets_in_shard("apac")] == ["t2"]
    assert (await tickets.open_tickets_in_shard("apac"))[0].preferences == {}


async def test_resume_moves_an_open_ticket_to_a_new_session_and_keeps_its_age(tickets: AnyStore) -> None:
    queued = time.time() - 30
    await tickets.open_ticket("t1", "ana", "s1", "fra-1", queued, region="Frankfurt", shard="world")
    assert await tickets.resume_ticket("t1", "s9", "fra-2", "Frankfurt", PREFS)
    row = await tickets.get_ticket("t1")
    assert row is not None
    assert (row.session_id, row.edge_id, row.preferences, row.closed_at) == ("s9", "fra-2", PREFS, None)
    assert row.queued_at == pytest.approx(queued, abs=1e-3)
    await tickets.close_ticket("t1", "expired")
    assert not await tickets.resume_ticket("t1", "s10", "fra-1", "Frankfurt", {})


async def test_close_pair_closes_both_or_neither(tickets: AnyStore) -> None:
    now = time.time()
    for t, u in (("t1", "ana"), ("t2", "ben"), ("t3", "cy")):
        await tickets.open_ticket(t, u, "s-" + u, "fra-1", now)
    assert await tickets.close_pair(["t1", "t2"], "matched") == []
    assert (await tickets.get_ticket("t1")).outcome == "matched"  # type: ignore[union-attr]
    # t1 is closed now: pairing it again with t3 fails and leaves t3 open.
    assert await tickets.close_pair(["t3", "t1"], "matched") == ["t1"]
    t3 = await tickets.get_ticket("t3")
    assert t3 is not None and t3.closed_at is None
    assert await tickets.close_pair(["t3", "nope"], "matched") == ["nope"]
    assert (await tickets.get_ticket("t3")).closed_at is None  # type: ignore[union-attr]


def call(call_id: str, user_a: str, user_b: str) -> CallRow:
    return CallRow(call_id, user_a, user_b, "fra-1", "lon-1", "la", "lb", ["fra-1", "lon-1"], 12.5, "bridged", None, {"matched": 1000.0}, {"matched": 1000.0})  # fmt: skip


async def test_a_pair_closes_with_its_call_record_or_not_at_all(tickets: AnyStore) -> None:
    now = time.time()
    await tickets.upsert_user("dee", "Dee")
    for t, u in (("t1", "ana"), ("t2", "ben"), ("t3", "cy"), ("t4", "dee")):
        await tickets.open_ticket(t, u, "s-" + u, "fra-1", now)
    assert await tickets.close_pair_and_create_call(["t1", "t2"], "matched", call("c1", "ana", "ben")) == []
    assert [(await tickets.get_ticket(t)).outcome for t in ("t1", "t2")] == ["matched", "matched"]  # type: ignore[union-attr]
    c1 = await tickets.get_call("c1")
    assert c1 is not None and (c1.user_a, c1.user_b, c1.state) == ("ana", "ben", "bridged")
    # t1 is closed now: pairing it again with t3 changes nothing, and no call is recorded.
    assert await tickets.close_pair_and_create_call(["t3", "t1"], "matched", call("c2", "cy", "ana")) == ["t1"]
    assert (await tickets.get_ticket("t3")).closed_at is None  # type: ignore[union-attr]
    assert await tickets.get_call("c2") is None
    # A call the store refuses leaves both tickets open.
    with pytest.raises(DuplicateRecord):
        await tickets.close_pair_and_create_call(["t3", "t4"], "matched", call("c1", "cy", "dee"))
    with pytest.raises(UnknownUser):
        await tickets.close_pair_and_create_call(["t3", "t4"], "matched", call("c3", "cy", "ghost"))
    assert [(await tickets.get_ticket(t)).closed_at for t in ("t3", "t4")] == [None, None]  # type: ignore[union-attr]
    assert await tickets.get_call("c3") is None
    with pytest.raises(ValueError, match="outcome"):
        await tickets.close_pair_and_create_call(["t3", "t4"], "", call("c3", "cy", "dee"))
    assert await tickets.close_pair_and_create_call(["t3", "t4"], "matched", call("c3", "cy", "dee")) == []


async def test_preferences_that_are_not_json_are_refused(tickets: AnyStore) -> None:
    with pytest.raises(ValueError, match="JSON"):
        await tickets.open_ticket("t1", "ana", "s1", "fra-1", time.time(), preferences={"x": {1, 2}})
    with pytest.raises(ValueError, match="at most"):
        await tickets.open_ticket("t1", "ana", "s1", "fra-1", time.time(), preferences={"x": "y" * 5000})


async def test_concurrent_pairings_of_one_ticket_on_two_connections_one_wins(database_url: str) -> None:
    from duet.services.devkit.scratch_database import scratch_database

    async with scratch_database(database_url) as dsn:
        # Two stores, two pools: as two replicas that both believe they own the shard.
        one, two = await Store.open(dsn), await Store.open(dsn)
        try:
            for u in ("ana", "ben", "cy"):
                await one.upsert_user(u, u)
            for round_ in range(20):
                now = time.time()
                ids = [f"{u}-{round_}" for u in ("ana", "ben", "cy")]
                for t, u in zip(ids, ("ana", "ben", "cy"), strict=True):
                    await one.open_ticket(t, u, "s", "fra-1", now)
                # Replica one pairs ana with ben, replica two pairs ana with cy, at the same moment.
                r1, r2 = await asyncio.gather(
                    one.close_pair([ids[0], ids[1]], "matched"), two.close_pair([ids[0], ids[2]], "matched")
                )
                assert (r1 == []) != (r2 == []), (r1, r2)
                loser_other = ids[2] if r1 == [] else ids[1]
                assert (await one.get_ticket(loser_other)).closed_at is None  # type: ignore[union-attr]
                matched = [t for t in ids if (await one.get_ticket(t)).outcome == "matched"]  # type: ignore[union-attr]
                assert len(matched) == 2 and ids[0] in matched
                for t in ids:
                    await one.close_ticket(t, "cancelled: test")
            # The same race when each replica closes its pair with the call's record: one pair, one record.
            for round_ in range(10):
                now = time.time()
                ids = [f"{u}-r{round_}" for u in ("ana", "ben", "cy")]
                for t, u in zip(ids, ("ana", "ben", "cy"), strict=True):
                    await one.open_ticket(t, u, "s", "fra-1", now)
                r1, r2 = await asyncio.gather(
                    one.close_pair_and_create_call([ids[0], ids[1]], "matched", call(f"one-{round_}", "ana", "ben")),
                    two.close_pair_and_create_call([ids[0], ids[2]], "matched", call(f"two-{round_}", "ana", "cy")),
                )
                assert (r1 == []) != (r2 == []), (r1, r2)
                winner, loser = (f"one-{round_}", f"two-{round_}") if r1 == [] else (f"two-{round_}", f"one-{round_}")
                assert await one.get_call(winner) is not None and await one.get_call(loser) is None
                loser_other = ids[2] if r1 == [] else ids[1]
                assert (await one.get_ticket(loser_other)).closed_at is None  # type: ignore[union-attr]
                await one.close_ticket(loser_other, "cancelled: test")
        finally:
            await one.close()
            await two.close()

"""The MatchStore contract: every test runs against the in-memory store and the PostgreSQL
Store alike, so the fake the core's tests rely on cannot drift from the real one."""

from __future__ import annotations

import asyncio
import copy
import math
import random
import time

import pytest

from duet.services.matchmaker.fakes import InMemoryStore
from duet.services.store.postgres import Store
from duet.services.store.records import CallRow, ClockOffset, DuplicateRecord, UnknownUser

AnyStore = InMemoryStore | Store


@pytest.fixture(params=["memory", "postgres"])
def match_store(request: pytest.FixtureRequest) -> AnyStore:
    return InMemoryStore() if request.param == "memory" else request.getfixturevalue("store")


@pytest.fixture
async def users(match_store: AnyStore) -> AnyStore:
    await match_store.upsert_user("ana", "Ana")
    await match_store.upsert_user("ben", "Ben")
    return match_store


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


# -- users and tickets ------------------------------------------------------------


async def test_upsert_user_updates_the_display_name(match_store: AnyStore) -> None:
    await match_store.upsert_user("ana", "Ana")
    first = await match_store.get_user("ana")
    await match_store.upsert_user("ana", "Ana B.")
    user = await match_store.get_user("ana")
    assert first is not None and user is not None and user.display_name == "Ana B."
    assert user.created_at == first.created_at and abs(user.created_at - time.time()) < 60
    assert await match_store.get_user("nobody") is None


async def test_opening_a_ticket_replaces_the_users_open_one(users: AnyStore) -> None:
    await users.open_ticket("t1", "ana", "s1", "fra-1", 1_700_000_000.25)
    await users.open_ticket("t2", "ana", "s2", "nyc-1", 1_700_000_005.5)
    old, new = await users.get_ticket("t1"), await users.get_ticket("t2")
    assert old is not None and new is not None
    assert old.outcome == "replaced" and old.closed_at is not None
    assert new.outcome is None and new.closed_at is None
    assert new.queued_at == 1_700_000_005.5 and new.edge_id == "nyc-1" and new.session_id == "s2"
    assert [t.ticket_id for t in await users.open_tickets("ana")] == ["t2"]


async def test_queued_at_keeps_microseconds(users: AnyStore) -> None:
    await users.open_ticket("t1", "ana", "s1", "fra-1", 1_700_000_000.123456789)
    t = await users.get_ticket("t1")
    assert t is not None and t.queued_at == pytest.approx(1_700_000_000.123457, abs=1e-7)


async def test_concurrent_opens_leave_exactly_one_open_ticket(users: AnyStore) -> None:
    await users.open_ticket("b1", "ben", "sb", "fra-1", 1.0)
    await asyncio.gather(*(users.open_ticket(f"t{i}", "ana", f"s{i}", "fra-1", 100.0 + i) for i in range(12)))
    assert len(await users.open_tickets("ana")) == 1
    replaced = [await users.get_ticket(f"t{i}") for i in range(12)]
    assert sum(1 for t in replaced if t is not None and t.outcome == "replaced") == 11
    # Other users are untouched; everyone's open tickets come oldest first.
    assert [t.ticket_id for t in await users.open_tickets("ben")] == ["b1"]
    everyone = await users.open_tickets()
    assert [t.user_id for t in everyone] == ["ben", "ana"]


async def test_close_ticket_once_and_keep_the_first_outcome(users: AnyStore) -> None:
    await users.open_ticket("t1", "ana", "s1", "fra-1", 10.0)
    assert await users.close_ticket("t1", "matched") is True
    assert await users.close_ticket("t1", "cancelled: left") is False
    t = await users.get_ticket("t1")
    assert t is not None and t.outcome == "matched" and t.closed_at is not None
    assert await users.close_ticket("missing", "matched") is False
    assert await users.open_tickets("ana") == []
    # After closing, a new ticket opens without replacing anything.
    await users.open_ticket("t2", "ana", "s1", "fra-1", 20.0)
    t1 = await users.get_ticket("t1")
    assert t1 is not None and t1.outcome == "matched"


async def test_ticket_input_is_checked(users: AnyStore) -> None:
    with pytest.raises(ValueError, match="queued_at"):
        await users.open_ticket("t1", "ana", "s1", "fra-1", math.nan)
    with pytest.raises(UnknownUser):
        await users.open_ticket("t1", "ghost", "s1", "fra-1", 1.0)
    await users.open_ticket("t1", "ana", "s1", "fra-1", 1.0)
    with pytest.raises(DuplicateRecord):
        await users.open_ticket("t1", "ana", "s2", "fra-1", 2.0)
    # The failed duplicate changed nothing: the original ticket is still open.
    assert [t.ticket_id for t in await users.open_tickets("ana")] == ["t1"]
    with pytest.raises(ValueError):
        await users.close_ticket("t1", "")


async def test_rows_read_are_copies(users: AnyStore) -> None:
    await users.open_ticket("t1", "ana", "s1", "fra-1", 1.0)
    t = await users.get_ticket("t1")
    assert t is not None
    t.outcome = "tampered"
    again = await users.get_ticket("t1")
    assert again is not None and again.outcome is None


# -- calls --------------------------------------------------------------------


async def test_create_and_get_call(users: AnyStore) -> None:
    c = call()
    given = copy.deepcopy(c)
    await users.create_call(c)
    c.stages_a["queued"] = -1.0  # the store kept its own copy
    got = await users.get_call("c1")
    assert got is not None
    assert got.created_at is not None and abs(got.created_at - time.time()) < 60
    assert got.ended_at is None
    got.created_at = None
    assert got == given
    got.route.append("x")
    got.stages_b["bridged"] = 5.0
    fresh = await users.get_call("c1")
    assert fresh is not None and (fresh.route, fresh.stages_b) == (given.route, given.stages_b)


async def test_a_call_created_ended_is_stamped_ended(users: AnyStore) -> None:
    await users.create_call(call(state="ended", end_reason="no route"))
    got = await users.get_call("c1")
    assert got is not None and got.ended_at is not None and got.end_reason == "no route"
    assert await users.set_call_state("c1", "connected") is False


async def test_get_missing_call_is_none(match_store: AnyStore) -> None:
    assert await match_store.get_call("nope") is None


async def test_merge_stages_adds_and_overwrites_keys_on_one_side(users: AnyStore) -> None:
    await users.create_call(call())
    assert await users.merge_stages("c1", "a", {"first_frame": 2000.0, "matched": 1600.0}) is True
    assert await users.merge_stages("c1", "b", {}) is True
    got = await users.get_call("c1")
    assert got is not None
    assert got.stages_a == {"queued": 1000.0, "matched": 1600.0, "first_frame": 2000.0}
    assert got.stages_b == {"queued": 1200.0}


async def test_merge_stages_matches_a_dict_model(users: AnyStore) -> None:
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


async def test_merge_stages_checks_its_input(users: AnyStore) -> None:
    await users.create_call(call())
    with pytest.raises(ValueError, match="side"):
        await users.merge_stages("c1", "c", {"x": 1.0})
    with pytest.raises(ValueError, match="finite"):
        await users.merge_stages("c1", "a", {"x": math.inf})
    with pytest.raises(ValueError):
        await users.merge_stages("c1", "a", {"x": "soon"})  # type: ignore[dict-item]
    with pytest.raises(ValueError):
        await users.merge_stages("c1", "a", {"x": True})
    assert await users.merge_stages("missing", "a", {"x": 1.0}) is False
    got = await users.get_call("c1")
    assert got is not None and got.stages_a == {"queued": 1000.0, "matched": 1500.5}


async def test_call_state_and_ended_at(users: AnyStore) -> None:
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
    with pytest.raises(ValueError):
        await users.set_call_state("c1", "")


async def test_create_call_rejects_unknown_users_duplicates_and_bad_values(users: AnyStore) -> None:
    with pytest.raises(UnknownUser):
        await users.create_call(call(user_b="ghost"))
    with pytest.raises(ValueError):
        await users.create_call(call(stages_b={"queued": math.nan}))
    with pytest.raises(ValueError, match="route_rtt_ms"):
        await users.create_call(call(route_rtt_ms=math.inf))
    assert await users.get_call("c1") is None
    await users.create_call(call())
    with pytest.raises(DuplicateRecord):
        await users.create_call(call(user_a="ben", user_b="ana"))
    got = await users.get_call("c1")
    assert got is not None and got.user_a == "ana"


# -- clock offsets and listing ------------------------------------------------------


async def test_a_sides_clock_offset_is_kept_with_the_call(users: AnyStore) -> None:
    await users.create_call(call("c1"))
    fresh = await users.get_call("c1")
    assert fresh is not None and fresh.clock_a is None and fresh.clock_b is None
    assert await users.set_clock("c1", "b", ClockOffset(-5000.25, 0.75))
    row = await users.get_call("c1")
    assert row is not None and row.clock_a is None and row.clock_b == ClockOffset(-5000.25, 0.75)
    assert not await users.set_clock("nope", "a", ClockOffset(1.0, 1.0))
    with pytest.raises(ValueError, match="side must be"):
        await users.set_clock("c1", "c", ClockOffset(1.0, 1.0))
    with pytest.raises(ValueError, match="uncertainty of 0 or more"):
        ClockOffset(1.0, -1.0)


async def test_list_calls_newest_first_of_one_user_or_everyone(users: AnyStore) -> None:
    await users.upsert_user("cleo", "Cleo")
    for i, (a, b) in enumerate((("ana", "ben"), ("cleo", "ben"), ("ana", "cleo"))):
        await users.create_call(call(f"c{i}", user_a=a, user_b=b))
        await asyncio.sleep(0.002)  # created_at is the store's clock
    assert [c.call_id for c in await users.list_calls()] == ["c2", "c1", "c0"]
    assert [c.call_id for c in await users.list_calls(user_id="ana")] == ["c2", "c0"]
    assert [c.call_id for c in await users.list_calls(limit=1, user_id="ben")] == ["c1"]
    assert await users.list_calls(user_id="nobody") == []
    with pytest.raises(ValueError, match="limit must be"):
        await users.list_calls(limit=-1)

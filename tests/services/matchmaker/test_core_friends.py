"""Friends in the core: the friendship rule (both must ask), friend calls rung, answered and
connected like a match, every way a ring ends, and the refusals that change nothing. Each test
runs on the in-memory stores and again on real PostgreSQL."""

from __future__ import annotations

import asyncio
from dataclasses import replace

import pytest

from duet.services.matchmaker import ring as rings
from duet.services.matchmaker.config import MatchConfig
from duet.services.matchmaker.core import Matchmaker
from duet.services.matchmaker.errors import BadRequest, Forbidden, NotFound, WrongState
from duet.services.matchmaker.events import (
    CallEnded,
    FriendAdded,
    FriendRequested,
    IncomingCall,
    Matched,
    Queued,
    RingEnded,
    Ringing,
    TicketClosed,
)
from duet.services.matchmaker.fakes import (
    FakeEdges,
    FakeRouting,
    InMemoryFriendStore,
    InMemorySafetyStore,
    InMemoryStore,
)
from duet.services.matchmaker.ports import EdgeState
from duet.services.store.postgres import Store
from tests.services.matchmaker.test_core import EDGES, Client, join


class Clock:
    def __init__(self) -> None:
        self.now = 1_700_000_000.0

    def __call__(self) -> float:
        return self.now


@pytest.fixture
def clock() -> Clock:
    return Clock()


@pytest.fixture(params=["memory", "postgres"])
def mm(request: pytest.FixtureRequest, clock: Clock) -> Matchmaker:
    if request.param == "memory":
        store = InMemoryStore()
        stores: tuple[object, object, object] = (store, InMemorySafetyStore(), InMemoryFriendStore(store))
    else:
        pg: Store = request.getfixturevalue("store")
        stores = (pg, pg, pg)
    return Matchmaker(
        stores[0],  # type: ignore[arg-type]
        FakeRouting(EDGES, ingress_by_prefix={"2.": "vir-1"}),
        FakeEdges(),
        config=MatchConfig(recent_partners=0, ring_timeout_s=30.0),
        safety=stores[1],  # type: ignore[arg-type]
        friends=stores[2],  # type: ignore[arg-type]
        clock=clock,
    )


async def met(mm: Matchmaker, a: Client, b: Client) -> str:
    """a and b are matched from the pool; the call id."""
    await mm.find_partner(a.session)
    await mm.find_partner(b.session)
    return b.last(Matched).call_id


async def befriend(mm: Matchmaker, a: Client, b: Client) -> str:
    call_id = await met(mm, a, b)
    await mm.add_friend(a.session, call_id)
    await mm.add_friend(b.session, call_id)
    await mm.hang_up(a.session)
    a.items(), b.items()
    return call_id


async def test_one_sided_request_is_not_a_friendship_mutual_is(mm: Matchmaker) -> None:
    ana, ben = await join(mm, "ana"), await join(mm, "ben", "2.2.2.2")
    call_id = await met(mm, ana, ben)
    await mm.add_friend(ana.session, call_id)
    await mm.add_friend(ana.session, call_id)  # asking again changes nothing
    events = ana.items()
    assert [e for e in events if isinstance(e, FriendRequested)] == [FriendRequested(call_id, False)] * 2
    assert not [e for e in events + ben.items() if isinstance(e, FriendAdded)]
    assert await mm.list_friends("ana") == [] and await mm.list_friends("ben") == []

    await mm.add_friend(ben.session, call_id)
    ben_events = ben.items()
    assert [e for e in ben_events if isinstance(e, FriendRequested)] == [FriendRequested(call_id, True)]
    (to_ben,) = [e for e in ben_events if isinstance(e, FriendAdded)]
    to_ana = ana.last(FriendAdded)
    assert (to_ben.friend.user_id, to_ben.friend.display_name) == ("ana", "Ana")
    assert (to_ana.friend.user_id, to_ana.friend.display_name) == ("ben", "Ben")
    assert to_ana.call_id == call_id and to_ana.friend.online and to_ana.friend.busy  # still in the call

    (friend,) = await mm.list_friends("ana")
    assert (friend.user_id, friend.online, friend.busy) == ("ben", True, True)
    await mm.hang_up(ana.session)
    await mm.close_session(ben.session, "leave")
    (friend,) = await mm.list_friends("ana")
    assert (friend.user_id, friend.online, friend.busy) == ("ben", False, False)


async def test_only_a_partner_of_ones_own_call_can_be_added(mm: Matchmaker) -> None:
    ana, ben, cleo = await join(mm, "ana"), await join(mm, "ben"), await join(mm, "cleo")
    call_id = await met(mm, ana, ben)
    with pytest.raises(NotFound):
        await mm.add_friend(cleo.session, call_id)
    with pytest.raises(BadRequest):
        await mm.add_friend(cleo.session, "")
    assert await mm.list_friends("cleo") == []


async def test_blocked_users_cannot_friend_or_call_and_a_block_ends_a_friendship(mm: Matchmaker) -> None:
    ana, ben = await join(mm, "ana"), await join(mm, "ben")
    call_id = await met(mm, ana, ben)
    await mm.block(ana.session, call_id)
    with pytest.raises(Forbidden, match="blocked"):
        await mm.add_friend(ben.session, call_id)
    assert await mm.list_friends("ben") == []

    # Friends first, then a block: the friendship is gone and calling is refused.
    cleo, dara = await join(mm, "cleo"), await join(mm, "dara")
    call_id = await befriend(mm, cleo, dara)
    assert [f.user_id for f in await mm.list_friends("cleo")] == ["dara"]
    await mm.block(dara.session, call_id)
    assert await mm.list_friends("cleo") == []
    with pytest.raises(Forbidden, match="blocked"):
        await mm.call_friend(cleo.session, "dara")
    assert not mm._rings and cleo.session.ring is None


async def test_an_accepted_friend_call_is_connected_like_a_match_and_recorded(mm: Matchmaker, clock: Clock) -> None:
    ana, ben = await join(mm, "ana"), await join(mm, "ben", "2.2.2.2")
    await befriend(mm, ana, ben)
    await mm.call_friend(ana.session, "ben")
    ringing, incoming = ana.last(Ringing), ben.last(IncomingCall)
    assert ringing.request_id == incoming.request_id and ringing.friend.user_id == "ben"
    assert incoming.caller_user_id == "ana" and incoming.caller.display_name == "Ana"
    assert incoming.caller.region == "Frankfurt" and incoming.expires_at == clock.now * 1000 + 30_000
    assert [f.busy for f in await mm.list_friends("ana")] == [True]  # ben is being rung

    clock.now += 2.5
    await mm.answer_call(ben.session, incoming.request_id, accept=True)
    to_ana, to_ben = ana.last(Matched), ben.last(Matched)
    assert to_ana.call_id == to_ben.call_id and to_ana.friend_call and to_ben.friend_call
    assert to_ana.partner_display_name == "Ben" and to_ana.route == ("fra-1", "vir-1")
    st = to_ana.stages
    assert st["queued"] == clock.now * 1000 - 2500 and st["matched"] == clock.now * 1000
    assert st["matched"] <= st["route_picked"] <= st["bridged"]
    row = await mm.store.get_call(to_ana.call_id)
    assert row is not None and row.kind == "friend" and row.state == "bridged"
    assert (row.user_a, row.user_b) == ("ana", "ben") and row.stages_b["queued"] == st["queued"]

    await mm.hang_up(ben.session)
    assert ben.last(CallEnded).reason == "hung_up" and ana.last(CallEnded).reason == "partner_hung_up"
    row = await mm.store.get_call(to_ana.call_id)
    assert row is not None and row.state == "ended" and row.end_reason == "hung_up"
    assert row.duration_ms is not None and row.ended_at is not None and row.created_at is not None
    assert row.duration_ms == pytest.approx((row.ended_at - row.created_at) * 1000, abs=1.0)
    assert ana.session.call is None and ben.session.call is None and not mm._rings


@pytest.mark.parametrize("how", ["declined", "cancelled", "no answer", "caller left", "friend went offline"])
async def test_every_way_a_ring_ends_without_a_call_tells_both(mm: Matchmaker, clock: Clock, how: str) -> None:
    ana, ben = await join(mm, "ana"), await join(mm, "ben")
    await befriend(mm, ana, ben)
    await mm.call_friend(ana.session, "ben")
    request_id = ana.last(Ringing).request_id
    if how == "declined":
        await mm.answer_call(ben.session, request_id, accept=False)
    elif how == "cancelled":
        await mm.cancel_call(ana.session, request_id)
    elif how == "no answer":
        clock.now += 29.9
        await mm.run_due()
        assert request_id in mm._rings
        clock.now += 0.2
        await mm.run_due()
    elif how == "caller left":
        await mm.close_session(ana.session, "leave")
    else:
        await mm.close_session(ben.session, "leave")
    for client in (ana, ben):
        if not client.session.closed:
            assert client.last(RingEnded) == RingEnded(request_id, how)
        assert client.session.ring is None
    assert not mm._rings and Matched not in ana.drain() + ben.drain()
    if not ben.session.closed:
        with pytest.raises(NotFound):  # too late to accept
            await mm.answer_call(ben.session, request_id, accept=True)


@pytest.mark.parametrize("lost", ["caller", "friend"])
async def test_a_ring_ends_when_either_sides_edge_is_lost(mm: Matchmaker, lost: str) -> None:
    # ben's session is on vir-1; its leg goes with the edge, so the ring cannot be connected.
    ana, ben = await join(mm, "ana"), await join(mm, "ben", "2.2.2.2")
    await befriend(mm, ana, ben)
    caller, callee = (ben, ana) if lost == "caller" else (ana, ben)
    await mm.call_friend(caller.session, callee.session.user_id)
    request_id = caller.last(Ringing).request_id
    routing: FakeRouting = mm.routing  # type: ignore[assignment]
    routing.edges = [replace(e, state=EdgeState.DOWN) if e.edge_id == "vir-1" else e for e in routing.edges]
    mm.edges.down.add("vir-1")  # type: ignore[attr-defined]

    await mm.edge_lost("vir-1", "gone")
    for client in (ana, ben):
        assert client.last(RingEnded) == RingEnded(request_id, rings.EDGE_LOST)
        assert client.session.ring is None
    assert not mm._rings
    with pytest.raises(NotFound):
        await mm.answer_call(callee.session, request_id, accept=True)
    assert Matched not in ana.drain() + ben.drain()


async def test_bad_friend_calls_are_refused_and_change_nothing(mm: Matchmaker) -> None:
    ana, ben, cleo = await join(mm, "ana"), await join(mm, "ben"), await join(mm, "cleo")
    nolag = await join(mm, "dara", offer=False)
    await befriend(mm, ana, ben)
    await mm.store.upsert_user("eve", "Eve")  # exists, never met ana
    cases: list[tuple[type[Exception], str, Client]] = [
        (BadRequest, "", ana),
        (BadRequest, "bad id!", ana),
        (BadRequest, "ana", ana),  # yourself
        (NotFound, "nobody-like-this", ana),
        (Forbidden, "eve", ana),  # not a friend
        (Forbidden, "ana", cleo),
        (WrongState, "ben", nolag),
    ]
    for kind, user_id, client in cases:
        with pytest.raises(kind):
            await mm.call_friend(client.session, user_id)
    # offline
    await mm.close_session(ben.session, "leave")
    with pytest.raises(WrongState, match="not online"):
        await mm.call_friend(ana.session, "ben")
    # waiting in the pool, or the friend busy in a call
    ben = await join(mm, "ben")
    await mm.find_partner(ana.session)
    with pytest.raises(WrongState, match="Cancel"):
        await mm.call_friend(ana.session, "ben")
    await mm.find_partner(cleo.session)  # cleo meets ana
    assert cleo.last(Matched).partner_display_name == "Ana"
    with pytest.raises(WrongState, match="in another call"):
        await mm.call_friend(ben.session, "ana")
    with pytest.raises(NotFound):
        await mm.answer_call(ben.session, "nope", accept=True)
    with pytest.raises(NotFound):
        await mm.cancel_call(ben.session, "nope")
    assert not mm._rings and all(c.session.ring is None for c in (ana, ben, cleo))
    assert IncomingCall not in ana.drain() + ben.drain() + cleo.drain()


async def test_unfriend_stops_calls_and_ends_a_ring(mm: Matchmaker) -> None:
    ana, ben = await join(mm, "ana"), await join(mm, "ben")
    await befriend(mm, ana, ben)
    await mm.call_friend(ana.session, "ben")
    request_id = ana.last(Ringing).request_id
    await mm.remove_friend("ben", "ana")
    assert ana.last(RingEnded) == RingEnded(request_id, rings.NO_LONGER_FRIENDS)
    assert await mm.list_friends("ana") == []
    with pytest.raises(Forbidden, match="not your friend"):
        await mm.call_friend(ana.session, "ben")
    with pytest.raises(NotFound):
        await mm.remove_friend("ana", "ben")
    with pytest.raises(BadRequest):
        await mm.remove_friend("ana", "ana")


async def test_a_waiting_friend_can_answer_and_looking_again_cancels_ones_own_ring(mm: Matchmaker) -> None:
    ana, ben = await join(mm, "ana"), await join(mm, "ben")
    await befriend(mm, ana, ben)
    await mm.find_partner(ben.session)  # ben waits in the pool
    assert ben.drain()[-1] is Queued
    await mm.call_friend(ana.session, "ben")
    await mm.answer_call(ben.session, ben.last(IncomingCall).request_id, accept=True)
    assert ben.last(TicketClosed).reason == "cancelled: answered a friend's call"
    assert ana.last(Matched).friend_call and len(mm.pool) == 0
    await mm.hang_up(ana.session)

    await mm.call_friend(ana.session, "ben")
    request_id = ana.last(Ringing).request_id
    await mm.find_partner(ana.session)  # ana looks for a stranger instead
    assert ben.last(RingEnded) == RingEnded(request_id, rings.CANCELLED)


async def test_a_failed_friend_call_set_up_is_recorded_and_nobody_is_queued(mm: Matchmaker) -> None:
    ana, ben = await join(mm, "ana"), await join(mm, "ben")
    await befriend(mm, ana, ben)
    assert isinstance(mm.edges, FakeEdges)
    mm.edges.broken_legs.add(ben.session.leg_id or "")
    await mm.call_friend(ana.session, "ben")
    await mm.answer_call(ben.session, ben.last(IncomingCall).request_id, accept=True)
    assert "bridge failed" in ben.last(CallEnded).reason
    assert "your friend's leg" in ana.last(CallEnded).reason
    assert len(mm.pool) == 0 and ana.session.call is None
    if isinstance(mm.store, Store):  # the record of the attempt, with why it failed
        rows = [r for r in await mm.store.list_calls() if r.kind == "friend"]
        assert len(rows) == 1 and rows[0].state == "ended" and rows[0].end_reason is not None
        assert rows[0].end_reason.startswith("bridge failed: ben: ") and rows[0].duration_ms == 0
        assert set(rows[0].stages_a) == {"queued", "matched", "route_picked"}


async def test_a_caller_leaving_while_the_answer_is_handled_ends_the_ring_for_the_friend(mm: Matchmaker) -> None:
    ana, ben = await join(mm, "ana"), await join(mm, "ben")
    await befriend(mm, ana, ben)
    await mm.find_partner(ben.session)  # closing ben's ticket on accept takes a round trip to the store
    await mm.call_friend(ana.session, "ben")
    request_id = ben.last(IncomingCall).request_id
    await asyncio.gather(mm.answer_call(ben.session, request_id, accept=True), mm.close_session(ana.session, "leave"))
    assert ben.last(RingEnded) == RingEnded(request_id, rings.CALLER_LEFT)
    assert ben.session.call is None and ben.session.ring is None and not mm._calls

"""The matchmaker core over the package's fakes of the routing service and the edges
(unit level: what the core asks of them is what is checked). Every test runs on the
in-memory store and again on real PostgreSQL."""

from __future__ import annotations

import asyncio
from collections.abc import Sequence
from dataclasses import dataclass
from typing import TypeVar

import pytest

from duet.services.matchmaker.core import Matchmaker
from duet.services.matchmaker.errors import BadRequest, Forbidden, NotFound, Unavailable, WrongState
from duet.services.matchmaker.events import (
    CallEnded,
    EdgeAssigned,
    LegAnswered,
    Matched,
    Queued,
    SessionClosed,
    SessionEvent,
    ShardMoved,
    TicketClosed,
)
from duet.services.matchmaker.fakes import FakeEdges, FakeRouting, InMemoryStore
from duet.services.matchmaker.ports import EdgeInfo, EdgeState
from duet.services.matchmaker.session_state import ClientSession
from duet.services.store.postgres import Store
from duet.services.store.records import CallRow

AnyStore = InMemoryStore | Store
E = TypeVar("E", bound=SessionEvent)

EDGES = [
    EdgeInfo("fra-1", 1, "Frankfurt", "127.0.0.1:1", "127.0.0.1:11", "127.0.0.1", EdgeState.ACTIVE),
    EdgeInfo("vir-1", 2, "Virginia", "127.0.0.1:2", "127.0.0.1:12", "127.0.0.1", EdgeState.ACTIVE),
]


@dataclass
class Client:
    session: ClientSession
    outbox: asyncio.Queue[SessionEvent | SessionClosed]

    def items(self) -> list[SessionEvent | SessionClosed]:
        out = []
        while not self.outbox.empty():
            out.append(self.outbox.get_nowait())
        return out

    def drain(self) -> list[type]:
        return [type(i) for i in self.items()]

    def last(self, kind: type[E]) -> E:
        items = self.items()
        found = [i for i in items if isinstance(i, kind)]
        assert found, f"no {kind.__name__} in {items}"
        return found[-1]


@pytest.fixture(params=["memory", "postgres"])
def match_store(request: pytest.FixtureRequest) -> AnyStore:
    return InMemoryStore() if request.param == "memory" else request.getfixturevalue("store")


@pytest.fixture
def routing() -> FakeRouting:
    return FakeRouting(EDGES, ingress_by_prefix={"2.": "vir-1"})


@pytest.fixture
def edges() -> FakeEdges:
    return FakeEdges()


@pytest.fixture
def mm(match_store: AnyStore, routing: FakeRouting, edges: FakeEdges) -> Matchmaker:
    return Matchmaker(match_store, routing, edges)


async def join(mm: Matchmaker, user: str, ip: str = "1.1.1.1", *, offer: bool = True, sdp: str = "v=0 offer") -> Client:
    outbox: asyncio.Queue[SessionEvent | SessionClosed] = asyncio.Queue()
    session = await mm.open_session(user, user.title(), ip, outbox)
    if offer:
        await mm.attach_leg(session, sdp)
    return Client(session, outbox)


async def test_only_clients_that_can_exchange_video_are_matched(mm: Matchmaker) -> None:
    # The fake edge answers an H.264-only offer with a leg that sends and decodes H.264 only.
    h264 = await join(mm, "ana", sdp="v=0 m=video H264")
    vp8 = await join(mm, "ben")
    assert h264.session.video is not None and h264.session.video.send == "H264/42e01f"
    await mm.find_partner(h264.session)
    await mm.find_partner(vp8.session)
    assert Matched not in h264.drain() + vp8.drain()  # ben sends VP8, which ana cannot decode
    other_h264 = await join(mm, "cleo", sdp="v=0 m=video H264")
    await mm.find_partner(other_h264.session)
    assert other_h264.last(Matched).partner_display_name == "Ana"


async def test_two_waiting_users_are_matched_bridged_and_recorded(
    mm: Matchmaker, match_store: AnyStore, edges: FakeEdges
) -> None:
    edges.first_packet_at = 1234.5
    ana, ben = await join(mm, "ana"), await join(mm, "ben", "2.2.2.2")
    assert ana.drain() == [EdgeAssigned, LegAnswered]
    await mm.find_partner(ana.session)
    assert ana.drain() == [Queued]
    await mm.find_partner(ben.session)
    matched = ben.last(Matched)
    assert matched.partner_display_name == "Ana" and matched.route == ("vir-1", "fra-1")
    st = matched.stages
    assert 0 < st["queued"] <= st["matched"] <= st["route_picked"] <= st["bridged"]
    assert sorted(edges.bridges.values()) == ["leg1", "leg2"]
    row = await match_store.get_call(matched.call_id)
    assert row is not None and row.state == "bridged" and {row.user_a, row.user_b} == {"ana", "ben"}
    assert row.stages_a["bridged"] == pytest.approx(st["bridged"])
    assert not await match_store.open_tickets()

    # the connect report merges the client's stages and the edge's first packet
    stages = {"session_open": 1.0, "first_frame": 2000.0, "matched": 99.0}
    await mm.connect_report(ben.session, matched.call_id, stages, connected=True)
    await mm.connect_report(ana.session, matched.call_id, stages, connected=True)
    row = await match_store.get_call(matched.call_id)
    assert row is not None and row.state == "connected"
    side = row.stages_b if row.user_b == "ben" else row.stages_a
    assert side["first_frame"] == 2000.0 and side["first_packet_at_edge"] == 1234.5
    assert side["matched"] == pytest.approx(st["matched"])  # the client cannot overwrite server stages


async def test_a_dropped_stream_cancels_the_ticket_and_releases_the_leg(
    mm: Matchmaker, match_store: AnyStore, edges: FakeEdges
) -> None:
    ana = await join(mm, "ana")
    await mm.find_partner(ana.session)
    assert len(mm.pool) == 1 and len(await match_store.open_tickets("ana")) == 1
    await mm.close_session(ana.session, "stream closed")
    assert len(mm.pool) == 0 and not await match_store.open_tickets("ana")
    assert edges.detached == ["leg1"]
    ben = await join(mm, "ben")
    await mm.find_partner(ben.session)
    assert ben.drain()[-1] is Queued  # nobody to match: ana is gone


async def test_a_new_session_replaces_the_old_one(mm: Matchmaker) -> None:
    old = await join(mm, "ana")
    await mm.find_partner(old.session)
    new = await join(mm, "ana")
    *_, ended, closed = old.items()
    assert isinstance(ended, CallEnded) and isinstance(closed, SessionClosed)  # the notice, then the stream ends
    assert "replaced" in ended.reason
    assert len(mm.pool) == 0 and old.session.closed
    assert mm.sessions == {new.session.session_id: new.session}


async def test_next_ends_the_call_and_never_rematches_the_same_partner(
    mm: Matchmaker, match_store: AnyStore, edges: FakeEdges
) -> None:
    edges.first_packet_at = 777.0
    ana, ben = await join(mm, "ana"), await join(mm, "ben")
    await mm.find_partner(ana.session)
    await mm.find_partner(ben.session)
    call_id = ben.last(Matched).call_id
    ana.drain()
    await mm.next(ana.session)
    assert ben.last(CallEnded).reason == "partner_next"
    assert ana.drain() == [CallEnded, Queued]
    row = await match_store.get_call(call_id)
    assert row is not None and row.state == "ended" and row.end_reason == "next"
    # no connect report came, yet the edges' first-packet stage survived the unbridge
    assert row.stages_a["first_packet_at_edge"] == row.stages_b["first_packet_at_edge"] == 777.0
    # ben looks again: ana (just left him) is waiting but not offered; cleo is
    await mm.find_partner(ben.session)
    assert ben.drain()[-1] is Queued
    cleo = await join(mm, "cleo")
    await mm.find_partner(cleo.session)
    assert cleo.last(Matched).partner_display_name == "Ana"


async def test_a_failed_bridge_requeues_the_healthy_side(mm: Matchmaker, edges: FakeEdges) -> None:
    ana, ben = await join(mm, "ana"), await join(mm, "ben")
    edges.broken_legs.add("leg2")
    await mm.find_partner(ana.session)
    await mm.find_partner(ben.session)
    assert "bridge failed" in ben.last(CallEnded).reason
    assert ana.drain()[-1] is Queued
    assert [t.user_id for t in mm.pool.waiting()] == ["ana"]
    assert edges.bridges == {}


async def test_protocol_violations_are_session_errors(mm: Matchmaker) -> None:
    ana = await join(mm, "ana", offer=False)
    with pytest.raises(WrongState):
        await mm.find_partner(ana.session)
    await mm.attach_leg(ana.session, "v=0")
    with pytest.raises(WrongState):
        await mm.attach_leg(ana.session, "v=0")
    await mm.find_partner(ana.session)
    with pytest.raises(WrongState):
        await mm.find_partner(ana.session)
    with pytest.raises(NotFound):
        await mm.connect_report(ana.session, "nope", {}, connected=False)
    with pytest.raises(BadRequest):
        await mm.open_session("bad id!", "", "1.1.1.1", asyncio.Queue())
    with pytest.raises(BadRequest):
        await mm.open_session("ana", "x" * 65, "1.1.1.1", asyncio.Queue())


async def test_no_route_ends_the_match_for_both_without_a_rematch_loop(mm: Matchmaker, routing: FakeRouting) -> None:
    routing.cut.add(frozenset(("fra-1", "vir-1")))
    ana, ben = await join(mm, "ana"), await join(mm, "ben", "2.2.2.2")
    await mm.find_partner(ana.session)
    await mm.find_partner(ben.session)
    assert "no route" in ana.last(CallEnded).reason and "no route" in ben.last(CallEnded).reason
    await mm.find_partner(ana.session)
    await mm.find_partner(ben.session)
    assert len(mm.pool) == 2  # not paired straight back into the same failure


# -- peers failing, and the kinds of error they become -------------------------------


async def test_no_ingress_means_unavailable_and_no_session(mm: Matchmaker, routing: FakeRouting) -> None:
    routing.down = True
    with pytest.raises(Unavailable, match="no edge could be assigned"):
        await join(mm, "ana")
    assert mm.sessions == {}


async def test_a_bad_offer_is_the_clients_fault_an_unreachable_edge_is_not(mm: Matchmaker, edges: FakeEdges) -> None:
    ana = await join(mm, "ana", offer=False)
    with pytest.raises(BadRequest, match="rejected the offer"):
        await mm.attach_leg(ana.session, "hello")
    edges.down.add("fra-1")
    with pytest.raises(Unavailable, match="fra-1"):
        await mm.attach_leg(ana.session, "v=0")
    edges.down.clear()
    await mm.attach_leg(ana.session, "v=0")  # neither failure used up the session's one offer
    assert ana.drain() == [EdgeAssigned, LegAnswered]


async def test_an_unreachable_edge_does_not_stop_a_call_from_ending(
    mm: Matchmaker, match_store: AnyStore, edges: FakeEdges
) -> None:
    ana, ben = await join(mm, "ana"), await join(mm, "ben", "2.2.2.2")
    await mm.find_partner(ana.session)
    await mm.find_partner(ben.session)
    call_id = ben.last(Matched).call_id
    edges.down.add("vir-1")
    await mm.close_session(ben.session, "stream closed")
    assert ana.last(CallEnded).reason == "partner_left"
    row = await match_store.get_call(call_id)
    assert row is not None and (row.state, row.end_reason) == ("ended", "left")
    assert edges.detached == []  # ben's leg is on the unreachable edge; only ana's side was unbridged
    assert len(edges.unbridged) == 1


async def test_connect_reports_are_checked_against_the_call(mm: Matchmaker, match_store: AnyStore) -> None:
    ana, ben, cleo = await join(mm, "ana"), await join(mm, "ben"), await join(mm, "cleo")
    await mm.find_partner(ana.session)
    await mm.find_partner(ben.session)
    call_id = ben.last(Matched).call_id
    with pytest.raises(Forbidden):
        await mm.connect_report(cleo.session, call_id, {"first_frame": 5.0}, connected=True)
    await mm.next(ana.session)
    # a report arriving after the call ended still lands on the record; it cannot revive the call
    await mm.connect_report(ben.session, call_id, {"first_frame": 5.0, "bridged": 1.0}, connected=True)
    row = await match_store.get_call(call_id)
    assert row is not None and row.state == "ended"
    ben_side = row.stages_a if row.user_a == "ben" else row.stages_b
    assert ben_side["first_frame"] == 5.0 and ben_side["bridged"] != 1.0
    with pytest.raises(NotFound):
        await mm.connect_report(cleo.session, call_id, {}, connected=False)


async def test_get_call(mm: Matchmaker) -> None:
    ana, ben = await join(mm, "ana"), await join(mm, "ben")
    await mm.find_partner(ana.session)
    await mm.find_partner(ben.session)
    call_id = ben.last(Matched).call_id
    assert (await mm.get_call(call_id)).state == "bridged"
    with pytest.raises(BadRequest, match="call_id"):
        await mm.get_call("")
    with pytest.raises(NotFound, match="nope"):
        await mm.get_call("nope")


async def test_a_clean_stop_ends_every_session_as_a_replica_death_would(
    mm: Matchmaker, match_store: AnyStore, edges: FakeEdges
) -> None:
    ana, ben = await join(mm, "ana"), await join(mm, "ben")
    cleo, dara, eve = await join(mm, "cleo"), await join(mm, "dara"), await join(mm, "eve")
    await mm.find_partner(cleo.session)
    await mm.find_partner(dara.session)
    call_id = dara.last(Matched).call_id
    await mm.find_partner(ana.session)
    ticket_id = ana.last(Queued).ticket_id
    await mm.stop()
    assert mm.sessions == {} and len(mm.pool) == 0
    assert sorted(edges.detached) == ["leg1", "leg2", "leg3", "leg4", "leg5"]
    # Everyone is told to reconnect (the stream ends UNAVAILABLE with this reason), nobody that they left.
    for client in (ana, ben, cleo, dara, eve):
        items = client.items()
        last = items[-1]
        assert isinstance(last, ShardMoved) and "shutting down" in last.reason and "reconnect" in last.reason
        ended = [(i.call_id, i.reason) for i in items if isinstance(i, CallEnded)]
        assert ended == ([(call_id, "matchmaker shutting down")] if client in (cleo, dara) else [])
    # The waiting ticket stays open for the next owner of the shard to restore.
    row = await match_store.get_ticket(ticket_id)
    assert row is not None and row.closed_at is None
    # The live call ended, both told why, and the record says so.
    call = await match_store.get_call(call_id)
    assert call is not None and call.state == "ended" and call.end_reason == "matchmaker shutting down"
    with pytest.raises(Unavailable, match="shutting down"):
        await join(mm, "late")


class StoreLostAtShutdown(InMemoryStore):
    async def set_call_state(self, call_id: str, state: str, end_reason: str | None = None) -> bool:
        raise ConnectionResetError("database connection lost")


async def test_a_clean_stop_ends_every_session_even_when_the_store_fails(routing: FakeRouting) -> None:
    mm = Matchmaker(StoreLostAtShutdown(), routing, FakeEdges())
    ana, ben, cleo = await join(mm, "ana"), await join(mm, "ben"), await join(mm, "cleo")
    await mm.find_partner(ana.session)
    await mm.find_partner(ben.session)
    assert ben.last(Matched)
    await mm.stop()
    assert mm.sessions == {}
    for client in (ana, ben, cleo):
        assert isinstance(client.items()[-1], ShardMoved)


async def test_after_a_clean_stop_the_next_replica_gives_the_waiting_user_their_place(
    match_store: AnyStore, routing: FakeRouting
) -> None:
    stopped = Matchmaker(match_store, routing, FakeEdges())
    ana = await join(stopped, "ana")
    await stopped.find_partner(ana.session)
    queued = ana.last(Queued)
    await stopped.stop()
    successor = Matchmaker(match_store, routing, FakeEdges())
    assert await successor.restore_shard("world") == 1
    back = await join(successor, "ana")
    await successor.find_partner(back.session)
    again = back.last(Queued)
    assert again.ticket_id == queued.ticket_id and again.queued_at == pytest.approx(queued.queued_at)
    await successor.stop()


async def test_the_recent_partner_window_is_configurable(match_store: AnyStore, routing: FakeRouting) -> None:
    mm = Matchmaker(match_store, routing, FakeEdges(), recent_partners=0)
    ana, ben = await join(mm, "ana"), await join(mm, "ben")
    await mm.find_partner(ana.session)
    await mm.find_partner(ben.session)
    first = ben.last(Matched).call_id
    await mm.next(ana.session)  # ana looks again at once; ben was told partner_next
    await mm.next(ben.session)
    again = ben.last(Matched)
    assert again.call_id != first and again.partner_display_name == "Ana"  # window 0: they may meet again
    with pytest.raises(ValueError):
        Matchmaker(match_store, routing, FakeEdges(), recent_partners=-1)


class StaleAtTheWrite(InMemoryStore):
    """Another replica matches the waiting ticket while this one bridges: the pair's write finds it closed."""

    async def close_pair_and_create_call(self, ticket_ids: Sequence[str], outcome: str, call: CallRow) -> list[str]:
        await self.close_ticket(ticket_ids[0], "matched")
        return await super().close_pair_and_create_call(ticket_ids, outcome, call)


class LostAtTheWrite(InMemoryStore):
    async def close_pair_and_create_call(self, ticket_ids: Sequence[str], outcome: str, call: CallRow) -> list[str]:
        raise ConnectionResetError("database connection lost")


async def test_a_pair_found_stale_at_its_write_is_taken_down_and_the_other_waits_on(routing: FakeRouting) -> None:
    store, edges = StaleAtTheWrite(), FakeEdges()
    mm = Matchmaker(store, routing, edges)
    ana, ben = await join(mm, "ana"), await join(mm, "ben")
    await mm.find_partner(ana.session)
    await mm.find_partner(ben.session)
    assert "closed elsewhere" in ana.last(TicketClosed).reason
    assert Matched not in ben.drain()
    assert edges.bridges == {} and len(edges.unbridged) == 2  # both sides were bridged, both taken down
    assert await store.list_calls() == []  # nothing recorded
    assert ana.session.call is None and ben.session.call is None and mm._calls == {}
    ben_ticket = ben.session.ticket
    assert ben_ticket is not None and ben_ticket.ticket_id in mm.pool  # back in the pool with its age
    row = await store.get_ticket(ben_ticket.ticket_id)
    assert row is not None and row.closed_at is None


async def test_a_failed_write_takes_the_call_down_and_fails_the_request(routing: FakeRouting) -> None:
    store, edges = LostAtTheWrite(), FakeEdges()
    mm = Matchmaker(store, routing, edges)
    ana, ben = await join(mm, "ana"), await join(mm, "ben")
    await mm.find_partner(ana.session)
    with pytest.raises(ConnectionResetError):
        await mm.find_partner(ben.session)
    assert Matched not in ana.drain() + ben.drain()
    assert edges.bridges == {} and len(edges.unbridged) == 2
    assert ana.session.call is None and ben.session.call is None and mm._calls == {}

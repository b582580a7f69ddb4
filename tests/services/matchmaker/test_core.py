"""The matchmaker core against real PostgreSQL, with the routing service and edges
faked (unit level: what the core asks of them is what is checked)."""

from __future__ import annotations

import asyncio
from dataclasses import dataclass, field

import grpc
import pytest

from duet.services.matchmaker.core import Matchmaker, SessionError
from duet.services.matchmaker.remote_peers import EdgeInfo, Ingress, Route
from duet.services.store.postgres import Store
from duet.v1 import common_pb2, matchmaker_pb2

EDGES = {"fra": EdgeInfo("fra-1", "Frankfurt", "127.0.0.1:1"), "vir": EdgeInfo("vir-1", "Virginia", "127.0.0.1:2")}


class FakeRouting:
    async def pick_ingress(self, client_ip: str) -> Ingress:
        edge = EDGES["vir"] if client_ip.startswith("2.") else EDGES["fra"]
        return Ingress(edge=edge, edge_ref=common_pb2.EdgeRef(edge_id=edge.edge_id, region=edge.region), reason="test")

    async def pick_route(self, from_edge: str, to_edge: str) -> Route:
        return Route(path=[from_edge] if from_edge == to_edge else [from_edge, to_edge], rtt_ms=80.0)


class RpcFailure(grpc.aio.AioRpcError):
    def __init__(self, details: str) -> None:
        super().__init__(grpc.StatusCode.FAILED_PRECONDITION, grpc.aio.Metadata(), grpc.aio.Metadata(), details)


@dataclass
class FakeEdges:
    bridges: dict[tuple[int, int], str] = field(default_factory=dict)
    unbridged: list[tuple[int, int]] = field(default_factory=list)
    detached: list[str] = field(default_factory=list)
    broken_legs: set[str] = field(default_factory=set)
    legs: int = 0

    async def attach_leg(self, edge: EdgeInfo, session_id: str, offer_sdp: str) -> tuple[str, str]:
        self.legs += 1
        return f"leg{self.legs}", "v=0 answer"

    async def detach_leg(self, edge: EdgeInfo, leg_id: str) -> None:
        self.detached.append(leg_id)

    async def bridge(self, edge: EdgeInfo, bridge_id: int, leg_id: str, side: int, peer_edge_id: str) -> float:
        if leg_id in self.broken_legs:
            raise RpcFailure(f"leg '{leg_id}' has not finished ICE/DTLS yet")
        self.bridges[(bridge_id, side)] = leg_id
        return 0.0

    async def unbridge(self, edge: EdgeInfo, bridge_id: int, side: int) -> float:
        self.unbridged.append((bridge_id, side))
        self.bridges.pop((bridge_id, side), None)
        return 777.0

    async def first_packet_at_edge(self, edge: EdgeInfo, bridge_id: int, side: int) -> float:
        return 1234.5


@dataclass
class Client:
    session: object
    outbox: asyncio.Queue[object]

    def drain(self) -> list[str]:
        kinds = []
        while not self.outbox.empty():
            item = self.outbox.get_nowait()
            kinds.append(item.WhichOneof("msg") if isinstance(item, matchmaker_pb2.ServerMessage) else repr(item))
        return kinds

    def last(self, kind: str) -> matchmaker_pb2.ServerMessage:
        items = []
        while not self.outbox.empty():
            items.append(self.outbox.get_nowait())
        found = [i for i in items if isinstance(i, matchmaker_pb2.ServerMessage) and i.WhichOneof("msg") == kind]
        assert found, f"no {kind} in {items}"
        return getattr(found[-1], kind)


@pytest.fixture
async def mm(store: Store) -> Matchmaker:
    return Matchmaker(store, FakeRouting(), FakeEdges())  # type: ignore[arg-type]


async def join(mm: Matchmaker, user: str, ip: str = "1.1.1.1", *, offer: bool = True) -> Client:
    outbox: asyncio.Queue[object] = asyncio.Queue()
    session = await mm.open_session(matchmaker_pb2.Hello(user_id=user, display_name=user.title()), ip, outbox)
    if offer:
        await mm.attach_leg(session, matchmaker_pb2.LegOffer(sdp="v=0 offer"))
    return Client(session, outbox)


async def test_two_waiting_users_are_matched_bridged_and_recorded(mm: Matchmaker, store: Store) -> None:
    ana, ben = await join(mm, "ana"), await join(mm, "ben", "2.2.2.2")
    assert ana.drain() == ["edge_assigned", "answer"]
    await mm.find_partner(ana.session)
    assert ana.drain() == ["queued"]
    await mm.find_partner(ben.session)
    matched = ben.last("matched")
    assert matched.partner_display_name == "Ana" and matched.route == ["vir-1", "fra-1"]
    st = matched.stages
    assert 0 < st.queued <= st.matched <= st.route_picked <= st.bridged
    edges: FakeEdges = mm.edges  # type: ignore[assignment]
    assert sorted(edges.bridges.values()) == ["leg1", "leg2"]
    row = await store.get_call(matched.call_id)
    assert row is not None and row.state == "bridged" and {row.user_a, row.user_b} == {"ana", "ben"}
    assert row.stages_a["bridged"] == pytest.approx(st.bridged)
    assert not await store.open_tickets()

    # the connect report merges the client's stages and the edge's first packet
    report = matchmaker_pb2.ConnectReport(
        call_id=matched.call_id,
        connected=True,
        stages=common_pb2.StageTimes(session_open=1.0, first_frame=2000.0, matched=99.0),
    )
    await mm.connect_report(ben.session, report)
    await mm.connect_report(ana.session, report)
    row = await store.get_call(matched.call_id)
    assert row is not None and row.state == "connected"
    side = row.stages_b if row.user_b == "ben" else row.stages_a
    assert side["first_frame"] == 2000.0 and side["first_packet_at_edge"] == 1234.5
    assert side["matched"] == pytest.approx(st.matched)  # the client cannot overwrite server stages


async def test_a_dropped_stream_cancels_the_ticket_and_releases_the_leg(mm: Matchmaker, store: Store) -> None:
    ana = await join(mm, "ana")
    await mm.find_partner(ana.session)
    assert len(mm.pool) == 1 and len(await store.open_tickets("ana")) == 1
    await mm.close_session(ana.session, "stream closed")  # type: ignore[arg-type]
    assert len(mm.pool) == 0 and not await store.open_tickets("ana")
    assert mm.edges.detached == ["leg1"]  # type: ignore[attr-defined]
    ben = await join(mm, "ben")
    await mm.find_partner(ben.session)
    assert ben.drain()[-1] == "queued"  # nobody to match: ana is gone


async def test_a_new_session_replaces_the_old_one(mm: Matchmaker) -> None:
    old = await join(mm, "ana")
    await mm.find_partner(old.session)
    new = await join(mm, "ana")
    ended = old.last("call_ended")
    assert "replaced" in ended.reason
    assert len(mm.pool) == 0 and old.session.closed  # type: ignore[attr-defined]
    assert mm.sessions == {new.session.session_id: new.session}  # type: ignore[attr-defined]


async def test_next_ends_the_call_and_never_rematches_the_same_partner(mm: Matchmaker, store: Store) -> None:
    ana, ben = await join(mm, "ana"), await join(mm, "ben")
    await mm.find_partner(ana.session)
    await mm.find_partner(ben.session)
    call_id = ben.last("matched").call_id
    ana.drain()
    await mm.next(ana.session)
    assert ben.last("call_ended").reason == "partner_next"
    assert ana.drain() == ["call_ended", "queued"]
    row = await store.get_call(call_id)
    assert row is not None and row.state == "ended" and row.end_reason == "next"
    # no connect report came, yet the edges' first-packet stage survived the unbridge
    assert row.stages_a["first_packet_at_edge"] == row.stages_b["first_packet_at_edge"] == 777.0
    # ben looks again: ana (just left him) is waiting but not offered; cleo is
    await mm.find_partner(ben.session)
    assert ben.drain()[-1] == "queued"
    cleo = await join(mm, "cleo")
    await mm.find_partner(cleo.session)
    assert cleo.last("matched").partner_display_name == "Ana"


async def test_a_failed_bridge_requeues_the_healthy_side(mm: Matchmaker) -> None:
    ana, ben = await join(mm, "ana"), await join(mm, "ben")
    mm.edges.broken_legs.add("leg2")  # type: ignore[attr-defined]
    await mm.find_partner(ana.session)
    await mm.find_partner(ben.session)
    assert "bridge failed" in ben.last("call_ended").reason
    assert ana.drain()[-1] == "queued"
    assert [t.user_id for t in mm.pool.waiting()] == ["ana"]
    assert mm.edges.bridges == {}  # type: ignore[attr-defined]


async def test_protocol_violations_are_session_errors(mm: Matchmaker) -> None:
    ana = await join(mm, "ana", offer=False)
    with pytest.raises(SessionError) as info:
        await mm.find_partner(ana.session)
    assert info.value.code == grpc.StatusCode.FAILED_PRECONDITION
    await mm.attach_leg(ana.session, matchmaker_pb2.LegOffer(sdp="v=0"))
    with pytest.raises(SessionError):
        await mm.attach_leg(ana.session, matchmaker_pb2.LegOffer(sdp="v=0"))
    await mm.find_partner(ana.session)
    with pytest.raises(SessionError):
        await mm.find_partner(ana.session)
    with pytest.raises(SessionError) as info:
        await mm.connect_report(ana.session, matchmaker_pb2.ConnectReport(call_id="nope"))
    assert info.value.code == grpc.StatusCode.NOT_FOUND
    with pytest.raises(SessionError) as info:
        await mm.open_session(matchmaker_pb2.Hello(user_id="bad id!"), "1.1.1.1", asyncio.Queue())
    assert info.value.code == grpc.StatusCode.INVALID_ARGUMENT


async def test_no_route_ends_the_match_for_both_without_a_rematch_loop(mm: Matchmaker) -> None:
    async def no_route(from_edge: str, to_edge: str) -> Route:
        raise RpcFailure(f"no route from '{from_edge}' to '{to_edge}'")

    mm.routing.pick_route = no_route  # type: ignore[method-assign]
    ana, ben = await join(mm, "ana"), await join(mm, "ben", "2.2.2.2")
    await mm.find_partner(ana.session)
    await mm.find_partner(ben.session)
    assert "no route" in ana.last("call_ended").reason and "no route" in ben.last("call_ended").reason
    await mm.find_partner(ana.session)
    await mm.find_partner(ben.session)
    assert len(mm.pool) == 2  # not paired straight back into the same failure

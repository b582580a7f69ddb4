"""An edge dies: the core moves its sessions to other edges (fakes for routing and edges;
every test on the in-memory store and on real PostgreSQL)."""

from __future__ import annotations

import asyncio
from dataclasses import replace

import pytest

from duet.services.matchmaker.core import Matchmaker
from duet.services.matchmaker.errors import WrongState
from duet.services.matchmaker.events import (
    CallEnded,
    EdgeAssigned,
    EdgeLost,
    LegAnswered,
    Matched,
    NoEdge,
    Queued,
    SessionClosed,
    SessionEvent,
    TicketClosed,
)
from duet.services.matchmaker.fakes import FakeEdges, FakeRouting, InMemoryStore
from duet.services.matchmaker.ports import EdgeState
from duet.services.store.postgres import Store
from tests.services.matchmaker.test_core import EDGES, Client

Outgoing = SessionEvent | SessionClosed | NoEdge


@pytest.fixture(params=["memory", "postgres"])
def match_store(request: pytest.FixtureRequest) -> InMemoryStore | Store:
    return InMemoryStore() if request.param == "memory" else request.getfixturevalue("store")


@pytest.fixture
def routing() -> FakeRouting:
    return FakeRouting(list(EDGES), ingress_by_prefix={"2.": "vir-1"})


@pytest.fixture
def edges() -> FakeEdges:
    return FakeEdges()


@pytest.fixture
def mm(match_store: InMemoryStore | Store, routing: FakeRouting, edges: FakeEdges) -> Matchmaker:
    return Matchmaker(match_store, routing, edges)


async def join(mm: Matchmaker, user: str, ip: str = "1.1.1.1") -> Client:
    outbox: asyncio.Queue[Outgoing] = asyncio.Queue()
    session = await mm.open_session(user, user.title(), ip, outbox)
    await mm.attach_leg(session, "v=0 offer")
    return Client(session, outbox)  # type: ignore[arg-type]


def kill(routing: FakeRouting, edges: FakeEdges, edge_id: str) -> None:
    """What the routing service's membership does for a silent edge: no clients, unreachable."""
    routing.edges = [replace(e, state=EdgeState.DOWN) if e.edge_id == edge_id else e for e in routing.edges]
    edges.down.add(edge_id)


async def test_a_call_on_a_lost_edge_ends_and_its_client_is_moved_to_another_edge(
    mm: Matchmaker, routing: FakeRouting, edges: FakeEdges, match_store: InMemoryStore | Store
) -> None:
    ana, ben = await join(mm, "ana"), await join(mm, "ben", "2.2.2.2")
    await mm.find_partner(ana.session)
    await mm.find_partner(ben.session)
    call_id = ben.last(Matched).call_id
    ana.items()
    kill(routing, edges, "vir-1")

    await mm.edge_lost("vir-1", "no heartbeat for 2.0 s")
    got = ben.items()
    assert [type(e) for e in got] == [EdgeLost, CallEnded, EdgeAssigned]
    lost, ended, assigned = got
    assert isinstance(lost, EdgeLost) and (lost.edge_id, lost.reason) == ("vir-1", "no heartbeat for 2.0 s")
    assert isinstance(ended, CallEnded) and (ended.call_id, ended.reason) == (call_id, "edge_lost")
    assert isinstance(assigned, EdgeAssigned) and assigned.edge.edge_id == "fra-1"
    assert assigned.session_id == ben.session.session_id
    partner_ended = ana.last(CallEnded)
    assert (partner_ended.call_id, partner_ended.reason) == (call_id, "partner_edge_lost")
    row = await match_store.get_call(call_id)
    assert row is not None and row.state == "ended" and row.end_reason == "edge_lost"
    # Nothing was asked of the dead edge; the partner's side was unbridged on its own edge.
    assert [side for _, side in edges.unbridged] == [0]

    # The session goes on: a leg on the new edge, then the pool, where ana (who looked again) waits.
    with pytest.raises(WrongState, match="leg offer"):
        await mm.find_partner(ben.session)
    await mm.attach_leg(ben.session, "v=0 offer")
    assert ben.last(LegAnswered).leg_id in edges.legs
    cleo = await join(mm, "cleo")
    await mm.find_partner(cleo.session)
    await mm.find_partner(ben.session)
    assert ben.last(Matched).partner_display_name == "Cleo"


async def test_a_waiting_client_on_a_lost_edge_leaves_the_pool_until_its_new_leg(
    mm: Matchmaker, routing: FakeRouting, edges: FakeEdges, match_store: InMemoryStore | Store
) -> None:
    ben = await join(mm, "ben", "2.2.2.2")
    await mm.find_partner(ben.session)
    assert ben.last(Queued)
    kill(routing, edges, "vir-1")
    await mm.edge_lost("vir-1", "gone")
    got = ben.items()
    assert [type(e) for e in got] == [EdgeLost, TicketClosed, EdgeAssigned]
    assert isinstance(got[1], TicketClosed) and got[1].reason == "edge_lost"
    assert not await match_store.open_tickets()
    ana = await join(mm, "ana")
    await mm.find_partner(ana.session)
    assert Matched not in ana.drain()  # ben is not in the pool with a dead leg


async def test_sessions_on_other_edges_are_untouched(mm: Matchmaker, routing: FakeRouting, edges: FakeEdges) -> None:
    ana = await join(mm, "ana")
    ana.items()
    kill(routing, edges, "vir-1")
    await mm.edge_lost("vir-1", "gone")
    assert ana.items() == []


async def test_with_no_edge_left_the_session_ends_unavailable_in_words(
    mm: Matchmaker, routing: FakeRouting, edges: FakeEdges
) -> None:
    ana = await join(mm, "ana")
    ana.items()
    kill(routing, edges, "vir-1")
    kill(routing, edges, "fra-1")
    await mm.edge_lost("fra-1", "no heartbeat for 2.1 s")
    got = ana.items()
    assert isinstance(got[0], EdgeLost) and isinstance(got[-1], NoEdge)
    assert "edge fra-1 was lost and no other edge could be assigned" in got[-1].reason

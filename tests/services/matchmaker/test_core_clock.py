"""The core's clock probes, client stages moved onto the matchmaker's clock, telemetry, ListCalls,
and a call's start that does not wait for what it does not need (fakes for routing and edges)."""

from __future__ import annotations

import asyncio
import time
from dataclasses import dataclass, field

import pytest

from duet.services.matchmaker.core import Matchmaker
from duet.services.matchmaker.errors import BadRequest
from duet.services.matchmaker.events import CallEnded, ClockProbe, Matched, SessionClosed, SessionEvent
from duet.services.matchmaker.fakes.edges import FakeEdges
from duet.services.matchmaker.fakes.routing import FakeRouting
from duet.services.matchmaker.fakes.store import InMemoryStore
from duet.services.matchmaker.ports import EdgeInfo, Route
from duet.services.matchmaker.session_state import ClientSession
from duet.services.store.postgres import Store
from tests.services.matchmaker.test_core import EDGES

AnyStore = InMemoryStore | Store
SKEW_MS = 5000.0  # the skewed client's clock runs this far ahead of the matchmaker's


@dataclass
class RecordedTelemetry:
    stages: list[tuple[str, str, str, float]] = field(default_factory=list)
    waits: list[tuple[str, float]] = field(default_factory=list)
    failures: list[str] = field(default_factory=list)

    def ticket_matched(self, region: str, waited_ms: float) -> None:
        self.waits.append((region, waited_ms))

    def call_stage(self, stage: str, region_a: str, region_b: str, since_match_ms: float) -> None:
        self.stages.append((stage, region_a, region_b, since_match_ms))

    def call_start_failed(self, reason: str) -> None:
        self.failures.append(reason)


@dataclass
class Client:
    session: ClientSession
    outbox: asyncio.Queue[SessionEvent | SessionClosed]

    def take(self, kind: type) -> list[SessionEvent | SessionClosed]:
        items = []
        while not self.outbox.empty():
            items.append(self.outbox.get_nowait())
        for item in items:
            if not isinstance(item, kind):
                self.outbox.put_nowait(item)  # keep the rest, in order
        return [i for i in items if isinstance(i, kind)]


@pytest.fixture(params=["memory", "postgres"])
def match_store(request: pytest.FixtureRequest) -> AnyStore:
    return InMemoryStore() if request.param == "memory" else request.getfixturevalue("store")


@pytest.fixture
def telemetry() -> RecordedTelemetry:
    return RecordedTelemetry()


@pytest.fixture
def edges() -> FakeEdges:
    return FakeEdges()


@pytest.fixture
def routing() -> FakeRouting:
    return FakeRouting(EDGES, ingress_by_prefix={"2.": "vir-1"})


@pytest.fixture
def mm(match_store: AnyStore, routing: FakeRouting, edges: FakeEdges, telemetry: RecordedTelemetry) -> Matchmaker:
    return Matchmaker(match_store, routing, edges, telemetry=telemetry)


async def join(mm: Matchmaker, user: str, ip: str = "1.1.1.1", *, clock_probes: bool = True) -> Client:
    outbox: asyncio.Queue[SessionEvent | SessionClosed] = asyncio.Queue()
    session = await mm.open_session(user, user.title(), ip, outbox, clock_probes=clock_probes)
    await mm.attach_leg(session, "v=0 offer")
    return Client(session, outbox)


def answer_probes(mm: Matchmaker, client: Client, skew_ms: float) -> int:
    """Answer every probe as a client whose clock runs ``skew_ms`` ahead would; returns how many."""
    answered = 0
    while probes := client.take(ClockProbe):
        for probe in probes:
            assert isinstance(probe, ClockProbe)
            now = time.time() * 1000 + skew_ms
            mm.clock_echo(client.session, probe.probe_id, now, now + 0.01)
            answered += 1
    return answered


async def matched_pair(mm: Matchmaker) -> tuple[Client, Client, Matched]:
    ana, ben = await join(mm, "ana"), await join(mm, "ben", "2.2.2.2")
    await mm.find_partner(ana.session)
    await mm.find_partner(ben.session)
    (matched,) = ben.take(Matched)
    assert isinstance(matched, Matched)
    return ana, ben, matched


async def test_a_session_is_probed_five_times_one_after_another(mm: Matchmaker) -> None:
    ana = await join(mm, "ana")
    (probe,) = ana.take(ClockProbe)  # one at a time: the next follows each echo
    assert isinstance(probe, ClockProbe)
    now = time.time() * 1000
    mm.clock_echo(ana.session, probe.probe_id, now, now)
    assert answer_probes(mm, ana, 0.0) == 4  # the 4 that followed
    assert ana.take(ClockProbe) == []
    offset = ana.session.clock.offset
    assert offset is not None and ana.session.clock.samples == 5
    assert abs(offset.offset_ms) <= offset.uncertainty_ms + 1.0  # same clock; 1 ms for the float stamps


async def test_a_skewed_clients_stages_are_stored_on_the_matchmakers_clock(
    mm: Matchmaker, match_store: AnyStore, telemetry: RecordedTelemetry
) -> None:
    _, ben, matched = await matched_pair(mm)
    answer_probes(mm, ben, SKEW_MS)
    clock = ben.session.clock.offset
    assert clock is not None and clock.offset_ms == pytest.approx(SKEW_MS, abs=clock.uncertainty_ms + 1.0)
    first_frame_server = matched.stages["bridged"] + 40.0
    skewed = {"session_open": 1.7e12 + SKEW_MS, "first_frame": first_frame_server + SKEW_MS}
    await mm.connect_report(ben.session, matched.call_id, skewed, connected=True)
    row = await match_store.get_call(matched.call_id)
    assert row is not None
    side, clock_row = (row.stages_b, row.clock_b) if row.user_b == "ben" else (row.stages_a, row.clock_a)
    assert clock_row is not None and clock_row.offset_ms == pytest.approx(clock.offset_ms)
    assert clock_row.uncertainty_ms == pytest.approx(clock.uncertainty_ms)
    # Within the offset's uncertainty of the truth; on the client's clock it would be 5 s off.
    assert side["first_frame"] == pytest.approx(first_frame_server, abs=clock.uncertainty_ms + 1.0)
    assert side["session_open"] == pytest.approx(1.7e12, abs=clock.uncertainty_ms + 1.0)
    (first_frame,) = [s for s in telemetry.stages if s[0] == "first_frame"]
    assert first_frame[1:3] == ("Virginia", "Frankfurt")  # ben (vir-1) received ana's media
    assert first_frame[3] == pytest.approx(first_frame_server - matched.stages["matched"], abs=clock.uncertainty_ms + 1)


async def test_a_client_that_answers_no_probe_keeps_its_own_clock(mm: Matchmaker, match_store: AnyStore) -> None:
    _, ben, matched = await matched_pair(mm)
    await mm.connect_report(ben.session, matched.call_id, {"first_frame": 1234.0}, connected=True)
    row = await match_store.get_call(matched.call_id)
    assert row is not None
    side, clock_row = (row.stages_b, row.clock_b) if row.user_b == "ben" else (row.stages_a, row.clock_a)
    assert side["first_frame"] == 1234.0 and clock_row is None


async def test_a_client_that_does_not_ask_for_probes_gets_none(mm: Matchmaker) -> None:
    old = await join(mm, "old", clock_probes=False)
    assert old.take(ClockProbe) == [] and old.session.clock.offset is None


async def test_an_echo_that_answers_nothing_is_a_bad_request(mm: Matchmaker) -> None:
    ana = await join(mm, "ana")
    with pytest.raises(BadRequest, match="answers no outstanding clock probe"):
        mm.clock_echo(ana.session, 42, 1.7e12, 1.7e12)


async def test_the_call_start_is_timed_per_region_pair(mm: Matchmaker, telemetry: RecordedTelemetry) -> None:
    await matched_pair(mm)
    assert [(s, a, b) for s, a, b, _ in telemetry.stages] == [
        ("route_picked", "Frankfurt", "Virginia"),
        ("bridged", "Frankfurt", "Virginia"),
        ("notified", "Frankfurt", "Virginia"),
    ]
    assert all(ms >= 0 for *_, ms in telemetry.stages)
    assert sorted(r for r, _ in telemetry.waits) == ["Frankfurt", "Virginia"]


async def test_both_edges_bridge_while_the_route_is_still_being_picked(
    match_store: AnyStore, telemetry: RecordedTelemetry
) -> None:
    gate = asyncio.Event()
    both_bridged = asyncio.Event()
    bridges_while_routing: list[int] = []

    class SlowRouting(FakeRouting):
        async def pick_route(self, from_edge_id: str, to_edge_id: str) -> Route:
            await gate.wait()
            bridges_while_routing.append(len(edges.bridges))
            return await super().pick_route(from_edge_id, to_edge_id)

    class WatchedEdges(FakeEdges):
        async def bridge(self, edge: EdgeInfo, bridge_id: int, leg_id: str, side: int, peer_edge_id: str) -> float:
            at = await super().bridge(edge, bridge_id, leg_id, side, peer_edge_id)
            if len(self.bridges) == 2:
                both_bridged.set()
            return at

    edges = WatchedEdges()
    mm = Matchmaker(match_store, SlowRouting(EDGES, ingress_by_prefix={"2.": "vir-1"}), edges, telemetry=telemetry)
    ana, ben = await join(mm, "ana"), await join(mm, "ben", "2.2.2.2")
    await mm.find_partner(ana.session)
    starting = asyncio.create_task(mm.find_partner(ben.session))
    await asyncio.wait_for(both_bridged.wait(), 5.0)
    assert not starting.done()  # bridged, the route still on its way
    gate.set()
    await starting
    assert bridges_while_routing == [2] and ben.take(Matched)


async def test_no_route_takes_down_the_bridges_made_meanwhile(
    mm: Matchmaker, routing: FakeRouting, edges: FakeEdges, telemetry: RecordedTelemetry
) -> None:
    routing.cut.add(frozenset(("fra-1", "vir-1")))
    ana, ben = await join(mm, "ana"), await join(mm, "ben", "2.2.2.2")
    await mm.find_partner(ana.session)
    await mm.find_partner(ben.session)
    for c in (ana, ben):
        (ended,) = c.take(CallEnded)
        assert isinstance(ended, CallEnded) and ended.reason.startswith("no route between the two edges")
    assert edges.bridges == {} and len(edges.unbridged) == 2
    assert telemetry.failures == ["no route"]


async def test_list_calls_newest_first_by_user_and_checked(mm: Matchmaker) -> None:
    _, _, first = await matched_pair(mm)
    await asyncio.sleep(0.01)  # created_at is the store's clock: keep the two calls apart
    cleo, dan = await join(mm, "cleo"), await join(mm, "dan", "2.2.2.2")
    await mm.find_partner(cleo.session)
    await mm.find_partner(dan.session)
    (second,) = dan.take(Matched)
    assert isinstance(second, Matched)
    assert [c.call_id for c in await mm.list_calls(0, "")] == [second.call_id, first.call_id]
    assert [c.call_id for c in await mm.list_calls(1, "")] == [second.call_id]
    assert [c.call_id for c in await mm.list_calls(0, "ana")] == [first.call_id]
    assert await mm.list_calls(0, "nobody") == []
    with pytest.raises(BadRequest, match="limit must be 0"):
        await mm.list_calls(1001, "")
    with pytest.raises(BadRequest, match="user_id must be"):
        await mm.list_calls(5, "no spaces allowed")


async def test_next_bridges_the_same_warm_leg_again_without_a_new_one(mm: Matchmaker, edges: FakeEdges) -> None:
    ana, _, first = await matched_pair(mm)
    legs_before = dict(edges.legs)
    ana_leg = ana.session.leg_id
    await mm.next(ana.session)
    cleo = await join(mm, "cleo", "2.2.2.2")
    await mm.find_partner(cleo.session)
    (second,) = cleo.take(Matched)
    assert isinstance(second, Matched) and second.call_id != first.call_id
    # ana's side of the new call is her old leg; the only leg attached since is cleo's own.
    assert ana_leg in edges.bridges.values() and ana.session.leg_id == ana_leg
    assert set(edges.legs) - set(legs_before) == {cleo.session.leg_id}

"""Membership, loads and probed links through a real routing service (gRPC on loopback).

Edges here are heartbeat loops (the membership timer, loads) or in-process
``EdgeRelay``s with the edge process's own ``EdgePulse`` (real probe datagrams
on real backbone sockets, a link failed through the WAN emulation).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import AsyncIterator

import grpc
import pytest

from duet.edge.backbone_wire import BackboneHeader, PacketType, StreamKind
from duet.edge.relay import EdgeRelay
from duet.routing.link_health import LinkReading
from duet.routing.topology import EdgeNode, EdgeState, Link, Region, Topology
from duet.services.auth.bearer import bearer_metadata
from duet.services.auth.secrets import AuthSecrets
from duet.services.auth.tokens import Role, mint_service_token
from duet.services.devkit.wan.edge import EdgeEmulation, emulate_edge
from duet.services.devkit.wan.profile import LinkProfile, WanConfig
from duet.services.edge_server.heartbeat import EdgePulse
from duet.services.edge_server.route_watch import route_entries
from duet.services.routing_server.membership import EdgeLoad, LiveMembership
from duet.services.routing_server.server import serve_routing
from duet.services.routing_server.state import RoutingState
from duet.v1 import routing_pb2, routing_pb2_grpc
from tests.services.routing_server import credentials
from tests.services.routing_server.test_admin import free_port
from tests.services.routing_server.test_drain import wait_until

pytestmark = pytest.mark.slow

SECRETS = AuthSecrets(user=None, service=b"m" * 32, source="test")
KEY = b"k" * 32
FRA, VIR, SIN = Region("Frankfurt", 50.11, 8.68), Region("Virginia", 37.37, -79.82), Region("Singapore", 1.28, 103.83)
# fra-1 reaches sin-1 through vir-1 (20 ms) or, slower, through fra-2 (40 ms).
TOPOLOGY = Topology(
    (FRA, VIR, SIN),
    (EdgeNode("fra-1", 1, "Frankfurt"), EdgeNode("vir-1", 2, "Virginia"), EdgeNode("sin-1", 3, "Singapore"),
     EdgeNode("fra-2", 4, "Frankfurt")),
    (Link("fra-1", "vir-1", 10), Link("vir-1", "sin-1", 10), Link("fra-1", "fra-2", 20), Link("fra-2", "sin-1", 20)),
)  # fmt: skip
MATCHMAKER = bearer_metadata(mint_service_token(b"m" * 32, Role.MATCHMAKER))


def edge_token(edge_id: str) -> tuple[tuple[str, str], ...]:
    return bearer_metadata(mint_service_token(b"m" * 32, Role.EDGE, edge_id))


@contextlib.asynccontextmanager
async def routing_service(*, measured: bool = True) -> AsyncIterator[str]:
    stop = asyncio.Event()
    address = f"127.0.0.1:{free_port()}"
    task = asyncio.create_task(
        serve_routing(TOPOLOGY, secrets=SECRETS, bind=address, stop=stop, measured_weights=measured)
    )
    try:
        async with grpc.aio.insecure_channel(address) as channel:
            await asyncio.wait_for(channel.channel_ready(), 20)
        yield address
    finally:
        stop.set()
        await task


async def register(stub: routing_pb2_grpc.RoutingStub, edge_id: str, backbone: str = "127.0.0.1:9") -> None:
    await stub.RegisterEdge(
        routing_pb2.RegisterEdgeRequest(
            edge_id=edge_id, control_address="127.0.0.1:1", backbone_address=backbone, media_host="127.0.0.1"
        )
    )


class Beats:
    """One heartbeat loop per edge, every 0.5 s, each with the load it is given; pausable."""

    def __init__(self, stub: routing_pb2_grpc.RoutingStub) -> None:
        self.stub = stub
        self.legs: dict[str, int] = {}
        self.paused: set[str] = set()
        self.tasks: list[asyncio.Task[None]] = []

    def start(self, edge_id: str) -> None:
        self.legs.setdefault(edge_id, 0)
        self.tasks.append(asyncio.create_task(self._loop(edge_id)))

    async def _loop(self, edge_id: str) -> None:
        while True:
            if edge_id not in self.paused:
                await self.stub.Heartbeat(routing_pb2.HeartbeatRequest(edge_id=edge_id, legs=self.legs[edge_id]))
            await asyncio.sleep(0.5)

    async def stop(self) -> None:
        for t in self.tasks:
            t.cancel()
        await asyncio.gather(*self.tasks, return_exceptions=True)


async def test_a_silent_edge_is_avoided_within_3_s_and_rejoins_when_it_heartbeats_again() -> None:
    async with routing_service() as address, credentials.channel(address, SECRETS) as channel:
        stub = routing_pb2_grpc.RoutingStub(channel)
        for e in TOPOLOGY.edges:
            await register(stub, e.edge_id)
        beats = Beats(stub)
        events: list[tuple[float, str, bool, str]] = []
        tables: list[tuple[float, set[str]]] = []

        async def watch_members() -> None:
            async for ev in stub.WatchMembership(routing_pb2.WatchMembershipRequest()):
                events.append((time.monotonic(), ev.edge_id, ev.alive, ev.reason))

        async def watch_routes() -> None:
            async for table in stub.WatchRoutes(routing_pb2.WatchRoutesRequest(edge_id="fra-1")):
                tables.append((time.monotonic(), {e.dest_edge_id for e in table.entries}))

        watchers = [asyncio.create_task(watch_members()), asyncio.create_task(watch_routes())]
        try:
            for e in TOPOLOGY.edges:
                beats.start(e.edge_id)
            await wait_until(lambda: len(events) >= 4 and bool(tables), 5)
            assert all(alive for _, _, alive, _ in events[:4])
            assert tables[-1][1] == {"vir-1", "sin-1", "fra-2"}

            # Frankfurt clients: fra-1 and fra-2 tie on distance; the lower number wins until fra-1 is busy.
            async def ingress() -> str:
                reply = await stub.PickIngress(
                    routing_pb2.PickIngressRequest(client_ip="127.0.0.1"), metadata=MATCHMAKER
                )
                return str(reply.edge.edge_id)

            assert await ingress() == "fra-1"
            beats.legs["fra-1"] = 100  # at capacity: its score triples
            await asyncio.sleep(1.2)
            reply = await stub.PickIngress(routing_pb2.PickIngressRequest(client_ip="127.0.0.1"), metadata=MATCHMAKER)
            assert reply.edge.edge_id == "fra-2" and "fra-1 is closer but busy" in reply.reason
            beats.legs["fra-1"] = 0
            await asyncio.sleep(1.2)

            beats.paused.add("fra-2")
            silent_from = time.monotonic()  # its last heartbeat was up to 0.5 s before this
            await wait_until(lambda: any(e == "fra-2" and not alive for _, e, alive, _ in events), 4)
            down_at, _, _, reason = next(ev for ev in events if ev[1] == "fra-2" and not ev[2])
            assert down_at - silent_from <= 3.0 and reason.startswith("no heartbeat for")
            await wait_until(lambda: "fra-2" not in tables[-1][1], 2)
            assert tables[-1][0] - silent_from <= 3.0
            assert await ingress() == "fra-1"
            beats.legs["fra-1"] = 100  # busy or not, fra-2 is out
            await asyncio.sleep(0.8)
            assert await ingress() == "fra-1"
            topology = await stub.GetTopology(routing_pb2.GetTopologyRequest())
            assert topology.version == 5  # the declared topology: registrations only, no membership change

            beats.paused.discard("fra-2")
            await wait_until(lambda: events[-1][1:3] == ("fra-2", True), 2)
            await wait_until(lambda: "fra-2" in tables[-1][1], 2)
            assert await ingress() == "fra-2"  # back, and fra-1 is still busy
        finally:
            for w in watchers:
                w.cancel()
            await asyncio.gather(*watchers, return_exceptions=True)
            await beats.stop()


async def test_heartbeat_statuses() -> None:
    async with routing_service() as address, credentials.channel(address, SECRETS) as channel:
        stub = routing_pb2_grpc.RoutingStub(channel)
        cases = [
            (routing_pb2.HeartbeatRequest(edge_id="fra-1"), grpc.StatusCode.FAILED_PRECONDITION, "register"),
            (routing_pb2.HeartbeatRequest(edge_id="nowhere-9"), grpc.StatusCode.PERMISSION_DENIED, "nowhere-9"),
            (
                routing_pb2.HeartbeatRequest(
                    edge_id="fra-1", links=[routing_pb2.LinkMeasurement(peer_edge_id="vir-1", loss=2)]
                ),
                grpc.StatusCode.INVALID_ARGUMENT,
                "loss",
            ),
            (routing_pb2.HeartbeatRequest(edge_id="fra-1", cpu=float("nan")), grpc.StatusCode.INVALID_ARGUMENT, "cpu"),
        ]
        for request, code, words in cases:
            metadata = edge_token("fra-1") if request.edge_id == "nowhere-9" else None
            with pytest.raises(grpc.aio.AioRpcError) as err:
                await stub.Heartbeat(request, metadata=metadata)
            assert err.value.code() == code and words in (err.value.details() or ""), err.value.details()
        await register(stub, "fra-1")
        await register(stub, "vir-1")
        reply = await stub.Heartbeat(routing_pb2.HeartbeatRequest(edge_id="fra-1", legs=3))
        assert [n.edge_id for n in reply.neighbours] == ["vir-1"]  # fra-2 has not registered
        assert reply.neighbours[0].backbone_address == "127.0.0.1:9"


class ProbingEdges:
    """The four topology edges as in-process ``EdgeRelay``s, each with the edge process's own
    ``EdgePulse`` (real probes and heartbeats) and route watch, behind a WAN emulation."""

    def __init__(self, stub: routing_pb2_grpc.RoutingStub, backbone: dict[tuple[str, str], LinkProfile]) -> None:
        self.stub = stub
        self.backbone = backbone
        self.relays: dict[str, EdgeRelay] = {}
        self.tasks: dict[str, list[asyncio.Task[None]]] = {}
        self.emulations: list[EdgeEmulation] = []

    async def start(self) -> None:
        for e in TOPOLOGY.edges:
            relay = self.relays[e.edge_id] = EdgeRelay(e.edge_id, e.number, KEY)
            host, port = await relay.start("127.0.0.1")
            await self.stub.RegisterEdge(
                routing_pb2.RegisterEdgeRequest(
                    edge_id=e.edge_id,
                    control_address="127.0.0.1:1",
                    backbone_address=f"{host}:{port}",
                    media_host="127.0.0.1",
                ),
                metadata=edge_token(e.edge_id),
            )
        for edge_id, relay in self.relays.items():
            emulation = emulate_edge(relay, WanConfig(backbone=self.backbone))
            assert emulation is not None
            self.emulations.append(emulation)
            pulse = EdgePulse(relay, self.stub, edge_token(edge_id))
            self.tasks[edge_id] = [
                asyncio.create_task(pulse.run_heartbeats()),
                asyncio.create_task(pulse.run_probes()),
                asyncio.create_task(self._follow(relay)),
            ]

    async def _follow(self, relay: EdgeRelay) -> None:
        async for table in self.stub.WatchRoutes(
            routing_pb2.WatchRoutesRequest(edge_id=relay.edge_id), metadata=edge_token(relay.edge_id)
        ):
            relay.set_routes(table.version, route_entries(table))

    def via(self, edge_id: str, dest: str) -> str | None:
        """``edge_id``'s next hop toward ``dest`` in the table it holds."""
        entry = self.relays[edge_id].backbone.routes.by_id.get(dest)
        return entry.next_hop_edge_id if entry is not None else None

    def stream(self, src: str, dest: str) -> None:
        """A call's media from ``src`` toward ``dest``, 50 datagrams/s: its links are busy (probed often)."""

        async def send() -> None:
            number = self.relays[dest].number
            while True:
                self.relays[src].backbone.send(
                    BackboneHeader(PacketType.MEDIA, number, 0, 7, 0, StreamKind.AUDIO), b"rtp"
                )
                await asyncio.sleep(0.02)

        self.tasks.setdefault("streams", []).append(asyncio.create_task(send()))

    def reload(self, backbone: dict[tuple[str, str], LinkProfile]) -> None:
        for emulation in self.emulations:
            emulation.reload(WanConfig(backbone=backbone))

    async def kill(self, edge_id: str) -> None:
        """As abrupt as an in-process edge can die: no more heartbeats, probes, answers or forwarding."""
        tasks = self.tasks.pop(edge_id)
        self.relays[edge_id].backbone.close()
        for t in tasks:
            t.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)

    async def stop(self) -> None:
        tasks = [t for ts in self.tasks.values() for t in ts]
        for t in tasks:
            t.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        for relay in self.relays.values():
            await relay.stop()


@contextlib.asynccontextmanager
async def probing_edges(backbone: dict[tuple[str, str], LinkProfile]) -> AsyncIterator[ProbingEdges]:
    async with routing_service() as address, grpc.aio.insecure_channel(address) as channel:
        edges = ProbingEdges(routing_pb2_grpc.RoutingStub(channel), backbone)
        try:
            await edges.start()
            yield edges
        finally:
            await edges.stop()


# Every direction emulated with the link's declared RTT, so probes measure what is declared.
HEALTHY = {
    (a, b): LinkProfile(delay_ms=ln.rtt_ms / 2) for ln in TOPOLOGY.links for a, b in ((ln.a, ln.b), (ln.b, ln.a))
}


async def test_a_failed_link_is_routed_around_from_real_probes() -> None:
    """Four in-process edges probe each other over UDP and heartbeat while fra-1 streams to sin-1;
    the WAN emulation drops everything on fra-1<->vir-1; fra-1's route to sin-1 moves to fra-2 and
    comes back when healed."""
    cut = HEALTHY | {("fra-1", "vir-1"): LinkProfile(loss=1.0), ("vir-1", "fra-1"): LinkProfile(loss=1.0)}
    async with probing_edges(HEALTHY) as edges:
        await wait_until(lambda: edges.via("fra-1", "sin-1") == "vir-1", 5)
        edges.stream("fra-1", "sin-1")
        await asyncio.sleep(2.0)  # probes settle
        assert edges.via("fra-1", "sin-1") == "vir-1"

        t0 = time.monotonic()
        edges.reload(cut)
        await wait_until(lambda: edges.via("fra-1", "sin-1") == "fra-2", 3)
        failover_s = time.monotonic() - t0
        print(f"link failure -> route around it at fra-1: {failover_s * 1000:.0f} ms")
        assert failover_s < 1.0, failover_s

        t1 = time.monotonic()
        edges.reload(HEALTHY)
        await wait_until(lambda: edges.via("fra-1", "sin-1") == "vir-1", 10)  # idle now: probed every 1 s
        assert time.monotonic() - t1 > 0.5  # up again only after clean rounds, not on the first answer


async def test_a_dead_transit_edge_is_routed_around_within_1_s_from_real_probes(
    caplog: pytest.LogCaptureFixture,
) -> None:
    """A call's media both ways between fra-1 and sin-1 transits vir-1; vir-1 dies (no heartbeat,
    no probe answers); both ends move their next hop to fra-2 well before the silence timer."""
    caplog.set_level(logging.INFO, logger="duet.routing.membership")
    async with probing_edges(HEALTHY) as edges:
        events: list[tuple[str, bool, str]] = []

        async def watch_members() -> None:
            async for ev in edges.stub.WatchMembership(routing_pb2.WatchMembershipRequest(), metadata=MATCHMAKER):
                events.append((ev.edge_id, ev.alive, ev.reason))

        edges.tasks["watch"] = [asyncio.create_task(watch_members())]
        await wait_until(lambda: edges.via("fra-1", "sin-1") == edges.via("sin-1", "fra-1") == "vir-1", 5)
        edges.stream("fra-1", "sin-1")
        edges.stream("sin-1", "fra-1")
        await asyncio.sleep(2.0)  # probes settle
        assert edges.via("fra-1", "sin-1") == "vir-1"

        t0 = time.monotonic()
        await edges.kill("vir-1")
        await wait_until(lambda: edges.via("fra-1", "sin-1") == edges.via("sin-1", "fra-1") == "fra-2", 3)
        failover_s = time.monotonic() - t0
        print(f"transit edge died -> both ends route around it: {failover_s * 1000:.0f} ms")
        assert failover_s < 1.0, failover_s
        # By its neighbours' reports, not by the silence timer: nobody was told it died (yet).
        assert not [ev for ev in events if ev[0] == "vir-1" and not ev[1]], events
        [why] = [r.getMessage() for r in caplog.records if r.getMessage().startswith("edge vir-1 carries no transit")]
        assert why.endswith("and unreachable from fra-1, sin-1"), why
        # Then the silence timer: out altogether, and announced.
        await wait_until(lambda: ("vir-1", False) in [ev[:2] for ev in events], 3)


class FakeClock:
    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


def live(clock: FakeClock) -> tuple[RoutingState, LiveMembership]:
    t = TOPOLOGY
    for e in t.edges:
        t = t.with_edge_addresses(e.edge_id, control_address="h:1", backbone_address="h:2", media_host="127.0.0.1")
    state = RoutingState(t)
    return state, LiveMembership(state, clock=clock)


def link_up(state: RoutingState, a: str, b: str) -> bool:
    ln = state.routed.link(a, b)
    assert ln is not None
    return ln.up


DEAD = LinkReading(0.0, 0.5, False)
LOAD = EdgeLoad(0, 0, 0.0)


async def test_a_dead_link_reported_while_its_far_end_heartbeats_goes_down_at_once() -> None:
    clock = FakeClock()
    state, m = live(clock)
    await m.heartbeat("vir-1", LOAD, {})
    clock.now += 0.1
    await m.heartbeat("fra-1", LOAD, {"vir-1": DEAD})
    assert not link_up(state, "fra-1", "vir-1")
    assert state.routes.path("fra-1", "sin-1").edge_ids == ("fra-1", "fra-2", "sin-1")


async def test_a_dead_link_waits_for_a_quiet_far_ends_next_heartbeat_which_decides() -> None:
    clock = FakeClock()
    state, m = live(clock)
    await m.heartbeat("vir-1", LOAD, {})
    clock.now += 0.45  # vir-1 is between heartbeats
    await m.heartbeat("fra-1", LOAD, {"vir-1": DEAD})
    assert link_up(state, "fra-1", "vir-1")  # held: a dead link, or vir-1 stalled?
    clock.now += 0.05
    await m.heartbeat("vir-1", LOAD, {}, stalled_s=0.0)  # alive and was never stalled: the link failed
    assert not link_up(state, "fra-1", "vir-1")


async def test_a_far_end_that_stalled_does_not_lose_its_links() -> None:
    clock = FakeClock()
    state, m = live(clock)
    await m.heartbeat("vir-1", LOAD, {})
    clock.now += 0.5  # vir-1 stalls for 0.55 s; its neighbours hear nothing meanwhile
    await m.heartbeat("fra-1", LOAD, {"vir-1": DEAD})
    await m.heartbeat("sin-1", LOAD, {"vir-1": DEAD})
    clock.now += 0.05
    assert await m.sweep() == []
    clock.now += 0.03  # late, but within the allowance: it keeps its links and its transit
    await m.heartbeat("vir-1", LOAD, {}, stalled_s=0.55)
    clock.now += 0.05
    await m.heartbeat("fra-1", LOAD, {"vir-1": DEAD})  # made before vir-1's answers were read again
    clock.now += 0.5
    assert await m.sweep() == []
    assert link_up(state, "fra-1", "vir-1") and link_up(state, "vir-1", "sin-1")
    assert state.routed.edge("vir-1").state is EdgeState.ACTIVE
    assert state.routes.path("fra-1", "sin-1").edge_ids == ("fra-1", "vir-1", "sin-1")


async def test_an_edge_both_neighbours_report_loses_transit_once_overdue_and_regains_it_with_its_next_heartbeat() -> (
    None
):
    clock = FakeClock()
    state, m = live(clock)
    await m.heartbeat("vir-1", LOAD, {})
    clock.now += 0.45  # vir-1 died just after that heartbeat; its neighbours on the call's path notice
    await m.heartbeat("fra-1", LOAD, {"vir-1": DEAD})
    await m.heartbeat("sin-1", LOAD, {"vir-1": DEAD})
    assert m.membership.is_alive("vir-1")  # its next heartbeat is not even due yet
    assert m.membership.next_due(clock.now) == pytest.approx(100.6)
    clock.now = 100.62
    assert [c.reason for c in await m.sweep()] == ["no heartbeat for 0.62 s and unreachable from fra-1, sin-1"]
    assert state.routes.path("fra-1", "sin-1").edge_ids == ("fra-1", "fra-2", "sin-1")
    # Its own calls keep their paths and its links stay up: only transit through it is off.
    assert state.routes.path("fra-1", "vir-1").edge_ids == ("fra-1", "vir-1")
    assert link_up(state, "fra-1", "vir-1") and link_up(state, "vir-1", "sin-1")
    assert state.routed.edge("vir-1").state is EdgeState.DRAINING and m.membership.is_alive("vir-1")

    clock.now += 0.3  # it was only stalled after all: its next heartbeat brings it back, links and all
    await m.heartbeat("vir-1", LOAD, {}, stalled_s=0.9)
    assert m.membership.carries_transit("vir-1") and state.routed.edge("vir-1").state is EdgeState.ACTIVE
    assert state.routes.path("fra-1", "sin-1").edge_ids == ("fra-1", "vir-1", "sin-1")
    clock.now += 0.05
    await m.heartbeat("fra-1", LOAD, {"vir-1": DEAD})  # made before its answers were read again: excused
    await m.heartbeat("sin-1", LOAD, {"vir-1": DEAD})
    clock.now += 0.6
    assert await m.sweep() == []


async def test_one_neighbours_report_does_not_take_an_overdue_edges_transit() -> None:
    clock = FakeClock()
    state, m = live(clock)
    await m.heartbeat("vir-1", LOAD, {})
    for _ in range(3):  # fra-1 (loaded, say) reports vir-1 every 0.5 s; vir-1 is late but not silent
        clock.now += 0.5
        await m.heartbeat("fra-1", LOAD, {"vir-1": DEAD})
        assert await m.sweep() == []
    assert m.membership.carries_transit("vir-1") and link_up(state, "vir-1", "sin-1")
    await m.heartbeat("sin-1", LOAD, {"vir-1": LinkReading(10.0, 0.0, True)})  # sin-1 hears it fine
    assert m.membership.carries_transit("vir-1")
    assert state.routes.path("fra-1", "sin-1").edge_ids == ("fra-1", "vir-1", "sin-1")

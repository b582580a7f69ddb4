"""The edge's pulse: probes to its backbone neighbours and heartbeats to the routing service.

Two loops, both owned by ``serve_edge``: the probe loop ticks the
``LinkProber`` every 0.1 s; the heartbeat loop sends ``Routing.Heartbeat``
every 0.5 s with the edge's load and its links' readings, and at once when a
link stops or starts answering (so a failed link is routed around within
about ``DOWN_AFTER_S`` + one heartbeat + a recompute + a push, not a whole
heartbeat interval later). The reply names the neighbours to probe.
"""

from __future__ import annotations

import asyncio
import logging
import time

import grpc

from duet.edge.backbone import parse_address
from duet.edge.probes import PROBE_INTERVAL_S, LinkProber, Neighbour
from duet.edge.relay import EdgeRelay
from duet.routing.membership import HEARTBEAT_INTERVAL_S
from duet.v1 import routing_pb2, routing_pb2_grpc

logger = logging.getLogger("duet.edge.heartbeat")


class EdgePulse:
    """Probes and heartbeats of one edge process."""

    def __init__(
        self,
        node: EdgeRelay,
        stub: routing_pb2_grpc.RoutingStub,
        metadata: tuple[tuple[str, str], ...],
        *,
        interval_s: float = HEARTBEAT_INTERVAL_S,
    ) -> None:
        self.node = node
        self.stub = stub
        self.metadata = metadata
        self.interval_s = interval_s
        self.prober = LinkProber(self._send_probe)
        self._wake = asyncio.Event()
        self._cpu = (time.monotonic(), time.process_time())
        self.stalled_s = 0.0  # the longest the loop ran late since the last heartbeat
        node.backbone.on_probe_reply = self._on_probe_reply

    def _send_probe(self, neighbour: Neighbour, number: int) -> None:
        self.node.backbone.send_probe(neighbour.number, number, neighbour.address)

    def _on_probe_reply(self, src_number: int, probe_number: int) -> None:
        if self.prober.on_reply(src_number, probe_number, time.monotonic()):
            self._wake.set()

    def busy_links(self) -> set[str]:
        """Neighbours whose links carry calls now: next hops sent or relayed through, and toward bridged partners."""
        backbone = self.node.backbone
        busy, backbone.sent_via = backbone.sent_via, set()
        routes = backbone.routes.by_number
        for side in self.node.bridges.all():
            entry = routes.get(side.peer_edge_number)
            if entry is not None:
                busy.add(entry.next_hop_edge_id)
        return busy

    def _note_lateness(self, late_s: float) -> None:
        self.stalled_s = max(self.stalled_s, late_s)

    async def run_probes(self) -> None:
        loop = asyncio.get_running_loop()
        while True:
            if self.prober.tick(time.monotonic(), self.busy_links()):
                self._wake.set()  # a link stopped (or started) answering: tell routing now
            due = loop.time() + PROBE_INTERVAL_S
            await asyncio.sleep(PROBE_INTERVAL_S)
            self._note_lateness(loop.time() - due)

    def _cpu_share(self) -> float:
        wall, cpu = time.monotonic(), time.process_time()
        then_wall, then_cpu = self._cpu
        self._cpu = (wall, cpu)
        return max(0.0, (cpu - then_cpu) / (wall - then_wall)) if wall > then_wall else 0.0

    def request(self) -> routing_pb2.HeartbeatRequest:
        return routing_pb2.HeartbeatRequest(
            edge_id=self.node.edge_id,
            legs=len(self.node.legs),
            bridges=len(self.node.bridges.all()),
            cpu=self._cpu_share(),
            stalled_ms=self.stalled_s * 1000,
            links=[
                routing_pb2.LinkMeasurement(
                    peer_edge_id=s.peer_edge_id, rtt_ms=s.rtt_ms, loss=s.loss, reachable=s.reachable
                )
                for s in self.prober.samples()
            ],
        )

    def _take_neighbours(self, reply: routing_pb2.HeartbeatResponse) -> None:
        neighbours = []
        for n in reply.neighbours:
            try:
                neighbours.append(Neighbour(n.edge_id, n.number, parse_address(n.backbone_address)))
            except ValueError as exc:
                logger.warning("not probing %s: %s", n.edge_id, exc)
        self.prober.set_neighbours(neighbours, time.monotonic())
        self.node.backbone.peer_ids = {n.address: n.edge_id for n in neighbours}

    async def run_heartbeats(self) -> None:
        failing = False
        loop = asyncio.get_running_loop()
        while True:
            self._wake.clear()
            request = self.request()
            self.stalled_s = 0.0
            try:
                reply = await self.stub.Heartbeat(request, timeout=2.0, metadata=self.metadata)
                self._take_neighbours(reply)
                if failing:
                    logger.info("heartbeats reach the routing service again")
                failing = False
            except grpc.aio.AioRpcError as exc:
                # The route watch re-registers after a routing restart; until then heartbeats are refused.
                if not failing:
                    logger.warning("heartbeat refused or lost (%s: %s); retrying", exc.code().name, exc.details())
                failing = True
            due = loop.time() + self.interval_s
            try:
                await asyncio.wait_for(self._wake.wait(), self.interval_s)
            except TimeoutError:
                # Measured here too: after a stall this loop may run before the probe loop notices.
                self._note_lateness(loop.time() - due)

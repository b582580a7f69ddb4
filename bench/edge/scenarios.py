"""What carries the calls: a path of 1 or 3 bench edges, or a floor loop; plus the load that drives them.

``Load`` is the generator: one task sends each stream's frames (video) and
packets (audio) when they are due, and each client's RTCP about once a second,
and counts them per measuring step; receivers count into the same ``Tally``.
It wakes when the next of them is due (a heap of due times), so independent
calls' packets reach the path spread out as independent clients' would; waking
on a fixed tick instead sends every call's packets of the tick in one burst,
and the path's queue then holds the last of the burst behind all the others
(a first version ticked every 5 ms: 36 packets per burst at 24 calls).
"""

from __future__ import annotations

import asyncio
import contextlib
import heapq
import itertools
import random
import time
from dataclasses import dataclass, field
from pathlib import Path

import grpc

from bench.edge.clients import RTCP_INTERVAL_S, AiortcClient, Endpoint, FloorClient
from bench.edge.processes import Child, start_child
from bench.edge.traffic import WARMUP_STEP, OutStream, Tally
from bench.gc_pauses import GcPauses
from duet.v1 import edge_pb2, edge_pb2_grpc

HOST = "127.0.0.1"
IDLE_S = 0.005  # how often the generator looks while it has nothing to send

# (due at, tie-breaker, endpoint, its stream; None: the endpoint's RTCP)
Due = tuple[float, int, Endpoint, OutStream | None]


@dataclass
class Load:
    tally: Tally = field(default_factory=Tally)
    endpoints: list[Endpoint] = field(default_factory=list)
    sent: dict[int, int] = field(default_factory=dict)
    step: int = WARMUP_STEP
    gc: GcPauses = field(default_factory=GcPauses)  # the load process's collector pauses while it runs
    _task: asyncio.Task[None] | None = None
    _due: list[Due] = field(default_factory=list)
    _order: itertools.count[int] = field(default_factory=itertools.count)

    def add(self, *endpoints: Endpoint) -> None:
        """Start sending for these endpoints: their streams from their start, their RTCP within a second."""
        now = time.perf_counter()
        for endpoint in endpoints:
            self.endpoints.append(endpoint)
            for stream in endpoint.streams:
                heapq.heappush(self._due, (stream.next_due(), next(self._order), endpoint, stream))
            rtcp_at = now + random.random() * RTCP_INTERVAL_S
            heapq.heappush(self._due, (rtcp_at, next(self._order), endpoint, None))

    def start(self) -> None:
        self.gc.install()
        self._task = asyncio.create_task(self._pump())

    async def stop(self) -> None:
        self.gc.uninstall()
        if self._task is not None:
            self._task.cancel()
            await asyncio.gather(self._task, return_exceptions=True)
        for endpoint in self.endpoints:
            with contextlib.suppress(Exception):
                await endpoint.close()
        self.endpoints.clear()
        self._due.clear()

    async def _pump(self) -> None:
        due = self._due
        while True:
            now = time.perf_counter()
            step = self.step
            while due and due[0][0] <= now:
                _, n, endpoint, stream = heapq.heappop(due)
                if stream is None:
                    await endpoint.send_rtcp()
                    at = now + RTCP_INTERVAL_S * random.uniform(0.75, 1.25)
                else:
                    packets = stream.packets_due(now, step)
                    if packets:
                        self.sent[step] = self.sent.get(step, 0) + len(packets)
                        await endpoint.send(packets, stream.send_time_at)
                    at = stream.next_due()
                heapq.heappush(due, (at, n, endpoint, stream))
            await asyncio.sleep(max(due[0][0] - time.perf_counter(), 0.0) if due else IDLE_S)


class Scenario:
    """Something that forwards calls, in processes of its own whose CPU is charged to it."""

    name: str
    calls: int
    children: list[Child]

    async def add_call(self, load: Load) -> None:
        raise NotImplementedError

    async def decodes(self) -> int:
        return 0

    async def drops(self) -> dict[str, int]:
        """What the processes under test dropped so far, by reason (cumulative)."""
        return {}

    async def close(self) -> None:
        for child in self.children:
            await child.stop()


class EdgePath(Scenario):
    """1 edge (both legs on it) or 3 edges in a line (legs on the ends, the middle one only relays)."""

    def __init__(self, edges: list[Child]) -> None:
        self.name = f"{len(edges)}-edge"
        self.children = edges
        self.calls = 0
        self._channels = [grpc.aio.insecure_channel(e.ready["control"]) for e in edges]
        self._stubs = [edge_pb2_grpc.EdgeControlStub(c) for c in self._channels]

    @classmethod
    async def start(cls, count: int, log_dir: Path) -> EdgePath:
        ids = [f"bench-{i + 1}" for i in range(count)]
        edges: list[Child] = []
        try:
            for i, edge_id in enumerate(ids):
                edges.append(
                    await start_child(
                        edge_id, "bench.edge.edge_process", ["--edge-id", edge_id, "--number", str(i + 1)], log_dir
                    )
                )
            # A line: each edge reaches every other through its neighbour toward it.
            for i, edge in enumerate(edges):
                entries = []
                for j, dest in enumerate(ids):
                    if j == i:
                        continue
                    hop = edges[i + 1] if j > i else edges[i - 1]
                    entries.append([dest, j + 1, hop.name, *hop.ready["backbone"]])
                if entries:
                    await edge.command(cmd="routes", version=1, entries=entries)
        except BaseException:
            for edge in edges:
                await edge.stop()
            raise
        return cls(edges)

    async def add_call(self, load: Load) -> None:
        bridge_id = self.calls + 1
        first, last = self._stubs[0], self._stubs[-1]
        a, b = await asyncio.gather(
            AiortcClient.attach(first, f"bench-{bridge_id}-a", load.tally),
            AiortcClient.attach(last, f"bench-{bridge_id}-b", load.tally),
        )
        load.add(a, b)
        ends = [(first, a.leg_id, 0, self.children[-1].name), (last, b.leg_id, 1, self.children[0].name)]
        for stub, leg_id, side, peer in ends:
            for attempt in range(100):
                try:
                    await stub.Bridge(
                        edge_pb2.BridgeRequest(bridge_id=bridge_id, leg_id=leg_id, side=side, peer_edge_id=peer)
                    )
                    break
                except grpc.aio.AioRpcError as exc:
                    # The edge's side of ICE/DTLS may finish a moment after the client's.
                    if exc.code() != grpc.StatusCode.FAILED_PRECONDITION or attempt == 99:
                        raise
                    await asyncio.sleep(0.02)
        self.calls += 1

    async def decodes(self) -> int:
        return sum([(await e.command(cmd="decodes"))["decodes"] for e in self.children])

    async def drops(self) -> dict[str, int]:
        total: dict[str, int] = {}
        for stub in self._stubs:
            stats = await stub.GetStats(edge_pb2.GetStatsRequest())
            for reason, n in stats.dropped.items():
                total[reason] = total.get(reason, 0) + n
        return total

    async def close(self) -> None:
        for channel in self._channels:
            await channel.close()
        await super().close()


class Floor(Scenario):
    """The bare loop, with SRTP (unprotect + protect per packet) or without."""

    def __init__(self, child: Child, srtp: bool) -> None:
        self.name = "floor-srtp" if srtp else "floor-plain"
        self.children = [child]
        self.calls = 0
        self.srtp = srtp

    @classmethod
    async def start(cls, srtp: bool, log_dir: Path) -> Floor:
        child = await start_child("floor-srtp" if srtp else "floor-plain", "bench.edge.floor_process", [], log_dir)
        return cls(child, srtp)

    async def add_call(self, load: Load) -> None:
        floor = (HOST, int(self.children[0].ready["port"]))
        ends = [FloorClient(load.tally, self.srtp, 2 * self.calls + i) for i in range(2)]
        specs = []
        for end in ends:
            host, port = await end.open(HOST, floor)
            # The floor unprotects with the key the client protects with, and the other way round.
            specs.append([host, port, end.tx_key.hex(), end.rx_key.hex()])
        await self.children[0].command(cmd="pair", a=specs[0], b=specs[1])
        load.add(*ends)
        self.calls += 1

    async def drops(self) -> dict[str, int]:
        dropped = int((await self.children[0].command(cmd="stats"))["dropped"])
        return {"unpaired or refused": dropped} if dropped else {}

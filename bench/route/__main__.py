"""make bench-route: route choice and route pushes on a generated 500-edge / 5,000-link backbone.

Measures, in one run (figures defined in docs/benchmarks.md):
  - pick_route: the routing service's answer to PickRoute (a lookup in the all-pairs
    routes), p50/p99 over random pairs; ``naive``: a fresh networkx Dijkstra per query
    on the same graph, the baseline;
  - recompute: graph + all-pairs routes for a new topology version;
  - push: from a change to every edge's WatchRoutes stream holding its new table (a real
    routing server on loopback; the 500 watchers in a child process);
  - failover: from a link marked down to every edge whose routes it changed holding a
    route around it.
Prints a table and, last, one JSON line.
"""

from __future__ import annotations

import os

os.environ.setdefault("GRPC_ENABLE_FORK_SUPPORT", "false")

import argparse
import asyncio
import json
import random
import statistics
import sys
import time
from collections import defaultdict
from collections.abc import Callable
from dataclasses import dataclass, replace
from pathlib import Path

import numpy as np

from bench.route.generate import generated_topology
from duet.routing.all_pairs import AllPairsRoutes
from duet.routing.geo import GeoLocator
from duet.routing.paths import shortest_path
from duet.routing.topology import Topology
from duet.services.routing_server.server import RoutingServicer
from duet.services.routing_server.state import RoutingState, routes_of
from duet.services.rpc.server import start_server
from duet.v1 import routing_pb2_grpc

REPO_ROOT = Path(__file__).resolve().parents[2]
GOALS = {"pick_route_p99_us": 1000.0, "recompute_ms": 500.0, "push_to_all_edges_ms": 1000.0, "failover_ms": 1000.0}


def percentile(values: list[float], q: float) -> float:
    return float(np.percentile(np.asarray(values), q))


def time_queries(routes: AllPairsRoutes, pairs: list[tuple[str, str]]) -> list[float]:
    out = []
    clock = time.perf_counter_ns
    for src, dst in pairs:
        t0 = clock()
        routes.path(src, dst)
        out.append((clock() - t0) / 1000)
    return out


def time_naive(routes: AllPairsRoutes, pairs: list[tuple[str, str]]) -> list[float]:
    out = []
    for src, dst in pairs:
        t0 = time.perf_counter_ns()
        shortest_path(routes.graph, src, dst)
        out.append((time.perf_counter_ns() - t0) / 1000)
    return out


class Watchers:
    """The child process holding one WatchRoutes stream per edge."""

    def __init__(self, address: str, edge_ids: list[str], *, deltas: bool = True) -> None:
        self.address = address
        self.edge_ids = edge_ids
        self.deltas = deltas
        self.held: dict[int, dict[str, float]] = defaultdict(dict)  # version -> edge -> when (monotonic s)
        self._changed = asyncio.Condition()
        self._ready = asyncio.Event()

    async def __aenter__(self) -> Watchers:
        self.proc = await asyncio.create_subprocess_exec(
            sys.executable,
            "-m",
            "bench.route.watchers",
            self.address,
            "",
            "deltas" if self.deltas else "whole",
            *self.edge_ids,
            stdin=asyncio.subprocess.PIPE,
            stdout=asyncio.subprocess.PIPE,
            cwd=REPO_ROOT,
            env=dict(os.environ, PYTHONPATH=str(REPO_ROOT)),
        )
        self.reader = asyncio.create_task(self._read())
        await asyncio.wait_for(self._ready.wait(), timeout=120)
        return self

    async def _read(self) -> None:
        assert self.proc.stdout is not None
        async for raw in self.proc.stdout:
            words = raw.decode().split()
            if words == ["ready"]:
                self._ready.set()
            elif words and words[0] == "held":
                async with self._changed:
                    self.held[int(words[2])][words[1]] = float(words[3])
                    self._changed.notify_all()

    async def wait_held(self, version: int, edge_ids: set[str], timeout: float = 60) -> float:
        """When the last of ``edge_ids`` got a table of ``version`` (monotonic s)."""
        async with self._changed:
            await asyncio.wait_for(self._changed.wait_for(lambda: edge_ids <= set(self.held[version])), timeout)
            return max(self.held[version][e] for e in edge_ids)

    async def __aexit__(self, *exc: object) -> None:
        assert self.proc.stdin is not None
        self.proc.stdin.close()
        try:
            await asyncio.wait_for(self.proc.wait(), 10)
        except TimeoutError:
            self.proc.kill()
            await self.proc.wait()
        self.reader.cancel()
        await asyncio.gather(self.reader, return_exceptions=True)


def busiest_link(routes: AllPairsRoutes) -> tuple[str, str]:
    """The link that starts the most routes out of one edge: failing it reroutes the most."""
    best = (0, 0, -1)
    for i in range(len(routes.edge_ids)):
        hops = routes.first_hop[i]
        counts = np.bincount(hops[(hops >= 0) & (hops != i)], minlength=len(routes.edge_ids))
        j = int(counts.argmax())
        if counts[j] > best[2]:
            best = (i, j, int(counts[j]))
    return routes.edge_ids[best[0]], routes.edge_ids[best[1]]


def affected_edges(before: AllPairsRoutes, after: AllPairsRoutes) -> set[str]:
    changed = (before.first_hop != after.first_hop).any(axis=1)
    return {before.edge_ids[i] for i in np.flatnonzero(changed)}


@dataclass
class Figures:
    edges: int
    pick_route_p50_us: float
    pick_route_p99_us: float
    naive_p99_us: float
    speedup_vs_naive: float
    recompute_ms: float
    push_to_all_edges_ms: float
    failover_ms: float


async def measure_pushes(
    topology: Topology, say: Callable[[str], None], *, deltas: bool = True
) -> tuple[float, float, int]:
    state = RoutingState(topology)
    servicer = RoutingServicer(state, GeoLocator(None), topology.regions[0].name)
    server, address = await start_server(
        "127.0.0.1:0", lambda s: routing_pb2_grpc.add_RoutingServicer_to_server(servicer, s)
    )
    edge_ids = [e.edge_id for e in topology.edges]
    try:
        say(f"opening {len(edge_ids)} WatchRoutes streams ...")
        async with Watchers(address, edge_ids, deltas=deltas) as watchers:
            # A change every edge must hear about: a round of probes found every link 2 % slower,
            # which changes every path's RTT in every table.
            slower = tuple(replace(ln, rtt_ms=round(ln.rtt_ms * 1.02, 3)) for ln in topology.links)
            changed = Topology(topology.regions, topology.edges, slower, topology.version + 1)
            t0 = time.monotonic()
            await state.replace(changed)
            push_ms = (await watchers.wait_held(changed.version, set(edge_ids)) - t0) * 1000
            say(f"push: {len(edge_ids)} edges hold version {changed.version} after {push_ms:.0f} ms")

            await asyncio.sleep(1.0)  # the failure comes to a settled system, not mid-push
            a, b = busiest_link(state.routes)
            before = state.routes
            failed = changed.with_link(a, b, up=False)
            t0 = time.monotonic()
            await state.replace(failed)
            affected = affected_edges(before, state.routes)
            failover_ms = (await watchers.wait_held(failed.version, affected) - t0) * 1000
            assert all(
                b not in (p := state.routes.path(a, d)).edge_ids[1:2] for d in state.routes.edge_ids if d != a
            ), p
            say(f"failover: link {a}<->{b} down, {len(affected)} edges rerouted within {failover_ms:.0f} ms")
    finally:
        await server.stop(grace=1)
    return push_ms, failover_ms, len(affected)


def run(args: argparse.Namespace) -> Figures:
    def say(line: str) -> None:
        print(line, file=sys.stderr, flush=True)

    say(f"generating {args.edges} edges / {args.links} links ...")
    topology = generated_topology(args.edges, args.links)
    recompute = []
    for _ in range(args.repeats):
        t0 = time.perf_counter()
        _, routes = routes_of(topology)
        recompute.append((time.perf_counter() - t0) * 1000)
    say(f"recompute: {', '.join(f'{ms:.0f}' for ms in recompute)} ms")
    rng = random.Random(2)
    ids = list(routes.edge_ids)
    pairs = [(rng.choice(ids), rng.choice(ids)) for _ in range(args.queries)]
    time_queries(routes, pairs[:1000])  # warm caches
    fast = time_queries(routes, pairs)
    naive = time_naive(routes, pairs[: args.naive_queries])
    say(f"pick_route: {len(fast)} lookups, naive: {len(naive)} Dijkstra searches")
    push_ms, failover_ms, _ = asyncio.run(measure_pushes(topology, say, deltas=not args.whole_tables))
    p99, naive_p99 = percentile(fast, 99), percentile(naive, 99)
    return Figures(
        edges=args.edges,
        pick_route_p50_us=round(percentile(fast, 50), 2),
        pick_route_p99_us=round(p99, 2),
        naive_p99_us=round(naive_p99, 1),
        speedup_vs_naive=round(naive_p99 / p99, 1),
        recompute_ms=round(statistics.median(recompute), 1),
        push_to_all_edges_ms=round(push_ms, 1),
        failover_ms=round(failover_ms, 1),
    )


def print_table(f: Figures, args: argparse.Namespace) -> None:
    rows = [
        ("pick_route p50", f"{f.pick_route_p50_us:.1f} us", ""),
        ("pick_route p99", f"{f.pick_route_p99_us:.1f} us", "pick_route_p99_us"),
        ("naive Dijkstra p99", f"{f.naive_p99_us:.0f} us", ""),
        ("speedup vs naive (p99)", f"{f.speedup_vs_naive:.0f}x", ""),
        ("recompute (median)", f"{f.recompute_ms:.0f} ms", "recompute_ms"),
        ("push to all edges", f"{f.push_to_all_edges_ms:.0f} ms", "push_to_all_edges_ms"),
        ("failover", f"{f.failover_ms:.0f} ms", "failover_ms"),
    ]
    print(f"\nroute benchmark: {args.edges} edges, {args.links} links, {args.queries} lookups")
    print(f"  {'figure':<26}{'measured':>12}   goal")
    for label, value, key in rows:
        goal = GOALS.get(key)
        verdict = "" if goal is None else f"<= {goal:.0f} " + ("met" if getattr(f, key) <= goal else "MISSED")
        print(f"  {label:<26}{value:>12}   {verdict}")


def main() -> int:
    parser = argparse.ArgumentParser(prog="make bench-route", description=__doc__.split("\n\n")[0])
    parser.add_argument("--edges", type=int, default=500, help="edges in the generated topology (default: %(default)s)")
    parser.add_argument("--links", type=int, default=5000, help="links in it (default: %(default)s)")
    parser.add_argument("--queries", type=int, default=20000, help="route lookups timed (default: %(default)s)")
    parser.add_argument("--naive-queries", type=int, default=300, help="baseline searches timed (default: %(default)s)")
    parser.add_argument("--repeats", type=int, default=3, help="recomputes timed (default: %(default)s)")
    parser.add_argument(
        "--whole-tables",
        action="store_true",
        help="watchers take every table whole, as before deltas (default: deltas, as edges take them)",
    )
    parser.add_argument("--quick", action="store_true", help="a small topology, for a smoke test")
    args = parser.parse_args()
    if args.quick:
        args.edges, args.links, args.queries, args.naive_queries, args.repeats = 60, 300, 2000, 100, 1
    figures = run(args)
    print_table(figures, args)
    print(json.dumps(figures.__dict__))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

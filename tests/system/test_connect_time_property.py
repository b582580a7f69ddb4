"""Connect time as a property: random small topologies under WAN emulation stay within the model's bound.

Hypothesis draws 3-4 of the 13 shipped regions, scales every link's RTT,
maybe removes one link (media then goes through a relay edge), puts the
matchmaker in one of the regions and places a few calls between drawn
regions. Each example starts the real cluster (PostgreSQL, routing service,
matchmaker and one edge process per region, backbone, last miles and
control plane emulated) and places real calls with the SDK and its
synthetic camera. Every call, on both sides, must connect (match -> first
frame) within ``connect_bound_ms`` of the model's prediction for its pair,
over the route the model predicts. Where the bound is under 600 ms (most
pairs of real regions), that holds the call to the 600 ms target too.

A cluster per example is the cost (about 4 s to start here), so there are
few examples, one of them the far corner fixed as an explicit example, and
no shrinking (each shrink step would be another cluster); a failure prints
its example in full. docs/connect-time-in-ci.md has the bound and its margin.
"""

from __future__ import annotations

import asyncio
import dataclasses
import itertools
import shutil
from collections.abc import Callable
from dataclasses import dataclass

import pytest
from hypothesis import HealthCheck, Phase, example, given, settings
from hypothesis import strategies as st

from duet.routing.connect_model import connect_bound_ms, predict_connect
from duet.routing.reference import region_sites
from duet.routing.topology import Link, Topology, default_topology
from duet.services.devkit.cluster_thread import ClusterThread
from duet.services.devkit.demo_geo import DEMO_CLIENT_IPS
from duet.services.devkit.embedded_postgres import make_scratch_dir
from duet.services.devkit.local_cluster import ClusterInfo, LocalCluster
from duet.services.devkit.synthetic_media import synthetic_client
from duet.services.devkit.wan.cluster import ClusterEmulation

pytestmark = pytest.mark.slow

LAST_MILE_MS = 15.0
# A route other than the model's passes when its declared RTT is within this of the model's best.
NEAR_TIE, NEAR_TIE_MS = 1.10, 5.0
REGIONS = tuple(region_sites())


def declared_rtt_ms(topology: Topology, route: tuple[str, ...] | list[str]) -> float | None:
    """The RTT the topology declares along ``route`` (edge ids), or None when a hop is not a link."""
    rtts = {frozenset((link.a, link.b)): link.rtt_ms for link in topology.links}
    hops = [rtts.get(frozenset(hop)) for hop in itertools.pairwise(route)]
    return None if any(r is None for r in hops) else sum(r for r in hops if r is not None)


@dataclass(frozen=True)
class World:
    """One drawn example: the topology, where the matchmaker runs, and the calls to place."""

    topology: Topology
    control_region: str
    calls: tuple[tuple[str, str], ...]

    def __repr__(self) -> str:  # what a failure prints: enough to rebuild the example by hand
        links = ", ".join(f"{ln.a}-{ln.b} {ln.rtt_ms:.0f}" for ln in self.topology.links)
        return f"World(control={self.control_region}, links=[{links}], calls={list(self.calls)})"


def scaled_world(
    regions: list[str], scales: list[float], dropped: int | None, control: str, calls: list[tuple[str, str]]
) -> World:
    base = default_topology(regions)
    links = [Link(ln.a, ln.b, round(ln.rtt_ms * s, 1)) for ln, s in zip(base.links, scales, strict=True)]
    if dropped is not None:
        del links[dropped]  # a full mesh of 3+ edges stays connected without any one link
    return World(Topology(base.regions, base.edges, tuple(links), 1), control, tuple(calls))


@st.composite
def worlds(draw: st.DrawFn) -> World:
    regions = draw(st.lists(st.sampled_from(REGIONS), min_size=3, max_size=4, unique=True))
    n_links = len(regions) * (len(regions) - 1) // 2
    scales = draw(st.lists(st.floats(0.5, 1.5), min_size=n_links, max_size=n_links))
    dropped = draw(st.none() | st.integers(0, n_links - 1))
    control = draw(st.sampled_from(regions))
    calls = draw(st.lists(st.tuples(st.sampled_from(regions), st.sampled_from(regions)), min_size=2, max_size=3))
    return scaled_world(regions, scales, dropped, control, calls)


# The far corner: Sydney-Johannesburg, the longest measured link, with the matchmaker in Frankfurt.
FAR_CORNER = scaled_world(
    ["Sydney", "Johannesburg", "Frankfurt"],
    [1.0, 1.0, 1.0],
    None,
    "Frankfurt",
    [("Sydney", "Johannesburg"), ("Johannesburg", "Sydney")],
)


@dataclass
class Measured:
    regions: tuple[str, str]
    route: tuple[str, ...]
    connect_ms: tuple[float, float]


async def place_call(info: ClusterInfo, regions: tuple[str, str], first_tag: int) -> Measured:
    """One call between fresh clients (one per side)."""
    clients = [
        synthetic_client(
            info.matchmaker_for(region),
            f"prop-{first_tag + k}",
            f"prop-{k}@{region}",
            tag=first_tag + k,
            client_ip=DEMO_CLIENT_IPS[region],
            token=info.user_tokens(f"prop-{first_tag + k}"),
            frame_timeout=15,
            match_timeout=15,
        )
        for k, region in enumerate(regions)
    ]
    try:
        await asyncio.gather(*(c.connect() for c in clients))
        a, b = await asyncio.gather(*(c.find_partner() for c in clients))
    finally:
        await asyncio.gather(*(c.leave() for c in clients), return_exceptions=True)
    pair = "-".join(regions)
    assert a.call_id == b.call_id, f"{pair}: matched into two calls"
    assert a.connect_ms is not None and b.connect_ms is not None, f"{pair}: a side saw no frame"
    return Measured(regions, tuple(a.route), (a.connect_ms, b.connect_ms))


async def place_calls(
    info: ClusterInfo,
    calls: tuple[tuple[str, str], ...],
    first_tag: int,
    bound_of: Callable[[tuple[str, str]], float],
    route_fits: Callable[[Measured], bool],
) -> list[Measured]:
    """Each call one after another (a shared pool, one pair at a time). A call over its bound, or
    routed off the model's path, is placed once more and the second is kept: a stall of the shared
    machine (another process taking both cores for a few hundred ms, which probes can read as a
    link down) does not repeat on demand, a slow path or a routing fault does."""
    measured = []
    for n, regions in enumerate(calls):
        m = await place_call(info, regions, first_tag + 2 * n)
        over = max(m.connect_ms) > bound_of(regions)
        if over or not route_fits(m):
            why = "over the bound" if over else f"routed {'-'.join(m.route)}"
            print(f"{'-'.join(regions)}: {m.connect_ms[0]:.0f} / {m.connect_ms[1]:.0f} ms {why}: placed again")
            m = await place_call(info, regions, first_tag + RETRY_TAGS + 2 * n)
        measured.append(m)
    return measured


def route_within_a_tie(world: World, m: Measured) -> bool:
    """The model's path, or one within the probes' noise of it (NEAR_TIE): the routing service
    weighs links by their probes' RTTs (with hysteresis), so of two near-equal paths either may win."""
    prediction = predict_connect(world.topology, world.control_region, *m.regions, last_mile_ms=LAST_MILE_MS)
    if m.route in (prediction.path, prediction.path[::-1]):
        return True
    taken = declared_rtt_ms(world.topology, m.route)
    return taken is not None and taken <= 2 * prediction.backbone_ms * NEAR_TIE + NEAR_TIE_MS


_examples = iter(range(10_000, 60_000, 100))  # distinct camera tags (16 bits) and user ids per example
RETRY_TAGS = 50  # a re-placed call's tags, within its example's hundred


@settings(
    max_examples=3,
    deadline=None,
    phases=[Phase.explicit, Phase.generate],
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
    database=None,
)
@example(world=FAR_CORNER)
@given(world=worlds())
def test_every_call_connects_within_the_models_bound(world: World, database_url: str) -> None:
    emulation = ClusterEmulation(control_region=world.control_region, last_mile_ms=LAST_MILE_MS)

    def bound_of(regions: tuple[str, str]) -> float:
        return connect_bound_ms(
            predict_connect(world.topology, world.control_region, *regions, last_mile_ms=LAST_MILE_MS)
        )

    state_dir = make_scratch_dir("duet-prop-")
    cluster = LocalCluster(state_dir=state_dir, database=database_url, topology=world.topology, emulation=emulation)
    try:
        with ClusterThread(cluster) as info:
            measured = asyncio.run(
                place_calls(info, world.calls, next(_examples), bound_of, lambda m: route_within_a_tie(world, m))
            )
    finally:
        shutil.rmtree(state_dir, ignore_errors=True)

    problems = []
    for m in measured:
        prediction = predict_connect(world.topology, world.control_region, *m.regions, last_mile_ms=LAST_MILE_MS)
        bound = connect_bound_ms(prediction)
        pair = "-".join(m.regions)
        if m.route not in (prediction.path, prediction.path[::-1]):
            if not route_within_a_tie(world, m):  # a clearly longer path: a routing fault
                best = 2 * prediction.backbone_ms
                problems.append(f"{pair}: route {m.route}, the model's {prediction.path} ({best:.0f} ms RTT)")
            else:  # held to the bound of the path it took
                taken = declared_rtt_ms(world.topology, m.route)
                assert taken is not None
                prediction = dataclasses.replace(prediction, path=tuple(m.route), backbone_ms=taken / 2)
        for side, ms in zip(m.regions, m.connect_ms, strict=True):
            if ms > bound:
                problems.append(
                    f"{pair}: {side} connected in {ms:.0f} ms, over the bound {bound:.0f} "
                    f"(model {prediction.total_ms:.0f}: control {prediction.control_ms:.0f}, "
                    f"backbone {prediction.backbone_ms:.0f}, access {prediction.access_ms:.0f})"
                )
        print(
            f"{pair}: {m.connect_ms[0]:.0f} / {m.connect_ms[1]:.0f} ms, model {prediction.total_ms:.0f}, bound {bound:.0f}"
        )
    assert not problems, "\n".join(problems)

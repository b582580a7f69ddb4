"""Hypothesis strategies for random small topologies, and a brute-force path oracle.

Shared by the routing property tests. The oracle works straight from the
Topology dataclasses (not from networkx), so it checks routing.paths and
routing.next_hop independently.
"""

from __future__ import annotations

import itertools
import math

from hypothesis import strategies as st

from duet.routing.paths import LOSS_PENALTY
from duet.routing.topology import EdgeNode, EdgeState, Link, Region, Topology

REGIONS = (Region("North", 60.0, 10.0), Region("South", -30.0, 20.0), Region("West", 10.0, -70.0))
STATES = st.sampled_from([EdgeState.ACTIVE] * 4 + [EdgeState.DRAINING, EdgeState.DOWN])


@st.composite
def topologies(draw: st.DrawFn, min_edges: int = 2, max_edges: int = 6) -> Topology:
    """Small random topologies: random states, random partial mesh, integer or float RTTs
    (integers make ties likely), some loss, some links down."""
    n = draw(st.integers(min_edges, max_edges))
    numbers = draw(st.permutations(range(1, n + 1)))
    edges = [
        EdgeNode(
            f"e{i}",
            numbers[i],
            draw(st.sampled_from(REGIONS)).name,
            capacity=draw(st.integers(1, 200)),
            state=draw(STATES),
            backbone_address=f"127.0.0.1:{40000 + i}",
        )
        for i in range(n)
    ]
    rtts = st.one_of(st.integers(1, 40).map(float), st.floats(0.1, 400.0, allow_nan=False))
    links = []
    for a, b in itertools.combinations(range(n), 2):
        if draw(st.integers(0, 9)) < 6:  # ~60 % of pairs linked
            links.append(
                Link(
                    f"e{a}",
                    f"e{b}",
                    draw(rtts),
                    loss=draw(st.sampled_from([0.0, 0.0, 0.01, 0.1, 0.5])),
                    up=draw(st.integers(0, 9)) > 0,  # ~10 % down
                )
            )
    return Topology(REGIONS, tuple(edges), tuple(links), draw(st.integers(0, 1000)))


def usable_link_cost(topology: Topology, a: str, b: str) -> float | None:
    ln = topology.link(a, b)
    if ln is None or not ln.up:
        return None
    return ln.rtt_ms * (1 + LOSS_PENALTY * ln.loss)


def brute_force_costs(topology: Topology, src: str) -> dict[str, float]:
    """Minimum cost from src to every reachable dest over ALL simple paths that obey the
    rules: endpoints not DOWN, transit only ACTIVE, only up links."""
    state = {e.edge_id: e.state for e in topology.edges}
    best: dict[str, float] = {}
    if state[src] is EdgeState.DOWN:
        return best
    best[src] = 0.0

    def walk(node: str, visited: set[str], cost: float) -> None:
        for ln in topology.links_of(node):
            nxt = ln.other(node)
            c = usable_link_cost(topology, node, nxt)
            if c is None or nxt in visited or state[nxt] is EdgeState.DOWN:
                continue
            total = cost + c
            if total < best.get(nxt, math.inf):
                best[nxt] = total
            if state[nxt] is EdgeState.ACTIVE:  # only active edges may relay further
                walk(nxt, visited | {nxt}, total)

    walk(src, {src}, 0.0)
    return best


def assert_valid_path(topology: Topology, edge_ids: tuple[str, ...]) -> float:
    """Check the routing rules on a path and return its cost."""
    assert len(set(edge_ids)) == len(edge_ids), f"path revisits an edge: {edge_ids}"
    for eid in edge_ids:
        assert topology.edge(eid).state is not EdgeState.DOWN, f"path uses down edge {eid}"
    for eid in edge_ids[1:-1]:
        assert topology.edge(eid).state is EdgeState.ACTIVE, f"path transits non-active edge {eid}"
    cost = 0.0
    for a, b in itertools.pairwise(edge_ids):
        c = usable_link_cost(topology, a, b)
        assert c is not None, f"path uses missing or down link {a}<->{b}"
        cost += c
    return cost

"""Routes updated after links got worse: the same costs as the full pass, over valid paths."""

from __future__ import annotations

import itertools

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from duet.routing.all_pairs import AllPairsRoutes, compute_routes
from duet.routing.all_pairs_update import routes_after, routes_after_worsening
from duet.routing.paths import NoRoute, build_graph
from duet.routing.topology import EdgeNode, EdgeState, Link, Region, Topology
from tests.routing.strategies import assert_valid_path, topologies


@st.composite
def worsened(draw: st.DrawFn, t: Topology) -> Topology:
    """``t`` with one to four links down or slower (RTT up, or loss up)."""
    if not t.links:
        return t
    for ln in draw(st.lists(st.sampled_from(t.links), min_size=1, max_size=4, unique=True)):
        kind = draw(st.sampled_from(["down", "slower", "lossier"]))
        if kind == "down":
            t = t.with_link(ln.a, ln.b, up=False)
        elif kind == "slower":
            t = t.with_link(ln.a, ln.b, rtt_ms=ln.rtt_ms + draw(st.sampled_from([1.0, 7.0, 100.0])))
        else:
            t = t.with_link(ln.a, ln.b, loss=min(1.0, ln.loss + 0.1))
    return t


def assert_same_routes(t: Topology, updated: AllPairsRoutes, full: AllPairsRoutes) -> None:
    assert updated.edge_ids == full.edge_ids
    np.testing.assert_allclose(updated.cost, full.cost, rtol=1e-9)  # inf where full has inf
    for src, dst in itertools.product(full.edge_ids, repeat=2):
        try:
            expected = full.path(src, dst)
        except NoRoute:
            with pytest.raises(NoRoute):
                updated.path(src, dst)
            continue
        p = updated.path(src, dst)
        assert assert_valid_path(t, p.edge_ids) == pytest.approx(expected.cost)  # a valid least-cost path
        assert p.rtt_ms == pytest.approx(sum(t.link(a, b).rtt_ms for a, b in itertools.pairwise(p.edge_ids)))
        assert p.cost == pytest.approx(expected.cost)


@settings(max_examples=300, deadline=None)
@given(st.data())
def test_worse_links_give_the_routes_of_a_full_recompute(data: st.DataObject) -> None:
    t = data.draw(topologies(max_edges=8))
    later = data.draw(worsened(t))
    before = compute_routes(build_graph(t))
    # Any share of pairs: small graphs would otherwise mostly take the full pass.
    updated = routes_after_worsening(before, build_graph(later), max_affected_share=1.0)
    assert updated is not None  # only links got worse: always an update
    assert_same_routes(later, updated, compute_routes(build_graph(later)))
    # and the next hops read off either are the same tables, up to equal-cost choices
    for e in later.edges:
        assert set(updated.next_hops(e.edge_id)) == set(compute_routes(build_graph(later)).next_hops(e.edge_id))


@settings(max_examples=100, deadline=None)
@given(st.data())
def test_chained_updates_stay_exact(data: st.DataObject) -> None:
    t = data.draw(topologies(min_edges=4, max_edges=8))
    routes = compute_routes(build_graph(t))
    for _ in range(3):
        t = data.draw(worsened(t))
        updated = routes_after_worsening(routes, build_graph(t), max_affected_share=1.0)
        assert updated is not None
        routes = updated
    assert_same_routes(t, routes, compute_routes(build_graph(t)))


def line(*rtts: float) -> Topology:
    edges = tuple(EdgeNode(f"e{i}", i + 1, "R", backbone_address=f"127.0.0.1:{3000 + i}") for i in range(5))
    links = (
        Link("e0", "e1", rtts[0]),
        Link("e1", "e2", rtts[1]),
        Link("e2", "e3", rtts[2]),
        Link("e3", "e4", rtts[3]),
        Link("e0", "e4", 100.0),
    )
    return Topology((Region("R", 0.0, 0.0),), edges, links, 1)


def test_only_worsening_is_updated_in_place() -> None:
    t = line(10, 10, 10, 10)
    before = compute_routes(build_graph(t))
    down = routes_after_worsening(before, build_graph(t.with_link("e1", "e2", up=False)), max_affected_share=1.0)
    assert down is not None and down.path("e0", "e2").edge_ids == ("e0", "e4", "e3", "e2")
    assert down.path("e0", "e1").edge_ids == ("e0", "e1")  # untouched
    # Anything that can shorten a path, or changes the edges, is not an update from before.
    for other in (
        t.with_link("e0", "e4", rtt_ms=5.0),
        t.with_edge_state("e2", EdgeState.DRAINING),
        t.with_edge_state("e2", EdgeState.DOWN),
    ):
        assert routes_after_worsening(before, build_graph(other), max_affected_share=1.0) is None
    assert routes_after(before, build_graph(t.with_link("e0", "e4", rtt_ms=5.0))).path("e0", "e3").rtt_ms == 15.0


def test_a_failed_link_on_a_large_backbone_is_an_update_with_the_full_pass_answers() -> None:
    rng = np.random.default_rng(4)
    n = 120
    edges = tuple(EdgeNode(f"e{i:03}", i + 1, "R", backbone_address=f"127.0.0.1:{3000 + i}") for i in range(n))
    pairs = {(i, i + 1) for i in range(n - 1)} | {tuple(sorted(rng.choice(n, 2, replace=False))) for _ in range(500)}
    links = tuple(Link(f"e{a:03}", f"e{b:03}", float(rng.integers(5, 200))) for a, b in sorted(pairs))
    t = Topology((Region("R", 0.0, 0.0),), edges, links, 1)
    before = compute_routes(build_graph(t))
    # the link that starts the most routes
    hops = before.first_hop
    counts = [(int((hops[i] == j).sum()), i, j) for i in range(n) for j in np.unique(hops[i]) if j != i]
    _, i, j = max(counts)
    failed = t.with_link(before.edge_ids[i], before.edge_ids[int(j)], up=False)
    updated = routes_after_worsening(before, build_graph(failed))
    assert updated is not None
    assert_same_routes(failed, updated, compute_routes(build_graph(failed)))

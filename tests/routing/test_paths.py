from __future__ import annotations

import itertools

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from duet.routing.paths import NoRoute, Path, alternate_paths, build_graph, link_cost, shortest_path
from duet.routing.topology import (
    EdgeNode,
    EdgeState,
    Link,
    Region,
    Topology,
    UnknownEdge,
    default_topology,
    world_topology,
)
from tests.routing.strategies import assert_valid_path, brute_force_costs, topologies

R = (Region("R", 0.0, 0.0),)


def line(*links: Link, states: dict[str, EdgeState] | None = None) -> Topology:
    """A topology over the edge ids the links mention."""
    ids = sorted({x for ln in links for x in (ln.a, ln.b)})
    states = states or {}
    edges = tuple(EdgeNode(eid, n, "R", state=states.get(eid, EdgeState.ACTIVE)) for n, eid in enumerate(ids, 1))
    return Topology(R, edges, links)


# a - b - d is cheaper (20) than the direct a - d (50); c is another relay (30).
DIAMOND = line(Link("a", "b", 10), Link("b", "d", 10), Link("a", "d", 50), Link("a", "c", 15), Link("c", "d", 15))


def test_link_cost_penalises_loss() -> None:
    assert link_cost(100, 0) == 100
    assert link_cost(100, 0.01) == pytest.approx(110)
    assert link_cost(100, 0.1) == pytest.approx(200)


def test_build_graph_excludes_down_edges_and_links() -> None:
    t = DIAMOND.with_edge_state("c", EdgeState.DOWN).with_edge_state("b", EdgeState.DRAINING)
    t = t.with_link("a", "d", up=False, rtt_ms=50, loss=0.1)
    g = build_graph(t)
    assert set(g.nodes) == {"a", "b", "d"}
    assert g.nodes["b"]["transit"] is False and g.nodes["a"]["transit"] is True
    assert g.nodes["a"]["edge"] == t.edge("a")
    assert not g.has_edge("a", "d")
    assert g.edges["a", "b"] == {"rtt_ms": 10, "loss": 0.0, "cost": 10}
    assert g.graph["version"] == t.version


def test_build_graph_require_registered() -> None:
    t = DIAMOND.with_edge_addresses("a", control_address="c", backbone_address="b", media_host="m")
    assert set(build_graph(t, require_registered=True).nodes) == {"a"}


def test_shortest_path_prefers_cheaper_relay() -> None:
    assert shortest_path(DIAMOND, "a", "d") == Path(("a", "b", "d"), 20.0, 20.0)
    assert shortest_path(DIAMOND, "d", "a").edge_ids == ("d", "b", "a")
    assert shortest_path(DIAMOND, "a", "d").hops == 2


def test_shortest_path_on_the_world_topology() -> None:
    t = world_topology()
    assert shortest_path(t, "fra-1", "syd-1") == Path(("fra-1", "syd-1"), 243.0, 243.0)
    # The measured table has relays that beat the direct route:
    # London-Sydney direct is 258 ms, via Singapore 157 + 90 = 247 ms.
    assert shortest_path(t, "lon-1", "syd-1") == Path(("lon-1", "sin-1", "syd-1"), 247.0, 247.0)
    # Sao Paulo-Singapore direct is 342 ms, via London 180 + 157 = 337 ms.
    assert shortest_path(t, "gru-1", "sin-1").edge_ids == ("gru-1", "lon-1", "sin-1")
    g = build_graph(t)
    assert shortest_path(g, "lon-1", "syd-1") == shortest_path(t, "lon-1", "syd-1"), "a graph works like a topology"


def test_loss_penalty_diverts_traffic() -> None:
    t = line(Link("a", "d", 100, loss=0.1), Link("a", "b", 60), Link("b", "d", 60))
    p = shortest_path(t, "a", "d")
    assert p == Path(("a", "b", "d"), 120.0, 120.0)
    clean = t.with_link("a", "d", loss=0.0)
    assert shortest_path(clean, "a", "d") == Path(("a", "d"), 100.0, 100.0)
    lossy = line(Link("a", "d", 100, loss=0.01))
    assert shortest_path(lossy, "a", "d").cost == pytest.approx(110)


def test_draining_edge_is_never_transit_but_may_be_an_endpoint() -> None:
    t = DIAMOND.with_edge_state("b", EdgeState.DRAINING)
    assert shortest_path(t, "a", "d").edge_ids == ("a", "c", "d")
    assert shortest_path(t, "b", "d") == Path(("b", "d"), 10.0, 10.0)
    assert shortest_path(t, "a", "b").edge_ids == ("a", "b")
    assert shortest_path(t, "b", "b") == Path(("b",), 0.0, 0.0)
    # Two draining endpoints may still talk directly, never through each other.
    t2 = line(Link("x", "y", 5), Link("y", "z", 5), states={"x": EdgeState.DRAINING, "y": EdgeState.DRAINING})
    assert shortest_path(t2, "x", "y").edge_ids == ("x", "y")
    with pytest.raises(NoRoute, match="no route from 'x' to 'z'"):
        shortest_path(t2, "x", "z")


def test_down_link_and_down_edge() -> None:
    t = DIAMOND.with_link("a", "b", up=False)
    assert shortest_path(t, "a", "d").edge_ids == ("a", "c", "d")
    t = t.with_edge_state("c", EdgeState.DOWN)
    assert shortest_path(t, "a", "d").edge_ids == ("a", "d")
    with pytest.raises(NoRoute, match="edge 'c' is down"):
        shortest_path(t, "a", "c")
    with pytest.raises(NoRoute, match="edge 'c' is down"):
        alternate_paths(t, "c", "a")


def test_unknown_edge_and_partition() -> None:
    with pytest.raises(UnknownEdge, match="unknown edge 'zz'"):
        shortest_path(DIAMOND, "a", "zz")
    t = line(Link("a", "b", 1), Link("c", "d", 1))
    with pytest.raises(NoRoute, match="no route from 'a' to 'd'"):
        shortest_path(t, "a", "d")
    with pytest.raises(NoRoute):
        alternate_paths(t, "a", "d")


def test_alternate_paths() -> None:
    paths = alternate_paths(DIAMOND, "a", "d", k=3)
    assert [p.edge_ids for p in paths] == [("a", "b", "d"), ("a", "c", "d"), ("a", "d")]
    assert [p.cost for p in paths] == [20, 30, 50]
    assert alternate_paths(DIAMOND, "a", "d") == paths[:2]
    assert alternate_paths(DIAMOND, "a", "a") == [Path(("a",), 0.0, 0.0)]
    assert len(alternate_paths(line(Link("a", "b", 1)), "a", "b", k=5)) == 1
    with pytest.raises(ValueError, match="k must be a positive integer"):
        alternate_paths(DIAMOND, "a", "d", k=0)


def test_alternate_paths_respect_draining_rule() -> None:
    t = DIAMOND.with_edge_state("b", EdgeState.DRAINING)
    assert [p.edge_ids for p in alternate_paths(t, "a", "d", k=5)] == [("a", "c", "d"), ("a", "d")]
    assert alternate_paths(t, "b", "c", k=5)[0].edge_ids[0] == "b"


def test_default_topology_paths_are_direct() -> None:
    t = default_topology()
    assert shortest_path(t, "fra-1", "sin-1") == Path(("fra-1", "sin-1"), 156.0, 156.0)


# ---- properties -----------------------------------------------------------------


@settings(max_examples=200, deadline=None)
@given(topologies(), st.data())
def test_shortest_path_matches_brute_force_and_obeys_rules(t: Topology, data: st.DataObject) -> None:
    ids = [e.edge_id for e in t.edges]
    src = data.draw(st.sampled_from(ids))
    dst = data.draw(st.sampled_from(ids))
    best = brute_force_costs(t, src)
    if dst not in best:
        with pytest.raises(NoRoute):
            shortest_path(t, src, dst)
        return
    p = shortest_path(t, src, dst)
    assert p.edge_ids[0] == src and p.edge_ids[-1] == dst
    cost = assert_valid_path(t, p.edge_ids)
    assert p.cost == pytest.approx(cost)
    assert p.cost == pytest.approx(best[dst])
    assert p.rtt_ms == pytest.approx(sum(t.link(a, b).rtt_ms for a, b in itertools.pairwise(p.edge_ids)))


@settings(max_examples=100, deadline=None)
@given(topologies(), st.data(), st.integers(1, 4))
def test_alternate_paths_are_valid_distinct_and_ordered(t: Topology, data: st.DataObject, k: int) -> None:
    ids = [e.edge_id for e in t.edges]
    src = data.draw(st.sampled_from(ids))
    dst = data.draw(st.sampled_from(ids))
    best = brute_force_costs(t, src)
    if dst not in best:
        with pytest.raises(NoRoute):
            alternate_paths(t, src, dst, k)
        return
    paths = alternate_paths(t, src, dst, k)
    assert 1 <= len(paths) <= k
    assert len({p.edge_ids for p in paths}) == len(paths)
    assert paths[0].cost == pytest.approx(best[dst])
    for p in paths:
        assert p.edge_ids[0] == src and p.edge_ids[-1] == dst
        assert p.cost == pytest.approx(assert_valid_path(t, p.edge_ids))
    costs = [p.cost for p in paths]
    assert all(x <= y + 1e-9 for x, y in itertools.pairwise(costs))

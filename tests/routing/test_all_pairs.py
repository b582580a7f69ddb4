"""All-pairs routes: the same answers as a search per query, read from precomputed tables."""

from __future__ import annotations

import itertools

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from duet.routing.all_pairs import compute_routes
from duet.routing.next_hop import next_hop_table
from duet.routing.paths import NoRoute, build_graph, shortest_path
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


def test_world_routes_equal_a_search_per_query() -> None:
    g = build_graph(world_topology())
    routes = compute_routes(g)
    for src, dst in itertools.product(routes.edge_ids, repeat=2):
        found, searched = routes.path(src, dst), shortest_path(g, src, dst)
        assert found.cost == pytest.approx(searched.cost)
        assert found.edge_ids[0] == src and found.edge_ids[-1] == dst


def test_unknown_and_down_edges_are_refused_like_shortest_path() -> None:
    t = default_topology().with_edge_state("sin-1", EdgeState.DOWN)
    routes = compute_routes(build_graph(t))
    with pytest.raises(UnknownEdge):
        routes.path("fra-1", "atl-9")
    with pytest.raises(NoRoute, match="down"):
        routes.path("fra-1", "sin-1")
    assert routes.next_hops("sin-1") == {}


def test_an_empty_graph() -> None:
    routes = compute_routes(build_graph(Topology((), (), ())))
    assert routes.edge_ids == ()


@settings(max_examples=200, deadline=None)
@given(topologies(max_edges=7))
def test_every_pair_matches_brute_force_and_obeys_the_rules(t: Topology) -> None:
    routes = compute_routes(build_graph(t))
    for src in (e.edge_id for e in t.edges):
        best = brute_force_costs(t, src)
        for dst in (e.edge_id for e in t.edges):
            if dst not in best:
                with pytest.raises(NoRoute):
                    routes.path(src, dst)
                continue
            p = routes.path(src, dst)
            cost = assert_valid_path(t, p.edge_ids)  # no down element, no draining transit
            assert p.cost == pytest.approx(cost) == pytest.approx(best[dst])
            assert p.rtt_ms == pytest.approx(sum(t.link(a, b).rtt_ms for a, b in itertools.pairwise(p.edge_ids)))


@settings(max_examples=100, deadline=None)
@given(topologies(max_edges=7))
def test_next_hop_tables_agree_with_the_per_edge_search(t: Topology) -> None:
    g = build_graph(t)
    routes = compute_routes(g)
    for e in t.edges:
        mine, searched = routes.next_hops(e.edge_id), next_hop_table(g, e.edge_id)
        assert set(mine) == set(searched)
        for dest, entry in mine.items():
            # Equal-cost paths may differ; what must agree is the cost of the path the hop starts.
            assert entry.dest_number == searched[dest].dest_number
            path = routes.path(e.edge_id, dest)
            assert path.edge_ids[1] == entry.next_hop_edge_id
            assert entry.path_rtt_ms == pytest.approx(path.rtt_ms)


@settings(max_examples=100, deadline=None)
@given(topologies(min_edges=3, max_edges=7), st.data())
def test_removing_a_used_link_yields_the_alternate_when_one_exists(t: Topology, data: st.DataObject) -> None:
    ids = [e.edge_id for e in t.edges]
    src, dst = data.draw(st.sampled_from(ids)), data.draw(st.sampled_from(ids))
    before = brute_force_costs(t, src)
    if dst not in before or src == dst:
        return
    path = compute_routes(build_graph(t)).path(src, dst)
    a, b = path.edge_ids[0], path.edge_ids[1]
    cut = t.with_link(a, b, up=False)
    after = brute_force_costs(cut, src)
    routes = compute_routes(build_graph(cut))
    if dst in after:
        rerouted = routes.path(src, dst)
        assert (a, b) not in itertools.pairwise(rerouted.edge_ids) and (b, a) not in itertools.pairwise(
            rerouted.edge_ids
        )
        assert rerouted.cost == pytest.approx(after[dst])
    else:
        with pytest.raises(NoRoute):
            routes.path(src, dst)


def test_links_too_short_for_single_precision_still_route_without_loops() -> None:
    # In float32 a 1e-9 ms link vanishes next to 300 ms, so a and b would each see the other as
    # an equally good first hop towards j: the pass notices the loop and redoes it in float64.
    edges = tuple(EdgeNode(e, i + 1, "R", backbone_address=f"127.0.0.1:{3000 + i}") for i, e in enumerate("abj"))
    links = (Link("a", "b", 1e-9), Link("a", "j", 300.0), Link("b", "j", 300.0 + 2e-9))
    routes = compute_routes(build_graph(Topology((Region("R", 0.0, 0.0),), edges, links, 1)))
    assert routes.path("a", "j").edge_ids == ("a", "j")
    assert routes.path("b", "j").edge_ids == ("b", "a", "j")
    assert routes.path("b", "j").rtt_ms == 300.0 + 1e-9

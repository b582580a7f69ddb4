from __future__ import annotations

import pytest
from hypothesis import given, settings

from duet.routing.next_hop import NextHopEntry, next_hop_table, next_hop_tables
from duet.routing.paths import LOSS_PENALTY, build_graph, shortest_path
from duet.routing.topology import EdgeNode, EdgeState, Link, Region, Topology, UnknownEdge, world_topology
from tests.routing.strategies import assert_valid_path, brute_force_costs, topologies

R = (Region("R", 0.0, 0.0),)


def topo(*links: Link, states: dict[str, EdgeState] | None = None) -> Topology:
    ids = sorted({x for ln in links for x in (ln.a, ln.b)})
    states = states or {}
    edges = tuple(
        EdgeNode(eid, n, "R", state=states.get(eid, EdgeState.ACTIVE), backbone_address=f"10.0.0.{n}:9000")
        for n, eid in enumerate(ids, 1)
    )
    return Topology(R, edges, links)


DIAMOND = topo(Link("a", "b", 10), Link("b", "d", 10), Link("a", "d", 50), Link("a", "c", 15), Link("c", "d", 15))


def test_table_entries() -> None:
    table = next_hop_table(DIAMOND, "a")
    assert set(table) == {"b", "c", "d"}
    assert table["d"] == NextHopEntry("d", 4, "b", "10.0.0.2:9000", 20.0)
    assert table["b"] == NextHopEntry("b", 2, "b", "10.0.0.2:9000", 10.0)
    assert next_hop_table(DIAMOND, "d")["a"].next_hop_edge_id == "b"


def test_table_reports_rtt_not_cost() -> None:
    t = topo(Link("a", "b", 100, loss=0.05))
    assert next_hop_table(t, "a")["b"].path_rtt_ms == 100.0


def test_draining_destination_reachable_but_never_transit() -> None:
    t = DIAMOND.with_edge_state("b", EdgeState.DRAINING)
    table = next_hop_table(t, "a")
    assert table["b"].next_hop_edge_id == "b"
    assert table["d"].next_hop_edge_id == "c" and table["d"].path_rtt_ms == 30.0
    # A draining edge still routes its own traffic out.
    assert next_hop_table(t, "b")["c"].next_hop_edge_id in {"a", "d"}


def test_down_edge_has_no_table_and_is_no_destination() -> None:
    t = DIAMOND.with_edge_state("c", EdgeState.DOWN)
    assert next_hop_table(t, "c") == {}
    assert "c" not in next_hop_table(t, "a")
    with pytest.raises(UnknownEdge, match="unknown edge 'zz'"):
        next_hop_table(t, "zz")
    with pytest.raises(UnknownEdge):
        next_hop_table(build_graph(t).subgraph(["a", "b"]), "zz")


def test_partition_leaves_unreachable_destinations_out() -> None:
    t = topo(Link("a", "b", 1), Link("c", "d", 1))
    assert set(next_hop_table(t, "a")) == {"b"}


def test_world_tables_agree_with_shortest_path() -> None:
    t = world_topology().with_edge_addresses(
        "sin-1", control_address="c", backbone_address="203.0.113.7:9000", media_host="m"
    )
    g = build_graph(t)
    tables = next_hop_tables(g)
    assert set(tables) == {e.edge_id for e in t.edges}
    lon = tables["lon-1"]
    assert len(lon) == 12
    assert lon["syd-1"] == NextHopEntry("syd-1", 12, "sin-1", "203.0.113.7:9000", 247.0)
    for src, table in tables.items():
        for dest, entry in table.items():
            assert entry.path_rtt_ms == pytest.approx(shortest_path(g, src, dest).rtt_ms)


def test_tables_for_hundreds_of_edges() -> None:
    t = world_topology(edges_per_region=20)  # 260 edges, 33,670 links
    g = build_graph(t)
    table = next_hop_table(g, "fra-7")
    assert len(table) == 259
    assert table["fra-8"].path_rtt_ms == 1.0


# ---- properties -----------------------------------------------------------------


def follow(tables: dict[str, dict[str, NextHopEntry]], src: str, dest: str, limit: int) -> tuple[str, ...]:
    """Forward hop by hop as an edge would; fail on a loop or a missing entry."""
    path = [src]
    while path[-1] != dest:
        entry = tables[path[-1]].get(dest)
        assert entry is not None, f"{path[-1]} has no route to {dest} (path so far {path})"
        assert entry.dest_edge_id == dest
        path.append(entry.next_hop_edge_id)
        assert len(path) <= limit, f"forwarding loop: {path}"
    return tuple(path)


@settings(max_examples=150, deadline=None)
@given(topologies())
def test_hop_by_hop_forwarding_follows_least_cost_paths(t: Topology) -> None:
    g = build_graph(t)
    tables = {e.edge_id: next_hop_table(g, e.edge_id) for e in t.edges}
    max_loss = max((ln.loss for ln in t.links), default=0.0)
    for e in t.edges:
        src = e.edge_id
        best = brute_force_costs(t, src)
        assert set(tables[src]) == set(best) - {src}, "every reachable destination, nothing else"
        for dest, entry in tables[src].items():
            assert entry.dest_number == t.edge(dest).number
            assert entry.next_hop_backbone_address == t.edge(entry.next_hop_edge_id).backbone_address
            path = follow(tables, src, dest, limit=len(t.edges))
            cost = assert_valid_path(t, path)
            assert cost == pytest.approx(best[dest])
            assert cost == pytest.approx(shortest_path(g, src, dest).cost)
            # path_rtt_ms is the RTT of a least-cost path: equal to its cost without
            # loss, else within the loss penalty of it (equal-cost paths may differ in RTT).
            assert best[dest] / (1 + LOSS_PENALTY * max_loss) - 1e-9 <= entry.path_rtt_ms <= best[dest] + 1e-9
            if max_loss == 0:
                assert entry.path_rtt_ms == pytest.approx(best[dest])


@settings(max_examples=50, deadline=None)
@given(topologies())
def test_next_hop_tables_equal_per_edge_tables(t: Topology) -> None:
    tables = next_hop_tables(t)
    up = {e.edge_id for e in t.edges if e.state is not EdgeState.DOWN}
    assert set(tables) == up
    for eid in up:
        assert tables[eid] == next_hop_table(t, eid)

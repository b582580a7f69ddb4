"""Next-hop deltas: applied to the table before a change, they give the table after it, entry for entry."""

from __future__ import annotations

from hypothesis import given, settings
from hypothesis import strategies as st

from duet.routing.all_pairs import AllPairsRoutes, compute_routes, entries_of
from duet.routing.next_hop import NextHopEntry
from duet.routing.next_hop_delta import next_hop_delta
from duet.routing.paths import build_graph
from duet.routing.topology import EdgeNode, EdgeState, Link, Region, Topology
from tests.routing.strategies import STATES, topologies


def routes(t: Topology) -> AllPairsRoutes:
    return compute_routes(build_graph(t))


def applied(before: AllPairsRoutes, after: AllPairsRoutes, edge_id: str) -> dict[str, NextHopEntry]:
    delta = next_hop_delta(before, after, edge_id)
    table = before.next_hops(edge_id)
    for dest in delta.removed:
        del table[dest]  # KeyError: a removal of something the table does not hold
    table.update(entries_of(after.columns(delta.changed)))
    assert len(table) == delta.table_size
    return table


@st.composite
def changed(draw: st.DrawFn, t: Topology) -> Topology:
    """``t`` after one to three random changes of the kinds the routing service sees."""
    for _ in range(draw(st.integers(1, 3))):
        kind = draw(st.sampled_from(["link", "rtt", "state", "address"]))
        if kind in ("link", "rtt") and t.links:
            ln = draw(st.sampled_from(t.links))
            if kind == "link":
                t = t.with_link(ln.a, ln.b, up=not ln.up)
            else:
                t = t.with_link(ln.a, ln.b, rtt_ms=ln.rtt_ms * draw(st.sampled_from([0.5, 1.02, 3.0])))
        elif kind == "state":
            t = t.with_edge_state(draw(st.sampled_from(t.edges)).edge_id, draw(STATES))
        else:
            e = draw(st.sampled_from(t.edges))
            t = t.with_edge_addresses(
                e.edge_id, control_address="127.0.0.1:1", backbone_address="127.0.0.1:2", media_host="127.0.0.1"
            )
    return t


@settings(max_examples=300, deadline=None)
@given(st.data())
def test_a_delta_applied_to_the_old_table_is_the_new_table(data: st.DataObject) -> None:
    t = data.draw(topologies(max_edges=7))
    later = data.draw(changed(t))
    before, after = routes(t), routes(later)
    for e in t.edges:
        assert applied(before, after, e.edge_id) == after.next_hops(e.edge_id)


@settings(max_examples=100, deadline=None)
@given(topologies(max_edges=7))
def test_no_change_is_an_empty_delta(t: Topology) -> None:
    before, after = routes(t), routes(t.with_version(t.version + 1))
    for e in t.edges:
        assert next_hop_delta(before, after, e.edge_id).empty


def test_a_failed_link_sends_only_the_destinations_it_reroutes() -> None:
    # a - b - c in a line, plus a slower a - c: failing b - c moves only a's route to c.
    region = Region("R", 0.0, 0.0)
    edges = tuple(EdgeNode(e, i + 1, "R", backbone_address=f"127.0.0.1:{3000 + i}") for i, e in enumerate("abcd"))
    links = (Link("a", "b", 10.0), Link("b", "c", 10.0), Link("a", "c", 50.0), Link("a", "d", 5.0))
    t = Topology((region,), edges, links, 1)
    before, after = routes(t), routes(t.with_link("b", "c", up=False))
    delta = next_hop_delta(before, after, "a")
    assert after.ids[delta.changed.dests].tolist() == ["c"]
    assert after.ids[delta.changed.hops].tolist() == ["c"]
    assert delta.removed == () and delta.table_size == 3
    assert next_hop_delta(before, after, "d").changed.path_rtt_ms.tolist() == [55.0]  # d -> a -> c now
    # an edge that goes down leaves every table it was in, and its own table empties
    down = routes(t.with_edge_state("d", EdgeState.DOWN))
    assert next_hop_delta(before, down, "a").removed == ("d",)
    assert set(next_hop_delta(before, down, "d").removed) == {"a", "b", "c"}

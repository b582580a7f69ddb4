"""Route tables assembled as wire bytes are exactly the messages built field by field."""

from __future__ import annotations

import itertools

from hypothesis import given, settings
from hypothesis import strategies as st

from duet.routing.all_pairs import AllPairsRoutes, compute_routes
from duet.routing.next_hop_delta import next_hop_delta
from duet.routing.paths import build_graph
from duet.routing.topology import EdgeNode, Link, Region, Topology
from duet.services.routing_server.route_table_wire import RouteTableEncoder
from duet.v1 import routing_pb2
from tests.routing.strategies import topologies


def by_fields(routes: AllPairsRoutes, edge_id: str, version: int) -> routing_pb2.RouteTable:
    c = routes.next_hop_columns(edge_id)
    return routing_pb2.RouteTable(
        edge_id=edge_id,
        version=version,
        table_size=len(c.dest_edge_ids),
        entries=[
            routing_pb2.NextHop(
                dest_edge_id=d, dest_number=n, next_hop_edge_id=h, next_hop_backbone_address=a, path_rtt_ms=r
            )
            for d, n, h, a, r in zip(
                c.dest_edge_ids,
                c.dest_numbers,
                c.next_hop_edge_ids,
                c.next_hop_backbone_addresses,
                c.path_rtt_ms,
                strict=True,
            )
        ],
    )


@settings(max_examples=150, deadline=None)
@given(topologies(max_edges=7), st.integers(0, 2**64 - 1))
def test_whole_tables_equal_the_messages_built_field_by_field(t: Topology, version: int) -> None:
    routes = compute_routes(build_graph(t))
    encoder = RouteTableEncoder()
    for e in t.edges:
        rows = routes.next_hop_rows(e.edge_id)
        built = encoder.table(routes, e.edge_id, version, rows, table_size=len(rows))
        assert built == by_fields(routes, e.edge_id, version)


# Ids and addresses of any length and alphabet (lengths past 127 bytes take two-byte varints).
names = st.text(
    st.characters(codec="utf-8", exclude_categories=("Cs", "Zs", "Zl", "Zp", "Cc")), min_size=1, max_size=90
)


@settings(max_examples=100, deadline=None)
@given(
    st.lists(names, min_size=2, max_size=5, unique=True),
    st.lists(st.integers(1, 65535), min_size=5, max_size=5, unique=True),
    st.lists(st.text(max_size=200), min_size=5, max_size=5),
    st.lists(st.floats(1e-6, 1e6, allow_nan=False), min_size=10, max_size=10),
)
def test_any_ids_numbers_addresses_and_rtts(
    ids: list[str], numbers: list[int], addresses: list[str], rtts: list[float]
) -> None:
    edges = tuple(
        EdgeNode(e, numbers[i], "R", backbone_address=addresses[i], control_address="x") for i, e in enumerate(ids)
    )
    links = tuple(Link(a.edge_id, b.edge_id, rtts[i]) for i, (a, b) in enumerate(itertools.pairwise(edges)))
    routes = compute_routes(build_graph(Topology((Region("R", 0.0, 0.0),), edges, links, 1)))
    for e in ids:
        rows = routes.next_hop_rows(e)
        assert RouteTableEncoder().table(routes, e, 7, rows, table_size=len(rows)) == by_fields(routes, e, 7)


def test_a_delta_carries_its_entries_removals_and_size() -> None:
    region = Region("R", 0.0, 0.0)
    edges = tuple(EdgeNode(e, i + 1, "R", backbone_address=f"127.0.0.1:{3000 + i}") for i, e in enumerate("abcd"))
    t = Topology((region,), edges, (Link("a", "b", 10.0), Link("b", "c", 10.0), Link("c", "d", 10.0)), 1)
    before, after = compute_routes(build_graph(t)), compute_routes(build_graph(t.with_link("b", "c", up=False)))
    delta = next_hop_delta(before, after, "a")
    table = RouteTableEncoder().table(
        after, "a", 2, delta.changed, delta=True, removed=delta.removed, table_size=delta.table_size
    )
    assert table == routing_pb2.RouteTable(
        edge_id="a", version=2, delta=True, removed_dest_edge_ids=["c", "d"], table_size=1
    )

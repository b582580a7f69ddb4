"""Route tables from the routing service become the edge's next-hop entries."""

from __future__ import annotations

from duet.services.edge_server.route_watch import route_entries
from duet.v1 import routing_pb2


def test_a_malformed_entry_is_skipped_not_the_table() -> None:
    table = routing_pb2.RouteTable(
        edge_id="fra-1",
        version=7,
        entries=[
            routing_pb2.NextHop(
                dest_edge_id="vir-1",
                dest_number=2,
                next_hop_edge_id="vir-1",
                next_hop_backbone_address="127.0.0.1:4000",
                path_rtt_ms=89,
            ),
            routing_pb2.NextHop(
                dest_edge_id="sin-1",
                dest_number=3,
                next_hop_edge_id="sin-1",
                next_hop_backbone_address="127.0.0.1:99999",
                path_rtt_ms=150,
            ),
            routing_pb2.NextHop(
                dest_edge_id="syd-1",
                dest_number=4,
                next_hop_edge_id="syd-1",
                next_hop_backbone_address="",
                path_rtt_ms=250,
            ),
        ],
    )
    entries = route_entries(table)
    assert [(e.dest_edge_id, e.next_hop_address) for e in entries] == [("vir-1", ("127.0.0.1", 4000))]

"""An edge's WatchRoutes stream applied to its relay: the whole table first, then deltas.

The edge asks for deltas (``WatchRoutesRequest.deltas``): after the first
message, which is the whole table, each message holds only the entries that
changed and the destinations removed. A delta means something only on top of
the table the same stream built, so a ``RouteStream`` lives exactly as long
as one stream: after a reconnect a new one waits for the whole table again.
A delta it cannot place (one before any whole table, a removal of a
destination it never heard of, a size that does not add up) is never
applied: the stream is dropped and watched again.
"""

from __future__ import annotations

import logging

from duet.edge.backbone import Address, RouteEntry, parse_address
from duet.edge.relay import EdgeRelay
from duet.v1 import routing_pb2

__all__ = ["RouteStream", "RouteStreamBroken", "route_entries"]

logger = logging.getLogger("duet.edge.server")


class RouteStreamBroken(Exception):
    """The stream sent a delta this edge cannot place: watch again for the whole table."""


def route_entries(table: routing_pb2.RouteTable, addresses: dict[str, Address] | None = None) -> list[RouteEntry]:
    """The table's usable entries; one malformed entry is skipped (and logged), not the whole table.

    ``addresses``: next-hop addresses parsed before, reused (a table names each neighbour
    hundreds of times); new ones are added to it.
    """
    parsed = {} if addresses is None else addresses
    entries = []
    for e in table.entries:
        text = e.next_hop_backbone_address
        if not text:
            continue  # next hop not registered yet
        address = parsed.get(text)
        if address is None:
            try:
                address = parsed[text] = parse_address(text)
            except ValueError as exc:
                logger.warning("route table v%d: skipping the route to %s: %s", table.version, e.dest_edge_id, exc)
                continue
        entries.append(RouteEntry(e.dest_edge_id, e.dest_number, e.next_hop_edge_id, address, e.path_rtt_ms))
    return entries


class RouteStream:
    """The table one WatchRoutes stream has built so far, applied to ``node`` message by message."""

    def __init__(self, node: EdgeRelay) -> None:
        self.node = node
        # The destinations the routing service's table holds, usable here or not; None until
        # the stream's whole table arrives.
        self.dests: set[str] | None = None
        self.addresses: dict[str, Address] = {}

    def apply(self, table: routing_pb2.RouteTable) -> None:
        """Apply one message of the stream; raises ``RouteStreamBroken`` (applying nothing) for a
        delta that does not fit the table this stream built."""
        if not table.delta:
            self.node.set_routes(table.version, route_entries(table, self.addresses))
            self.dests = {e.dest_edge_id for e in table.entries}
            return
        if self.dests is None:
            raise RouteStreamBroken("a route delta arrived before the whole table on this stream")
        unknown = [d for d in table.removed_dest_edge_ids if d not in self.dests]
        if unknown:
            raise RouteStreamBroken(f"a route delta removes destinations this edge never had: {', '.join(unknown)}")
        dests = self.dests.difference(table.removed_dest_edge_ids)
        dests.update(e.dest_edge_id for e in table.entries)
        if len(dests) != table.table_size:
            raise RouteStreamBroken(
                f"after the route delta of v{table.version} this edge would hold {len(dests)} destinations, "
                f"the routing service holds {table.table_size}"
            )
        usable = route_entries(table, self.addresses)
        # A changed entry that is not usable here (next hop unregistered, bad address) must not
        # leave the old entry in place either.
        unusable = {e.dest_edge_id for e in table.entries}.difference(e.dest_edge_id for e in usable)
        self.node.update_routes(table.version, usable, [*table.removed_dest_edge_ids, *unusable])
        self.dests = dests

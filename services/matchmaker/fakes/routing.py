"""A routing service over a fixed list of edges, in memory."""

from __future__ import annotations

import asyncio
import ipaddress
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field

from duet.services.matchmaker.ports import (
    EdgeInfo,
    EdgeState,
    Ingress,
    PeerInvalidRequest,
    PeerNotFound,
    PeerNotReady,
    PeerUnavailable,
    Route,
    RoutingService,
)


@dataclass
class FakeRouting(RoutingService):
    """Ingress by client-IP prefix, and a direct route between any two of its edges.

    A client goes to the edge its IP's prefix names in ``ingress_by_prefix``,
    else to the first active edge; draining and down edges take no clients,
    as in the real service. Every call yields to the event loop once, as a
    round trip would.
    """

    edges: Sequence[EdgeInfo]
    ingress_by_prefix: Mapping[str, str] = field(default_factory=dict)  # client IP prefix -> edge id
    route_rtt_ms: float = 80.0
    # Injected failures: the whole service unreachable; pairs of edges no path joins.
    down: bool = False
    cut: set[frozenset[str]] = field(default_factory=set)
    # What was asked, in order.
    ingress_asked: list[str] = field(default_factory=list)
    routes_asked: list[tuple[str, str]] = field(default_factory=list)

    def edge(self, edge_id: str) -> EdgeInfo:
        for e in self.edges:
            if e.edge_id == edge_id:
                return e
        raise PeerNotFound(f"edge '{edge_id}' is not in the topology")

    async def pick_ingress(self, client_ip: str) -> Ingress:
        await asyncio.sleep(0)
        self.ingress_asked.append(client_ip)
        if self.down:
            raise PeerUnavailable("the routing service is unreachable")
        try:
            ipaddress.ip_address(client_ip)
        except ValueError:
            raise PeerInvalidRequest(f"client_ip '{client_ip}' is not an IP address") from None
        active = [e for e in self.edges if e.state is EdgeState.ACTIVE]
        for prefix, edge_id in self.ingress_by_prefix.items():
            if client_ip.startswith(prefix):
                chosen = self.edge(edge_id)
                if chosen in active:
                    return Ingress(edge=chosen, reason=f"prefix {prefix}")
        if not active:
            raise PeerUnavailable("no edge is taking new clients")
        return Ingress(edge=active[0], reason="first active edge")

    async def pick_route(self, from_edge_id: str, to_edge_id: str) -> Route:
        await asyncio.sleep(0)
        self.routes_asked.append((from_edge_id, to_edge_id))
        if self.down:
            raise PeerUnavailable("the routing service is unreachable")
        self.edge(from_edge_id)
        self.edge(to_edge_id)
        if from_edge_id == to_edge_id:
            return Route(path=(from_edge_id,), rtt_ms=0.0)
        if frozenset((from_edge_id, to_edge_id)) in self.cut:
            raise PeerNotReady(f"no route from '{from_edge_id}' to '{to_edge_id}'")
        return Route(path=(from_edge_id, to_edge_id), rtt_ms=self.route_rtt_ms)

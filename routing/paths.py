"""Backbone path choice: least-cost paths over the latency-weighted edge graph.

Graph: one node per edge that is not DOWN, one graph edge per link that is up.
Each link costs ``rtt_ms x (1 + 10 x loss)``: loss on a media path costs
retransmissions (a NACK round trip) and visible artefacts, so 1 % loss makes a
link look 10 % longer and a 5 % lossy link must be 1.5x shorter to win.

Draining rule: a DRAINING edge keeps terminating its own calls, so it may be
the first or last edge of a path, but it is never a transit hop (that is what
lets ops empty it). DOWN edges and down links are not in the graph at all.
"""

from __future__ import annotations

import itertools
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any, cast

import networkx as nx

from duet.routing.topology import EdgeState, Topology, UnknownEdge

LOSS_PENALTY = 10.0  # cost multiplier added per unit of loss fraction

__all__ = [
    "LOSS_PENALTY",
    "NoRoute",
    "Path",
    "alternate_paths",
    "build_graph",
    "link_cost",
    "path_of",
    "shortest_path",
]


class NoRoute(RuntimeError):
    """No usable path between two edges."""


@dataclass(frozen=True)
class Path:
    edge_ids: tuple[str, ...]  # source first, destination last
    rtt_ms: float  # sum of link RTTs along the path
    cost: float  # sum of link costs (RTT with loss penalty): what was minimised

    @property
    def hops(self) -> int:
        return len(self.edge_ids) - 1


def link_cost(rtt_ms: float, loss: float) -> float:
    return rtt_ms * (1.0 + LOSS_PENALTY * loss)


def build_graph(topology: Topology, *, require_registered: bool = False) -> nx.Graph[str]:
    """The routing graph of a topology.

    Node attributes: ``edge`` (the EdgeNode) and ``transit`` (may forward
    others' traffic: only ACTIVE edges). Link attributes: ``rtt_ms``, ``loss``,
    ``cost``. ``graph.graph["topology"]`` keeps the source topology so errors
    can tell an unknown edge from a down one. With ``require_registered``,
    edges that have not registered their addresses are left out too (nothing
    could be forwarded to them).
    """
    g: nx.Graph[str] = nx.Graph(topology=topology, version=topology.version)
    for e in topology.edges:
        if e.state is EdgeState.DOWN or (require_registered and not e.registered):
            continue
        g.add_node(e.edge_id, edge=e, transit=e.state is EdgeState.ACTIVE)
    for ln in topology.links:
        if ln.up and ln.a in g and ln.b in g:
            g.add_edge(ln.a, ln.b, rtt_ms=ln.rtt_ms, loss=ln.loss, cost=link_cost(ln.rtt_ms, ln.loss))
    return g


def as_graph(topology_or_graph: Topology | nx.Graph[str]) -> nx.Graph[str]:
    if isinstance(topology_or_graph, Topology):
        return build_graph(topology_or_graph)
    return topology_or_graph


def transit_weight(g: nx.Graph[str], source: str) -> Callable[[str, str, dict[str, Any]], float | None]:
    """Dijkstra weight that hides every way out of a non-transit node except the source.

    networkx calls ``weight(u, v, data)`` when it relaxes from ``u`` (the node
    being expanded) to ``v``, so a draining node can still be reached (as a
    destination) but never expanded (used as transit).
    """
    transit = {n: d.get("transit", True) for n, d in g.nodes(data=True)}

    def weight(u: str, v: str, data: dict[str, Any]) -> float | None:
        return data["cost"] if u == source or transit[u] else None

    return weight


def check_endpoint(g: nx.Graph[str], edge_id: str) -> None:
    """Raise ``UnknownEdge`` for an edge the topology lacks, ``NoRoute`` if it is out of the graph."""
    if edge_id in g:
        return
    topology: Topology | None = g.graph.get("topology")
    if topology is not None:
        edge = topology.edge(edge_id)  # raises UnknownEdge
        if edge.state is EdgeState.DOWN:
            raise NoRoute(f"edge {edge_id!r} is down")
        raise NoRoute(f"edge {edge_id!r} has not registered its addresses")
    raise UnknownEdge(edge_id)


def path_of(g: nx.Graph[str], edge_ids: Sequence[str]) -> Path:
    """A ``Path`` with RTT and cost summed over consecutive links of the graph."""
    rtt = cost = 0.0
    for a, b in itertools.pairwise(edge_ids):
        data = g.edges[a, b]
        rtt += data["rtt_ms"]
        cost += data["cost"]
    return Path(tuple(edge_ids), rtt, cost)


def shortest_path(topology_or_graph: Topology | nx.Graph[str], src: str, dst: str) -> Path:
    """The least-cost path from ``src`` to ``dst`` (Dijkstra over link costs).

    Raises ``UnknownEdge`` for an undeclared edge and ``NoRoute`` when an
    endpoint is down or nothing connects them without transiting a draining
    or down edge or a down link.
    """
    g = as_graph(topology_or_graph)
    check_endpoint(g, src)
    check_endpoint(g, dst)
    if src == dst:
        return Path((src,), 0.0, 0.0)
    try:
        _, found = nx.single_source_dijkstra(g, src, dst, weight=transit_weight(g, src))
        nodes = cast(list[str], found)
    except nx.NetworkXNoPath:
        raise NoRoute(
            f"no route from {src!r} to {dst!r}: no chain of up links through active edges connects them"
        ) from None
    return path_of(g, nodes)


def _transit_view(g: nx.Graph[str], src: str, dst: str) -> nx.Graph[str]:
    # A simple path visits src and dst only at its ends, so keeping them and
    # dropping every other non-transit node enforces the draining rule.
    return nx.subgraph_view(g, filter_node=lambda n: n in (src, dst) or g.nodes[n].get("transit", True))


def alternate_paths(topology_or_graph: Topology | nx.Graph[str], src: str, dst: str, k: int = 2) -> list[Path]:
    """Up to ``k`` least-cost simple paths, best first (the first is ``shortest_path``'s cost).

    These are the k shortest simple paths (Yen's algorithm): kept for instant
    failover, so the second usually differs from the first by at least one link,
    but they may share links. Raises like ``shortest_path``.
    """
    if not isinstance(k, int) or k < 1:
        raise ValueError(f"k must be a positive integer, got {k!r}")
    g = as_graph(topology_or_graph)
    check_endpoint(g, src)
    check_endpoint(g, dst)
    if src == dst:
        return [Path((src,), 0.0, 0.0)]
    view = _transit_view(g, src, dst)
    try:
        found = list(itertools.islice(nx.shortest_simple_paths(view, src, dst, weight="cost"), k))
    except nx.NetworkXNoPath:
        raise NoRoute(
            f"no route from {src!r} to {dst!r}: no chain of up links through active edges connects them"
        ) from None
    return [path_of(g, nodes) for nodes in found]

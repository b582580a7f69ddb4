"""Next-hop tables: what each edge needs to forward backbone packets hop by hop.

An edge's table maps every reachable destination edge to the first hop of a
least-cost path (same graph, costs and draining rule as ``duet.routing.paths``).
One single-source Dijkstra per table, so a table for hundreds of edges costs
one graph search, not one search per destination.

Why hop-by-hop forwarding on these tables follows least-cost paths: if the
best path from s to d is s, a, ..., d, then a's own best cost to d equals the
rest of that path (otherwise s could do better via a), and every link costs
more than zero (the topology requires rtt_ms > 0), so each hop strictly
lowers the remaining cost and packets can never loop.
"""

from __future__ import annotations

import itertools
from dataclasses import dataclass
from typing import cast

import networkx as nx

from duet.routing.paths import as_graph, transit_weight
from duet.routing.topology import Topology, UnknownEdge

__all__ = ["NextHopEntry", "next_hop_table", "next_hop_tables"]


@dataclass(frozen=True)
class NextHopEntry:
    dest_edge_id: str
    dest_number: int
    next_hop_edge_id: str
    next_hop_backbone_address: str  # "" until the next hop has registered
    path_rtt_ms: float  # sum of link RTTs along the whole least-cost path


def _table(g: nx.Graph[str], edge_id: str) -> dict[str, NextHopEntry]:
    _, found = nx.single_source_dijkstra(g, edge_id, weight=transit_weight(g, edge_id))
    paths = cast(dict[str, list[str]], found)
    table: dict[str, NextHopEntry] = {}
    for dest, nodes in paths.items():
        if dest == edge_id:
            continue
        rtt = sum(g.edges[a, b]["rtt_ms"] for a, b in itertools.pairwise(nodes))
        hop = g.nodes[nodes[1]]["edge"]
        table[dest] = NextHopEntry(
            dest_edge_id=dest,
            dest_number=g.nodes[dest]["edge"].number,
            next_hop_edge_id=hop.edge_id,
            next_hop_backbone_address=hop.backbone_address,
            path_rtt_ms=rtt,
        )
    return table


def next_hop_table(topology_or_graph: Topology | nx.Graph[str], edge_id: str) -> dict[str, NextHopEntry]:
    """Next hops from ``edge_id`` to every destination it can reach, by destination id.

    A down edge (not in the graph) gets an empty table; an undeclared one
    raises ``UnknownEdge``. Pass a graph from ``build_graph`` to build many
    tables from one graph.
    """
    g = as_graph(topology_or_graph)
    if edge_id not in g:
        topology: Topology | None = g.graph.get("topology")
        if topology is None or topology.find_edge(edge_id) is None:
            raise UnknownEdge(edge_id)
        return {}  # declared but down (or unregistered): it forwards nothing
    return _table(g, edge_id)


def next_hop_tables(topology_or_graph: Topology | nx.Graph[str]) -> dict[str, dict[str, NextHopEntry]]:
    """Tables for every edge in the graph (edges that are down get none)."""
    g = as_graph(topology_or_graph)
    return {edge_id: _table(g, edge_id) for edge_id in g.nodes}

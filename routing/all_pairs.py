"""All-pairs least-cost routes, computed once per topology version and then read in microseconds.

The routing service answers ``PickRoute`` on the hot path of every match and
hands every edge a next-hop table on every change. A Dijkstra per query costs
milliseconds on a few hundred edges; one all-pairs pass per topology change
costs about as much as a hundred queries and makes every later answer a
table lookup. (Measured by ``make bench-route``; see docs/benchmarks.md.)

The pass is Floyd-Warshall over numpy matrices with the same rules as
``duet.routing.paths``: link cost ``rtt x (1 + 10 x loss)``, DOWN edges and
down links absent from the graph, and a DRAINING edge never transit: only
transit nodes are ever used as the intermediate ``k``, which is exactly the
rule that a path may start or end at a draining edge but not pass through it.
``first_hop[i, j]`` is the first hop of a least-cost path from ``i`` to ``j``;
following it hop by hop reproduces that path (a least-cost path's tail is a
least-cost path), and because every link costs more than zero it cannot loop.
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import cached_property

import networkx as nx
import numpy as np
import numpy.typing as npt

from duet.routing.next_hop import NextHopEntry
from duet.routing.paths import NoRoute, Path, check_endpoint

__all__ = ["AllPairsRoutes", "NextHopColumns", "compute_routes"]

NO_HOP = -1


@dataclass(frozen=True, eq=False)
class AllPairsRoutes:
    """Least-cost routes between every two edges of one routing graph (immutable)."""

    graph: nx.Graph[str]
    edge_ids: tuple[str, ...]
    index: dict[str, int]
    cost: npt.NDArray[np.float64]  # n x n, inf where unreachable
    rtt_ms: npt.NDArray[np.float64]  # n x n, RTT summed along the path first_hop describes
    first_hop: npt.NDArray[np.int32]  # n x n, NO_HOP where unreachable; i on the diagonal

    def path(self, src: str, dst: str) -> Path:
        """The least-cost path from ``src`` to ``dst``; raises like ``paths.shortest_path``."""
        check_endpoint(self.graph, src)
        check_endpoint(self.graph, dst)
        i, j = self.index[src], self.index[dst]
        if self.first_hop[i, j] == NO_HOP:
            raise NoRoute(f"no route from {src!r} to {dst!r}: no chain of up links through active edges connects them")
        nodes = [src]
        at = i
        while at != j:
            at = int(self.first_hop[at, j])
            nodes.append(self.edge_ids[at])
        return Path(tuple(nodes), float(self.rtt_ms[i, j]), float(self.cost[i, j]))

    def next_hop_columns(self, edge_id: str) -> NextHopColumns:
        """``edge_id``'s next-hop table as columns (what a server turns into messages, with no
        object per entry in between); empty when the edge is out of the graph."""
        i = self.index.get(edge_id)
        if i is None:
            return NextHopColumns([], [], [], [], [])
        hops = self.first_hop[i]
        dests = np.flatnonzero((hops != NO_HOP) & (np.arange(len(hops)) != i))
        via = hops[dests]
        return NextHopColumns(
            dest_edge_ids=self._ids[dests].tolist(),
            dest_numbers=self._numbers[dests].tolist(),
            next_hop_edge_ids=self._ids[via].tolist(),
            next_hop_backbone_addresses=self._addresses[via].tolist(),
            path_rtt_ms=self.rtt_ms[i, dests].tolist(),
        )

    def next_hops(self, edge_id: str) -> dict[str, NextHopEntry]:
        """``edge_id``'s next-hop table (as ``next_hop.next_hop_table``); empty when it is out of the graph."""
        c = self.next_hop_columns(edge_id)
        return {
            dest: NextHopEntry(dest, number, hop, address, rtt)
            for dest, number, hop, address, rtt in zip(
                c.dest_edge_ids,
                c.dest_numbers,
                c.next_hop_edge_ids,
                c.next_hop_backbone_addresses,
                c.path_rtt_ms,
                strict=True,
            )
        }

    @cached_property
    def _ids(self) -> npt.NDArray[np.object_]:
        return np.array(self.edge_ids, dtype=object)

    @cached_property
    def _numbers(self) -> npt.NDArray[np.int64]:
        return np.array([self.graph.nodes[e]["edge"].number for e in self.edge_ids], dtype=np.int64)

    @cached_property
    def _addresses(self) -> npt.NDArray[np.object_]:
        return np.array([self.graph.nodes[e]["edge"].backbone_address for e in self.edge_ids], dtype=object)


@dataclass(frozen=True)
class NextHopColumns:
    """One edge's next-hop table, one list per field, entry k across all five."""

    dest_edge_ids: list[str]
    dest_numbers: list[int]
    next_hop_edge_ids: list[str]
    next_hop_backbone_addresses: list[str]
    path_rtt_ms: list[float]


def compute_routes(g: nx.Graph[str]) -> AllPairsRoutes:
    """All-pairs routes over a graph from ``paths.build_graph`` (O(n^3), vectorised)."""
    edge_ids = tuple(sorted(g.nodes))
    index = {e: i for i, e in enumerate(edge_ids)}
    n = len(edge_ids)
    cost = np.full((n, n), np.inf)
    link_rtt = np.full((n, n), np.inf)
    first_hop = np.full((n, n), NO_HOP, dtype=np.int32)
    diagonal = np.arange(n)
    cost[diagonal, diagonal] = 0.0
    first_hop[diagonal, diagonal] = diagonal
    for a, b, data in g.edges(data=True):
        i, j = index[a], index[b]
        cost[i, j] = cost[j, i] = data["cost"]
        link_rtt[i, j] = link_rtt[j, i] = data["rtt_ms"]
        first_hop[i, j], first_hop[j, i] = j, i
    candidate = np.empty_like(cost)
    better = np.empty((n, n), dtype=bool)
    for k in range(n):
        if not g.nodes[edge_ids[k]].get("transit", True):
            continue
        np.add(cost[:, k, None], cost[None, k, :], out=candidate)
        np.less(candidate, cost, out=better)
        np.copyto(cost, candidate, where=better)
        np.copyto(first_hop, np.broadcast_to(first_hop[:, k, None], (n, n)), where=better)
    return AllPairsRoutes(g, edge_ids, index, cost, _rtt_along(first_hop, link_rtt), first_hop)


def _rtt_along(first_hop: npt.NDArray[np.int32], link_rtt: npt.NDArray[np.float64]) -> npt.NDArray[np.float64]:
    """RTT summed along the very paths ``first_hop`` describes.

    rtt[i, j] = link_rtt[i, h] + rtt[h, j] with h = first_hop[i, j]; each sweep
    fixes the pairs one hop further apart, so it settles within the longest
    path's hop count.
    """
    n = first_hop.shape[0]
    reachable = first_hop != NO_HOP
    hop = np.where(reachable, first_hop, np.arange(n)[:, None])
    rows = np.arange(n)[:, None]
    cols = np.arange(n)[None, :]
    first_link = np.where(reachable, link_rtt[rows, hop], np.inf)
    np.fill_diagonal(first_link, 0.0)
    rtt = np.where(hop == cols, first_link, np.inf)  # direct hops and the diagonal are known
    for _ in range(n):
        updated = np.where(hop == cols, rtt, first_link + rtt[hop, cols])
        if np.array_equal(updated, rtt):
            break
        rtt = updated
    rtt[~reachable] = np.inf
    return rtt

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
It computes costs only, in float32 (half the memory traffic of float64); the
first hops are then read off the costs: ``first_hop[i, j]`` is the neighbour
``u`` of ``i`` minimising ``cost(i, u) + cost[u, j]``, the first hop of a
least-cost path; following it hop by hop reproduces that path (a least-cost
path's tail is a least-cost path), and because every link costs more than
zero it cannot loop. RTT and cost are then summed in float64 along the very
paths the hops describe. Should single precision be too coarse to tell a
link from rounding (a link far shorter than the paths around it), the hops
would loop; the summing notices and the pass is redone in float64. Between
paths whose costs differ by less than float32's resolution (~1e-4 ms at
1,000 ms) either may be chosen.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from functools import cached_property

import networkx as nx
import numpy as np
import numpy.typing as npt

from duet.routing.next_hop import NextHopEntry
from duet.routing.paths import NoRoute, Path, check_endpoint

__all__ = [
    "AllPairsRoutes",
    "IndexMap",
    "LinkArrays",
    "NextHopColumns",
    "NextHopRows",
    "compute_routes",
    "entries_of",
    "first_hops",
    "least_costs",
    "resum_along",
    "sums_along",
]

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
    links: LinkArrays  # the graph's links, by edge index
    transit: npt.NDArray[np.bool_]  # by edge index: may carry others' traffic
    _last_map: list[tuple[AllPairsRoutes, IndexMap]] = field(default_factory=list, init=False, repr=False)

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
            if len(nodes) > len(self.edge_ids):  # never: the hops are checked loop-free when computed
                raise RuntimeError(f"next hops from {src!r} to {dst!r} loop: {' > '.join(nodes)}")
        return Path(tuple(nodes), float(self.rtt_ms[i, j]), float(self.cost[i, j]))

    def next_hop_rows(self, edge_id: str) -> NextHopRows:
        """``edge_id``'s next-hop table as index arrays (destination, next hop) and path RTTs;
        empty when the edge is out of the graph."""
        i = self.index.get(edge_id)
        if i is None:
            return NextHopRows(np.zeros(0, dtype=np.intp), np.zeros(0, dtype=np.intp), np.zeros(0))
        hops = self.first_hop[i]
        dests = np.flatnonzero((hops != NO_HOP) & (np.arange(len(hops)) != i))
        return NextHopRows(dests, hops[dests].astype(np.intp), self.rtt_ms[i, dests])

    def columns(self, rows: NextHopRows) -> NextHopColumns:
        """Rows of this route set's tables as columns of ids, numbers and addresses."""
        return NextHopColumns(
            dest_edge_ids=self.ids[rows.dests].tolist(),
            dest_numbers=self.numbers[rows.dests].tolist(),
            next_hop_edge_ids=self.ids[rows.hops].tolist(),
            next_hop_backbone_addresses=self.backbone_addresses[rows.hops].tolist(),
            path_rtt_ms=rows.path_rtt_ms.tolist(),
        )

    def next_hop_columns(self, edge_id: str) -> NextHopColumns:
        """``edge_id``'s next-hop table as columns (what a server turns into messages, with no
        object per entry in between); empty when the edge is out of the graph."""
        return self.columns(self.next_hop_rows(edge_id))

    def next_hops(self, edge_id: str) -> dict[str, NextHopEntry]:
        """``edge_id``'s next-hop table (as ``next_hop.next_hop_table``); empty when it is out of the graph."""
        return entries_of(self.next_hop_columns(edge_id))

    def indices_from(self, before: AllPairsRoutes) -> IndexMap:
        """How ``before``'s edge indices map onto these (kept for the last ``before``: every
        route watcher asks about the same pair after a change)."""
        if self._last_map and self._last_map[0][0] is before:
            return self._last_map[0][1]
        found = IndexMap.between(before, self)
        self._last_map[:] = [(before, found)]
        return found

    @cached_property
    def ids(self) -> npt.NDArray[np.object_]:
        """``edge_ids`` as an array, to index with arrays of edge indices."""
        return np.array(self.edge_ids, dtype=object)

    @cached_property
    def numbers(self) -> npt.NDArray[np.int64]:
        """Each edge's backbone number, by edge index."""
        return np.array([self.graph.nodes[e]["edge"].number for e in self.edge_ids], dtype=np.int64)

    @cached_property
    def backbone_addresses(self) -> npt.NDArray[np.object_]:
        """Each edge's backbone address ("" until it registers), by edge index."""
        return np.array([self.graph.nodes[e]["edge"].backbone_address for e in self.edge_ids], dtype=object)


@dataclass(frozen=True, eq=False)
class NextHopRows:
    """Entries of one edge's next-hop table, as indices into its route set's ``edge_ids``."""

    dests: npt.NDArray[np.intp]
    hops: npt.NDArray[np.intp]
    path_rtt_ms: npt.NDArray[np.float64]

    def __len__(self) -> int:
        return len(self.dests)

    def take(self, which: npt.NDArray[np.bool_] | npt.NDArray[np.intp]) -> NextHopRows:
        """The entries ``which`` selects (a mask or positions)."""
        return NextHopRows(self.dests[which], self.hops[which], self.path_rtt_ms[which])


@dataclass(frozen=True, eq=False)
class IndexMap:
    """How one route set's edge indices map onto a later one's."""

    index: npt.NDArray[np.intp]  # earlier index -> later index, -1 where the edge is gone
    renamed: npt.NDArray[np.bool_]  # by later index: new, or its number or backbone address changed
    same: bool = False  # the same edges at the same indices

    @classmethod
    def between(cls, before: AllPairsRoutes, after: AllPairsRoutes) -> IndexMap:
        if before.edge_ids == after.edge_ids:
            renamed = (before.numbers != after.numbers) | (before.backbone_addresses != after.backbone_addresses)
            return cls(np.arange(len(after.edge_ids), dtype=np.intp), np.asarray(renamed, dtype=bool), same=True)
        index = np.array([after.index.get(e, -1) for e in before.edge_ids], dtype=np.intp)
        renamed = np.ones(len(after.edge_ids), dtype=bool)
        kept = index >= 0
        at = index[kept]
        renamed[at] = (before.numbers[kept] != after.numbers[at]) | (
            before.backbone_addresses[kept] != after.backbone_addresses[at]
        )
        return cls(index, renamed)


def entries_of(c: NextHopColumns) -> dict[str, NextHopEntry]:
    """Columns as a next-hop table by destination id."""
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


@dataclass(frozen=True)
class NextHopColumns:
    """One edge's next-hop table, one list per field, entry k across all five."""

    dest_edge_ids: list[str]
    dest_numbers: list[int]
    next_hop_edge_ids: list[str]
    next_hop_backbone_addresses: list[str]
    path_rtt_ms: list[float]


@dataclass(frozen=True)
class LinkArrays:
    """The graph's links as arrays over edge indices, each link in both directions."""

    n: int
    src: npt.NDArray[np.intp]
    dst: npt.NDArray[np.intp]
    cost: npt.NDArray[np.float64]
    rtt_ms: npt.NDArray[np.float64]

    @classmethod
    def of(cls, g: nx.Graph[str], index: dict[str, int]) -> LinkArrays:
        rows = [(index[a], index[b], data["cost"], data["rtt_ms"]) for a, b, data in g.edges(data=True)]
        a, b, cost, rtt = (np.array(column) for column in zip(*rows, strict=True)) if rows else ([], [], [], [])
        src = np.concatenate([np.asarray(a, dtype=np.intp), np.asarray(b, dtype=np.intp)])
        dst = np.concatenate([np.asarray(b, dtype=np.intp), np.asarray(a, dtype=np.intp)])
        order = np.lexsort((dst, src))  # by source, then neighbour: equal-cost ties go to the lower index
        both = np.concatenate([np.asarray(cost, dtype=np.float64)] * 2)
        both_rtt = np.concatenate([np.asarray(rtt, dtype=np.float64)] * 2)
        return cls(len(index), src[order], dst[order], both[order], both_rtt[order])

    @cached_property
    def cost_matrix(self) -> npt.NDArray[np.float64]:
        return self.matrix(self.cost)

    @cached_property
    def rtt_matrix(self) -> npt.NDArray[np.float64]:
        return self.matrix(self.rtt_ms)

    def matrix(self, values: npt.NDArray[np.float64]) -> npt.NDArray[np.float64]:
        """n x n: the link's value where a link joins i and j, inf elsewhere, 0 on the diagonal."""
        out = np.full((self.n, self.n), np.inf)
        out[self.src, self.dst] = values
        np.fill_diagonal(out, 0.0)
        return out

    def padded(self) -> tuple[npt.NDArray[np.intp], npt.NDArray[np.float64]]:
        """Each edge's neighbours and link costs as n x max-degree arrays (padding: itself, cost inf)."""
        degree = np.bincount(self.src, minlength=self.n)
        width = int(degree.max()) if self.n and len(self.src) else 1
        neighbours = np.repeat(np.arange(self.n, dtype=np.intp)[:, None], width, axis=1)
        costs = np.full((self.n, width), np.inf)
        starts = np.concatenate([[0], np.cumsum(degree)[:-1]]) if self.n else np.zeros(0, dtype=np.intp)
        slot = np.arange(len(self.src)) - starts[self.src]
        neighbours[self.src, slot] = self.dst
        costs[self.src, slot] = self.cost
        return neighbours, costs


def compute_routes(g: nx.Graph[str]) -> AllPairsRoutes:
    """All-pairs routes over a graph from ``paths.build_graph`` (O(n^3), vectorised)."""
    edge_ids = tuple(sorted(g.nodes))
    index = {e: i for i, e in enumerate(edge_ids)}
    links = LinkArrays.of(g, index)
    transit = transit_of(g, edge_ids)
    sums = None
    for dtype in (np.float32, np.float64):
        least = least_costs(links.cost_matrix.astype(dtype), transit)
        first_hop = first_hops(least, links, transit)
        sums = sums_along(first_hop, np.stack([links.cost_matrix, links.rtt_matrix]))
        if sums is not None:
            break
    assert sums is not None, "float64 least costs always give loop-free first hops"
    return AllPairsRoutes(g, edge_ids, index, sums[0], sums[1], first_hop, links, transit)


def transit_of(g: nx.Graph[str], edge_ids: tuple[str, ...]) -> npt.NDArray[np.bool_]:
    return np.array([g.nodes[e].get("transit", True) for e in edge_ids], dtype=bool)


def least_costs(cost: npt.NDArray[np.floating], transit: npt.NDArray[np.bool_]) -> npt.NDArray[np.floating]:
    """Floyd-Warshall in place over ``cost`` (link costs, inf where none): least path costs.

    Only transit edges are ever the intermediate ``k``: a path may start or end
    at a draining edge but not pass through it. Costs only; the first hops
    are read off them afterwards, which halves the work per ``k``.
    """
    candidate = np.empty_like(cost)
    for k in np.flatnonzero(transit):
        np.add(cost[:, k, None], cost[None, k, :], out=candidate)
        np.minimum(cost, candidate, out=cost)
    return cost


def first_hops(
    least: npt.NDArray[np.floating], links: LinkArrays, transit: npt.NDArray[np.bool_]
) -> npt.NDArray[np.int32]:
    """first_hop[i, j]: the neighbour u of i minimising cost(i, u) + least[u, j].

    u must be a transit edge unless it is j itself. Any minimiser starts a
    least-cost path; ties go to the lower index. One whole-matrix pass per
    neighbour slot (the k-th neighbour of every edge at once).
    """
    n = least.shape[0]
    first_hop = np.full((n, n), NO_HOP, dtype=np.int32)
    if n == 0:
        return first_hop
    via = least.copy()
    stops = np.flatnonzero(~transit)
    via[stops, :] = np.inf  # a draining neighbour ends the path or is not taken
    via[stops, stops] = 0.0
    neighbours, costs = links.padded()
    costs = costs.astype(least.dtype)
    best = np.full((n, n), np.inf, dtype=least.dtype)
    candidate = np.empty_like(best)
    better = np.empty((n, n), dtype=bool)
    for slot in range(neighbours.shape[1]):
        np.add(costs[:, slot, None], via[neighbours[:, slot]], out=candidate)
        np.less(candidate, best, out=better)
        np.copyto(best, candidate, where=better)
        np.copyto(first_hop, neighbours[:, slot, None].astype(np.int32), where=better)
    first_hop[~np.isfinite(least)] = NO_HOP
    np.fill_diagonal(first_hop, np.arange(n, dtype=np.int32))
    return first_hop


def sums_along(
    first_hop: npt.NDArray[np.int32], link_values: npt.NDArray[np.float64]
) -> npt.NDArray[np.float64] | None:
    """Each link quantity (stacked: m x n x n) summed along the very paths ``first_hop`` describes.

    By pointer doubling over flat positions (pair (i, j) is i * n + j): each
    pair starts with its first link and a pointer to the rest of its path
    (h, j), h = first_hop[i, j]; every round adds what the pointer's pair
    holds and moves the pointer as far again, so ~log2(longest path) rounds
    sum every path. A diagonal pair holds 0 and points at itself. None if
    some pair's pointer never comes to rest (hops computed from costs too
    coarse to tell a link from a rounding error would loop).
    """
    n = first_hop.shape[0]
    hop = first_hop.ravel().astype(np.intp)
    reachable = hop != NO_HOP
    at = np.arange(n * n)
    rest = np.where(reachable, hop * n + at % n, at)
    sums = link_values.reshape(len(link_values), n * n)[:, np.where(reachable, at - at % n + hop, at)]
    rest[:: n + 1] = at[:: n + 1]
    sums[:, :: n + 1] = 0.0
    sums[:, ~reachable] = np.inf
    for _ in range(max(1, n).bit_length() + 1):
        sums += sums[:, rest]
        further = rest[rest]
        if np.array_equal(further, rest):
            if (rest[reachable] % (n + 1)).any():
                return None  # some pointer rests off the diagonal: a cycle of hops
            return sums.reshape(len(link_values), n, n)
        rest = further
    return None


def resum_along(
    first_hop: npt.NDArray[np.int32],
    link_values: npt.NDArray[np.float64],
    known: npt.NDArray[np.float64],
    pending: npt.NDArray[np.intp],
) -> npt.NDArray[np.float64] | None:
    """``sums_along`` where ``known`` already holds the sums except at the flat positions ``pending``.

    v[i, j] = link_value[i, h] + v[h, j] with h = first_hop[i, j], for the
    pending pairs only: each sweep settles those whose rest of the path is
    summed, one hop further each time. None if the hops loop.
    """
    n = first_hop.shape[0]
    hop = first_hop.ravel().astype(np.intp)
    values = [v.ravel() for v in link_values]
    sums = [k.ravel().copy() for k in known]
    for total in sums:
        total[pending] = np.inf
    todo = pending[hop[pending] != NO_HOP]
    rest = hop[todo] * n + todo % n
    first_link = [v[todo - todo % n + hop[todo]] for v in values]
    while len(todo):
        ready = np.isfinite(sums[0][rest])  # the diagonal's sums are 0
        if not ready.any():
            return None  # the rest never settles: the hops loop
        settle, settle_rest = todo[ready], rest[ready]
        for total, link in zip(sums, first_link, strict=True):
            total[settle] = link[ready] + total[settle_rest]
        waiting = ~ready
        todo, rest, first_link = todo[waiting], rest[waiting], [link[waiting] for link in first_link]
    return np.stack(sums).reshape(len(values), n, n)

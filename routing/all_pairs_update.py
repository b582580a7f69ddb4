"""All-pairs routes after links got worse, recomputed only where the change can matter.

A link going down, or its cost going up, can only lengthen paths, and only
paths that used it: every other least-cost path keeps its cost while nothing
got cheaper, so it is still least-cost, and so is each of its tails. So
after such a change only the pairs whose path crossed a changed link are
recomputed: Bellman-Ford relaxation over their first hops (each pair's best
neighbour plus that neighbour's cost), starting from the unchanged pairs'
exact costs, until nothing improves; then their first hops, and their cost
and RTT summed along the new paths. A failed backbone link reroutes a few
percent of the 250,000 pairs of a 500-edge backbone; this is ~10x cheaper
than the full Floyd-Warshall pass.

Anything else (an edge joining, leaving or changing transit, a link coming
up or getting cheaper, or so many pairs affected that the full pass is as
cheap) takes the full pass (``all_pairs.compute_routes``). The result has the
same costs as the full pass; between equal-cost paths the two may choose
differently.
"""

from __future__ import annotations

import networkx as nx
import numpy as np
import numpy.typing as npt

from duet.routing.all_pairs import (
    NO_HOP,
    AllPairsRoutes,
    LinkArrays,
    compute_routes,
    resum_along,
    transit_of,
)

__all__ = ["MAX_AFFECTED_SHARE", "routes_after", "routes_after_worsening"]

# Above this share of pairs affected, relaxing them costs about as much as the full pass.
MAX_AFFECTED_SHARE = 0.2
# Links changed at once above which finding the affected pairs costs more than it saves.
MAX_CHANGED_LINKS = 32
# Costs are float sums along paths in different orders: equal up to this relative slack.
_SLACK = 1e-9


def routes_after(
    before: AllPairsRoutes | None, g: nx.Graph[str], *, max_affected_share: float = MAX_AFFECTED_SHARE
) -> AllPairsRoutes:
    """Routes over ``g``: updated from ``before`` when only links got worse, else the full pass."""
    if before is not None:
        updated = routes_after_worsening(before, g, max_affected_share=max_affected_share)
        if updated is not None:
            return updated
    return compute_routes(g)


def routes_after_worsening(
    before: AllPairsRoutes, g: nx.Graph[str], *, max_affected_share: float = MAX_AFFECTED_SHARE
) -> AllPairsRoutes | None:
    """Routes over ``g`` from ``before``'s, or None when ``g`` differs from ``before.graph`` in
    more than links that got worse (or in more than ``max_affected_share`` of the pairs' paths,
    when the full pass costs about the same)."""
    edge_ids = tuple(sorted(g.nodes))
    if edge_ids != before.edge_ids:
        return None
    transit = transit_of(g, edge_ids)
    if not np.array_equal(transit, before.transit):
        return None
    links = LinkArrays.of(g, before.index)
    old_cost, new_cost = before.links.cost_matrix, links.cost_matrix
    if (new_cost < old_cost).any():
        return None  # a link came up or got cheaper: paths anywhere may shorten
    changed = (new_cost != old_cost) | (links.rtt_matrix != before.links.rtt_matrix)
    if not changed.any():
        return AllPairsRoutes(g, edge_ids, before.index, before.cost, before.rtt_ms, before.first_hop, links, transit)
    affected = _crossing(before, changed, max_affected_share)
    if affected is None:
        return None
    pending = np.flatnonzero(affected)
    n = len(edge_ids)
    cost = before.cost.copy()
    cost.flat[pending] = new_cost.flat[pending]  # the direct link, if any, bounds the new cost
    hops = _relax(cost, pending, links, transit)
    first_hop = before.first_hop.copy()
    first_hop.flat[pending] = hops
    sums = resum_along(
        first_hop, np.stack([new_cost, links.rtt_matrix]), np.stack([before.cost, before.rtt_ms]), pending
    )
    if sums is None:
        return None  # hops that loop on rounding: the full pass handles that
    assert sums.shape == (2, n, n)
    return AllPairsRoutes(g, edge_ids, before.index, sums[0], sums[1], first_hop, links, transit)


def _crossing(before: AllPairsRoutes, changed: npt.NDArray[np.bool_], max_share: float) -> npt.NDArray[np.bool_] | None:
    """Pairs whose path may cross a changed link (u, v): cost[i, u] + link(u, v) + cost[v, j] is their
    cost. That is every pair whose path does, and maybe a few with an equally cheap other path:
    recomputing those too is harmless. None when too many links or pairs are involved."""
    us, vs = np.nonzero(changed)
    if len(us) > 2 * MAX_CHANGED_LINKS:
        return None
    cost, link = before.cost, before.links.cost_matrix
    bound = cost * (1 + _SLACK) + _SLACK
    affected = np.zeros(cost.shape, dtype=bool)
    for u, v in zip(us.tolist(), vs.tolist(), strict=True):
        if not np.isfinite(link[u, v]):
            continue  # there was no link: none crossed it
        through = cost[:, u, None] + link[u, v] + cost[None, v, :]
        affected |= through <= bound
    affected &= np.isfinite(cost)  # unreachable stays unreachable: links only got worse
    np.fill_diagonal(affected, False)  # an edge reaches itself at no cost, whatever the links
    if affected.sum() > max_share * affected.size:
        return None
    return affected


def _relax(
    cost: npt.NDArray[np.float64], pending: npt.NDArray[np.intp], links: LinkArrays, transit: npt.NDArray[np.bool_]
) -> npt.NDArray[np.int32]:
    """Bellman-Ford over the ``pending`` pairs of ``cost`` (in place), whose other entries are exact;
    returns each pending pair's first hop (NO_HOP where it is now unreachable).

    A pending pair's cost starts at its direct link (or inf) and becomes its best neighbour's link
    plus that neighbour's cost to the destination until no pair improves. The neighbour must be a
    transit edge unless it is the destination.
    """
    n = cost.shape[0]
    src, dst = pending // n, pending % n
    neighbours, link_costs = links.padded()
    via = neighbours[src]  # pending x degree
    usable = transit[via] | (via == dst[:, None])
    step = np.where(usable, link_costs[src], np.inf)
    rest = via * n + dst[:, None]  # flat positions of (neighbour, destination)
    flat = cost.reshape(-1)
    while True:
        candidate = step + flat[rest]
        best = candidate.min(axis=1)
        better = best < flat[pending]
        if not better.any():
            break
        flat[pending[better]] = best[better]
    hops = np.take_along_axis(via, candidate.argmin(axis=1)[:, None], axis=1)[:, 0].astype(np.int32)
    hops[~np.isfinite(flat[pending])] = NO_HOP
    return hops

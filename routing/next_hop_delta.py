"""What changed in one edge's next-hop table between two route sets.

After a change the routing service sends each edge only the destinations
whose entry differs (a failed link reroutes a few destinations per edge,
not all 500), and the edge applies them to the table it holds. Applying the
delta of ``before -> after`` to ``before``'s table gives exactly ``after``'s
table: an entry is sent when anything in it differs (next hop, its address,
the destination's number, the path RTT), and a destination is removed when
``after`` no longer reaches it.

The two route sets may index their edges differently (an edge joined or left
the graph); entries are matched by edge id.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import numpy.typing as npt

from duet.routing.all_pairs import NO_HOP, AllPairsRoutes, NextHopRows

__all__ = ["NextHopDelta", "next_hop_delta"]


@dataclass(frozen=True, eq=False)
class NextHopDelta:
    """Entries new or different in ``after`` (indices into ``after.edge_ids``) and destinations gone."""

    changed: NextHopRows
    removed: tuple[str, ...]
    table_size: int  # destinations in the whole table once the delta is applied

    @property
    def empty(self) -> bool:
        return not len(self.changed) and not self.removed


def next_hop_delta(before: AllPairsRoutes, after: AllPairsRoutes, edge_id: str) -> NextHopDelta:
    """The change of ``edge_id``'s table from ``before`` to ``after``."""
    moved = after.indices_from(before)  # before's index -> after's, -1 where the edge left the graph
    i = after.index.get(edge_id)
    if moved.same and i is not None:
        return _same_edges_delta(before, after, i, moved.renamed)
    old, new = before.next_hop_rows(edge_id), after.next_hop_rows(edge_id)
    n = len(after.edge_ids)
    # before's entries, laid out by after's destination index
    old_hop = np.full(n, NO_HOP, dtype=np.intp)
    old_rtt = np.full(n, np.nan)
    at = moved.index[old.dests]
    kept = at >= 0
    old_hop[at[kept]] = moved.index[old.hops[kept]]  # NO_HOP when the old next hop left: differs from any hop
    old_rtt[at[kept]] = old.path_rtt_ms[kept]
    differs = (
        (old_hop[new.dests] != new.hops)
        | (old_rtt[new.dests] != new.path_rtt_ms)  # NaN (no old entry) differs from everything
        | moved.renamed[new.dests]
        | moved.renamed[new.hops]
    )
    reached = np.zeros(n, dtype=bool)
    reached[new.dests] = True
    gone = ~kept  # the destination left the graph, or after no longer reaches it
    gone[kept] = ~reached[at[kept]]
    removed = tuple(before.ids[old.dests[gone]].tolist())
    return NextHopDelta(new.take(differs), removed, len(new))


def _same_edges_delta(
    before: AllPairsRoutes, after: AllPairsRoutes, i: int, renamed: npt.NDArray[np.bool_]
) -> NextHopDelta:
    """``next_hop_delta`` when both route sets index the same edges: row ``i`` against row ``i``."""
    old_hop, new_hop = before.first_hop[i], after.first_hop[i]
    had, has = old_hop != NO_HOP, new_hop != NO_HOP
    had[i] = has[i] = False  # an edge has no entry for itself
    hop = np.where(has, new_hop, i)
    differs = has & ((old_hop != new_hop) | (before.rtt_ms[i] != after.rtt_ms[i]) | renamed | renamed[hop])
    dests = np.flatnonzero(differs)
    changed = NextHopRows(dests, hop[dests].astype(np.intp), after.rtt_ms[i, dests])
    removed = tuple(before.ids[had & ~has].tolist())
    return NextHopDelta(changed, removed, int(has.sum()))

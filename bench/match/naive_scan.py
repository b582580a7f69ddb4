"""The baseline: a linear scan of the waiting pool applying the same rules, no index.

Walks every waiting ticket oldest first, asks every filter of the pool's
rule set about each, keeps the first ``compare`` that pass and picks the
best-scored of them (ties: the older), which is what the indexed pool
decides, without its language groups, buckets or cached verdicts.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from typing import Any

from duet.services.matchmaker.pool import WaitingPool
from duet.services.matchmaker.rules.base import PairContext, PairFilter, PairScorer
from duet.services.matchmaker.ticket import Ticket


def naive_partner(
    waiting: Iterable[Ticket],
    newcomer: Ticket,
    ctx: PairContext,
    filters: Sequence[PairFilter],
    scorers: Sequence[PairScorer],
    compare: int,
) -> Ticket | None:
    candidates: list[Ticket] = []
    for w in waiting:
        if all(f.allows(w, newcomer, ctx) for f in filters):
            candidates.append(w)
            if len(candidates) >= compare:
                break
    if not candidates:
        return None
    points = [sum(s.score(c, newcomer, ctx) for s in scorers) for c in candidates]
    return candidates[max(range(len(candidates)), key=lambda i: (points[i], -i))]


class NaiveScanPool(WaitingPool):
    """The waiting pool with its search replaced by ``naive_partner`` for the users in ``scan_for``.

    The bench measures the naive scan on the newcomers' searches only: the fill, and the relaxation
    timer looking again for waiting users, keep the index (naive, each of those re-looks scans all
    10,000 for nobody, and would bury the newcomers; the pool's property test holds the two searches
    to the same choice).
    """

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.scan_for: set[str] = set()

    def find_partner(self, ticket: Ticket, ctx: PairContext) -> Ticket | None:
        if ticket.user_id not in self.scan_for:
            return super().find_partner(ticket, ctx)
        return naive_partner(self.oldest_first(), ticket, ctx, self.filters, self.scorers, self.compare)

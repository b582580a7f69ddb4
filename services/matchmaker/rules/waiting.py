"""Oldest waiting first: points for every second the waiting ticket has waited.

The pool already looks at the oldest compatible tickets first; this keeps age
in the balance against latency and interests among those it compares.
"""

from __future__ import annotations

from duet.services.matchmaker.rules.base import PairContext, Points
from duet.services.matchmaker.ticket import Ticket


class WaitedScore:
    name = "waited"

    def __init__(self, points_per_s: float = 1.0) -> None:
        self.points_per_s = points_per_s

    def score(self, waiting: Ticket, newcomer: Ticket, ctx: PairContext) -> float:
        return self.points_per_s * max(0.0, ctx.now_ms - waiting.queued_at) / 1000

    def bind(self, newcomer: Ticket, ctx: PairContext) -> Points:
        per_s, now = self.points_per_s, ctx.now_ms
        return lambda w: per_s * max(0.0, now - w.queued_at) / 1000

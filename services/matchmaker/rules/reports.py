"""Reported users are matched later: points off for every distinct user who reported them.

(Past the review threshold a user is not in the pool at all; see core.)
"""

from __future__ import annotations

from duet.services.matchmaker.rules.base import PairContext, Points
from duet.services.matchmaker.ticket import Ticket


class ReportedScore:
    name = "reports"

    def __init__(self, points_per_report: float = 15.0) -> None:
        self.points_per_report = points_per_report

    def score(self, waiting: Ticket, newcomer: Ticket, ctx: PairContext) -> float:
        return -self.points_per_report * (waiting.reports + newcomer.reports)

    def bind(self, newcomer: Ticket, ctx: PairContext) -> Points:
        per_report, theirs = self.points_per_report, newcomer.reports
        return lambda w: -per_report * (w.reports + theirs)

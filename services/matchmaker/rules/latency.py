"""Latency-aware scoring: prefer partners who will connect fast.

Minus ``points_per_ms`` for every ms of reference RTT between the two users'
regions (the routing graph's, via the LatencyEstimate port); an unknown RTT
counts as ``unknown_rtt_ms``.
"""

from __future__ import annotations

from duet.services.matchmaker.rules.base import PairContext, Points
from duet.services.matchmaker.ticket import Ticket


class LatencyScore:
    name = "latency"

    def __init__(self, points_per_ms: float = 0.05, unknown_rtt_ms: float = 300.0) -> None:
        self.points_per_ms = points_per_ms
        self.unknown_rtt_ms = unknown_rtt_ms

    def score(self, waiting: Ticket, newcomer: Ticket, ctx: PairContext) -> float:
        if waiting.region == newcomer.region:
            return 0.0
        rtt = ctx.latency.rtt_ms(waiting.region, newcomer.region)
        return -self.points_per_ms * (self.unknown_rtt_ms if rtt is None else rtt)

    def bind(self, newcomer: Ticket, ctx: PairContext) -> Points:
        region, rtt_ms, per_ms, unknown = newcomer.region, ctx.latency.rtt_ms, self.points_per_ms, self.unknown_rtt_ms

        def points(w: Ticket) -> float:
            if w.region == region:
                return 0.0
            rtt = rtt_ms(w.region, region)
            return -per_ms * (unknown if rtt is None else rtt)

        return points

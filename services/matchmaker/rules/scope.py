"""Region scope, both ways: when either user wants "near me", the two must be near.

Near = the same region, or a reference RTT between the two regions (from the
routing graph, through the LatencyEstimate port) of at most
``ctx.near_rtt_ms``. A "near" ticket widens to anywhere on the relaxation
schedule.
"""

from __future__ import annotations

from duet.services.matchmaker.preferences import Scope
from duet.services.matchmaker.rules.base import PLACE, Check, PairContext
from duet.services.matchmaker.ticket import Ticket


def is_near(region_a: str, region_b: str, ctx: PairContext) -> bool:
    if region_a == region_b:
        return True
    rtt = ctx.latency.rtt_ms(region_a, region_b)
    return rtt is not None and rtt <= ctx.near_rtt_ms


class ScopeRule:
    name = "scope"
    bucket_part = PLACE

    def allows(self, a: Ticket, b: Ticket, ctx: PairContext) -> bool:
        if a.region == b.region:
            return True  # near, whatever either wants
        if ctx.relax.scope(a, ctx.now_ms) is Scope.NEAR or ctx.relax.scope(b, ctx.now_ms) is Scope.NEAR:
            return is_near(a.region, b.region, ctx)
        return True

    def bucket_allows(self, newcomer: Ticket, sample: Ticket, ctx: PairContext) -> bool:
        return self.allows(newcomer, sample, ctx)  # region and scope are part of the bucket key

    def bind(self, newcomer: Ticket, ctx: PairContext) -> Check:
        region = newcomer.region
        if ctx.relax.scope(newcomer, ctx.now_ms) is Scope.NEAR:
            return lambda w: w.region == region or is_near(w.region, region, ctx)
        # A waiting ticket's "near me" is in force while it is younger than this.
        cutoff = ctx.relax.cutoff_ms(ctx.now_ms, ctx.relax.anywhere_after_s)
        near = Scope.NEAR
        return lambda w: (
            w.region == region
            or w.preferences.scope is not near
            or w.queued_at <= cutoff
            or is_near(w.region, region, ctx)
        )

"""Shared interests: required while a ticket is young, then only points.

Filter: a user who gave interests meets, until their interests relax (10 s by
default), only partners who share at least one. Scorer: every shared
interest is worth ``points_per_interest``.
"""

from __future__ import annotations

from duet.services.matchmaker.rules.base import PLACE, Check, PairContext, Points
from duet.services.matchmaker.ticket import Ticket


def shared_interests(a: Ticket, b: Ticket) -> frozenset[str]:
    return a.preferences.interests & b.preferences.interests


class InterestsRule:
    name = "interests"
    bucket_part = PLACE

    def allows(self, a: Ticket, b: Ticket, ctx: PairContext) -> bool:
        if not a.preferences.interests.isdisjoint(b.preferences.interests):
            return True  # they share one, which is all either may require
        return not (ctx.relax.interests_required(a, ctx.now_ms) or ctx.relax.interests_required(b, ctx.now_ms))

    def bucket_allows(self, newcomer: Ticket, sample: Ticket, ctx: PairContext) -> bool:
        # Whether a ticket gave interests is part of the bucket key, which interests is not: decide only
        # when one side requires a shared interest and the other gave none.
        newcomer_strict = ctx.relax.interests_required(newcomer, ctx.now_ms)
        sample_strict = ctx.relax.interests_required(sample, ctx.now_ms)
        if newcomer_strict and not sample.preferences.interests:
            return False
        return not (sample_strict and not newcomer.preferences.interests)

    def bind(self, newcomer: Ticket, ctx: PairContext) -> Check:
        mine = newcomer.preferences.interests
        if ctx.relax.interests_required(newcomer, ctx.now_ms):
            return lambda w: not mine.isdisjoint(w.preferences.interests)
        # A waiting ticket that gave interests requires a shared one while it is younger than this.
        cutoff = ctx.relax.cutoff_ms(ctx.now_ms, ctx.relax.interests_optional_after_s)
        return lambda w: (
            not mine.isdisjoint(w.preferences.interests) or not (w.preferences.interests and w.queued_at > cutoff)
        )


class SharedInterestsScore:
    name = "shared interests"

    def __init__(self, points_per_interest: float = 10.0) -> None:
        self.points_per_interest = points_per_interest

    def score(self, waiting: Ticket, newcomer: Ticket, ctx: PairContext) -> float:
        return self.points_per_interest * len(shared_interests(waiting, newcomer))

    def bind(self, newcomer: Ticket, ctx: PairContext) -> Points:
        points, mine = self.points_per_interest, newcomer.preferences.interests
        return lambda w: points * len(w.preferences.interests & mine)

"""Hard filter, both ways, never relaxed: each user's age band is one the other wants to meet.

An empty wanted list accepts anyone; a non-empty one does not accept a
partner who left their age band unstated.
"""

from __future__ import annotations

from duet.services.matchmaker.rules.base import PROFILE, Check, PairContext
from duet.services.matchmaker.ticket import Ticket


def _accepts(wanter: Ticket, other: Ticket) -> bool:
    wanted = wanter.preferences.want_age_bands
    return not wanted or other.preferences.age_band in wanted


class AgeRule:
    name = "age"
    bucket_part = PROFILE

    def allows(self, a: Ticket, b: Ticket, ctx: PairContext) -> bool:
        return _accepts(a, b) and _accepts(b, a)

    def bucket_allows(self, newcomer: Ticket, sample: Ticket, ctx: PairContext) -> bool:
        return self.allows(newcomer, sample, ctx)  # age band and wanted bands are part of the bucket key

    def bind(self, newcomer: Ticket, ctx: PairContext) -> Check:
        mine, wanted = newcomer.preferences.age_band, newcomer.preferences.want_age_bands
        return lambda w: (
            (not w.preferences.want_age_bands or mine in w.preferences.want_age_bands)
            and (not wanted or w.preferences.age_band in wanted)
        )

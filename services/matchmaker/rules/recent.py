"""Hard filter: no re-match of the same pair too soon.

"Too soon" is the pair history's: one of either user's last N partners, or
paired within the no-rematch window. ``Ticket.avoid`` (the user's recent
partners when the ticket was made) is checked too, both ways.
"""

from __future__ import annotations

from duet.services.matchmaker.rules.base import Check, PairContext
from duet.services.matchmaker.ticket import Ticket


class RecentPartnerRule:
    name = "recent partners"

    def allows(self, a: Ticket, b: Ticket, ctx: PairContext) -> bool:
        if b.user_id in a.avoid or a.user_id in b.avoid:
            return False
        return not ctx.history.met_recently(a.user_id, b.user_id)

    def bind(self, newcomer: Ticket, ctx: PairContext) -> Check:
        me, avoid, met_recently = newcomer.user_id, newcomer.avoid, ctx.history.met_recently
        return lambda w: not (me in w.avoid or w.user_id in avoid) and not met_recently(w.user_id, me)

"""Hard filter, never relaxed: a pair where either blocked the other never meets.

Blocks are stored (PostgreSQL) and loaded into the matchmaker's pair history
when a user opens a session, so the check here is in memory.
"""

from __future__ import annotations

from duet.services.matchmaker.rules.base import Check, PairContext
from duet.services.matchmaker.ticket import Ticket


class BlockRule:
    name = "blocks"

    def allows(self, a: Ticket, b: Ticket, ctx: PairContext) -> bool:
        return not ctx.history.blocked(a.user_id, b.user_id)

    def bind(self, newcomer: Ticket, ctx: PairContext) -> Check:
        me, blocked = newcomer.user_id, ctx.history.blocked
        return lambda waiting: not blocked(waiting.user_id, me)

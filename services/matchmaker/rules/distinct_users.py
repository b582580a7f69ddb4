"""Never pair a user with themselves."""

from __future__ import annotations

from duet.services.matchmaker.rules.base import Check, PairContext
from duet.services.matchmaker.ticket import Ticket


class DistinctUsersRule:
    name = "distinct users"

    def allows(self, a: Ticket, b: Ticket, ctx: PairContext) -> bool:
        return a.user_id != b.user_id

    def bind(self, newcomer: Ticket, ctx: PairContext) -> Check:
        me = newcomer.user_id
        return lambda waiting: waiting.user_id != me

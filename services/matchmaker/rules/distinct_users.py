"""Never pair a user with themselves."""

from __future__ import annotations

from duet.services.matchmaker.rules.base import PairContext
from duet.services.matchmaker.ticket import Ticket


class DistinctUsersRule:
    name = "distinct users"

    def allows(self, a: Ticket, b: Ticket, ctx: PairContext) -> bool:
        return a.user_id != b.user_id

"""Block and report the partner of a call, and a moderator's review taking effect.

A part of ``Matchmaker`` (a base class of it), kept apart so the core's file
holds sessions and the pool. The rules these feed (blocks both ways, the
report score and hold) are ``rules/blocks.py`` and ``rules/reports.py``.
"""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING

from duet.services.matchmaker.call_setup import CallSetup
from duet.services.matchmaker.errors import BadRequest, NotFound
from duet.services.matchmaker.events import Blocked, Reported
from duet.services.matchmaker.pair_history import InMemoryPairHistory
from duet.services.matchmaker.pool import Ticket
from duet.services.matchmaker.ports import FriendStore, SafetyStore
from duet.services.matchmaker.session_state import ActiveCall, ClientSession
from duet.services.store.records import checked_reason

logger = logging.getLogger("duet.matchmaker")


class SafetyActions(CallSetup):
    """Block, Report and reviews; the sessions and calls they act on are the ``Matchmaker``'s."""

    safety: SafetyStore
    friends: FriendStore
    history: InMemoryPairHistory
    _by_user: dict[str, ClientSession]
    _reports: dict[str, int]

    if TYPE_CHECKING:  # provided by the Matchmaker and its friend calls

        def held_for_review(self, user_id: str) -> bool: ...

        def _end_rings_between(self, user_a: str, user_b: str) -> None: ...

        async def _close_ticket(
            self, session: ClientSession | None, ticket: Ticket, outcome: str, reason: str
        ) -> None: ...

    async def _partner_in(self, session: ClientSession, call_id: str) -> tuple[str, ActiveCall | None]:
        """The other user of one of this user's calls (live or recorded), and the call if it is live."""
        if not call_id:
            raise BadRequest("call_id is required: the call (from Matched) whose partner you mean")
        call = self._calls.get(call_id)
        if call is not None and session in call.sessions:
            return call.partner_of(session).user_id, call
        row = await self.store.get_call(call_id)
        if row is None or session.user_id not in (row.user_a, row.user_b):
            raise NotFound(f"you had no call '{call_id}'")
        return (row.user_b if row.user_a == session.user_id else row.user_a), None

    async def block(self, session: ClientSession, call_id: str) -> None:
        """The partner of that call never meets this user again; a live call with them ends now."""
        partner, call = await self._partner_in(session, call_id)
        await self.safety.add_block(session.user_id, partner, call_id)
        self.history.add_block(session.user_id, partner)
        # A block ends a friendship too: neither can call the other any more.
        await self.friends.remove_friend(session.user_id, partner)
        self._end_rings_between(session.user_id, partner)
        if call is not None:
            await self._end_call(call, "blocked", ender=session)
        session.send(Blocked(call_id=call_id))
        logger.info("user %s blocked %s (call %s)", session.user_id, partner, call_id[:8])

    async def report(self, session: ClientSession, call_id: str, reason: str) -> None:
        """Record a report about the partner of that call; past the threshold they are held for review."""
        try:
            checked_reason(reason)
        except ValueError as exc:
            raise BadRequest(f"report.reason: {exc}") from None
        partner, _ = await self._partner_in(session, call_id)
        count = await self.safety.add_report(session.user_id, partner, call_id, reason)
        self._reports[partner] = count
        session.send(Reported(call_id=call_id))
        logger.info("user %s reported %s (call %s): %d reporters", session.user_id, partner, call_id[:8], count)
        held = self._by_user.get(partner)
        if self.held_for_review(partner) and held is not None and held.ticket is not None:
            await self._close_ticket(
                held,
                held.ticket,
                "cancelled: held for review",
                f"held for review: {count} people reported you; you will not be matched until a moderator "
                "has reviewed your account",
            )

    async def _recheck_hold(self, user_id: str) -> None:
        """A held user's standing is read again before each find/next: a moderator may have cleared
        them through another replica, whose ``reviewed`` this one never saw."""
        if self.held_for_review(user_id):
            self._reports[user_id] = await self.safety.report_count(user_id)

    async def reviewed(self, user_id: str) -> None:
        """A moderator reviewed the user (ModerationStore.clear_reports): their standing is read again,
        so a user who was held may look for partners at once."""
        if user_id in self._reports:
            self._reports[user_id] = await self.safety.report_count(user_id)
        logger.info("user %s reviewed by a moderator: %d reporters count now", user_id, self._reports.get(user_id, 0))

"""Friends and friend calls: add a call's partner as a friend, list and remove friends, ring, answer, cancel.

An accepted ring is connected like a match (``CallSetup._connect_pair``, the
warm-leg path) and timed the same way. A part of ``Matchmaker`` (a base class
of it), kept apart so the core's file holds sessions and the pool.
"""

from __future__ import annotations

import logging
import uuid
from typing import TYPE_CHECKING

from duet.services.matchmaker import ring as rings
from duet.services.matchmaker.call_setup import CallSetup
from duet.services.matchmaker.config import MatchConfig
from duet.services.matchmaker.errors import BadRequest, Forbidden, NotFound, WrongState
from duet.services.matchmaker.events import (
    Friend,
    FriendAdded,
    FriendRequested,
    IncomingCall,
    PartnerProfile,
    RingEnded,
    Ringing,
)
from duet.services.matchmaker.pair_history import InMemoryPairHistory
from duet.services.matchmaker.pool import Ticket
from duet.services.matchmaker.ports import FriendStore
from duet.services.matchmaker.ring import Ring
from duet.services.matchmaker.session_state import ActiveCall, ClientSession
from duet.services.matchmaker.user_id import USER_ID_RE
from duet.services.store.records import CALL_KIND_FRIEND, FriendRow

logger = logging.getLogger("duet.matchmaker")


class FriendCalls(CallSetup):
    """The friend side of the matchmaker; the sessions and rings it works on are the ``Matchmaker``'s."""

    config: MatchConfig
    friends: FriendStore
    history: InMemoryPairHistory
    _by_user: dict[str, ClientSession]
    _rings: dict[str, Ring]

    if TYPE_CHECKING:  # provided by the Matchmaker

        async def _close_ticket(
            self, session: ClientSession | None, ticket: Ticket, outcome: str, reason: str
        ) -> None: ...

        async def _partner_in(self, session: ClientSession, call_id: str) -> tuple[str, ActiveCall | None]: ...

        def _schedule(self, at_ms: float, ticket_id: str) -> None: ...

    def _friend(self, row: FriendRow) -> Friend:
        """A stored friend with whether they are online and busy now."""
        other = self._by_user.get(row.user_id)
        return Friend(
            user_id=row.user_id,
            display_name=other.display_name if other is not None else row.display_name,
            online=other is not None,
            busy=other is not None and (other.call is not None or other.ring is not None),
            since=row.since * 1000,
        )

    async def add_friend(self, session: ClientSession, call_id: str) -> None:
        """Ask to be friends with the partner of that call; when they asked too, both are told."""
        partner, _ = await self._partner_in(session, call_id)
        if self.history.blocked(session.user_id, partner):
            raise Forbidden("you cannot add the partner of that call as a friend: one of you blocked the other")
        if await self.friends.are_friends(session.user_id, partner):
            session.send(FriendRequested(call_id=call_id, friends=True))
            return
        row = await self.friends.add_friend_request(session.user_id, partner, call_id)
        session.send(FriendRequested(call_id=call_id, friends=row is not None))
        if row is None:
            logger.info("user %s asked to be friends with %s (call %s)", session.user_id, partner, call_id[:8])
            return
        logger.info("users %s and %s are friends (call %s)", session.user_id, partner, call_id[:8])
        session.send(FriendAdded(friend=self._friend(row), call_id=call_id))
        other = self._by_user.get(partner)
        if other is not None:
            other.send(
                FriendAdded(
                    friend=self._friend(FriendRow(session.user_id, session.display_name, row.since)), call_id=call_id
                )
            )

    async def list_friends(self, user_id: str) -> list[Friend]:
        """The user's friends, online ones first, then by display name."""
        friends = [self._friend(row) for row in await self.friends.friends_of(user_id)]
        return sorted(friends, key=lambda f: (not f.online, f.display_name.casefold(), f.user_id))

    async def _check_other_user(self, user_id: str, other: str, field: str) -> None:
        if not other:
            raise BadRequest(f"{field} is required: the friend's user id (from ListFriends)")
        if not USER_ID_RE.match(other):
            raise BadRequest(f"{field} must be 1-64 characters of letters, digits, '_', '.' or '-'")
        if other == user_id:
            raise BadRequest(f"{field} is your own user id")

    async def remove_friend(self, user_id: str, other: str) -> None:
        """Unfriend: neither can call the other any more; a ring between them ends."""
        await self._check_other_user(user_id, other, "user_id")
        if not await self.friends.remove_friend(user_id, other):
            raise NotFound(f"'{other}' is not one of your friends")
        self._end_rings_between(user_id, other)
        logger.info("user %s removed friend %s", user_id, other)

    async def call_friend(self, session: ClientSession, user_id: str) -> None:
        """Ring a friend: Ringing to the caller, IncomingCall to the friend, until answered or given up."""
        if session.leg_id is None:
            raise WrongState("send your leg offer before calling a friend")
        await self._check_other_user(session.user_id, user_id, "call_friend.user_id")
        if session.ticket is not None:
            raise WrongState("you are waiting for a partner; send Cancel before calling a friend")
        if session.call is not None:
            raise WrongState("you are in a call; hang up (HangUp) before calling a friend")
        if session.ring is not None:
            raise WrongState("you are already ringing or being rung; cancel or answer that call first")
        if self.history.blocked(session.user_id, user_id):
            raise Forbidden(f"you cannot call '{user_id}': one of you blocked the other")
        if not await self.friends.are_friends(session.user_id, user_id):
            if not await self.friends.user_exists(user_id):
                raise NotFound(f"there is no user '{user_id}'")
            raise Forbidden(f"'{user_id}' is not your friend: you both need to add each other after a call first")
        friend = self._by_user.get(user_id)
        if friend is None:
            raise WrongState(f"'{user_id}' is not online; try again when they are")
        if friend.call is not None or friend.ring is not None:
            raise WrongState(f"{friend.display_name} is in another call; try again later")
        now = self.now_ms()
        ring = Ring(
            request_id=uuid.uuid4().hex,
            caller=session,
            callee=friend,
            created_at=now,
            expires_at=now + self.config.ring_timeout_s * 1000,
        )
        self._rings[ring.request_id] = ring
        session.ring = friend.ring = ring
        self._schedule(ring.expires_at, ring.request_id)
        since = next((r.since for r in await self.friends.friends_of(session.user_id) if r.user_id == user_id), 0.0)
        session.send(
            Ringing(
                request_id=ring.request_id,
                friend=self._friend(FriendRow(friend.user_id, friend.display_name, since)),
                expires_at=ring.expires_at,
            )
        )
        friend.send(
            IncomingCall(
                request_id=ring.request_id,
                caller=PartnerProfile(
                    display_name=session.display_name,
                    region=session.region,
                    languages=tuple(sorted(session.preferences.languages)),
                ),
                caller_user_id=session.user_id,
                expires_at=ring.expires_at,
            )
        )
        logger.info("user %s rings friend %s (request %s)", session.user_id, user_id, ring.request_id[:8])

    async def answer_call(self, session: ClientSession, request_id: str, accept: bool) -> None:
        """Accept (the call is connected like a match) or decline a friend's call ringing for this session."""
        if not request_id:
            raise BadRequest("answer_call.request_id is required: the request id from IncomingCall")
        ring = self._rings.get(request_id)
        if ring is None or ring.callee is not session:
            raise NotFound(f"no call '{request_id}' is ringing for you (it may have ended: see RingEnded)")
        if not accept:
            self._end_ring(ring, rings.DECLINED)
            return
        if session.leg_id is None:
            raise WrongState("send your leg offer before accepting a call")
        if session.call is not None:
            raise WrongState("you are in a call; hang up before accepting another")
        caller = ring.caller
        # Taken out before any await: a cancel, timeout or leave meanwhile finds nothing to end.
        self._rings.pop(request_id, None)
        session.ring = caller.ring = None
        if session.ticket is not None:
            await self._close_ticket(
                session, session.ticket, "cancelled: answered a friend's call", "cancelled: answered a friend's call"
            )
        if caller.closed or session.closed or caller.call is not None or session.call is not None:
            # Gone or connected elsewhere while the ticket closed: the ring ends without a call after all.
            reason = rings.CALLER_LEFT if caller.closed else rings.FRIEND_OFFLINE if session.closed else rings.BUSY
            for s in (caller, session):
                s.send(RingEnded(request_id=request_id, reason=reason))
            return
        logger.info("user %s accepted %s's call (request %s)", session.user_id, caller.user_id, request_id[:8])
        await self._connect_pair(
            caller,
            session,
            queued=(ring.created_at, ring.created_at),
            matched=self.now_ms(),
            kind=CALL_KIND_FRIEND,
            shared=(),
            languages=(caller.preferences.languages, session.preferences.languages),
        )

    async def cancel_call(self, session: ClientSession, request_id: str) -> None:
        """The caller stops ringing."""
        if not request_id:
            raise BadRequest("cancel_call.request_id is required: the request id from Ringing")
        ring = self._rings.get(request_id)
        if ring is None or ring.caller is not session:
            raise NotFound(f"you are not ringing anyone with request '{request_id}' (it may have ended)")
        self._end_ring(ring, rings.CANCELLED)

    async def hang_up(self, session: ClientSession) -> None:
        """End the live call without looking for someone new (the partner gets CallEnded "partner_hung_up")."""
        if session.call is not None:
            await self._end_call(session.call, "hung_up", ender=session)

    def _end_ring(self, ring: Ring, reason: str) -> None:
        """A ring ends without a call: both sides are told why (those still here)."""
        if self._rings.pop(ring.request_id, None) is None:
            return
        for s in (ring.caller, ring.callee):
            if s.ring is ring:
                s.ring = None
            s.send(RingEnded(request_id=ring.request_id, reason=reason))
        logger.info(
            "ring %s (%s -> %s) ended: %s", ring.request_id[:8], ring.caller.user_id, ring.callee.user_id, reason
        )

    def _end_rings_between(self, user_a: str, user_b: str) -> None:
        for ring in [r for r in self._rings.values() if r.involves(user_a, user_b)]:
            self._end_ring(ring, rings.NO_LONGER_FRIENDS)

    def _give_up_ringing(self, session: ClientSession) -> None:
        """Looking for a stranger instead: a ring this session makes is cancelled."""
        if session.ring is not None and session.ring.caller is session:
            self._end_ring(session.ring, rings.CANCELLED)

"""Friends from the client's side: add a call's partner, the friends list, ring a friend, answer a ring.

A part of ``DuetClient`` (a base class of it). An accepted call connects on
the warm leg like a match (``_look_for_partner``).
"""

from __future__ import annotations

import asyncio
from typing import TYPE_CHECKING

from duet.services.auth.sources import TokenSource
from duet.services.client.friends import FriendInfo, FriendsDirectory, friend_info
from duet.services.client.inbox import DuetClientError, SessionInbox
from duet.services.client.stages import CallResult
from duet.v1 import matchmaker_pb2


class FriendCalls:
    """Friend requests, the friends list and friend calls; the stream and its inbox are the ``DuetClient``'s."""

    matchmaker_address: str
    call_id: str | None
    rpc_timeout: float
    ended_rings: dict[str, str]
    _lock: asyncio.Lock
    _inbox: SessionInbox
    _token: TokenSource | None
    _incoming: asyncio.Queue[matchmaker_pb2.IncomingCall]
    _new_friends: asyncio.Queue[matchmaker_pb2.FriendAdded]
    _my_ring: str

    if TYPE_CHECKING:  # provided by DuetClient

        def _check_ready(self) -> None: ...

        async def _send(self, message: matchmaker_pb2.ClientMessage, what: str) -> None: ...

        async def _look_for_partner(self, request: matchmaker_pb2.ClientMessage, what: str) -> CallResult: ...

    async def add_friend(self, call_id: str | None = None) -> bool:
        """Ask to be friends with the partner of this call (default: the current or last one).

        True: they had asked too, so you are friends now (wait_friend_added() has them).
        False: waiting for them to ask as well. Raises DuetClientError when refused.
        """
        async with self._lock:
            self._check_ready()
            target = call_id or self.call_id
            if not target:
                raise DuetClientError("nobody to add: no call yet")
            await self._send(
                matchmaker_pb2.ClientMessage(add_friend=matchmaker_pb2.AddFriend(call_id=target)), "AddFriend"
            )
            event = await self._inbox.expect(
                ("friend_requested",), timeout=self.rpc_timeout, waiting_for="the friend request to be recorded"
            )
            return bool(event.friend_requested.friends)  # type: ignore[union-attr]

    async def wait_friend_added(self, timeout: float | None = None) -> FriendInfo:
        """The next person who became your friend (FriendAdded)."""
        try:
            added = await asyncio.wait_for(self._new_friends.get(), timeout)
        except TimeoutError:
            raise DuetClientError(f"timed out after {timeout} s waiting for a new friend") from None
        return friend_info(added.friend)

    async def friends(self) -> list[FriendInfo]:
        """Your friends with who is online (ListFriends), online ones first."""
        async with self._directory() as directory:
            return await directory.list()

    async def remove_friend(self, user_id: str) -> None:
        """Unfriend (RemoveFriend). Raises DuetClientError NOT_FOUND when they are not your friend."""
        async with self._directory() as directory:
            await directory.remove(user_id)

    def _directory(self) -> FriendsDirectory:
        if self._token is None:
            raise DuetClientError("the friends list needs the user's token")
        return FriendsDirectory(self.matchmaker_address, self._token, rpc_timeout=self.rpc_timeout)

    async def call_friend(self, user_id: str) -> CallResult:
        """Ring a friend; once they accept, the call connects on the warm leg like a match.

        Returns when their first frame is decoded. Raises DuetClientError when the call is
        refused (``code``: not a friend, offline, busy ...) or the ring ends without a call
        (``reason``: "declined", "no answer", "cancelled", ...).
        """
        async with self._lock:
            self._check_ready()
            return await self._look_for_partner(
                matchmaker_pb2.ClientMessage(call_friend=matchmaker_pb2.CallFriend(user_id=user_id)), "CallFriend"
            )

    async def cancel_call(self) -> None:
        """Stop ringing (from another task while call_friend() waits: it raises with reason "cancelled")."""
        if not self._my_ring:
            raise DuetClientError("not ringing anyone")
        await self._send(
            matchmaker_pb2.ClientMessage(cancel_call=matchmaker_pb2.CancelCall(request_id=self._my_ring)),
            "CancelCall",
        )

    async def wait_incoming_call(self, timeout: float | None = None) -> matchmaker_pb2.IncomingCall:
        """The next friend's call ringing for you (request_id, caller profile, caller_user_id)."""
        try:
            return await asyncio.wait_for(self._incoming.get(), timeout)
        except TimeoutError:
            raise DuetClientError(f"timed out after {timeout} s waiting for an incoming call") from None

    async def answer(self, request_id: str, *, accept: bool = True) -> CallResult | None:
        """Accept (returns once the caller's first frame is decoded) or decline (returns None)."""
        async with self._lock:
            self._check_ready()
            if request_id in self.ended_rings:
                raise DuetClientError(
                    f"the call {request_id} ended before it was answered: {self.ended_rings[request_id]}",
                    reason=self.ended_rings[request_id],
                )
            message = matchmaker_pb2.ClientMessage(
                answer_call=matchmaker_pb2.AnswerCall(request_id=request_id, accept=accept)
            )
            if accept:
                return await self._look_for_partner(message, "AnswerCall")
            await self._send(message, "AnswerCall")
            while True:
                event = await self._inbox.expect(
                    ("ring_ended",), timeout=self.rpc_timeout, waiting_for="the declined call to end"
                )
                if event.ring_ended.request_id == request_id:  # type: ignore[union-attr]
                    return None

    def _route_friend_event(self, message: matchmaker_pb2.ServerMessage) -> bool:
        """Friends' events that are not answers to a request go to their own queues (True)."""
        kind = message.WhichOneof("msg")
        if kind == "incoming_call":
            self._incoming.put_nowait(message.incoming_call)
            return True
        if kind == "friend_added":
            self._new_friends.put_nowait(message.friend_added)
            return True
        if kind == "ringing":
            self._my_ring = message.ringing.request_id
        elif kind == "ring_ended":
            if message.ring_ended.request_id != self._my_ring:
                self.ended_rings[message.ring_ended.request_id] = message.ring_ended.reason
            else:
                self._my_ring = ""
        elif kind == "matched":
            self._my_ring = ""
        return False

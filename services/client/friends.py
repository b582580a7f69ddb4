"""A user's friends list over the matchmaker's unary RPCs (ListFriends, RemoveFriend).

Needs no Session: a tool can list or remove friends while the user's session
runs elsewhere (a second Session would replace that one). Adding friends and
calling them happen on the Session (``DuetClient.add_friend``, ``call_friend``,
``answer``), since they concern calls.
"""

from __future__ import annotations

from dataclasses import dataclass

import grpc

from duet.services.auth.bearer import bearer_metadata
from duet.services.auth.sources import StaticToken, TokenSource
from duet.services.client.inbox import DuetClientError
from duet.v1 import matchmaker_pb2, matchmaker_pb2_grpc

__all__ = ["FriendInfo", "FriendsDirectory", "friend_info"]


@dataclass(frozen=True)
class FriendInfo:
    user_id: str
    display_name: str
    online: bool  # has a session open: can be called
    busy: bool  # in a call or being rung right now
    since_ms: float  # epoch ms: when you became friends


def friend_info(message: matchmaker_pb2.Friend) -> FriendInfo:
    return FriendInfo(message.user_id, message.display_name, message.online, message.busy, message.since)


class FriendsDirectory:
    """One user's friends list; ``async with`` closes its channel."""

    def __init__(self, matchmaker_address: str, token: str | TokenSource, *, rpc_timeout: float = 10.0) -> None:
        self._token: TokenSource = StaticToken(token) if isinstance(token, str) else token
        self._channel = grpc.aio.insecure_channel(matchmaker_address)
        self._stub = matchmaker_pb2_grpc.MatchmakerStub(self._channel)
        self.rpc_timeout = rpc_timeout

    async def __aenter__(self) -> FriendsDirectory:
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        await self.close()

    async def close(self) -> None:
        await self._channel.close()

    async def list(self) -> list[FriendInfo]:
        """Your friends, online ones first. Raises DuetClientError (with the gRPC status) when refused."""
        try:
            response = await self._stub.ListFriends(
                matchmaker_pb2.ListFriendsRequest(),
                timeout=self.rpc_timeout,
                metadata=bearer_metadata(await self._token()),
            )
        except grpc.aio.AioRpcError as exc:
            raise DuetClientError.from_rpc(exc, "listing your friends failed") from exc
        return [friend_info(f) for f in response.friends]

    async def remove(self, user_id: str) -> None:
        """Unfriend ``user_id``. Raises DuetClientError: NOT_FOUND when they are not your friend."""
        try:
            await self._stub.RemoveFriend(
                matchmaker_pb2.RemoveFriendRequest(user_id=user_id),
                timeout=self.rpc_timeout,
                metadata=bearer_metadata(await self._token()),
            )
        except grpc.aio.AioRpcError as exc:
            raise DuetClientError.from_rpc(exc, f"removing friend '{user_id}' failed") from exc

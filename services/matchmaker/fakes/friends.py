"""Friend requests and friendships in memory, kept by the PostgreSQL Store's rules."""

from __future__ import annotations

import asyncio
import time

from duet.services.matchmaker.fakes.store import InMemoryStore
from duet.services.matchmaker.ports import FriendStore
from duet.services.store.records import FriendRow, UnknownUser, checked_pair


class InMemoryFriendStore(FriendStore):
    """The FriendStore port in dicts; the contract test holds it to the PostgreSQL Store's behaviour.

    ``users``: where users and their display names live (the Store's users
    table); None: every user exists and is shown by their id. Every call
    yields to the event loop once, as a round trip would.
    """

    def __init__(self, users: InMemoryStore | None = None) -> None:
        self.users = users
        self.requests: dict[tuple[str, str], str] = {}  # (requester, requested) -> call id
        self.friends: dict[frozenset[str], float] = {}  # pair -> since (epoch s)

    async def _display_name(self, user_id: str) -> str | None:
        if self.users is None:
            return user_id
        row = await self.users.get_user(user_id)
        return None if row is None else row.display_name

    async def _known(self, *users: str) -> None:
        for user in users:
            if await self._display_name(user) is None:
                raise UnknownUser(f"names a user that does not exist: '{user}'")

    async def add_friend_request(self, requester: str, requested: str, call_id: str) -> FriendRow | None:
        checked_pair(requester, requested, "friend")
        await asyncio.sleep(0)
        await self._known(requester, requested)
        pair = frozenset((requester, requested))
        if pair not in self.friends and (requested, requester) not in self.requests:
            self.requests.setdefault((requester, requested), call_id)
            return None
        self.requests.pop((requested, requester), None)
        self.requests.pop((requester, requested), None)
        since = self.friends.setdefault(pair, time.time())
        return FriendRow(requested, await self._display_name(requested) or requested, since)

    async def friends_of(self, user_id: str) -> list[FriendRow]:
        await asyncio.sleep(0)
        out = []
        for pair, since in self.friends.items():
            if user_id in pair:
                (other,) = pair - {user_id}
                out.append(FriendRow(other, await self._display_name(other) or other, since))
        return out

    async def are_friends(self, user_id: str, other: str) -> bool:
        await asyncio.sleep(0)
        return frozenset((user_id, other)) in self.friends

    async def remove_friend(self, user_id: str, other: str) -> bool:
        await asyncio.sleep(0)
        self.requests.pop((user_id, other), None)
        self.requests.pop((other, user_id), None)
        return self.friends.pop(frozenset((user_id, other)), None) is not None

    async def user_exists(self, user_id: str) -> bool:
        await asyncio.sleep(0)
        return await self._display_name(user_id) is not None

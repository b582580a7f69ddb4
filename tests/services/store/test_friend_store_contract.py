"""The FriendStore contract: the same checks against the in-memory fake and the PostgreSQL Store,
so the core's tests cannot rely on behaviour the database does not have."""

from __future__ import annotations

import asyncio

import pytest

from duet.services.matchmaker.fakes import InMemoryFriendStore, InMemoryStore
from duet.services.store.postgres import Store
from duet.services.store.records import UnknownUser

USERS = ("ana", "ben", "cleo")


@pytest.fixture(params=["memory", "postgres"])
def both(request: pytest.FixtureRequest) -> tuple[InMemoryFriendStore | Store, InMemoryStore | Store]:
    if request.param == "memory":
        users = InMemoryStore()
        return InMemoryFriendStore(users), users
    store: Store = request.getfixturevalue("store")
    return store, store


@pytest.fixture
async def friends(both: tuple[InMemoryFriendStore | Store, InMemoryStore | Store]) -> InMemoryFriendStore | Store:
    store, users = both
    for user in USERS:
        await users.upsert_user(user, user.title())
    return store


async def test_a_request_alone_makes_no_friends_both_do(friends: InMemoryFriendStore | Store) -> None:
    assert await friends.add_friend_request("ana", "ben", "c1") is None
    assert await friends.add_friend_request("ana", "ben", "c1") is None  # again: nothing changes
    assert not await friends.are_friends("ana", "ben")
    assert await friends.friends_of("ana") == [] and await friends.friends_of("ben") == []

    row = await friends.add_friend_request("ben", "ana", "c1")
    assert row is not None and (row.user_id, row.display_name) == ("ana", "Ana") and row.since > 0
    assert await friends.are_friends("ana", "ben") and await friends.are_friends("ben", "ana")
    assert [(f.user_id, f.display_name) for f in await friends.friends_of("ben")] == [("ana", "Ana")]
    assert [f.user_id for f in await friends.friends_of("ana")] == ["ben"]
    assert await friends.friends_of("cleo") == []
    # Asked again once friends: still friends, one friendship.
    again = await friends.add_friend_request("ana", "ben", "c2")
    assert again is not None and again.user_id == "ben"
    assert len(await friends.friends_of("ana")) == 1


async def test_two_users_asking_at_once_end_as_friends(friends: InMemoryFriendStore | Store) -> None:
    results = await asyncio.gather(
        friends.add_friend_request("ana", "cleo", "c1"), friends.add_friend_request("cleo", "ana", "c1")
    )
    assert [r is None for r in results].count(True) == 1  # the second to ask made them friends
    assert await friends.are_friends("ana", "cleo")


async def test_unfriend_ends_it_and_drops_pending_requests(friends: InMemoryFriendStore | Store) -> None:
    await friends.add_friend_request("ana", "ben", "c1")
    await friends.add_friend_request("ben", "ana", "c1")
    assert await friends.remove_friend("ben", "ana")
    assert not await friends.remove_friend("ben", "ana")
    assert not await friends.are_friends("ana", "ben") and await friends.friends_of("ana") == []
    # A pending request goes too: one new request is not enough afterwards.
    await friends.add_friend_request("ana", "cleo", "c2")
    assert not await friends.remove_friend("cleo", "ana")
    assert await friends.add_friend_request("cleo", "ana", "c3") is None
    assert not await friends.are_friends("ana", "cleo")


async def test_bad_pairs_are_refused_and_nothing_is_written(friends: InMemoryFriendStore | Store) -> None:
    with pytest.raises(ValueError, match="themselves"):
        await friends.add_friend_request("ana", "ana", "c1")
    with pytest.raises(UnknownUser):
        await friends.add_friend_request("ana", "nobody", "c1")
    assert await friends.user_exists("ana") and not await friends.user_exists("nobody")
    assert await friends.friends_of("ana") == []

"""``recent_meetings`` (whom a user met lately, read when their session opens): the same answers from the
in-memory store and from PostgreSQL, so the core's tests of the rematch rules across replicas hold on both."""

from __future__ import annotations

import pytest

from duet.services.matchmaker.fakes import InMemoryStore
from duet.services.store.meetings import PastMeeting
from duet.services.store.postgres import Store
from duet.services.store.records import CALL_KIND_FRIEND, CallRow

AnyStore = InMemoryStore | Store
USERS = ("ana", "ben", "cleo", "dara", "eve", "finn")


@pytest.fixture(params=["memory", "postgres"])
def any_store(request: pytest.FixtureRequest) -> AnyStore:
    return InMemoryStore() if request.param == "memory" else request.getfixturevalue("store")


@pytest.fixture
async def match_store(any_store: AnyStore) -> AnyStore:
    for user in USERS:
        await any_store.upsert_user(user, user.title())
    return any_store


async def meet(store: AnyStore, call_id: str, a: str, b: str, *, ago_s: float, kind: str = "match") -> None:
    """A call between ``a`` and ``b`` recorded ``ago_s`` seconds ago."""
    await store.create_call(
        CallRow(call_id, a, b, "fra-1", "fra-1", "la", "lb", ["fra-1"], 0.0, "ended", "left", kind=kind)
    )
    # Back-date it: the store stamps created_at itself.
    if isinstance(store, Store):
        await store.pool.execute(
            "UPDATE calls SET created_at = now() - make_interval(secs => $2) WHERE call_id = $1", call_id, ago_s
        )
    else:
        row = store._calls[call_id]
        assert row.created_at is not None
        row.created_at -= ago_s


def partners(meetings: list[PastMeeting]) -> list[str]:
    return [m.partner for m in meetings]


async def test_the_last_partners_either_side_newest_first(match_store: AnyStore) -> None:
    await meet(match_store, "c1", "ana", "ben", ago_s=500)
    await meet(match_store, "c2", "cleo", "ana", ago_s=400)  # ana on side b
    await meet(match_store, "c3", "ana", "dara", ago_s=300)
    await meet(match_store, "c4", "eve", "ana", ago_s=200)
    await meet(match_store, "c5", "ben", "cleo", ago_s=100)  # not ana's
    got = await match_store.recent_meetings("ana", recent=3, window_s=0)
    assert partners(got) == ["eve", "dara", "cleo"]
    assert [round(m.seconds_ago) for m in got] == [200, 300, 400]
    assert partners(await match_store.recent_meetings("ana", recent=10, window_s=0)) == ["eve", "dara", "cleo", "ben"]
    assert await match_store.recent_meetings("ana", recent=0, window_s=0) == []
    assert await match_store.recent_meetings("finn", recent=5, window_s=3600) == []


async def test_the_window_adds_older_meetings_within_it(match_store: AnyStore) -> None:
    await meet(match_store, "c1", "ana", "ben", ago_s=5000)
    await meet(match_store, "c2", "ana", "cleo", ago_s=500)
    await meet(match_store, "c3", "dara", "ana", ago_s=50)
    got = await match_store.recent_meetings("ana", recent=1, window_s=1000)
    assert partners(got) == ["dara", "cleo"]  # the last one, and cleo within the window; not ben
    assert partners(await match_store.recent_meetings("ana", recent=0, window_s=1000)) == ["dara", "cleo"]


async def test_a_partner_met_twice_comes_once_with_the_latest_meeting(match_store: AnyStore) -> None:
    await meet(match_store, "c1", "ana", "ben", ago_s=300)
    await meet(match_store, "c2", "ben", "ana", ago_s=30)
    [only] = await match_store.recent_meetings("ana", recent=5, window_s=3600)
    assert only.partner == "ben" and only.seconds_ago == pytest.approx(30, abs=5)


async def test_friend_calls_are_not_meetings(match_store: AnyStore) -> None:
    await meet(match_store, "c1", "ana", "ben", ago_s=10, kind=CALL_KIND_FRIEND)
    assert await match_store.recent_meetings("ana", recent=5, window_s=3600) == []


async def test_bad_limits_are_refused(match_store: AnyStore) -> None:
    with pytest.raises(ValueError, match="recent"):
        await match_store.recent_meetings("ana", recent=-1, window_s=0)
    with pytest.raises(ValueError, match="window_s"):
        await match_store.recent_meetings("ana", recent=1, window_s=float("nan"))

"""The SafetyStore contract (blocks and reports): the same checks against the in-memory fake and
the PostgreSQL Store, so the core's tests cannot rely on behaviour the database does not have."""

from __future__ import annotations

import pytest

from duet.services.matchmaker.fakes import InMemorySafetyStore
from duet.services.store.postgres import Store
from duet.services.store.records import NothingToClear, UnknownUser

AnySafety = InMemorySafetyStore | Store
USERS = ("ana", "ben", "cleo", "dara")


@pytest.fixture(params=["memory", "postgres"])
def any_safety(request: pytest.FixtureRequest) -> AnySafety:
    if request.param == "memory":
        return InMemorySafetyStore(user_exists=lambda user: user in USERS)
    store: Store = request.getfixturevalue("store")
    return store


@pytest.fixture
async def safety(any_safety: AnySafety) -> AnySafety:
    if isinstance(any_safety, Store):
        for user in USERS:
            await any_safety.upsert_user(user, user.title())
    return any_safety


async def test_a_block_is_seen_from_both_sides_and_blocking_again_changes_nothing(safety: AnySafety) -> None:
    assert await safety.blocks_of("ana") == set()
    await safety.add_block("ana", "ben", "c1")
    await safety.add_block("ana", "ben", "c2")
    await safety.add_block("cleo", "ana", "c3")
    assert await safety.blocks_of("ana") == {"ben", "cleo"}
    assert await safety.blocks_of("ben") == {"ana"}
    assert await safety.blocks_of("dara") == set()


async def test_reports_count_distinct_reporters_once_per_call(safety: AnySafety) -> None:
    assert await safety.add_report("ana", "dara", "c1", "rude") == 1
    assert await safety.add_report("ana", "dara", "c1", "again") == 1  # the same call: one report
    assert await safety.add_report("ana", "dara", "c2", "") == 1  # another call, the same reporter
    assert await safety.add_report("ben", "dara", "c3", "spam") == 2
    assert await safety.report_count("dara") == 2
    assert await safety.report_count("ana") == 0


@pytest.mark.parametrize("kind", ["block", "report"])
async def test_bad_pairs_are_refused_and_nothing_is_written(safety: AnySafety, kind: str) -> None:
    async def add(a: str, b: str) -> object:
        if kind == "block":
            return await safety.add_block(a, b, "c1")
        return await safety.add_report(a, b, "c1", "")

    with pytest.raises(ValueError, match="themselves"):
        await add("ana", "ana")
    with pytest.raises(UnknownUser):
        await add("ana", "nobody")
    assert await safety.blocks_of("ana") == set() and await safety.report_count("nobody") == 0


async def test_an_overlong_report_reason_is_refused(safety: AnySafety) -> None:
    with pytest.raises(ValueError, match="at most 500"):
        await safety.add_report("ana", "ben", "c1", "x" * 501)
    assert await safety.report_count("ben") == 0


# -- moderation ---------------------------------------------------------------


async def test_a_review_clears_the_reports_so_far_and_later_ones_count_again(safety: AnySafety) -> None:
    for reporter, call in (("ana", "c1"), ("ben", "c2"), ("ben", "c3"), ("cleo", "c4")):
        await safety.add_report(reporter, "dara", call, f"{reporter} says so")
    assert [(u.user_id, u.reporters) for u in await safety.held_users(3, 10)] == [("dara", 3)]
    assert await safety.held_users(4, 10) == []
    review = await safety.clear_reports("dara", "ops-admin:mo", "looked fine")
    assert (review.user_id, review.reviewer, review.note, review.reports_cleared) == (
        "dara",
        "ops-admin:mo",
        "looked fine",
        4,  # reports, not reporters
    )
    assert await safety.report_count("dara") == 0 and await safety.held_users(1, 10) == []
    reports = await safety.reports_about("dara", 10)
    assert len(reports) == 4 and not any(r.counts for r in reports)  # kept, no longer counting
    assert await safety.add_report("ana", "dara", "c5", "again") == 1
    assert await safety.report_count("dara") == 1
    newest = (await safety.reports_about("dara", 10))[0]
    assert (newest.reporter, newest.call_id, newest.counts) == ("ana", "c5", True)
    user = await safety.reported_user("dara")
    assert user is not None and user.reporters == 1 and user.last_review_at == review.reviewed_at
    assert [r.note for r in await safety.reviews_of("dara", 10)] == ["looked fine"]


async def test_clearing_nothing_or_nobody_is_refused_and_writes_nothing(safety: AnySafety) -> None:
    with pytest.raises(NothingToClear):
        await safety.clear_reports("ana", "ops-admin:mo", "")
    with pytest.raises(UnknownUser):
        await safety.clear_reports("nobody", "ops-admin:mo", "")
    await safety.add_report("ben", "ana", "c1", "")
    with pytest.raises(ValueError, match="at most 500"):
        await safety.clear_reports("ana", "ops-admin:mo", "x" * 501)
    with pytest.raises(ValueError, match="control"):
        await safety.clear_reports("ana", "ops-admin:mo", "fine\x1b[2J")
    assert await safety.reviews_of("ana", 10) == [] and await safety.report_count("ana") == 1
    assert await safety.reported_user("nobody") is None


async def test_held_users_come_most_reported_first_and_respect_the_limit(safety: AnySafety) -> None:
    for reporter, reported, call in (("ana", "ben", "c1"), ("cleo", "ben", "c2"), ("dara", "cleo", "c3")):
        await safety.add_report(reporter, reported, call, "")
    assert [(u.user_id, u.reporters) for u in await safety.held_users(1, 10)] == [("ben", 2), ("cleo", 1)]
    assert [u.user_id for u in await safety.held_users(1, 1)] == ["ben"]

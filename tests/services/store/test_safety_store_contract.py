"""The SafetyStore contract (blocks and reports): the same checks against the in-memory fake and
the PostgreSQL Store, so the core's tests cannot rely on behaviour the database does not have."""

from __future__ import annotations

import pytest

from duet.services.matchmaker.fakes import InMemorySafetyStore
from duet.services.store.postgres import Store
from duet.services.store.records import UnknownUser

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

"""GroupCommitStore on real PostgreSQL: writes made at once share a transaction, each caller learns its own
result only after the commit, and a group that fails is retried write by write."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator

import pytest

from duet.services.store.group_commit import GroupCommitStore
from duet.services.store.postgres import Store
from duet.services.store.records import CallRow, DuplicateRecord, UnknownUser


def call(call_id: str, user_a: str = "ana", user_b: str = "ben") -> CallRow:
    return CallRow(call_id, user_a, user_b, "fra-1", "lon-1", "la", "lb", ["fra-1", "lon-1"], 12.5, "bridged", None, {"matched": 1000.0}, {"matched": 1000.0})  # fmt: skip


@pytest.fixture
async def grouped(store: Store) -> AsyncIterator[GroupCommitStore]:
    g = GroupCommitStore(store)
    g.start()
    try:
        yield g
    finally:
        await g.close()


async def test_concurrent_writes_commit_together_and_each_gets_its_result(
    grouped: GroupCommitStore, store: Store
) -> None:
    users = [f"u{i}" for i in range(40)]
    await asyncio.gather(*(grouped.upsert_user(u, u.upper()) for u in users))
    await asyncio.gather(*(grouped.open_ticket(f"t{i}", u, f"s{i}", "fra-1", 1_700_000_000.0 + i) for i, u in enumerate(users)))  # fmt: skip
    assert grouped.stats.groups < grouped.stats.writes  # 80 writes, fewer transactions
    # Closing: True for an open ticket, False for an unknown one, in the same group.
    closed = await asyncio.gather(grouped.close_ticket("t0", "matched"), grouped.close_ticket("nope", "matched"))
    assert closed == [True, False]
    assert await grouped.close_ticket("t0", "expired") is False  # the first outcome stays
    await asyncio.gather(*(grouped.create_call(call(f"c{i}", users[i], users[i + 1])) for i in range(0, 20, 2)))
    # All of it is in the database, through the plain Store.
    assert len(await store.open_tickets()) == 39
    t0 = await store.get_ticket("t0")
    assert t0 is not None and t0.outcome == "matched"
    row = await grouped.get_call("c4")
    assert row is not None and (row.user_a, row.user_b, row.route) == ("u4", "u5", ["fra-1", "lon-1"])
    assert (await store.get_user("u7")) is not None


async def test_a_new_ticket_replaces_the_users_open_one(grouped: GroupCommitStore, store: Store) -> None:
    await grouped.upsert_user("ana", "Ana")
    await grouped.open_ticket("t1", "ana", "s1", "fra-1", 1_700_000_000.0)
    await grouped.open_ticket("t2", "ana", "s2", "fra-1", 1_700_000_001.0)
    old = await store.get_ticket("t1")
    assert old is not None and old.outcome == "replaced"
    assert [t.ticket_id for t in await store.open_tickets("ana")] == ["t2"]


async def test_a_failing_write_fails_alone_and_its_group_still_commits(grouped: GroupCommitStore, store: Store) -> None:
    await asyncio.gather(grouped.upsert_user("ana", "Ana"), grouped.upsert_user("ben", "Ben"))
    results = await asyncio.gather(
        grouped.create_call(call("good-1")),
        grouped.create_call(call("bad", user_b="nobody")),  # a user that does not exist
        grouped.open_ticket("t1", "ana", "s1", "fra-1", 1_700_000_000.0),
        grouped.create_call(call("good-1")),  # the same id again
        return_exceptions=True,
    )
    assert results[0] is None and results[2] is None
    assert isinstance(results[1], UnknownUser)
    assert isinstance(results[3], DuplicateRecord)
    assert grouped.stats.retried_alone >= 4
    assert await store.get_call("good-1") is not None and await store.get_call("bad") is None
    assert await store.get_ticket("t1") is not None


async def test_bad_input_is_refused_before_it_is_queued(grouped: GroupCommitStore) -> None:
    with pytest.raises(ValueError, match="outcome"):
        await grouped.close_ticket("t1", "")
    with pytest.raises(ValueError, match="finite"):
        await grouped.create_call(call("c1").__class__(**{**call("c1").__dict__, "route_rtt_ms": float("nan")}))
    assert grouped.stats.writes == 0


async def test_close_commits_what_is_queued_then_refuses_new_writes(store: Store) -> None:
    g = GroupCommitStore(store)
    g.start()
    pending = [asyncio.create_task(g.upsert_user(f"u{i}", "U")) for i in range(25)]
    await asyncio.sleep(0)  # queued, not yet committed
    await g.close()
    await asyncio.gather(*pending)
    assert all(await asyncio.gather(*(store.get_user(f"u{i}") for i in range(25))))
    with pytest.raises(RuntimeError, match="not running"):
        await g.upsert_user("late", "Late")


async def test_pairs_close_both_or_neither_in_a_group_and_keep_what_replicas_need(
    grouped: GroupCommitStore, store: Store
) -> None:
    users = ["ana", "ben", "cleo", "dara", "eli", "fay"]
    await asyncio.gather(*(grouped.upsert_user(u, u.title()) for u in users))
    await asyncio.gather(
        *(
            grouped.open_ticket(
                f"t-{u}",
                u,
                f"s-{u}",
                "fra-1",
                1_700_000_000.0,
                region="Frankfurt",
                shard="emea",
                preferences={"languages": ["de"]},
            )
            for u in users
        )
    )
    await grouped.close_ticket("t-dara", "cancelled: by the client")
    # Three pairs at once: two whose tickets are open, one with dara's already closed.
    results = await asyncio.gather(
        grouped.close_pair(["t-ana", "t-ben"], "matched"),
        grouped.close_pair(["t-cleo", "t-dara"], "matched"),
        grouped.close_pair(["t-eli", "t-fay"], "matched"),
    )
    assert results == [[], ["t-dara"], []]
    cleo = await store.get_ticket("t-cleo")
    assert cleo is not None and cleo.outcome is None  # her pair changed nothing: still waiting
    assert {t.ticket_id for t in await store.open_tickets_in_shard("emea")} == {"t-cleo"}
    (restored,) = await grouped.open_tickets_in_shard("emea")
    assert (restored.region, restored.shard, restored.preferences) == ("Frankfurt", "emea", {"languages": ["de"]})
    # A ticket in two pairs of one group: each pair is decided alone, so only the first takes it.
    await grouped.open_ticket("t-ana2", "ana", "s-ana2", "fra-1", 1_700_000_001.0)
    await grouped.open_ticket("t-ben2", "ben", "s-ben2", "fra-1", 1_700_000_001.0)
    first, second = await asyncio.gather(
        grouped.close_pair(["t-ana2", "t-cleo"], "matched"), grouped.close_pair(["t-ben2", "t-cleo"], "matched")
    )
    assert first == [] and second == ["t-cleo"]
    await grouped.create_call(CallRow("c-sh", "ana", "ben", "fra-1", "fra-1", "la", "lb", ["fra-1"], 0.0, "bridged", None, {}, {}, shard="emea"))  # fmt: skip
    row = await store.get_call("c-sh")
    assert row is not None and row.shard == "emea"


async def test_a_pair_closed_with_its_call_shares_the_group_and_a_stale_pair_records_nothing(
    grouped: GroupCommitStore, store: Store
) -> None:
    users = ["ana", "ben", "cleo", "dara", "eli", "fay", "gus", "hal"]
    await asyncio.gather(*(grouped.upsert_user(u, u.title()) for u in users))
    await asyncio.gather(*(grouped.open_ticket(f"t-{u}", u, f"s-{u}", "fra-1", 1_700_000_000.0) for u in users))
    await grouped.close_ticket("t-dara", "cancelled: by the client")
    groups_before = grouped.stats.groups
    # Four matches at once with a plain write among them: two whose tickets are open, one with dara's
    # ticket closed already, one whose call id is taken (its group fails and is retried write by write).
    await grouped.create_call(call("c-taken", "gus", "hal"))
    results = await asyncio.gather(
        grouped.close_pair_and_create_call(["t-ana", "t-ben"], "matched", call("c-ab", "ana", "ben")),
        grouped.close_pair_and_create_call(["t-cleo", "t-dara"], "matched", call("c-cd", "cleo", "dara")),
        grouped.close_pair_and_create_call(["t-eli", "t-fay"], "matched", call("c-ef", "eli", "fay")),
        grouped.close_pair_and_create_call(["t-gus", "t-hal"], "matched", call("c-taken", "gus", "hal")),
        grouped.upsert_user("ivy", "Ivy"),
        return_exceptions=True,
    )
    assert results[:3] == [[], ["t-dara"], []] and results[4] is None
    assert isinstance(results[3], DuplicateRecord)
    assert grouped.stats.retried_alone >= 5
    for call_id, users_ in (("c-ab", ("ana", "ben")), ("c-ef", ("eli", "fay"))):
        row = await store.get_call(call_id)
        assert row is not None and (row.user_a, row.user_b) == users_
    assert await store.get_call("c-cd") is None
    outcomes = {u: (await store.get_ticket(f"t-{u}")).outcome for u in users}  # type: ignore[union-attr]
    assert outcomes == {
        "ana": "matched",
        "ben": "matched",
        "cleo": None,  # her pair changed nothing: still waiting
        "dara": "cancelled: by the client",
        "eli": "matched",
        "fay": "matched",
        "gus": None,  # the refused call left both tickets open
        "hal": None,
    }
    # Without a failing write, matches commit together: fewer transactions than writes.
    await asyncio.gather(*(grouped.open_ticket(f"t2-{u}", u, f"s-{u}", "fra-1", 1_700_000_001.0) for u in users))
    before = (grouped.stats.groups, grouped.stats.writes)
    assert await asyncio.gather(
        *(
            grouped.close_pair_and_create_call([f"t2-{a}", f"t2-{b}"], "matched", call(f"c2-{a}", a, b))
            for a, b in zip(users[::2], users[1::2], strict=True)
        )
    ) == [[], [], [], []]
    assert grouped.stats.writes - before[1] == 4 and grouped.stats.groups - before[0] < 4
    assert grouped.stats.groups > groups_before
    assert all([await store.get_call(f"c2-{a}") is not None for a in users[::2]])

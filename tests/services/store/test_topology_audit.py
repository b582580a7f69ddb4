"""The topology audit log: the same contract in PostgreSQL and in memory."""

from __future__ import annotations

import time
from collections.abc import AsyncIterator

import pytest

from duet.services.devkit.scratch_database import scratch_database
from duet.services.store.postgres import Store
from duet.services.store.topology_audit import MemoryTopologyAudit, PostgresTopologyAudit, TopologyAudit

DOC = {"regions": [{"name": "Frankfurt", "lat": 50.1, "lon": 8.7}], "edges": [], "links": []}


@pytest.fixture(params=["postgres", "memory"])
async def audit(request: pytest.FixtureRequest, database_url: str) -> AsyncIterator[TopologyAudit]:
    if request.param == "memory":
        yield MemoryTopologyAudit()
        return
    async with scratch_database(database_url) as dsn:
        store = await Store.open(dsn)
        try:
            yield PostgresTopologyAudit(store.pool)
        finally:
            await store.close()


async def test_an_empty_log(audit: TopologyAudit) -> None:
    assert await audit.latest() is None
    assert await audit.recent(10) == []


async def test_entries_come_back_newest_first_with_everything_recorded(audit: TopologyAudit) -> None:
    before = time.time()
    first = await audit.record(
        actor="ana", action="drain", changes=["edge fra-1: state active -> draining"], version_before=1,
        version_after=2, topology=DOC,
    )  # fmt: skip
    second = await audit.record(
        actor="ben", action="link", changes=["a", "b"], version_before=2, version_after=3, topology={**DOC, "edges": []}
    )
    assert second.change_id > first.change_id
    assert before - 1 <= first.applied_at <= second.applied_at <= time.time() + 1
    latest = await audit.latest()
    assert latest == second
    assert latest is not None and dict(latest.topology) == {**DOC, "edges": []}
    rows = await audit.recent(10)
    assert [(r.actor, r.action, r.changes, r.version_before, r.version_after) for r in rows] == [
        ("ben", "link", ("a", "b"), 2, 3),
        ("ana", "drain", ("edge fra-1: state active -> draining",), 1, 2),
    ]
    assert await audit.recent(1) == [second]
    assert await audit.recent(0) == []


async def test_limits_out_of_range(audit: TopologyAudit) -> None:
    for limit in (-1, 1001):
        with pytest.raises(ValueError, match="limit"):
            await audit.recent(limit)


async def test_the_postgres_log_outlives_its_pool(database_url: str) -> None:
    assert PostgresTopologyAudit.durable and not MemoryTopologyAudit.durable
    async with scratch_database(database_url) as dsn:
        store = await Store.open(dsn)
        try:
            audit = PostgresTopologyAudit(store.pool)
            row = await audit.record(
                actor="ana", action="apply", changes=[], version_before=0, version_after=1, topology=DOC
            )
        finally:
            await store.close()
        again = await Store.open(dsn)
        try:
            assert await PostgresTopologyAudit(again.pool).latest() == row
        finally:
            await again.close()

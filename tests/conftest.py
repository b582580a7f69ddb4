"""Shared fixtures: one PostgreSQL server per test session, one fresh database per test."""

from __future__ import annotations

import os

# Before anything imports grpc (it reads this once, then): with fork support on, gRPC
# restarts its threads in every fork()ed child, and a child that closes its inherited
# descriptors before exec (subprocess does) can abort in gRPC's poller. The tests fork
# after using gRPC (as root, initdb and pg_ctl run via fork to switch user); the duet
# command sets the same.
os.environ.setdefault("GRPC_ENABLE_FORK_SUPPORT", "false")

import shutil
from collections.abc import AsyncIterator, Iterator

import pytest

from duet.services.devkit import embedded_postgres as embedded
from duet.services.devkit.scratch_database import scratch_database
from duet.services.store.postgres import Store


@pytest.fixture(scope="session")
def database_url() -> Iterator[str]:
    """$DUET_DATABASE_URL if set, else a private cluster for this session (never the dev .duet/)."""
    given = os.environ.get(embedded.DATABASE_URL_ENV)
    if given:
        yield given
        return
    # Not tmp_path_factory: as root the server runs as another user, and pytest's
    # tmp root (/tmp/pytest-of-root, mode 0700) is closed to it.
    base = embedded.make_scratch_dir("duet-test-pg-")
    pg = embedded.EmbeddedPostgres(base / "pg")
    try:
        yield pg.start()
    finally:
        pg.stop()
        shutil.rmtree(base, ignore_errors=True)


@pytest.fixture
async def store(database_url: str) -> AsyncIterator[Store]:
    """A migrated Store on a database of its own, dropped after the test."""
    async with scratch_database(database_url) as dsn:
        s = await Store.open(dsn)
        try:
            yield s
        finally:
            await s.close()

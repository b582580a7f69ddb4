"""Versioned schema migrations, applied by every service at start.

Migrations are the package's `migrations/NNNN_name.sql` files, applied in
version order, each in its own transaction together with its row in
`schema_migrations`, so a failed migration leaves nothing half done. Every
transaction first takes a transaction-scoped advisory lock: services starting
together against one database apply each migration exactly once.
"""

from __future__ import annotations

import contextlib
import itertools
import logging
import re
from collections.abc import AsyncIterator, Sequence
from dataclasses import dataclass
from importlib import resources
from typing import TypeAlias

import asyncpg
from asyncpg.pool import PoolConnectionProxy

logger = logging.getLogger("duet.db")

#: Advisory lock key shared by all Duet services ("duetmigr" as ASCII); it is
#: per database, so separate databases on one server do not wait for each other.
MIGRATION_LOCK_KEY = int.from_bytes(b"duetmigr", "big")

_FILE_NAME = re.compile(r"^(\d{4})_([a-z0-9_]+)\.sql$")

_CREATE_VERSION_TABLE = """
CREATE TABLE IF NOT EXISTS schema_migrations (
    version    integer PRIMARY KEY,
    name       text NOT NULL,
    applied_at timestamptz NOT NULL DEFAULT now()
)
"""

Connectable: TypeAlias = asyncpg.Connection | asyncpg.Pool | PoolConnectionProxy


@dataclass(frozen=True)
class Migration:
    version: int
    name: str
    sql: str


def load_migrations() -> list[Migration]:
    """The packaged migrations, in version order."""
    folder = resources.files("duet.services.store").joinpath("migrations")
    found: list[Migration] = []
    for entry in folder.iterdir():
        if not entry.name.endswith(".sql"):
            continue
        m = _FILE_NAME.match(entry.name)
        if m is None:
            # A misnamed file would otherwise be skipped silently.
            raise RuntimeError(f"migration file {entry.name!r} is not named NNNN_lowercase_name.sql")
        found.append(Migration(int(m.group(1)), m.group(2), entry.read_text(encoding="utf-8")))
    return _checked(found)


def _checked(migrations: Sequence[Migration]) -> list[Migration]:
    ordered = sorted(migrations, key=lambda m: m.version)
    for prev, cur in itertools.pairwise(ordered):
        if prev.version == cur.version:
            raise RuntimeError(f"two migrations share version {cur.version}: {prev.name}, {cur.name}")
    if any(m.version <= 0 for m in ordered):
        raise RuntimeError("migration versions start at 1")
    return ordered


@contextlib.asynccontextmanager
async def _connection(db: Connectable) -> AsyncIterator[asyncpg.Connection | PoolConnectionProxy]:
    if isinstance(db, asyncpg.Pool):
        async with db.acquire() as conn:
            yield conn
    else:
        yield db


async def migrate(db: Connectable, migrations: Sequence[Migration] | None = None) -> list[int]:
    """Apply pending migrations (default: the packaged ones); return the versions applied now."""
    todo = load_migrations() if migrations is None else _checked(migrations)
    applied_now: list[int] = []
    async with _connection(db) as conn:
        async with conn.transaction():
            await conn.execute("SELECT pg_advisory_xact_lock($1)", MIGRATION_LOCK_KEY)
            await conn.execute(_CREATE_VERSION_TABLE)
            done = {r["version"] for r in await conn.fetch("SELECT version FROM schema_migrations")}
        for m in todo:
            if m.version in done:
                continue
            async with conn.transaction():
                await conn.execute("SELECT pg_advisory_xact_lock($1)", MIGRATION_LOCK_KEY)
                # Re-check under the lock: another service may have just applied it.
                if await conn.fetchval("SELECT true FROM schema_migrations WHERE version = $1", m.version):
                    continue
                try:
                    await conn.execute(m.sql)
                except asyncpg.PostgresError as exc:
                    raise RuntimeError(f"migration {m.version:04d}_{m.name} failed: {exc}") from exc
                await conn.execute("INSERT INTO schema_migrations (version, name) VALUES ($1, $2)", m.version, m.name)
            applied_now.append(m.version)
            logger.info("applied migration %04d_%s", m.version, m.name)
        unknown = sorted(done - {m.version for m in todo})
        if unknown:
            logger.warning("database has migrations this code does not know (a newer release?): %s", unknown)
    return applied_now


__all__ = ["MIGRATION_LOCK_KEY", "Migration", "load_migrations", "migrate"]

"""Helpers for tests that need an isolated database on a shared server."""

from __future__ import annotations

import contextlib
import secrets
from collections.abc import AsyncIterator
from urllib.parse import urlsplit, urlunsplit

import asyncpg


def with_database(dsn: str, name: str) -> str:
    """`dsn` pointing at database `name` instead (URL-form DSNs only)."""
    parts = urlsplit(dsn)
    if parts.scheme not in ("postgres", "postgresql"):
        raise ValueError(f"expected a postgresql:// URL, got {dsn!r}")
    return urlunsplit(parts._replace(path="/" + name))


@contextlib.asynccontextmanager
async def scratch_database(admin_dsn: str, prefix: str = "test") -> AsyncIterator[str]:
    """Create an empty database (named `<prefix>_<random>`) next to `admin_dsn`'s,
    yield its DSN, and drop it afterwards (disconnecting anyone still on it).

    The user in `admin_dsn` needs CREATEDB (the embedded cluster's user is superuser).
    """
    name = f"{prefix}_{secrets.token_hex(6)}"
    admin = await asyncpg.connect(admin_dsn)
    try:
        await admin.execute(f'CREATE DATABASE "{name}"')
    finally:
        await admin.close()
    try:
        yield with_database(admin_dsn, name)
    finally:
        admin = await asyncpg.connect(admin_dsn)
        try:
            await admin.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        finally:
            await admin.close()


__all__ = ["scratch_database", "with_database"]

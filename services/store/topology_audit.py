"""The topology audit log: every applied topology change with who, when, what, and the topology after it.

The newest entry's topology is the running declaration, so the routing
service restores it at start (PostgreSQL). Without a database the service
keeps the same log in memory (``MemoryTopologyAudit``), which ends with it.
"""

from __future__ import annotations

import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Protocol

import asyncpg

__all__ = ["MemoryTopologyAudit", "PostgresTopologyAudit", "TopologyAudit", "TopologyChangeRow"]

MAX_LIST = 1000


@dataclass(frozen=True)
class TopologyChangeRow:
    change_id: int
    applied_at: float  # epoch seconds
    actor: str
    action: str
    changes: tuple[str, ...]
    version_before: int
    version_after: int
    topology: Mapping[str, Any] = field(repr=False)  # the declared topology after the change (the file format)


class TopologyAudit(Protocol):
    """Where topology changes are recorded."""

    @property
    def durable(self) -> bool:
        """True when the log outlives the process (a database)."""
        ...

    async def record(
        self,
        *,
        actor: str,
        action: str,
        changes: Sequence[str],
        version_before: int,
        version_after: int,
        topology: Mapping[str, Any],
    ) -> TopologyChangeRow: ...

    async def latest(self) -> TopologyChangeRow | None: ...

    async def recent(self, limit: int) -> list[TopologyChangeRow]:
        """The newest ``limit`` changes, newest first."""
        ...


def _checked_limit(limit: int) -> int:
    if isinstance(limit, bool) or not isinstance(limit, int) or not 0 <= limit <= MAX_LIST:
        raise ValueError(f"limit must be an integer in 0..{MAX_LIST}, got {limit!r}")
    return limit


def _row(r: asyncpg.Record) -> TopologyChangeRow:
    return TopologyChangeRow(
        change_id=r["change_id"],
        applied_at=r["applied_at"].timestamp(),
        actor=r["actor"],
        action=r["action"],
        changes=tuple(r["changes"]),
        version_before=r["version_before"],
        version_after=r["version_after"],
        topology=r["topology"],
    )


_COLUMNS = "change_id, applied_at, actor, action, changes, version_before, version_after, topology"


class PostgresTopologyAudit:
    """The log in the ``topology_changes`` table (migration 0002); the pool must decode jsonb (``Store.open``'s does)."""

    durable = True

    def __init__(self, pool: asyncpg.Pool) -> None:
        self.pool = pool

    async def record(
        self,
        *,
        actor: str,
        action: str,
        changes: Sequence[str],
        version_before: int,
        version_after: int,
        topology: Mapping[str, Any],
    ) -> TopologyChangeRow:
        r = await self.pool.fetchrow(
            "INSERT INTO topology_changes (actor, action, changes, version_before, version_after, topology) "
            f"VALUES ($1, $2, $3, $4, $5, $6) RETURNING {_COLUMNS}",
            actor,
            action,
            list(changes),
            version_before,
            version_after,
            dict(topology),
        )
        return _row(r)

    async def latest(self) -> TopologyChangeRow | None:
        r = await self.pool.fetchrow(f"SELECT {_COLUMNS} FROM topology_changes ORDER BY change_id DESC LIMIT 1")
        return None if r is None else _row(r)

    async def recent(self, limit: int) -> list[TopologyChangeRow]:
        rows = await self.pool.fetch(
            f"SELECT {_COLUMNS} FROM topology_changes ORDER BY change_id DESC LIMIT $1", _checked_limit(limit)
        )
        return [_row(r) for r in rows]


class MemoryTopologyAudit:
    """The same log in this process only (a routing service run without a database)."""

    durable = False

    def __init__(self) -> None:
        self._rows: list[TopologyChangeRow] = []

    async def record(
        self,
        *,
        actor: str,
        action: str,
        changes: Sequence[str],
        version_before: int,
        version_after: int,
        topology: Mapping[str, Any],
    ) -> TopologyChangeRow:
        row = TopologyChangeRow(
            len(self._rows) + 1, time.time(), actor, action, tuple(changes), version_before, version_after, topology
        )
        self._rows.append(row)
        return row

    async def latest(self) -> TopologyChangeRow | None:
        return self._rows[-1] if self._rows else None

    async def recent(self, limit: int) -> list[TopologyChangeRow]:
        return list(reversed(self._rows))[: _checked_limit(limit)]

"""Shard ownership: which replica serves each shard, taken over when its owner dies.

``ShardOwnership`` is the port: ``poll()`` is one round (take free shards up to
this replica's share, notice shards lost, refresh who owns the others), and
``keep_shards`` runs it every ``interval_s`` and tells a ``ShardListener``
what changed. The PostgreSQL implementation (``pg_ownership``) holds one
session-level advisory lock per shard on a dedicated connection; the
in-memory one (``fake_ownership``) is for tests of what sits on top.
"""

from __future__ import annotations

import asyncio
import logging
import math
from dataclasses import dataclass, field
from typing import Protocol

logger = logging.getLogger("duet.matchmaker.replicas")

POLL_INTERVAL_S = 0.5


@dataclass(frozen=True)
class ShardOwner:
    shard: str
    replica_id: str
    address: str  # host:port of the owner's Matchmaker service


@dataclass(frozen=True)
class OwnershipChange:
    """What one poll changed for this replica."""

    acquired: tuple[str, ...] = ()
    lost: tuple[str, ...] = ()


@dataclass
class OwnershipState:
    """This replica's view after a poll: what it owns, and the live owners of every shard."""

    owned: set[str] = field(default_factory=set)
    owners: dict[str, ShardOwner] = field(default_factory=dict)


class ShardOwnership(Protocol):
    replica_id: str
    address: str
    shards: tuple[str, ...]

    def owns(self, shard: str) -> bool: ...

    def owner_of(self, shard: str) -> ShardOwner | None:
        """The live owner of ``shard`` as of the last poll (None: nobody yet)."""
        ...

    async def poll(self) -> OwnershipChange:
        """One round: notice lost shards, take free ones up to this replica's share, refresh owners."""
        ...

    async def close(self) -> None:
        """Let every shard go (another replica takes them on its next poll)."""
        ...


class ShardListener(Protocol):
    async def shard_acquired(self, shard: str) -> None: ...

    async def shard_lost(self, shard: str) -> None: ...


def fair_share(shards: int, live_replicas: int) -> int:
    """How many shards one replica takes while others are alive: an equal share, rounded up."""
    return math.ceil(shards / max(1, live_replicas))


async def keep_shards(ownership: ShardOwnership, listener: ShardListener, interval_s: float = POLL_INTERVAL_S) -> None:
    """Poll ``ownership`` every ``interval_s`` until cancelled, telling ``listener`` each change.

    A failed poll (the database unreachable) is logged and tried again; the
    implementation reports the shards it could no longer prove it owns as lost.
    """
    while True:
        try:
            change = await ownership.poll()
        except Exception:
            logger.exception("shard ownership poll failed")
            change = OwnershipChange()
        for shard in change.lost:
            logger.warning("replica %s lost shard %s", ownership.replica_id, shard)
            await _tell(listener.shard_lost, shard)
        for shard in change.acquired:
            logger.info("replica %s owns shard %s", ownership.replica_id, shard)
            await _tell(listener.shard_acquired, shard)
        await asyncio.sleep(interval_s)


async def _tell(handler: object, shard: str) -> None:
    try:
        await handler(shard)  # type: ignore[operator]
    except Exception:
        # One shard's trouble must not stop ownership of the others.
        logger.exception("handling a change of shard %s failed", shard)

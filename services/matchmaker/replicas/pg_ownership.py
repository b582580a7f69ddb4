"""Shard ownership on PostgreSQL: one session-level advisory lock per shard.

Each replica keeps a dedicated connection. On it it holds a lock naming
itself (so the others can count the live replicas) and, for every shard it
owns, a lock on that shard (``pg_try_advisory_lock``: never waits). While it
holds a shard's lock it writes its address and backend pid into
``matchmaker_shards``; a row is current only while that backend still holds
the lock, which is how the others find the owner to forward to. When a
replica dies, even by SIGKILL, its socket closes, PostgreSQL ends its session
and frees its locks, and the next poll of a survivor takes the shards over.
"""

from __future__ import annotations

import asyncio
import logging

import asyncpg

from duet.services.matchmaker.replicas.ownership import OwnershipChange, ShardOwner, fair_share
from duet.services.matchmaker.replicas.shards import lock_key

logger = logging.getLogger("duet.matchmaker.replicas")

# The first key of the two-key advisory locks ("dsh" shards, "drp" replicas); the migration and
# per-user locks use other namespaces.
SHARD_NAMESPACE = 0x647368
REPLICA_NAMESPACE = 0x647270

_HELD = (
    "SELECT l.objid::bigint AS key, l.pid FROM pg_locks l "
    "WHERE l.locktype = 'advisory' AND l.granted AND l.classid = $1 AND l.objsubid = 2 "
    "AND l.database = (SELECT oid FROM pg_database WHERE datname = current_database())"
)


class ReplicaIdInUse(Exception):
    """Another live replica already runs under this replica id."""


class PostgresShardOwnership:
    """Ownership of ``shards`` for one replica, on its own connection to ``dsn``."""

    def __init__(
        self,
        dsn: str,
        replica_id: str,
        address: str,
        shards: tuple[str, ...],
        *,
        connect_timeout_s: float = 5.0,
    ) -> None:
        self.dsn = dsn
        self.replica_id = replica_id
        self.address = address
        self.shards = shards
        self.connect_timeout_s = connect_timeout_s
        self._conn: asyncpg.Connection | None = None
        self._owned: set[str] = set()
        self._owners: dict[str, ShardOwner] = {}

    def owns(self, shard: str) -> bool:
        return shard in self._owned

    def owned(self) -> frozenset[str]:
        return frozenset(self._owned)

    def owner_of(self, shard: str) -> ShardOwner | None:
        return self._owners.get(shard)

    async def connect(self) -> None:
        """Open the dedicated connection and register as a live replica (ReplicaIdInUse if one is already)."""
        conn = await asyncpg.connect(self.dsn, timeout=self.connect_timeout_s)
        try:
            if not await conn.fetchval(
                "SELECT pg_try_advisory_lock($1, $2)", REPLICA_NAMESPACE, lock_key(self.replica_id)
            ):
                raise ReplicaIdInUse(
                    f"another matchmaker replica is already running as '{self.replica_id}'; give each its own --replica-id"
                )
        except BaseException:
            await conn.close()
            raise
        self._conn = conn

    async def poll(self) -> OwnershipChange:
        lost: tuple[str, ...] = ()
        if self._conn is None or self._conn.is_closed():
            lost = self._drop_all()
            try:
                await self.connect()
            except (OSError, TimeoutError, asyncpg.PostgresError, asyncpg.InterfaceError) as exc:
                logger.warning("replica %s cannot reach the database: %s", self.replica_id, exc)
                return OwnershipChange(lost=lost)
        conn = self._conn
        assert conn is not None
        try:
            acquired = await self._take_and_look(conn)
        except (OSError, TimeoutError, asyncpg.PostgresError, asyncpg.InterfaceError) as exc:
            # The session (and with it every lock) may be gone: nothing is ours until we are back.
            logger.warning("replica %s lost its ownership connection: %s", self.replica_id, exc)
            conn.terminate()
            self._conn = None
            return OwnershipChange(lost=lost + self._drop_all())
        return OwnershipChange(acquired=acquired, lost=lost)

    def _drop_all(self) -> tuple[str, ...]:
        lost = tuple(sorted(self._owned))
        self._owned.clear()
        self._owners.clear()
        return lost

    async def _take_and_look(self, conn: asyncpg.Connection) -> tuple[str, ...]:
        live = await conn.fetchval(f"SELECT count(*) FROM ({_HELD}) r", REPLICA_NAMESPACE)
        held = {r["key"]: r["pid"] for r in await conn.fetch(_HELD, SHARD_NAMESPACE)}
        share = fair_share(len(self.shards), int(live))
        acquired = []
        for shard in self.shards:
            if len(self._owned) >= share:
                break
            if shard in self._owned or lock_key(shard) in held:
                continue
            if await conn.fetchval("SELECT pg_try_advisory_lock($1, $2)", SHARD_NAMESPACE, lock_key(shard)):
                await conn.execute(
                    "INSERT INTO matchmaker_shards (shard, replica_id, address, backend_pid) "
                    "VALUES ($1, $2, $3, pg_backend_pid()) ON CONFLICT (shard) DO UPDATE SET "
                    "replica_id = EXCLUDED.replica_id, address = EXCLUDED.address, "
                    "backend_pid = EXCLUDED.backend_pid, since = now()",
                    shard,
                    self.replica_id,
                    self.address,
                )
                self._owned.add(shard)
                acquired.append(shard)
        # Who serves the others: a row counts only while its backend holds the shard's lock.
        held = {r["key"]: r["pid"] for r in await conn.fetch(_HELD, SHARD_NAMESPACE)}
        owners = {}
        for r in await conn.fetch("SELECT shard, replica_id, address, backend_pid FROM matchmaker_shards"):
            if r["shard"] in self.shards and held.get(lock_key(r["shard"])) == r["backend_pid"]:
                owners[r["shard"]] = ShardOwner(r["shard"], r["replica_id"], r["address"])
        self._owners = owners
        return tuple(acquired)

    async def close(self) -> None:
        """Close the connection: PostgreSQL frees every lock, and the others take the shards over."""
        conn, self._conn = self._conn, None
        self._drop_all()
        if conn is not None and not conn.is_closed():
            try:
                await asyncio.wait_for(conn.close(), 2.0)
            except (OSError, asyncpg.PostgresError, asyncpg.InterfaceError, TimeoutError):
                conn.terminate()

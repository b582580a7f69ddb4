"""Shards taken over and given up: a replica's side of docs/replicas.md.

When this replica takes a shard it restores the shard's open tickets for
their users to come back to (with their place in the queue); when it loses
one it ends the shard's sessions so their clients reconnect to the new
owner, leaving their tickets open in the store. A part of ``Matchmaker`` (a
base class of it), kept apart so the core's file holds sessions and the pool.
"""

from __future__ import annotations

import asyncio
import logging
from typing import TYPE_CHECKING

from duet.services.matchmaker.config import MatchConfig
from duet.services.matchmaker.events import ShardMoved
from duet.services.matchmaker.pool import WaitingPool
from duet.services.matchmaker.ports import MatchStore
from duet.services.matchmaker.replicas.shards import ShardMap
from duet.services.matchmaker.replicas.ticket_restore import RestoredTicket
from duet.services.matchmaker.session_state import ActiveCall, ClientSession

logger = logging.getLogger("duet.matchmaker")


class ShardHandover:
    """Restoring and releasing a shard's tickets; the pool and sessions are the ``Matchmaker``'s."""

    store: MatchStore
    config: MatchConfig
    pool: WaitingPool
    shard_map: ShardMap
    serving_shards: set[str]
    sessions: dict[str, ClientSession]
    _calls: dict[str, ActiveCall]
    _by_user: dict[str, ClientSession]
    _restored: dict[str, RestoredTicket]
    _pool_lock: asyncio.Lock

    if TYPE_CHECKING:  # provided by the Matchmaker

        def _schedule(self, at_ms: float, ticket_id: str) -> None: ...

        async def close_session(self, session: ClientSession, reason: str, *, keep_ticket: bool = False) -> None: ...

    async def restore_shard(self, shard: str) -> int:
        """This replica now owns ``shard``: hold its open tickets for their users to come back.

        A user who returns (a new session, a leg, then FindPartner or Next) gets
        their ticket back with its queued_at; one who does not expires on the
        ticket TTL. Returns how many tickets were restored.
        """
        # Calls the dead owner left live have nobody to end them now: their clients lost it with their stream.
        ended = await self.store.end_calls_in_shard(
            shard, "matchmaker replica lost", keep=[c for c in self._calls if self._calls[c].sessions[0].shard == shard]
        )
        if ended:
            logger.info("shard %s: ended %d calls its previous owner left live", shard, ended)
        rows = await self.store.open_tickets_in_shard(shard)
        count = 0
        for row in rows:
            live = self._by_user.get(row.user_id)
            if live is not None and live.ticket is not None and live.ticket.ticket_id == row.ticket_id:
                continue  # already waiting here
            restored = RestoredTicket.of(row)
            self._restored[row.user_id] = restored
            self._schedule(restored.queued_at + self.config.ticket_ttl_s * 1000, restored.ticket_id)
            count += 1
        self.serving_shards.add(shard)
        logger.info("shard %s: restored %d waiting tickets", shard, count)
        return count

    async def release_shard(self, shard: str, reason: str) -> None:
        """This replica no longer owns ``shard``: end its sessions so their clients reconnect to the new owner.

        Their open tickets stay open in the store for the new owner to restore.
        """
        self.serving_shards.discard(shard)
        for restored in [r for r in self._restored.values() if r.shard == shard]:
            del self._restored[restored.user_id]
        for session in [s for s in self.sessions.values() if s.shard == shard]:
            ticket = session.ticket
            if ticket is not None:
                async with self._pool_lock:
                    self.pool.remove(ticket.ticket_id)
                session.ticket = None  # left open in the store: the new owner resumes it
            session.outbox.put_nowait(ShardMoved(reason))
            await self.close_session(session, reason)

    def waiting_by_shard(self) -> dict[str, int]:
        """Tickets waiting per shard: in the pool, and restored ones whose users have not come back yet."""
        counts = dict.fromkeys(self.shard_map.shards, 0)
        for t in self.pool.waiting():
            shard = self.shard_map.shard_of(t.region)
            counts[shard] = counts.get(shard, 0) + 1
        for r in self._restored.values():
            counts[r.shard] = counts.get(r.shard, 0) + 1
        return counts

    def _restored_ticket(self, ticket_id: str) -> RestoredTicket | None:
        for restored in self._restored.values():
            if restored.ticket_id == ticket_id:
                return restored
        return None

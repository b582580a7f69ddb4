"""Group commit for the matchmaker's writes: many callers, one transaction, each told only after the commit.

Under load most of a commit's cost is its round trip and its transaction, not
its rows. ``GroupCommitStore`` is the matchmaker's ``MatchStore`` over a
PostgreSQL ``Store``: the writes on the matching path (users, ticket opens
and closes, new calls) are queued, and one writer task commits whatever is
queued in one transaction, then resolves every caller's await. While it
commits, the next group gathers, so a lone write waits for no timer and a
busy matchmaker commits hundreds of writes at once.

Nothing is acknowledged before it is durable: ``await store.create_call(...)``
(or ``close_pair_and_create_call``, a match's two tickets closed and its call
recorded in one write) returns only after the transaction holding that row
committed, and the core tells clients of a match only after that await. When a group's transaction
fails (a broken key, a lost connection), each of its writes is retried alone
through the plain ``Store``, so every caller gets its own result or error, as
if there had been no grouping. Reads and the rarer writes go straight to the
``Store``.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Awaitable, Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from duet.services.matchmaker.ports import MatchStore
from duet.services.store.locks import USER_LOCK_NAMESPACE
from duet.services.store.meetings import PastMeeting
from duet.services.store.postgres import INSERT_CALL, Store, _to_ts, call_insert_args
from duet.services.store.records import (
    CallRow,
    ClockOffset,
    TicketRow,
    checked_call,
    checked_preferences_json,
)

logger = logging.getLogger(__name__)

# The same statements as Store's, run for a whole group with executemany (one round trip per statement).
_LOCK_USER = "SELECT pg_advisory_xact_lock($1, hashtext($2))"
_REPLACE_OPEN = "UPDATE tickets SET closed_at = now(), outcome = 'replaced' WHERE user_id = $1 AND closed_at IS NULL"
_INSERT_TICKET = (
    "INSERT INTO tickets (ticket_id, user_id, session_id, edge_id, queued_at, region, shard, preferences) "
    "VALUES ($1, $2, $3, $4, $5, $6, $7, $8)"
)
_UPSERT_USER = (
    "INSERT INTO users (user_id, display_name) VALUES ($1, $2) "
    "ON CONFLICT (user_id) DO UPDATE SET display_name = EXCLUDED.display_name"
)
_CLOSE_TICKETS = (
    "UPDATE tickets AS t SET closed_at = now(), outcome = c.outcome "
    "FROM unnest($1::text[], $2::text[]) AS c(ticket_id, outcome) "
    "WHERE t.ticket_id = c.ticket_id AND t.closed_at IS NULL RETURNING t.ticket_id"
)
# A pair closes only when both its tickets are open: lock the open ones first, decide, then close.
_LOCK_OPEN = "SELECT ticket_id FROM tickets WHERE ticket_id = ANY($1::text[]) AND closed_at IS NULL FOR UPDATE"


@dataclass
class _Write:
    kind: str  # "user", "open", "close", "pair", "match" (a pair closed with its call), "call"
    args: tuple[Any, ...]
    done: asyncio.Future[Any] = field(default_factory=lambda: asyncio.get_running_loop().create_future())


@dataclass
class GroupStats:
    groups: int = 0  # transactions committed
    writes: int = 0  # writes they held
    retried_alone: int = 0  # writes of failed groups, retried one by one

    @property
    def mean_group(self) -> float:
        return self.writes / self.groups if self.groups else 0.0


class GroupCommitStore(MatchStore):
    """The MatchStore port over ``store``, committing concurrent writes together (see the module doc).

    ``start()`` before use, ``close()`` after (it commits what is queued first). ``max_group`` bounds
    one transaction's writes.
    """

    def __init__(self, store: Store, *, max_group: int = 1000) -> None:
        if max_group < 1:
            raise ValueError(f"max_group must be 1 or more, got {max_group}")
        self.store = store
        self.max_group = max_group
        self.stats = GroupStats()
        self._queue: asyncio.Queue[_Write | None] = asyncio.Queue()  # None: close() was called
        self._writer: asyncio.Task[None] | None = None

    def start(self) -> None:
        if self._writer is None:
            self._writer = asyncio.create_task(self._run(), name="group commit writer")

    async def close(self) -> None:
        """Commit what is queued, then stop the writer (the Store stays open: its owner closes it)."""
        writer, self._writer = self._writer, None
        if writer is None:
            return
        self._queue.put_nowait(None)  # after everything queued so far
        try:
            await asyncio.shield(writer)
        except asyncio.CancelledError:
            writer.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await writer
            raise

    async def _submit(self, kind: str, *args: Any) -> Any:
        if self._writer is None:
            raise RuntimeError("GroupCommitStore is not running: call start() first (and not after close())")
        write = _Write(kind, args)
        self._queue.put_nowait(write)
        return await write.done

    async def _run(self) -> None:
        stopping = False
        while not stopping:
            first = await self._queue.get()
            group = [] if first is None else [first]
            stopping = first is None
            while len(group) < self.max_group and not stopping and not self._queue.empty():
                w = self._queue.get_nowait()
                if w is None:
                    stopping = True
                else:
                    group.append(w)
            if not group:
                continue
            try:
                await self._commit(group)
            except asyncio.CancelledError:
                for w in group:
                    if not w.done.done():
                        w.done.cancel()
                raise

    async def _commit(self, group: list[_Write]) -> None:
        by_kind: dict[str, list[_Write]] = {"user": [], "open": [], "close": [], "pair": [], "match": [], "call": []}
        for w in group:
            by_kind[w.kind].append(w)
        closes, pairs = by_kind["close"], by_kind["pair"] + by_kind["match"]
        # One outcome per ticket per group: a ticket closed twice at once keeps its first outcome, alone.
        touched = [w.args[0] for w in closes] + [t for w in pairs for t in w.args[0]]
        if len(set(touched)) < len(touched):
            return await self._alone(group)
        stale: dict[int, list[str]] = {}
        try:
            async with self.store.pool.acquire() as conn, conn.transaction():
                if by_kind["user"]:
                    await conn.executemany(_UPSERT_USER, [w.args for w in by_kind["user"]])
                opens = by_kind["open"]
                if opens:
                    # Users in a fixed order, so two writers never wait on each other's locks crosswise.
                    users = sorted({w.args[1] for w in opens})
                    await conn.executemany(_LOCK_USER, [(USER_LOCK_NAMESPACE, u) for u in users])
                    await conn.executemany(_REPLACE_OPEN, [(u,) for u in users])
                    await conn.executemany(
                        _INSERT_TICKET,
                        [
                            (t, u, s, e, _to_ts(q, "queued_at"), r, h, p)
                            for t, u, s, e, q, r, h, p in (w.args for w in opens)
                        ],
                    )
                closed: set[str] = set()
                to_close = [(w.args[0], w.args[1]) for w in closes]
                if pairs:
                    locked = await conn.fetch(_LOCK_OPEN, [t for w in pairs for t in w.args[0]])
                    still_open = {r["ticket_id"] for r in locked}
                    for w in pairs:
                        ids, outcome = w.args[0], w.args[1]
                        missing = [t for t in ids if t not in still_open]
                        if missing:
                            stale[id(w)] = missing  # this pair changes nothing
                        else:
                            to_close += [(t, outcome) for t in ids]
                if to_close:
                    rows = await conn.fetch(_CLOSE_TICKETS, [t for t, _ in to_close], [o for _, o in to_close])
                    closed = {r["ticket_id"] for r in rows}
                # The calls of the matches whose pair closed: in the same transaction as the closes.
                calls = [w.args[0] for w in by_kind["call"]]
                calls += [w.args[2] for w in by_kind["match"] if id(w) not in stale]
                if calls:
                    await conn.executemany(INSERT_CALL, [call_insert_args(c) for c in calls])
        except asyncio.CancelledError:
            raise
        except Exception as exc:
            logger.info("a group of %d writes failed (%s); retrying each alone", len(group), exc)
            return await self._alone(group)
        self.stats.groups += 1
        self.stats.writes += len(group)
        for w in group:
            if w.done.done():
                continue
            if w.kind == "close":
                w.done.set_result(w.args[0] in closed)
            elif w.kind in ("pair", "match"):
                w.done.set_result(stale.get(id(w), []))
            else:
                w.done.set_result(None)

    async def _alone(self, group: list[_Write]) -> None:
        """Each write in its own transaction through the plain Store, in the order they came."""
        self.stats.retried_alone += len(group)

        def open_alone(t: str, u: str, s: str, e: str, q: float, r: str, h: str, p: dict[str, Any]) -> Awaitable[None]:
            return self.store.open_ticket(t, u, s, e, q, region=r, shard=h, preferences=p)

        plain: dict[str, Callable[..., Awaitable[Any]]] = {
            "user": self.store.upsert_user,
            "open": open_alone,
            "close": self.store.close_ticket,
            "pair": self.store.close_pair,
            "match": self.store.close_pair_and_create_call,
            "call": self.store.create_call,
        }
        for w in group:
            if w.done.done():
                continue
            try:
                w.done.set_result(await plain[w.kind](*w.args))
            except asyncio.CancelledError:
                raise
            except Exception as exc:
                w.done.set_exception(exc)

    # -- the writes on the matching path: grouped ------------------------------------

    async def upsert_user(self, user_id: str, display_name: str) -> None:
        await self._submit("user", user_id, display_name)

    async def open_ticket(
        self,
        ticket_id: str,
        user_id: str,
        session_id: str,
        edge_id: str,
        queued_at: float,
        *,
        region: str = "",
        shard: str = "",
        preferences: Mapping[str, Any] | None = None,
    ) -> None:
        # A bad time or preferences are the caller's error, not the group's.
        _to_ts(queued_at, "queued_at")
        prefs = checked_preferences_json(preferences)
        await self._submit("open", ticket_id, user_id, session_id, edge_id, queued_at, region, shard, prefs)

    async def close_ticket(self, ticket_id: str, outcome: str) -> bool:
        if not outcome:
            raise ValueError("outcome is required")
        closed: bool = await self._submit("close", ticket_id, outcome)
        return closed

    async def close_pair(self, ticket_ids: Sequence[str], outcome: str) -> list[str]:
        if not outcome:
            raise ValueError("outcome is required")
        stale: list[str] = await self._submit("pair", list(dict.fromkeys(ticket_ids)), outcome)
        return stale

    async def close_pair_and_create_call(self, ticket_ids: Sequence[str], outcome: str, call: CallRow) -> list[str]:
        if not outcome:
            raise ValueError("outcome is required")
        stale: list[str] = await self._submit("match", list(dict.fromkeys(ticket_ids)), outcome, checked_call(call))
        return stale

    async def create_call(self, call: CallRow) -> None:
        await self._submit("call", checked_call(call))

    # -- the rest: straight to the Store ---------------------------------------------

    async def resume_ticket(
        self, ticket_id: str, session_id: str, edge_id: str, region: str, preferences: Mapping[str, Any]
    ) -> bool:
        return await self.store.resume_ticket(ticket_id, session_id, edge_id, region, preferences)

    async def open_tickets_in_shard(self, shard: str) -> list[TicketRow]:
        return await self.store.open_tickets_in_shard(shard)

    async def end_calls_in_shard(self, shard: str, reason: str, keep: Sequence[str] = ()) -> int:
        return await self.store.end_calls_in_shard(shard, reason, keep)

    async def merge_stages(self, call_id: str, side: str, stages: Mapping[str, float]) -> bool:
        return await self.store.merge_stages(call_id, side, stages)

    async def set_call_state(self, call_id: str, state: str, end_reason: str | None = None) -> bool:
        return await self.store.set_call_state(call_id, state, end_reason)

    async def get_call(self, call_id: str) -> CallRow | None:
        return await self.store.get_call(call_id)

    async def set_clock(self, call_id: str, side: str, clock: ClockOffset) -> bool:
        return await self.store.set_clock(call_id, side, clock)

    async def list_calls(self, limit: int = 50, user_id: str | None = None) -> list[CallRow]:
        return await self.store.list_calls(limit, user_id)

    async def recent_meetings(self, user_id: str, *, recent: int, window_s: float) -> list[PastMeeting]:
        return await self.store.recent_meetings(user_id, recent=recent, window_s=window_s)


__all__ = ["GroupCommitStore", "GroupStats"]

"""The matchmaker's records in dicts, kept by the PostgreSQL Store's rules."""

from __future__ import annotations

import asyncio
import copy
import time
from collections.abc import Mapping, Sequence
from datetime import UTC, datetime
from typing import Any

from duet.services.matchmaker.ports import MatchStore
from duet.services.store.meetings import PastMeeting, checked_meeting_query
from duet.services.store.records import (
    CALL_KIND_MATCH,
    CALL_STATE_ENDED,
    CallRow,
    ClockOffset,
    DuplicateRecord,
    TicketRow,
    UnknownUser,
    UserRow,
    checked_call,
    checked_epoch,
    checked_preferences_json,
    checked_side,
    checked_stages,
)


def _as_stored(epoch_s: float) -> float:
    # timestamptz keeps microseconds; round the same way so a read gives back what PostgreSQL would.
    return datetime.fromtimestamp(epoch_s, tz=UTC).timestamp()


class InMemoryStore(MatchStore):
    """Users, pool tickets and calls, with the same checks, errors and results as the PostgreSQL Store.

    Rows go in and come out as copies, as they would through a database.
    Besides the MatchStore port it has the Store's read side (get_user,
    get_ticket, open_tickets) for tests to look at what was recorded. Every
    call yields to the event loop once, as a round trip would, and then runs
    to completion, like a transaction.
    """

    def __init__(self) -> None:
        self._users: dict[str, UserRow] = {}
        self._tickets: dict[str, TicketRow] = {}
        self._calls: dict[str, CallRow] = {}

    # -- users --------------------------------------------------------------

    async def upsert_user(self, user_id: str, display_name: str) -> None:
        await asyncio.sleep(0)
        old = self._users.get(user_id)
        self._users[user_id] = UserRow(user_id, display_name, old.created_at if old else time.time())

    async def get_user(self, user_id: str) -> UserRow | None:
        await asyncio.sleep(0)
        return copy.copy(self._users.get(user_id))

    # -- tickets ------------------------------------------------------------

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
        queued = _as_stored(checked_epoch(queued_at, "queued_at"))
        prefs = copy.deepcopy(checked_preferences_json(preferences))
        await asyncio.sleep(0)
        if user_id not in self._users:
            raise UnknownUser(f"ticket '{ticket_id}' names a user that does not exist: '{user_id}'")
        if ticket_id in self._tickets:
            raise DuplicateRecord(f"ticket '{ticket_id}' already exists")
        now = time.time()
        for t in self._tickets.values():
            if t.user_id == user_id and t.closed_at is None:
                t.closed_at, t.outcome = now, "replaced"
        self._tickets[ticket_id] = TicketRow(
            ticket_id, user_id, session_id, edge_id, queued, region=region, shard=shard, preferences=prefs
        )

    async def close_ticket(self, ticket_id: str, outcome: str) -> bool:
        if not outcome:
            raise ValueError("outcome is required")
        await asyncio.sleep(0)
        t = self._tickets.get(ticket_id)
        if t is None or t.closed_at is not None:
            return False
        t.closed_at, t.outcome = time.time(), outcome
        return True

    async def close_pair(self, ticket_ids: Sequence[str], outcome: str) -> list[str]:
        if not outcome:
            raise ValueError("outcome is required")
        await asyncio.sleep(0)
        return self._close_all_open(ticket_ids, outcome, None)

    async def close_pair_and_create_call(self, ticket_ids: Sequence[str], outcome: str, call: CallRow) -> list[str]:
        if not outcome:
            raise ValueError("outcome is required")
        row = checked_call(call)
        await asyncio.sleep(0)
        return self._close_all_open(ticket_ids, outcome, row)

    def _close_all_open(self, ticket_ids: Sequence[str], outcome: str, call: CallRow | None) -> list[str]:
        """Close every ticket (recording ``call`` too) if all are open; else change nothing, name the others."""
        wanted = list(dict.fromkeys(ticket_ids))
        stale = [t for t in wanted if t not in self._tickets or self._tickets[t].closed_at is not None]
        if stale:
            return stale
        if call is not None:
            self._insert_call(call)  # raises before any ticket changes, as the transaction would roll back
        now = time.time()
        for t in wanted:
            self._tickets[t].closed_at, self._tickets[t].outcome = now, outcome
        return []

    async def resume_ticket(
        self, ticket_id: str, session_id: str, edge_id: str, region: str, preferences: Mapping[str, Any]
    ) -> bool:
        prefs = copy.deepcopy(checked_preferences_json(preferences))
        await asyncio.sleep(0)
        t = self._tickets.get(ticket_id)
        if t is None or t.closed_at is not None:
            return False
        t.session_id, t.edge_id, t.region, t.preferences = session_id, edge_id, region, prefs
        return True

    async def open_tickets_in_shard(self, shard: str) -> list[TicketRow]:
        await asyncio.sleep(0)
        found = [t for t in self._tickets.values() if t.closed_at is None and t.shard == shard]
        return [copy.deepcopy(t) for t in sorted(found, key=lambda t: (t.queued_at, t.ticket_id))]

    async def get_ticket(self, ticket_id: str) -> TicketRow | None:
        await asyncio.sleep(0)
        return copy.deepcopy(self._tickets.get(ticket_id))

    async def open_tickets(self, user_id: str | None = None) -> list[TicketRow]:
        """Open tickets (of one user, or everyone's), oldest first."""
        await asyncio.sleep(0)
        found = [t for t in self._tickets.values() if t.closed_at is None and user_id in (None, t.user_id)]
        return [copy.deepcopy(t) for t in sorted(found, key=lambda t: (t.queued_at, t.ticket_id))]

    # -- calls --------------------------------------------------------------

    async def create_call(self, call: CallRow) -> None:
        row = checked_call(call)
        await asyncio.sleep(0)
        self._insert_call(row)

    def _insert_call(self, row: CallRow) -> None:
        for user in (row.user_a, row.user_b):
            if user not in self._users:
                raise UnknownUser(f"call '{row.call_id}' names a user that does not exist: '{user}'")
        if row.call_id in self._calls:
            raise DuplicateRecord(f"call '{row.call_id}' already exists")
        row.created_at = _as_stored(time.time())
        row.ended_at = row.created_at if row.state == CALL_STATE_ENDED else None
        row.duration_ms = 0.0 if row.state == CALL_STATE_ENDED else None
        self._calls[row.call_id] = row

    async def merge_stages(self, call_id: str, side: str, stages: Mapping[str, float]) -> bool:
        column = f"stages_{checked_side(side)}"
        checked = checked_stages(stages, column)
        await asyncio.sleep(0)
        call = self._calls.get(call_id)
        if call is None:
            return False
        getattr(call, column).update(checked)
        return True

    async def set_clock(self, call_id: str, side: str, clock: ClockOffset) -> bool:
        column = f"clock_{checked_side(side)}"
        await asyncio.sleep(0)
        call = self._calls.get(call_id)
        if call is None:
            return False
        setattr(call, column, clock)
        return True

    async def list_calls(self, limit: int = 50, user_id: str | None = None) -> list[CallRow]:
        if limit < 0:
            raise ValueError(f"limit must be >= 0, got {limit}")
        await asyncio.sleep(0)
        found = [c for c in self._calls.values() if user_id in (None, c.user_a, c.user_b)]
        # Newest first; ties by id, as the PostgreSQL store orders them.
        found.sort(key=lambda c: c.call_id)
        found.sort(key=lambda c: c.created_at or 0.0, reverse=True)
        return [copy.deepcopy(c) for c in found[:limit]]

    async def set_call_state(self, call_id: str, state: str, end_reason: str | None = None) -> bool:
        if not state:
            raise ValueError("state is required")
        await asyncio.sleep(0)
        call = self._calls.get(call_id)
        if call is None or call.state == CALL_STATE_ENDED:
            return False
        call.state = state
        if end_reason is not None:
            call.end_reason = end_reason
        if state == CALL_STATE_ENDED:
            call.ended_at = _as_stored(time.time())
            assert call.created_at is not None
            call.duration_ms = (call.ended_at - call.created_at) * 1000
        return True

    async def end_calls_in_shard(self, shard: str, reason: str, keep: Sequence[str] = ()) -> int:
        await asyncio.sleep(0)
        now = time.time()
        ended = 0
        for row in self._calls.values():
            if row.shard == shard and row.state != CALL_STATE_ENDED and row.call_id not in keep:
                row.state, row.end_reason, row.ended_at = CALL_STATE_ENDED, reason, _as_stored(now)
                row.duration_ms = (row.ended_at - (row.created_at or row.ended_at)) * 1000
                ended += 1
        return ended

    async def get_call(self, call_id: str) -> CallRow | None:
        await asyncio.sleep(0)
        return copy.deepcopy(self._calls.get(call_id))

    async def recent_meetings(self, user_id: str, *, recent: int, window_s: float) -> list[PastMeeting]:
        checked_meeting_query(recent, window_s)
        await asyncio.sleep(0)
        now = time.time()
        mine = [c for c in self._calls.values() if c.kind == CALL_KIND_MATCH and user_id in (c.user_a, c.user_b)]
        mine.sort(key=lambda c: c.created_at or 0.0, reverse=True)
        kept = mine[:recent] + [c for c in mine[recent:] if now - (c.created_at or 0.0) < window_s]
        latest: dict[str, float] = {}
        for c in kept:
            partner = c.user_b if c.user_a == user_id else c.user_a
            latest.setdefault(partner, max(0.0, now - (c.created_at or now)))
        return [PastMeeting(p, ago) for p, ago in sorted(latest.items(), key=lambda kv: kv[1])]

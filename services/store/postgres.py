"""Duet's persistence in PostgreSQL: users, tickets, call records and the edge topology.

The rows and the rules their values obey are in ``records`` (shared with the
in-memory store); here they are stored as timestamptz and jsonb.
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from datetime import UTC, datetime
from typing import Any

import asyncpg

from duet.services.store.locks import USER_LOCK_NAMESPACE
from duet.services.store.meetings import MeetingQueries
from duet.services.store.migrate import migrate
from duet.services.store.moderation import COUNTING_REPORTERS, ModerationQueries
from duet.services.store.records import (
    CALL_STATE_ENDED,
    CallRow,
    ClockOffset,
    DuplicateRecord,
    EdgeRow,
    FriendRow,
    TicketRow,
    UnknownUser,
    UserRow,
    checked_call,
    checked_epoch,
    checked_pair,
    checked_preferences_json,
    checked_reason,
    checked_side,
    checked_stages,
)


def _to_ts(epoch_s: float, what: str) -> datetime:
    return datetime.fromtimestamp(checked_epoch(epoch_s, what), tz=UTC)


def _from_ts(ts: datetime | None) -> float | None:
    return None if ts is None else ts.timestamp()


def _integrity_error(exc: Exception, what: str) -> Exception:
    """The store-neutral error for a broken key (callers need not know asyncpg)."""
    if isinstance(exc, asyncpg.ForeignKeyViolationError):
        return UnknownUser(f"{what} names a user that does not exist: {exc.detail or exc}")
    if isinstance(exc, asyncpg.UniqueViolationError):
        return DuplicateRecord(f"{what} already exists: {exc.detail or exc}")
    return exc


class _StalePair(Exception):
    """Raised inside close_pair's transaction to roll it back; carries the tickets no longer open."""

    def __init__(self, stale: list[str]) -> None:
        super().__init__(stale)
        self.stale = stale


async def _close_all_open(conn: asyncpg.Connection, ticket_ids: Sequence[str], outcome: str) -> None:
    """Close the tickets still open among ``ticket_ids``; raise _StalePair (rolling the caller's
    transaction back, so the open ones stay open) when any was not."""
    wanted = list(dict.fromkeys(ticket_ids))
    rows = await conn.fetch(
        "UPDATE tickets SET closed_at = now(), outcome = $2 "
        "WHERE ticket_id = ANY($1::text[]) AND closed_at IS NULL RETURNING ticket_id",
        wanted,
        outcome,
    )
    closed = {r["ticket_id"] for r in rows}
    stale = [t for t in wanted if t not in closed]
    if stale:
        raise _StalePair(stale)


async def _init_connection(conn: asyncpg.Connection) -> None:
    # jsonb <-> Python dicts on every pooled connection.
    await conn.set_type_codec("jsonb", encoder=json.dumps, decoder=json.loads, schema="pg_catalog")


def _clock(offset: float | None, uncertainty: float | None) -> ClockOffset | None:
    return None if offset is None or uncertainty is None else ClockOffset(offset, uncertainty)


def _call(r: asyncpg.Record) -> CallRow:
    return CallRow(
        call_id=r["call_id"],
        user_a=r["user_a"],
        user_b=r["user_b"],
        edge_a=r["edge_a"],
        edge_b=r["edge_b"],
        leg_a=r["leg_a"],
        leg_b=r["leg_b"],
        route=list(r["route"]),
        route_rtt_ms=r["route_rtt_ms"],
        state=r["state"],
        end_reason=r["end_reason"],
        stages_a=dict(r["stages_a"]),
        stages_b=dict(r["stages_b"]),
        kind=r["kind"],
        created_at=_from_ts(r["created_at"]),
        ended_at=_from_ts(r["ended_at"]),
        duration_ms=r["duration_ms"],
        clock_a=_clock(r["clock_offset_a_ms"], r["clock_uncertainty_a_ms"]),
        clock_b=_clock(r["clock_offset_b_ms"], r["clock_uncertainty_b_ms"]),
        shard=r["shard"],
    )


# A new call record; its arguments are call_insert_args(row) (the group commit runs it for many rows).
INSERT_CALL = (
    "INSERT INTO calls (call_id, user_a, user_b, edge_a, edge_b, leg_a, leg_b, route, route_rtt_ms, "
    "state, end_reason, stages_a, stages_b, ended_at, duration_ms, kind, shard) "
    "VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, "
    "CASE WHEN $14 THEN now() END, CASE WHEN $14 THEN 0 END, $15, $16)"
)


def call_insert_args(row: CallRow) -> tuple[Any, ...]:
    """INSERT_CALL's arguments for a checked row."""
    return (
        row.call_id,
        row.user_a,
        row.user_b,
        row.edge_a,
        row.edge_b,
        row.leg_a,
        row.leg_b,
        row.route,
        row.route_rtt_ms,
        row.state,
        row.end_reason,
        row.stages_a,
        row.stages_b,
        row.state == CALL_STATE_ENDED,
        row.kind,
        row.shard,
    )


def _ticket(r: asyncpg.Record) -> TicketRow:
    return TicketRow(
        ticket_id=r["ticket_id"],
        user_id=r["user_id"],
        session_id=r["session_id"],
        edge_id=r["edge_id"],
        queued_at=r["queued_at"].timestamp(),
        closed_at=_from_ts(r["closed_at"]),
        outcome=r["outcome"],
        region=r["region"],
        shard=r["shard"],
        preferences=dict(r["preferences"]),
    )


def _edge(r: asyncpg.Record) -> EdgeRow:
    return EdgeRow(
        edge_id=r["edge_id"],
        region=r["region"],
        control_address=r["control_address"],
        backbone_address=r["backbone_address"],
        media_host=r["media_host"],
        state=r["state"],
        registered_at=_from_ts(r["registered_at"]),
    )


_CALL_COLUMNS = (
    "call_id, user_a, user_b, edge_a, edge_b, leg_a, leg_b, route, route_rtt_ms, state, end_reason, "
    "stages_a, stages_b, kind, created_at, ended_at, duration_ms, "
    "clock_offset_a_ms, clock_uncertainty_a_ms, clock_offset_b_ms, clock_uncertainty_b_ms, shard"
)
_TICKET_COLUMNS = "ticket_id, user_id, session_id, edge_id, queued_at, closed_at, outcome, region, shard, preferences"
# Namespace for per-user advisory locks (two-int form; the migration lock uses the one-bigint form).


class Store(ModerationQueries, MeetingQueries):
    """Typed access to Duet's tables over an asyncpg pool."""

    def __init__(self, pool: asyncpg.Pool) -> None:
        self.pool = pool

    @classmethod
    async def open(cls, dsn: str, *, min_size: int = 1, max_size: int = 5) -> Store:
        """Connect a pool to `dsn` and bring the schema up to date."""
        pool = await asyncpg.create_pool(dsn, min_size=min_size, max_size=max_size, init=_init_connection)
        try:
            await migrate(pool)
        except BaseException:
            await pool.close()
            raise
        return cls(pool)

    async def close(self) -> None:
        await self.pool.close()

    # -- users --------------------------------------------------------------

    async def upsert_user(self, user_id: str, display_name: str) -> None:
        await self.pool.execute(
            "INSERT INTO users (user_id, display_name) VALUES ($1, $2) "
            "ON CONFLICT (user_id) DO UPDATE SET display_name = EXCLUDED.display_name",
            user_id,
            display_name,
        )

    async def get_user(self, user_id: str) -> UserRow | None:
        r = await self.pool.fetchrow("SELECT user_id, display_name, created_at FROM users WHERE user_id = $1", user_id)
        return None if r is None else UserRow(r["user_id"], r["display_name"], r["created_at"].timestamp())

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
        """Record a user entering the pool; an open ticket of theirs is closed as 'replaced' first.

        ``region``, ``shard`` and ``preferences`` (JSON-able) are what another replica needs to
        restore the wait. Raises UnknownUser if the user does not exist (upsert_user first) and
        DuplicateRecord for a ticket_id already used; either way nothing changes.
        """
        queued = _to_ts(queued_at, "queued_at")
        prefs = checked_preferences_json(preferences)
        try:
            async with self.pool.acquire() as conn, conn.transaction():
                # Serialise per user: two concurrent opens must not both find no open ticket.
                await conn.execute("SELECT pg_advisory_xact_lock($1, hashtext($2))", USER_LOCK_NAMESPACE, user_id)
                await conn.execute(
                    "UPDATE tickets SET closed_at = now(), outcome = 'replaced' "
                    "WHERE user_id = $1 AND closed_at IS NULL",
                    user_id,
                )
                await conn.execute(
                    "INSERT INTO tickets (ticket_id, user_id, session_id, edge_id, queued_at, region, shard, preferences) "
                    "VALUES ($1, $2, $3, $4, $5, $6, $7, $8)",
                    ticket_id,
                    user_id,
                    session_id,
                    edge_id,
                    queued,
                    region,
                    shard,
                    prefs,
                )
        except asyncpg.IntegrityConstraintViolationError as exc:
            raise _integrity_error(exc, f"ticket '{ticket_id}'") from exc

    async def close_ticket(self, ticket_id: str, outcome: str) -> bool:
        """Close an open ticket; False if it is unknown or already closed (its outcome is kept)."""
        if not outcome:
            raise ValueError("outcome is required")
        status: str = await self.pool.execute(
            "UPDATE tickets SET closed_at = now(), outcome = $2 WHERE ticket_id = $1 AND closed_at IS NULL",
            ticket_id,
            outcome,
        )
        return status == "UPDATE 1"

    async def close_pair(self, ticket_ids: Sequence[str], outcome: str) -> list[str]:
        """Close every ticket of ``ticket_ids`` in one transaction, only if all are still open.

        Returns [] when they were all closed now; otherwise nothing changes and the
        result names the ones that were no longer open (unknown, matched or
        replaced elsewhere): two replicas can never both pair one ticket.
        """
        if not outcome:
            raise ValueError("outcome is required")
        try:
            async with self.pool.acquire() as conn, conn.transaction():
                await _close_all_open(conn, ticket_ids, outcome)
        except _StalePair as exc:
            return exc.stale
        return []

    async def close_pair_and_create_call(self, ticket_ids: Sequence[str], outcome: str, call: CallRow) -> list[str]:
        """``close_pair`` and ``create_call`` in one transaction (a match: one commit, not two).

        Returns [] when every ticket was closed and the call inserted; otherwise nothing changes and
        the result names the tickets no longer open. Raises as ``create_call`` for a call it refuses.
        """
        if not outcome:
            raise ValueError("outcome is required")
        row = checked_call(call)
        try:
            async with self.pool.acquire() as conn, conn.transaction():
                await _close_all_open(conn, ticket_ids, outcome)
                await conn.execute(INSERT_CALL, *call_insert_args(row))
        except _StalePair as exc:
            return exc.stale
        except asyncpg.IntegrityConstraintViolationError as exc:
            raise _integrity_error(exc, f"call '{call.call_id}'") from exc
        return []

    async def resume_ticket(
        self, ticket_id: str, session_id: str, edge_id: str, region: str, preferences: Mapping[str, Any]
    ) -> bool:
        """Move an open ticket onto the user's new session (its queued_at stays); False if it is not open."""
        status: str = await self.pool.execute(
            "UPDATE tickets SET session_id = $2, edge_id = $3, region = $4, preferences = $5 "
            "WHERE ticket_id = $1 AND closed_at IS NULL",
            ticket_id,
            session_id,
            edge_id,
            region,
            checked_preferences_json(preferences),
        )
        return status == "UPDATE 1"

    async def open_tickets_in_shard(self, shard: str) -> list[TicketRow]:
        """A shard's open tickets, oldest first (what a new owner restores)."""
        rows = await self.pool.fetch(
            f"SELECT {_TICKET_COLUMNS} FROM tickets WHERE closed_at IS NULL AND shard = $1 ORDER BY queued_at, ticket_id",
            shard,
        )
        return [_ticket(r) for r in rows]

    async def get_ticket(self, ticket_id: str) -> TicketRow | None:
        r = await self.pool.fetchrow(f"SELECT {_TICKET_COLUMNS} FROM tickets WHERE ticket_id = $1", ticket_id)
        return None if r is None else _ticket(r)

    async def open_tickets(self, user_id: str | None = None) -> list[TicketRow]:
        """Open tickets (of one user, or everyone's), oldest first."""
        rows = await self.pool.fetch(
            f"SELECT {_TICKET_COLUMNS} FROM tickets WHERE closed_at IS NULL AND ($1::text IS NULL OR user_id = $1) "
            "ORDER BY queued_at, ticket_id",
            user_id,
        )
        return [_ticket(r) for r in rows]

    # -- calls --------------------------------------------------------------

    async def create_call(self, call: CallRow) -> None:
        """Insert a call record (created_at/ended_at are set by the database).

        Raises UnknownUser if either user does not exist and DuplicateRecord
        for a call_id already used.
        """
        row = checked_call(call)
        try:
            await self.pool.execute(INSERT_CALL, *call_insert_args(row))
        except asyncpg.IntegrityConstraintViolationError as exc:
            raise _integrity_error(exc, f"call '{call.call_id}'") from exc

    async def merge_stages(self, call_id: str, side: str, stages: Mapping[str, float]) -> bool:
        """Merge stage timings (epoch ms) into one side's record; a key given again takes the new value.

        False if the call does not exist.
        """
        column = f"stages_{checked_side(side)}"
        checked = checked_stages(stages, column)
        status: str = await self.pool.execute(
            f"UPDATE calls SET {column} = {column} || $2::jsonb WHERE call_id = $1", call_id, checked
        )
        return status == "UPDATE 1"

    async def set_clock(self, call_id: str, side: str, clock: ClockOffset) -> bool:
        """Record the clock offset one side's client stages were corrected with; False if no such call."""
        s = checked_side(side)
        status: str = await self.pool.execute(
            f"UPDATE calls SET clock_offset_{s}_ms = $2, clock_uncertainty_{s}_ms = $3 WHERE call_id = $1",
            call_id,
            clock.offset_ms,
            clock.uncertainty_ms,
        )
        return status == "UPDATE 1"

    async def set_call_state(self, call_id: str, state: str, end_reason: str | None = None) -> bool:
        """Move a call to `state`; 'ended' also stamps ended_at and is final.

        False if the call does not exist or has already ended (a late
        'connected' must not revive an ended call, and the first end reason wins).
        """
        if not state:
            raise ValueError("state is required")
        status: str = await self.pool.execute(
            "UPDATE calls SET state = $2, end_reason = COALESCE($3, end_reason), "
            "ended_at = CASE WHEN $2 = $4 THEN now() ELSE ended_at END, "
            "duration_ms = CASE WHEN $2 = $4 THEN extract(epoch FROM now() - created_at) * 1000 ELSE duration_ms END "
            "WHERE call_id = $1 AND state <> $4",
            call_id,
            state,
            end_reason,
            CALL_STATE_ENDED,
        )
        return status == "UPDATE 1"

    async def end_calls_in_shard(self, shard: str, reason: str, keep: Sequence[str] = ()) -> int:
        """End every live call of ``shard`` except ``keep`` (a dead replica's); returns how many."""
        status: str = await self.pool.execute(
            "UPDATE calls SET state = $3, end_reason = $2, ended_at = now(), "
            "duration_ms = extract(epoch FROM now() - created_at) * 1000 "
            "WHERE shard = $1 AND state <> $3 AND NOT (call_id = ANY($4::text[]))",
            shard,
            reason,
            CALL_STATE_ENDED,
            list(keep),
        )
        return int(status.split()[-1])

    async def get_call(self, call_id: str) -> CallRow | None:
        r = await self.pool.fetchrow(f"SELECT {_CALL_COLUMNS} FROM calls WHERE call_id = $1", call_id)
        return None if r is None else _call(r)

    async def list_calls(self, limit: int = 50, user_id: str | None = None) -> list[CallRow]:
        """The most recent calls (of one user, either side, or everyone's), newest first."""
        if limit < 0:
            raise ValueError(f"limit must be >= 0, got {limit}")
        rows = await self.pool.fetch(
            f"SELECT {_CALL_COLUMNS} FROM calls WHERE ($2::text IS NULL OR user_a = $2 OR user_b = $2) "
            "ORDER BY created_at DESC, call_id LIMIT $1",
            limit,
            user_id,
        )
        return [_call(r) for r in rows]

    # -- safety -------------------------------------------------------------

    async def add_block(self, blocker: str, blocked: str, call_id: str) -> None:
        """``blocker`` never meets ``blocked`` again; blocking again changes nothing."""
        checked_pair(blocker, blocked, "block")
        try:
            await self.pool.execute(
                "INSERT INTO blocks (blocker, blocked, call_id) VALUES ($1, $2, $3) ON CONFLICT DO NOTHING",
                blocker,
                blocked,
                call_id,
            )
        except asyncpg.IntegrityConstraintViolationError as exc:
            raise _integrity_error(exc, f"block of '{blocked}' by '{blocker}'") from exc

    async def blocks_of(self, user_id: str) -> set[str]:
        """Every user this one blocked or was blocked by."""
        rows = await self.pool.fetch(
            "SELECT blocked AS other FROM blocks WHERE blocker = $1 UNION SELECT blocker FROM blocks WHERE blocked = $1",
            user_id,
        )
        return {r["other"] for r in rows}

    async def add_report(self, reporter: str, reported: str, call_id: str, reason: str) -> int:
        """Record a report (one per reporter per call); returns the distinct reporters of ``reported`` now."""
        checked_pair(reporter, reported, "report")
        checked_reason(reason)
        try:
            async with self.pool.acquire() as conn, conn.transaction():
                await conn.execute(
                    "INSERT INTO reports (reporter, reported, call_id, reason) VALUES ($1, $2, $3, $4) "
                    "ON CONFLICT DO NOTHING",
                    reporter,
                    reported,
                    call_id,
                    reason,
                )
                count: int = await conn.fetchval(COUNTING_REPORTERS, reported)
        except asyncpg.IntegrityConstraintViolationError as exc:
            raise _integrity_error(exc, f"report of '{reported}' by '{reporter}'") from exc
        return count

    async def report_count(self, user_id: str) -> int:
        """Distinct reporters of ``user_id`` since their last review (what holds a user)."""
        count: int = await self.pool.fetchval(COUNTING_REPORTERS, user_id)
        return count

    # -- friends ------------------------------------------------------------

    async def add_friend_request(self, requester: str, requested: str, call_id: str) -> FriendRow | None:
        """Ask to be friends; when the other had asked too, they become friends (see FriendStore)."""
        checked_pair(requester, requested, "friend")
        lo, hi = sorted((requester, requested))
        try:
            async with self.pool.acquire() as conn, conn.transaction():
                # Serialise the pair: two users asking at the same moment must end as friends.
                await conn.execute("SELECT pg_advisory_xact_lock($1, hashtext($2))", USER_LOCK_NAMESPACE, lo + "|" + hi)
                asked_back = await conn.fetchval(
                    "SELECT true FROM friend_requests WHERE requester = $1 AND requested = $2", requested, requester
                )
                already = await conn.fetchval("SELECT true FROM friends WHERE user_lo = $1 AND user_hi = $2", lo, hi)
                if not asked_back and not already:
                    await conn.execute(
                        "INSERT INTO friend_requests (requester, requested, call_id) VALUES ($1, $2, $3) "
                        "ON CONFLICT DO NOTHING",
                        requester,
                        requested,
                        call_id,
                    )
                    return None
                await conn.execute(
                    "DELETE FROM friend_requests WHERE (requester = $1 AND requested = $2) "
                    "OR (requester = $2 AND requested = $1)",
                    requester,
                    requested,
                )
                await conn.execute(
                    "INSERT INTO friends (user_lo, user_hi, call_id) VALUES ($1, $2, $3) ON CONFLICT DO NOTHING",
                    lo,
                    hi,
                    call_id,
                )
                r = await conn.fetchrow(
                    "SELECT u.user_id, u.display_name, f.created_at FROM friends f JOIN users u ON u.user_id = $3 "
                    "WHERE f.user_lo = $1 AND f.user_hi = $2",
                    lo,
                    hi,
                    requested,
                )
        except asyncpg.IntegrityConstraintViolationError as exc:
            raise _integrity_error(exc, f"friend request from '{requester}' to '{requested}'") from exc
        return FriendRow(r["user_id"], r["display_name"], r["created_at"].timestamp())

    async def friends_of(self, user_id: str) -> list[FriendRow]:
        rows = await self.pool.fetch(
            "SELECT u.user_id, u.display_name, f.created_at FROM friends f "
            "JOIN users u ON u.user_id = CASE WHEN f.user_lo = $1 THEN f.user_hi ELSE f.user_lo END "
            "WHERE f.user_lo = $1 OR f.user_hi = $1",
            user_id,
        )
        return [FriendRow(r["user_id"], r["display_name"], r["created_at"].timestamp()) for r in rows]

    async def are_friends(self, user_id: str, other: str) -> bool:
        lo, hi = sorted((user_id, other))
        return bool(await self.pool.fetchval("SELECT true FROM friends WHERE user_lo = $1 AND user_hi = $2", lo, hi))

    async def remove_friend(self, user_id: str, other: str) -> bool:
        """End a friendship and drop pending requests either way; False if they were not friends."""
        lo, hi = sorted((user_id, other))
        async with self.pool.acquire() as conn, conn.transaction():
            await conn.execute(
                "DELETE FROM friend_requests WHERE (requester = $1 AND requested = $2) "
                "OR (requester = $2 AND requested = $1)",
                user_id,
                other,
            )
            status: str = await conn.execute("DELETE FROM friends WHERE user_lo = $1 AND user_hi = $2", lo, hi)
        return status == "DELETE 1"

    async def user_exists(self, user_id: str) -> bool:
        return bool(await self.pool.fetchval("SELECT true FROM users WHERE user_id = $1", user_id))

    # -- topology -----------------------------------------------------------

    async def upsert_edge(self, edge: EdgeRow) -> None:
        registered = None if edge.registered_at is None else _to_ts(edge.registered_at, "registered_at")
        await self.pool.execute(
            "INSERT INTO edges (edge_id, region, control_address, backbone_address, media_host, state, registered_at) "
            "VALUES ($1, $2, $3, $4, $5, $6, COALESCE($7, now())) "
            "ON CONFLICT (edge_id) DO UPDATE SET region = EXCLUDED.region, "
            "control_address = EXCLUDED.control_address, backbone_address = EXCLUDED.backbone_address, "
            "media_host = EXCLUDED.media_host, state = EXCLUDED.state, registered_at = EXCLUDED.registered_at",
            edge.edge_id,
            edge.region,
            edge.control_address,
            edge.backbone_address,
            edge.media_host,
            edge.state,
            registered,
        )

    async def list_edges(self) -> list[EdgeRow]:
        rows = await self.pool.fetch(
            "SELECT edge_id, region, control_address, backbone_address, media_host, state, registered_at "
            "FROM edges ORDER BY edge_id"
        )
        return [_edge(r) for r in rows]


# The rows are re-exported: callers import them with the Store.
__all__ = ["CallRow", "DuplicateRecord", "EdgeRow", "FriendRow", "Store", "TicketRow", "UnknownUser", "UserRow"]

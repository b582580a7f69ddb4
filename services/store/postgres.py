"""Duet's persistence: users, tickets, call records and the edge topology.

Plain dataclass rows (no protobuf here). Times cross this API as epoch
seconds (floats) and are stored as timestamptz; call stage timings are
epoch milliseconds, stored as jsonb objects per side.
"""

from __future__ import annotations

import json
import math
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime

import asyncpg

from duet.services.store.migrate import migrate

CALL_STATE_ENDED = "ended"


@dataclass
class CallRow:
    call_id: str
    user_a: str
    user_b: str
    edge_a: str
    edge_b: str
    leg_a: str
    leg_b: str
    route: list[str]
    route_rtt_ms: float
    state: str
    end_reason: str | None = None
    stages_a: dict[str, float] = field(default_factory=dict)
    stages_b: dict[str, float] = field(default_factory=dict)
    # Set by the database; ignored by create_call.
    created_at: float | None = None
    ended_at: float | None = None


@dataclass
class TicketRow:
    ticket_id: str
    user_id: str
    session_id: str
    edge_id: str
    queued_at: float
    closed_at: float | None = None
    outcome: str | None = None


@dataclass
class EdgeRow:
    edge_id: str
    region: str
    control_address: str
    backbone_address: str
    media_host: str
    state: str
    # None on upsert means "now".
    registered_at: float | None = None


@dataclass
class UserRow:
    user_id: str
    display_name: str
    created_at: float


def _to_ts(epoch_s: float, what: str) -> datetime:
    if not isinstance(epoch_s, (int, float)) or not math.isfinite(epoch_s):
        raise ValueError(f"{what} must be a finite number of epoch seconds, got {epoch_s!r}")
    return datetime.fromtimestamp(epoch_s, tz=UTC)


def _from_ts(ts: datetime | None) -> float | None:
    return None if ts is None else ts.timestamp()


def _checked_stages(stages: Mapping[str, float], what: str) -> dict[str, float]:
    # jsonb cannot hold NaN/inf, and a non-numeric value would poison later reads.
    out: dict[str, float] = {}
    for k, v in stages.items():
        if not isinstance(k, str) or not k:
            raise ValueError(f"{what}: stage names must be non-empty strings, got {k!r}")
        if isinstance(v, bool) or not isinstance(v, (int, float)) or not math.isfinite(v):
            raise ValueError(f"{what}: stage {k!r} must be a finite number of epoch ms, got {v!r}")
        out[k] = float(v)
    return out


def _side(side: str) -> str:
    if side not in ("a", "b"):
        raise ValueError(f"side must be 'a' or 'b', got {side!r}")
    return side


async def _init_connection(conn: asyncpg.Connection) -> None:
    # jsonb <-> Python dicts on every pooled connection.
    await conn.set_type_codec("jsonb", encoder=json.dumps, decoder=json.loads, schema="pg_catalog")


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
        created_at=_from_ts(r["created_at"]),
        ended_at=_from_ts(r["ended_at"]),
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
    "stages_a, stages_b, created_at, ended_at"
)
_TICKET_COLUMNS = "ticket_id, user_id, session_id, edge_id, queued_at, closed_at, outcome"
# Namespace for per-user advisory locks (two-int form; the migration lock uses the one-bigint form).
_USER_LOCK_NAMESPACE = 0x64756574  # "duet"


class Store:
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

    async def open_ticket(self, ticket_id: str, user_id: str, session_id: str, edge_id: str, queued_at: float) -> None:
        """Record a user entering the pool; an open ticket of theirs is closed as 'replaced' first.

        The user must exist (upsert_user). A duplicate ticket_id raises
        asyncpg.UniqueViolationError.
        """
        queued = _to_ts(queued_at, "queued_at")
        async with self.pool.acquire() as conn, conn.transaction():
            # Serialise per user: two concurrent opens must not both find no open ticket.
            await conn.execute("SELECT pg_advisory_xact_lock($1, hashtext($2))", _USER_LOCK_NAMESPACE, user_id)
            await conn.execute(
                "UPDATE tickets SET closed_at = now(), outcome = 'replaced' WHERE user_id = $1 AND closed_at IS NULL",
                user_id,
            )
            await conn.execute(
                "INSERT INTO tickets (ticket_id, user_id, session_id, edge_id, queued_at) VALUES ($1, $2, $3, $4, $5)",
                ticket_id,
                user_id,
                session_id,
                edge_id,
                queued,
            )

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
        """Insert a call record (created_at/ended_at are set by the database)."""
        if not math.isfinite(call.route_rtt_ms):
            raise ValueError(f"route_rtt_ms must be finite, got {call.route_rtt_ms!r}")
        ended = call.state == CALL_STATE_ENDED
        await self.pool.execute(
            "INSERT INTO calls (call_id, user_a, user_b, edge_a, edge_b, leg_a, leg_b, route, route_rtt_ms, state, "
            "end_reason, stages_a, stages_b, ended_at) "
            "VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, CASE WHEN $14 THEN now() END)",
            call.call_id,
            call.user_a,
            call.user_b,
            call.edge_a,
            call.edge_b,
            call.leg_a,
            call.leg_b,
            list(call.route),
            float(call.route_rtt_ms),
            call.state,
            call.end_reason,
            _checked_stages(call.stages_a, "stages_a"),
            _checked_stages(call.stages_b, "stages_b"),
            ended,
        )

    async def merge_stages(self, call_id: str, side: str, stages: Mapping[str, float]) -> bool:
        """Merge stage timings (epoch ms) into one side's record; a key given again takes the new value.

        False if the call does not exist.
        """
        column = f"stages_{_side(side)}"
        checked = _checked_stages(stages, column)
        status: str = await self.pool.execute(
            f"UPDATE calls SET {column} = {column} || $2::jsonb WHERE call_id = $1", call_id, checked
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
            "ended_at = CASE WHEN $2 = $4 THEN now() ELSE ended_at END "
            "WHERE call_id = $1 AND state <> $4",
            call_id,
            state,
            end_reason,
            CALL_STATE_ENDED,
        )
        return status == "UPDATE 1"

    async def get_call(self, call_id: str) -> CallRow | None:
        r = await self.pool.fetchrow(f"SELECT {_CALL_COLUMNS} FROM calls WHERE call_id = $1", call_id)
        return None if r is None else _call(r)

    async def list_calls(self, limit: int = 50) -> list[CallRow]:
        """The most recent calls, newest first."""
        if limit < 0:
            raise ValueError(f"limit must be >= 0, got {limit}")
        rows = await self.pool.fetch(
            f"SELECT {_CALL_COLUMNS} FROM calls ORDER BY created_at DESC, call_id LIMIT $1", limit
        )
        return [_call(r) for r in rows]

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


__all__ = ["CallRow", "EdgeRow", "Store", "TicketRow", "UserRow"]

"""What the matchmaker tells a client, as plain events put in the session's outbox.

The server turns each into a ServerMessage on the client's stream; times are
the matchmaker's clock, epoch milliseconds.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Protocol

from duet.services.matchmaker.ports import EdgeInfo


@dataclass(frozen=True)
class EdgeAssigned:
    session_id: str
    edge: EdgeInfo
    reason: str
    assigned_at: float


@dataclass(frozen=True)
class LegAnswered:
    leg_id: str
    answer_sdp: str


@dataclass(frozen=True)
class Queued:
    ticket_id: str
    queued_at: float
    position: int = 1  # 1 + tickets in the pool queued before this one
    estimated_wait_ms: float = 0.0  # 0: no estimate yet
    expires_at: float = 0.0  # epoch ms


@dataclass(frozen=True)
class TicketClosed:
    """The ticket left the pool without a match (cancelled, expired, held for review)."""

    ticket_id: str
    reason: str


@dataclass(frozen=True)
class HeartbeatAck:
    server_time: float
    ticket_id: str = ""  # waiting: the ticket, its position and the estimated wait
    position: int = 0
    estimated_wait_ms: float = 0.0


@dataclass(frozen=True)
class Blocked:
    call_id: str


@dataclass(frozen=True)
class Reported:
    call_id: str


@dataclass(frozen=True)
class PartnerProfile:
    display_name: str
    region: str
    shared_interests: tuple[str, ...] = ()
    languages: tuple[str, ...] = ()


@dataclass(frozen=True)
class Matched:
    call_id: str
    partner_display_name: str
    partner_region: str
    route: tuple[str, ...]  # from this client's edge to the partner's
    route_rtt_ms: float
    stages: dict[str, float] = field(default_factory=dict)  # server-side: queued, matched, route_picked, bridged
    partner: PartnerProfile | None = None
    predicted_connect_ms: float = 0.0  # 0: no prediction
    friend_call: bool = False  # a friend call (CallFriend accepted), not a match from the pool


@dataclass(frozen=True)
class CallEnded:
    reason: str  # "next", "left", "partner_next", "bridge failed: ...", ...
    call_id: str = ""  # empty when the match ended before a call existed


@dataclass(frozen=True)
class Friend:
    """A friend as a user sees them."""

    user_id: str
    display_name: str
    online: bool  # has a session open
    busy: bool  # in a call or a ring right now
    since: float  # epoch ms


@dataclass(frozen=True)
class FriendRequested:
    """The answer to AddFriend: now friends (the partner had asked too), or waiting for them to ask."""

    call_id: str
    friends: bool


@dataclass(frozen=True)
class FriendAdded:
    friend: Friend
    call_id: str


@dataclass(frozen=True)
class Ringing:
    """The caller's side of a ring: the friend has been told."""

    request_id: str
    friend: Friend
    expires_at: float


@dataclass(frozen=True)
class IncomingCall:
    request_id: str
    caller: PartnerProfile
    caller_user_id: str
    expires_at: float


@dataclass(frozen=True)
class RingEnded:
    """A ring ended without a call: declined, no answer, cancelled, someone left, no longer friends."""

    request_id: str
    reason: str


@dataclass(frozen=True)
class EdgeLost:
    """The session's edge died; an EdgeAssigned with a new edge follows (or NoEdge)."""

    edge_id: str
    reason: str


@dataclass(frozen=True)
class NoEdge:
    """No edge could take the session any more: the stream ends UNAVAILABLE with this reason."""

    reason: str


@dataclass(frozen=True)
class ShardMoved:
    """This replica no longer serves the session's shard: the stream ends UNAVAILABLE with this reason, and
    the client reconnects (to any replica; its open ticket is resumed there)."""

    reason: str


@dataclass(frozen=True)
class ClockProbe:
    """Asks the client for its clock; it answers with the probe's id and its receive and send times."""

    probe_id: int
    server_send: float  # epoch ms, matchmaker clock


@dataclass(frozen=True)
class SessionClosed:
    """The matchmaker ended the session (replaced, shutting down): the stream ends after what came before."""


SessionEvent = (
    EdgeAssigned
    | LegAnswered
    | Queued
    | Matched
    | CallEnded
    | TicketClosed
    | HeartbeatAck
    | Blocked
    | Reported
    | FriendRequested
    | FriendAdded
    | Ringing
    | IncomingCall
    | RingEnded
    | EdgeLost
    | ClockProbe
)


class Outbox(Protocol):
    """Where a session's events go (an asyncio.Queue in the server); the core only ever puts."""

    def put_nowait(self, item: SessionEvent | SessionClosed | NoEdge | ShardMoved, /) -> None: ...

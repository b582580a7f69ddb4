"""What the matchmaker core needs from the rest of the system, as Protocols.

Six ports: the routing service (where a client enters, how two edges are
joined), the edges (a client's WebRTC leg and the bridge between two legs),
the store (users, tickets, call records), the safety store (blocks and
reports), the moderation store (holds and reviews) and the friend store (friend requests and friendships). The pool's latency estimate between regions is a port of the
rules (``rules.base.LatencyEstimate``). Values crossing them are plain
dataclasses and the errors are the ``Peer*`` exceptions below, never
protobuf or gRPC, so the core runs unchanged over gRPC (``remote_peers``),
over the in-memory ``fakes``, or over anything else that keeps these contracts.
"""

from __future__ import annotations

import enum
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Protocol

from duet.services.store.meetings import PastMeeting
from duet.services.store.records import (
    CallRow,
    ClockOffset,
    FriendRow,
    ReportedUserRow,
    ReportRow,
    ReviewRow,
    TicketRow,
)

# -- values -------------------------------------------------------------------


class EdgeState(enum.StrEnum):
    # Names match the wire enum's (EDGE_STATE_<NAME>), which is how the gRPC layers convert.
    UNSPECIFIED = "unspecified"
    ACTIVE = "active"  # takes new clients
    DRAINING = "draining"  # keeps its calls, takes no new clients
    DOWN = "down"


@dataclass(frozen=True)
class EdgeInfo:
    """One edge node, with what a client needs to reach it (sent to the client as is)."""

    edge_id: str  # e.g. "fra-1"
    number: int  # compact id on the backbone wire
    region: str
    control_address: str  # host:port of its control API
    backbone_address: str  # host:port of its backbone UDP socket
    media_host: str  # address its WebRTC legs gather ICE candidates on
    state: EdgeState


@dataclass(frozen=True)
class Ingress:
    edge: EdgeInfo
    reason: str  # why this edge, for people: "geoip: Frankfurt, 12 ms"


@dataclass(frozen=True)
class Route:
    path: tuple[str, ...]  # edge ids, the first edge first
    rtt_ms: float  # sum of the link RTTs along the path


@dataclass(frozen=True)
class Leg:
    leg_id: str
    answer_sdp: str
    # The video codec the leg's client sends, and those it decodes (edge.payload_types names).
    video_send_codec: str
    video_receive_codecs: tuple[str, ...]


# -- errors a peer raises ---------------------------------------------------------


class PeerError(Exception):
    """The routing service or an edge did not do what was asked; str() is its explanation."""


class PeerUnavailable(PeerError):
    """Unreachable, too slow, or failed on its side: the request itself may be fine."""


class PeerInvalidRequest(PeerError):
    """Refused as malformed (an offer that is not usable SDP, an id that cannot be one)."""


class PeerNotReady(PeerError):
    """Well-formed, but the peer's state does not allow it now (a leg still connecting, no path between edges)."""


class PeerNotFound(PeerError):
    """Names something the peer does not know (a leg, bridge or edge)."""


# -- ports ----------------------------------------------------------------------


class RoutingService(Protocol):
    """Ingress and backbone path selection.

    Raises PeerUnavailable when the service cannot be reached or no edge can
    take the client, PeerInvalidRequest for an unusable client address,
    PeerNotFound for an unknown edge id, and PeerNotReady when no path joins
    two edges.
    """

    async def pick_ingress(self, client_ip: str) -> Ingress:
        """The edge a client at ``client_ip`` should attach its leg to."""
        ...

    async def pick_route(self, from_edge_id: str, to_edge_id: str) -> Route:
        """The backbone path between two edges (just that edge when they are the same)."""
        ...


class Edges(Protocol):
    """The edges' control planes, each reached through its EdgeInfo.

    Every method may raise PeerUnavailable (the edge cannot be reached or
    failed). attach_leg raises PeerInvalidRequest for an unusable offer;
    bridge raises PeerNotReady while the leg is still connecting or the peer
    edge is not yet in this edge's route table, and PeerNotFound for an
    unknown leg; detach_leg and unbridge raise PeerNotFound for an unknown
    leg or bridge.
    """

    async def attach_leg(self, edge: EdgeInfo, session_id: str, offer_sdp: str) -> Leg:
        """Terminate a client's WebRTC leg on ``edge``: its id and the SDP answer."""
        ...

    async def detach_leg(self, edge: EdgeInfo, leg_id: str) -> None: ...

    async def bridge(self, edge: EdgeInfo, bridge_id: int, leg_id: str, side: int, peer_edge_id: str) -> float:
        """Bridge one local leg as ``side`` (0 or 1) of a call whose other side is on ``peer_edge_id``.

        Returns the edge's clock (epoch ms) when the bridge was in place.
        """
        ...

    async def unbridge(self, edge: EdgeInfo, bridge_id: int, side: int) -> float:
        """Take one side of a bridge down; returns its first_packet_at_edge (epoch ms, 0 if no video reached it)."""
        ...

    async def first_packet_at_edge(self, edge: EdgeInfo, bridge_id: int, side: int) -> float:
        """When the partner's first video packet went into this side's leg (epoch ms, 0 if not yet or unknown)."""
        ...


class MatchStore(Protocol):
    """The records the matchmaker keeps: users, pool tickets, calls.

    Input the records module rejects raises ValueError; a ticket or call
    naming an unknown user raises UnknownUser and a reused id DuplicateRecord
    (both from duet.services.store.records). Anything else means the store
    itself failed.
    """

    async def upsert_user(self, user_id: str, display_name: str) -> None:
        """Create the user, or update the display name of an existing one."""
        ...

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
        """Record a user entering the pool (queued_at in epoch s); a user has one open ticket,
        so an open one of theirs is closed as 'replaced' first. ``region``, ``shard`` and
        ``preferences`` (JSON-able) let another replica restore the wait."""
        ...

    async def close_ticket(self, ticket_id: str, outcome: str) -> bool:
        """Close an open ticket; False if it is unknown or already closed (the first outcome is kept)."""
        ...

    async def close_pair(self, ticket_ids: Sequence[str], outcome: str) -> list[str]:
        """Close all of ``ticket_ids`` at once if every one is still open: [] when done, else the ids
        no longer open, with nothing changed (so no ticket is ever paired twice, by any replica)."""
        ...

    async def close_pair_and_create_call(self, ticket_ids: Sequence[str], outcome: str, call: CallRow) -> list[str]:
        """``close_pair`` and ``create_call`` in one transaction: both tickets closed and the call recorded,
        or, when a ticket is no longer open, nothing changed and the ids no longer open returned (as
        ``close_pair``). A call ``create_call`` refuses raises as there, with nothing changed either."""
        ...

    async def resume_ticket(
        self, ticket_id: str, session_id: str, edge_id: str, region: str, preferences: Mapping[str, Any]
    ) -> bool:
        """Move an open ticket onto its user's new session, keeping its queued_at; False if not open."""
        ...

    async def open_tickets_in_shard(self, shard: str) -> list[TicketRow]:
        """The open tickets of a shard, oldest first (restored by the shard's new owner)."""
        ...

    async def create_call(self, call: CallRow) -> None:
        """Record a new call; the store sets created_at (and ended_at for a call created 'ended')."""
        ...

    async def merge_stages(self, call_id: str, side: str, stages: Mapping[str, float]) -> bool:
        """Merge stage timings (epoch ms) into side 'a' or 'b' by key, a key given again taking the new value.

        False if the call does not exist.
        """
        ...

    async def set_call_state(self, call_id: str, state: str, end_reason: str | None = None) -> bool:
        """Move a call to ``state``; 'ended' stamps ended_at and is final.

        False if the call does not exist or has already ended (so the first end reason wins).
        A None end_reason keeps the current one.
        """
        ...

    async def end_calls_in_shard(self, shard: str, reason: str, keep: Sequence[str] = ()) -> int:
        """End every live call of ``shard`` but those in ``keep`` (ones a dead replica left); how many ended."""
        ...

    async def get_call(self, call_id: str) -> CallRow | None:
        """A copy of the call record, or None."""
        ...

    async def recent_meetings(self, user_id: str, *, recent: int, window_s: float) -> list[PastMeeting]:
        """The partners of the user's last ``recent`` matches and of every match within ``window_s``
        seconds (either side, any state), each once with its latest meeting, newest first."""
        ...

    async def set_clock(self, call_id: str, side: str, clock: ClockOffset) -> bool:
        """Record the clock offset side 'a' or 'b''s client stages were moved onto the matchmaker's clock with.

        False if the call does not exist.
        """
        ...

    async def list_calls(self, limit: int = 50, user_id: str | None = None) -> list[CallRow]:
        """Up to ``limit`` calls (of ``user_id``, either side, or everyone's), newest first."""
        ...


class SafetyStore(Protocol):
    """Blocks and reports between users, kept for good.

    Both users must exist (UnknownUser otherwise, from duet.services.store.records);
    a user cannot block or report themselves (ValueError).
    """

    async def add_block(self, blocker: str, blocked: str, call_id: str) -> None:
        """Record that ``blocker`` never wants to meet ``blocked``; blocking again changes nothing."""
        ...

    async def blocks_of(self, user_id: str) -> set[str]:
        """Every user this one blocked or was blocked by."""
        ...

    async def add_report(self, reporter: str, reported: str, call_id: str, reason: str) -> int:
        """Record a report (one per reporter per call; a repeat changes nothing).

        Returns how many distinct users have now reported ``reported`` since their last review.
        """
        ...

    async def report_count(self, user_id: str) -> int:
        """How many distinct users have reported this one since their last review (ModerationStore)."""
        ...


class ModerationStore(Protocol):
    """Who is held for review, the reports about a user, and moderators' reviews.

    A review clears a user: reports made before it no longer count toward a
    hold (SafetyStore.report_count); the reports themselves are kept.
    """

    async def held_users(self, threshold: int, limit: int) -> list[ReportedUserRow]:
        """Users with at least ``threshold`` distinct reporters since their last review, most reported first."""
        ...

    async def reported_user(self, user_id: str) -> ReportedUserRow | None:
        """The user with what counts against them now; None when there is no such user."""
        ...

    async def reports_about(self, user_id: str, limit: int) -> list[ReportRow]:
        """The reports about the user, newest first."""
        ...

    async def reviews_of(self, user_id: str, limit: int) -> list[ReviewRow]:
        """The user's reviews, newest first."""
        ...

    async def clear_reports(self, user_id: str, reviewer: str, note: str) -> ReviewRow:
        """Record a review by ``reviewer``; UnknownUser, NothingToClear (no counting report) or
        ValueError (a bad note) leave nothing written."""
        ...


class FriendStore(Protocol):
    """Friend requests and friendships, kept for good.

    Both users must exist (UnknownUser otherwise, from duet.services.store.records);
    a user cannot friend themselves (ValueError).
    """

    async def add_friend_request(self, requester: str, requested: str, call_id: str) -> FriendRow | None:
        """``requester`` asks to be friends with ``requested``. When ``requested`` had asked too (or
        they are friends already) the two are friends: returns ``requested`` as ``requester``'s
        friend. Otherwise the request is kept (asking again changes nothing) and None is returned."""
        ...

    async def friends_of(self, user_id: str) -> list[FriendRow]:
        """Every friend of this user (any order)."""
        ...

    async def are_friends(self, user_id: str, other: str) -> bool: ...

    async def remove_friend(self, user_id: str, other: str) -> bool:
        """End a friendship and drop pending requests either way; False if they were not friends."""
        ...

    async def user_exists(self, user_id: str) -> bool: ...

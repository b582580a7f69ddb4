"""The store's records and the rules their values obey, whatever keeps them.

Plain dataclass rows (no protobuf, no database types). Times cross the store
as epoch seconds (floats); call stage timings are epoch milliseconds per side.
The checks and errors here are shared by every implementation (PostgreSQL,
in memory), so they reject the same input the same way.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass, field

CALL_STATE_ENDED = "ended"
# What kind of call a record is: paired from the pool, or a friend calling a friend.
CALL_KIND_MATCH = "match"
CALL_KIND_FRIEND = "friend"
CALL_KINDS = (CALL_KIND_MATCH, CALL_KIND_FRIEND)


@dataclass(frozen=True)
class ClockOffset:
    """A client's clock minus the matchmaker's (ms), within ``uncertainty_ms`` (half the best probe's round trip)."""

    offset_ms: float
    uncertainty_ms: float

    def __post_init__(self) -> None:
        if not math.isfinite(self.offset_ms) or not math.isfinite(self.uncertainty_ms) or self.uncertainty_ms < 0:
            raise ValueError(
                f"a clock offset needs a finite offset and an uncertainty of 0 or more, "
                f"got {self.offset_ms!r} +- {self.uncertainty_ms!r}"
            )

    def to_server(self, client_ms: float) -> float:
        """A client-clock time on the matchmaker's clock."""
        return client_ms - self.offset_ms


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
    kind: str = CALL_KIND_MATCH
    # Set by the store; ignored by create_call. duration_ms = ended_at - created_at, set when the call ends.
    created_at: float | None = None
    ended_at: float | None = None
    duration_ms: float | None = None
    # Each side's clock offset, once its client's report was moved onto the matchmaker's clock (set_clock).
    clock_a: ClockOffset | None = None
    clock_b: ClockOffset | None = None


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


class UnknownUser(LookupError):
    """A ticket or call names a user the store does not have (upsert_user first)."""


class DuplicateRecord(ValueError):
    """A ticket or call id that is already taken; nothing was written."""


def checked_epoch(epoch_s: float, what: str) -> float:
    if not isinstance(epoch_s, (int, float)) or not math.isfinite(epoch_s):
        raise ValueError(f"{what} must be a finite number of epoch seconds, got {epoch_s!r}")
    return float(epoch_s)


def checked_stages(stages: Mapping[str, float], what: str) -> dict[str, float]:
    # jsonb cannot hold NaN/inf, and a non-numeric value would poison later reads.
    out: dict[str, float] = {}
    for k, v in stages.items():
        if not isinstance(k, str) or not k:
            raise ValueError(f"{what}: stage names must be non-empty strings, got {k!r}")
        if isinstance(v, bool) or not isinstance(v, (int, float)) or not math.isfinite(v):
            raise ValueError(f"{what}: stage {k!r} must be a finite number of epoch ms, got {v!r}")
        out[k] = float(v)
    return out


def checked_side(side: str) -> str:
    if side not in ("a", "b"):
        raise ValueError(f"side must be 'a' or 'b', got {side!r}")
    return side


def checked_call(call: CallRow) -> CallRow:
    """The call as create_call stores it: route and stages checked and copied."""
    if call.kind not in CALL_KINDS:
        raise ValueError(f"a call's kind is one of {', '.join(CALL_KINDS)}, got {call.kind!r}")
    if not math.isfinite(call.route_rtt_ms):
        raise ValueError(f"route_rtt_ms must be finite, got {call.route_rtt_ms!r}")
    return CallRow(
        call_id=call.call_id,
        user_a=call.user_a,
        user_b=call.user_b,
        edge_a=call.edge_a,
        edge_b=call.edge_b,
        leg_a=call.leg_a,
        leg_b=call.leg_b,
        route=list(call.route),
        route_rtt_ms=float(call.route_rtt_ms),
        state=call.state,
        end_reason=call.end_reason,
        stages_a=checked_stages(call.stages_a, "stages_a"),
        stages_b=checked_stages(call.stages_b, "stages_b"),
        kind=call.kind,
    )


__all__ = [
    "CALL_KINDS",
    "CALL_KIND_FRIEND",
    "CALL_KIND_MATCH",
    "CALL_STATE_ENDED",
    "CallRow",
    "ClockOffset",
    "DuplicateRecord",
    "EdgeRow",
    "FriendRow",
    "TicketRow",
    "UnknownUser",
    "UserRow",
    "checked_call",
    "checked_epoch",
    "checked_side",
    "checked_stages",
]


MAX_REPORT_REASON = 500


def checked_pair(user: str, other: str, what: str) -> None:
    """A block or report is between two different users."""
    if not user or not other:
        raise ValueError(f"a {what} needs two user ids, got {user!r} and {other!r}")
    if user == other:
        raise ValueError(f"a user cannot {what} themselves ('{user}')")


def checked_reason(reason: str) -> str:
    if len(reason) > MAX_REPORT_REASON:
        raise ValueError(f"a report reason has at most {MAX_REPORT_REASON} characters, got {len(reason)}")
    return reason


@dataclass(frozen=True)
class FriendRow:
    """One of a user's friends, as the store keeps them."""

    user_id: str
    display_name: str
    since: float  # epoch s: when the second of the two asked


# -- moderation -------------------------------------------------------------

MAX_REVIEW_NOTE = 500


class NothingToClear(LookupError):
    """A review asked to clear a user with no report since their last review."""


@dataclass(frozen=True)
class ReportedUserRow:
    """A user and the reports that count against them now (made since their last review)."""

    user_id: str
    display_name: str
    reporters: int  # distinct reporters since the last review
    last_report_at: float  # epoch s of the newest counting report; 0 = none
    last_review_at: float  # epoch s; 0 = never reviewed


@dataclass(frozen=True)
class ReportRow:
    """One report about a user."""

    reporter: str
    call_id: str
    reason: str
    created_at: float  # epoch s
    counts: bool  # made after the user's last review


@dataclass(frozen=True)
class ReviewRow:
    """A moderator cleared a user: the reports before it stop counting."""

    user_id: str
    reviewer: str
    note: str
    reports_cleared: int
    reviewed_at: float  # epoch s


def checked_note(note: str) -> str:
    if len(note) > MAX_REVIEW_NOTE:
        raise ValueError(f"a review note has at most {MAX_REVIEW_NOTE} characters, got {len(note)}")
    if any(not (c.isprintable() or c in "\n\t") for c in note):
        raise ValueError("a review note cannot hold control characters")
    return note

"""The matchmaker's tunables, validated once at start."""

from __future__ import annotations

from dataclasses import dataclass, field

from duet.services.matchmaker.rules.relaxation import RelaxSchedule

# A user is not paired again with any of their last N partners (default N).
RECENT_PARTNERS = 5


@dataclass(frozen=True)
class MatchConfig:
    """The matchmaker's tunables (``duet matchmaker --help`` names each)."""

    recent_partners: int = RECENT_PARTNERS  # never re-paired with one of their last N partners
    rematch_window_s: float = 0.0  # nor with anyone met within this many seconds (0: off)
    ticket_ttl_s: float = 120.0  # a ticket not matched by then expires
    relax: RelaxSchedule = field(default_factory=RelaxSchedule)
    near_rtt_ms: float = 80.0  # "near me": same region or a reference RTT up to this
    review_threshold: int = 3  # distinct reporters that hold a user for review
    rate_limit_requests: int = 20  # find/next per user: a burst of this many ...
    rate_limit_per_s: float = 10.0  # ... refilled over this many seconds
    compare: int = 16  # the pool scores this many of the oldest compatible candidates
    ring_timeout_s: float = 30.0  # a friend call not answered by then ends with "no answer"

    def __post_init__(self) -> None:
        if self.recent_partners < 0:
            raise ValueError(f"recent_partners must be 0 or more, got {self.recent_partners}")
        if not self.ticket_ttl_s > 0:
            raise ValueError(f"ticket_ttl_s must be more than 0 seconds, got {self.ticket_ttl_s}")
        if not self.near_rtt_ms >= 0:
            raise ValueError(f"near_rtt_ms must be 0 or more, got {self.near_rtt_ms}")
        if not self.ring_timeout_s > 0:
            raise ValueError(f"ring_timeout_s must be more than 0 seconds, got {self.ring_timeout_s}")
        if self.review_threshold < 1:
            raise ValueError(f"review_threshold must be 1 or more, got {self.review_threshold}")

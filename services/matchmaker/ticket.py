"""A wait in the pool: who, from where, with what media and preferences."""

from __future__ import annotations

from dataclasses import dataclass, field

from duet.services.matchmaker.preferences import NO_PREFERENCES, Preferences
from duet.services.matchmaker.rules.media import VideoCodecs


@dataclass(frozen=True)
class Ticket:
    ticket_id: str
    user_id: str
    session_id: str
    edge_id: str
    queued_at: float  # epoch ms
    video: VideoCodecs  # what the ticket's leg sends and decodes
    avoid: frozenset[str] = field(default_factory=frozenset)  # user ids not to be paired with (recent partners)
    region: str = ""  # the region of the ticket's edge
    preferences: Preferences = NO_PREFERENCES
    reports: int = 0  # distinct users who reported this one (deprioritises it)

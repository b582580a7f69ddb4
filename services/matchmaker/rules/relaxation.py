"""Relaxation: soft criteria loosen as a ticket's wait grows, on a configurable schedule.

Only the soft criteria relax: shared interests become optional, and a
"near me" scope widens to anywhere. Hard filters (blocks, gender and age
preferences, language, video codecs, recent partners) never do.
"""

from __future__ import annotations

from dataclasses import dataclass

from duet.services.matchmaker.preferences import Scope
from duet.services.matchmaker.ticket import Ticket


@dataclass(frozen=True)
class RelaxSchedule:
    interests_optional_after_s: float = 10.0
    anywhere_after_s: float = 30.0

    def __post_init__(self) -> None:
        for name in ("interests_optional_after_s", "anywhere_after_s"):
            if not getattr(self, name) >= 0:
                raise ValueError(f"{name} must be 0 or more seconds, got {getattr(self, name)}")
        # Asked for every place the pool looks at; the schedule never changes, so computed once.
        steps = tuple(sorted({0.0, self.interests_optional_after_s, self.anywhere_after_s}))
        object.__setattr__(self, "_steps", steps)

    def steps_s(self) -> tuple[float, ...]:
        """The waits (s) at which some criterion loosens, with 0 first: a ticket's state changes only there."""
        steps: tuple[float, ...] = self.__dict__["_steps"]
        return steps

    @staticmethod
    def cutoff_ms(now_ms: float, seconds: float) -> float:
        """The latest queued_at (epoch ms) that has waited at least ``seconds`` at ``now_ms``."""
        return now_ms - seconds * 1000

    @staticmethod
    def waited(ticket: Ticket, now_ms: float, seconds: float) -> bool:
        """Has the ticket waited at least ``seconds``? (The pool bounds its buckets with the same sum.)"""
        return ticket.queued_at <= RelaxSchedule.cutoff_ms(now_ms, seconds)

    def interests_required(self, ticket: Ticket, now_ms: float) -> bool:
        """The ticket gave interests and is young enough that a partner must share one."""
        return bool(ticket.preferences.interests) and not self.waited(ticket, now_ms, self.interests_optional_after_s)

    def scope(self, ticket: Ticket, now_ms: float) -> Scope:
        """The scope in force: the ticket's own, until it has waited long enough to widen."""
        if ticket.preferences.scope is Scope.NEAR and not self.waited(ticket, now_ms, self.anywhere_after_s):
            return Scope.NEAR
        return Scope.ANYWHERE

    def next_change_ms(self, ticket: Ticket, now_ms: float) -> float | None:
        """When this ticket's criteria next loosen (epoch ms), or None if they never will again."""
        times = []
        if ticket.preferences.interests:
            times.append(ticket.queued_at + self.interests_optional_after_s * 1000)
        if ticket.preferences.scope is Scope.NEAR:
            times.append(ticket.queued_at + self.anywhere_after_s * 1000)
        later = [t for t in times if t > now_ms]
        return min(later) if later else None

"""The waiting pool and the pairing rule.

Event-driven: a ticket entering the pool is paired at once with the
longest-waiting compatible ticket, so nobody waits for a polling tick. The
skeleton's compatibility rule is deliberately small (never yourself, never
the partner you just left, only clients that can exchange video:
``media_rule``); filters, blocks and latency-aware scoring plug in at
``compatible`` without changing the pool.
"""

from __future__ import annotations

from collections import OrderedDict
from dataclasses import dataclass, field

from duet.services.matchmaker.media_rule import VideoCodecs, can_exchange_video


@dataclass(frozen=True)
class Ticket:
    ticket_id: str
    user_id: str
    session_id: str
    edge_id: str
    queued_at: float  # epoch ms
    video: VideoCodecs  # what the ticket's leg sends and decodes
    avoid: frozenset[str] = field(default_factory=frozenset)  # user ids not to be paired with


def compatible(a: Ticket, b: Ticket) -> bool:
    """May these two tickets be paired? Must be symmetric."""
    return (
        a.user_id != b.user_id
        and b.user_id not in a.avoid
        and a.user_id not in b.avoid
        and can_exchange_video(a.video, b.video)
    )


class WaitingPool:
    """Tickets in arrival order; one ticket per user."""

    def __init__(self) -> None:
        self._waiting: OrderedDict[str, Ticket] = OrderedDict()  # ticket_id -> ticket, oldest first
        self._by_user: dict[str, str] = {}

    def __len__(self) -> int:
        return len(self._waiting)

    def __contains__(self, ticket_id: object) -> bool:
        return ticket_id in self._waiting

    def offer(self, ticket: Ticket) -> tuple[Ticket, Ticket] | None:
        """Pair ``ticket`` with the oldest compatible waiting ticket, or queue it.

        Returns (waiting_ticket, ticket) when a pair is made; both have left
        the pool. A user's older ticket is replaced by the new one.
        """
        old = self._by_user.get(ticket.user_id)
        if old is not None:
            self.remove(old)
        for waiting in self._waiting.values():
            if compatible(waiting, ticket):
                self.remove(waiting.ticket_id)
                return waiting, ticket
        self._waiting[ticket.ticket_id] = ticket
        self._by_user[ticket.user_id] = ticket.ticket_id
        return None

    def remove(self, ticket_id: str) -> Ticket | None:
        ticket = self._waiting.pop(ticket_id, None)
        if ticket is not None and self._by_user.get(ticket.user_id) == ticket_id:
            del self._by_user[ticket.user_id]
        return ticket

    def waiting(self) -> list[Ticket]:
        return list(self._waiting.values())

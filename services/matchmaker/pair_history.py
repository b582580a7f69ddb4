"""The matchmaker's memory of pairs: blocks (both ways), each user's last partners, and when pairs met.

The rules read it through the ``PairHistory`` interface; the core writes it.
Blocks and meetings are loaded from the store when a user opens a session
(so another replica, or this one after a restart, remembers whom they met
there) and added as they happen.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterable

from duet.services.store.meetings import PastMeeting


class InMemoryPairHistory:
    def __init__(
        self, *, recent_partners: int = 5, rematch_window_s: float = 0.0, clock: Callable[[], float] = time.time
    ) -> None:
        if recent_partners < 0:
            raise ValueError(f"recent_partners must be 0 or more, got {recent_partners}")
        if not rematch_window_s >= 0:
            raise ValueError(f"rematch_window_s must be 0 or more seconds, got {rematch_window_s}")
        self.recent_partners = recent_partners
        self.rematch_window_s = rematch_window_s
        self.clock = clock
        self._blocks: dict[str, set[str]] = {}  # user -> users they blocked or were blocked by
        # user -> their last partners (distinct, oldest first) -> when they met (clock seconds).
        # A dict, not a deque: a lookup stays one hash probe, and a loaded meeting can be merged by its time.
        self._recent: dict[str, dict[str, float]] = {}
        self._met_at: dict[frozenset[str], float] = {}

    def blocked(self, user_a: str, user_b: str) -> bool:
        return user_b in self._blocks.get(user_a, ())

    def met_recently(self, user_a: str, user_b: str) -> bool:
        if user_b in self._recent.get(user_a, ()) or user_a in self._recent.get(user_b, ()):
            return True
        if not self.rematch_window_s:
            return False  # no window: nothing is kept in _met_at
        met = self._met_at.get(frozenset((user_a, user_b)))
        return met is not None and self.clock() - met < self.rematch_window_s

    def recent_of(self, user_id: str) -> frozenset[str]:
        return frozenset(self._recent.get(user_id, ()))

    def add_block(self, user_a: str, user_b: str) -> None:
        self._blocks.setdefault(user_a, set()).add(user_b)
        self._blocks.setdefault(user_b, set()).add(user_a)

    def load_blocks(self, user_id: str, others: Iterable[str]) -> None:
        for other in others:
            self.add_block(user_id, other)

    def note_met(self, user_a: str, user_b: str) -> None:
        now = self.clock()
        for me, other in ((user_a, user_b), (user_b, user_a)):
            self._remember(me, other, now)
        self._note_window(user_a, user_b, now)

    def load_meetings(self, user_id: str, meetings: Iterable[PastMeeting]) -> None:
        """Merge ``user_id``'s meetings as the store has them (made here, on another replica, or
        before a restart) with what this process saw; the newer of two times for a pair wins."""
        now = self.clock()
        for meeting in sorted(meetings, key=lambda m: -m.seconds_ago):  # oldest first, as they happened
            met = now - meeting.seconds_ago
            self._remember(user_id, meeting.partner, met)
            self._note_window(user_id, meeting.partner, met)

    def _remember(self, me: str, other: str, met: float) -> None:
        if not self.recent_partners:
            return
        partners = self._recent.setdefault(me, {})
        if partners.get(other, float("-inf")) >= met:
            return  # known already, from a meeting as late
        partners.pop(other, None)
        partners[other] = met
        if len(partners) > 1 and met < max(partners.values()):
            # A loaded meeting older than one already known: keep the dict in meeting order.
            ordered = sorted(partners.items(), key=lambda kv: kv[1])
            partners.clear()
            partners.update(ordered)
        while len(partners) > self.recent_partners:
            del partners[next(iter(partners))]  # the oldest

    def _note_window(self, user_a: str, user_b: str, met: float) -> None:
        if not self.rematch_window_s:
            return
        now = self.clock()
        if now - met >= self.rematch_window_s:
            return  # outside the window already
        pair = frozenset((user_a, user_b))
        if self._met_at.get(pair, float("-inf")) < met:
            self._met_at[pair] = met
        if len(self._met_at) > 100_000:
            # Forget pairs whose window has passed.
            self._met_at = {k: v for k, v in self._met_at.items() if now - v < self.rematch_window_s}

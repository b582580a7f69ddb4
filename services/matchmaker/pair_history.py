"""The matchmaker's memory of pairs: blocks (both ways), each user's last partners, and when pairs met.

The rules read it through the ``PairHistory`` interface; the core writes it.
Blocks are loaded from the store when a user opens a session and added as
they happen; meetings live in memory only (a restart forgets them).
"""

from __future__ import annotations

import time
from collections import deque
from collections.abc import Callable, Iterable


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
        self._recent: dict[str, deque[str]] = {}
        self._met_at: dict[frozenset[str], float] = {}

    def blocked(self, user_a: str, user_b: str) -> bool:
        return user_b in self._blocks.get(user_a, ())

    def met_recently(self, user_a: str, user_b: str) -> bool:
        if user_b in self._recent.get(user_a, ()) or user_a in self._recent.get(user_b, ()):
            return True
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
        for me, other in ((user_a, user_b), (user_b, user_a)):
            if self.recent_partners:
                self._recent.setdefault(me, deque(maxlen=self.recent_partners)).append(other)
        if self.rematch_window_s:
            now = self.clock()
            self._met_at[frozenset((user_a, user_b))] = now
            if len(self._met_at) > 100_000:
                # Forget pairs whose window has passed.
                self._met_at = {k: v for k, v in self._met_at.items() if now - v < self.rematch_window_s}

"""Per-user token bucket for find/next: a burst of N requests, refilled at N per M seconds."""

from __future__ import annotations

from dataclasses import dataclass

from duet.services.matchmaker.errors import RateLimited


@dataclass
class _Bucket:
    tokens: float
    updated: float  # seconds, on the limiter's clock


class RateLimiter:
    """``take(user, now)`` spends one token or raises RateLimited saying when to come back."""

    def __init__(self, requests: int = 20, per_s: float = 10.0, *, max_users: int = 100_000) -> None:
        if requests < 1 or not per_s > 0:
            raise ValueError(f"a rate limit needs 1 or more requests per a positive time, got {requests} per {per_s} s")
        self.requests = requests
        self.per_s = per_s
        self.max_users = max_users
        self._buckets: dict[str, _Bucket] = {}

    def take(self, user_id: str, now_s: float) -> None:
        rate = self.requests / self.per_s
        b = self._buckets.get(user_id)
        if b is None:
            if len(self._buckets) >= self.max_users:
                self._forget_full(now_s)
            b = self._buckets[user_id] = _Bucket(float(self.requests), now_s)
        b.tokens = min(float(self.requests), b.tokens + max(0.0, now_s - b.updated) * rate)
        b.updated = now_s
        if b.tokens < 1.0:
            wait = (1.0 - b.tokens) / rate
            raise RateLimited(
                f"slow down: {self.requests} requests in {self.per_s:g} s; try again in {max(wait, 0.1):.1f} s"
            )
        b.tokens -= 1.0

    def _forget_full(self, now_s: float) -> None:
        # A bucket that would be full again holds nothing worth keeping.
        rate = self.requests / self.per_s
        for user, b in list(self._buckets.items()):
            if b.tokens + (now_s - b.updated) * rate >= self.requests:
                del self._buckets[user]

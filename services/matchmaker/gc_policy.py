"""The matchmaker's garbage-collector policy: long-lived objects frozen, out of the collector's sight.

A matchmaker holds a large, long-lived heap (every session, its leg, its
ticket, the pool's index: about 10^6 objects with 10,000 waiting) and makes
short-lived objects at a high rate (every match). CPython's default policy
then runs a full collection whenever the objects promoted since the last one
reach a quarter of the heap: every few seconds under load, each traversing
the whole heap (~0.25-0.5 s with 10,000 waiting, measured by
``make bench-match``), stalling every request in flight.

The policy here (``FrozenHeap``):

- at start-up, one full collection, then ``gc.freeze()``: the imported
  modules' objects leave the collector's sight for good;
- every ``freeze_every_s`` (0.25 s), ``gc.freeze()`` again (a list splice,
  O(1)): whatever survived that long moves to the permanent generation, so
  the collections CPython still runs by itself (young generations, and full
  ones over what is not frozen) traverse only the objects of the last quarter
  second (at 1 s, the bench still saw 18-33 ms full collections of them);
- young collections every ``young_threshold`` (10,000) new objects instead of
  700: each walks only the young objects still alive, so fewer cost less;
- every ``reclaim_every_s`` (10 minutes), a *reclaim*: ``gc.unfreeze()``, one
  full collection, ``gc.freeze()``. That is the one pause left, as long as a
  default full collection, 10 minutes apart instead of seconds.

Why it is safe: a frozen object is still freed the moment its last reference
goes (reference counting is untouched); freezing only keeps the *cycle*
collector from looking at it. The cost is memory: an object that becomes part
of unreachable cyclic garbage after it was frozen stays until the next
reclaim, so the policy holds at most the cyclic garbage of one reclaim
interval (``make bench-match`` prints what its reclaim found per match).
Nothing here counts the frozen objects: ``gc.get_freeze_count()`` walks the
whole permanent generation (~60 ms for 10^6 objects), a stall of its own.
"""

from __future__ import annotations

import asyncio
import contextlib
import gc
import logging
import time
from collections.abc import AsyncIterator
from dataclasses import dataclass

logger = logging.getLogger("duet.matchmaker")

__all__ = ["FrozenHeap", "GcPolicy", "GcStats"]


@dataclass(frozen=True)
class GcPolicy:
    freeze_every_s: float = 0.25
    reclaim_every_s: float = 600.0
    # New container objects between two young collections (CPython's default: 700). A young collection
    # walks only what is alive of them, about the same set whatever the threshold (the matches in flight),
    # so fewer of them cost less: at 700, make bench-match saw ~70 collections per 1,000 matches, ~20 us
    # per match in all; at 10,000, ~2 per 1,000 matches, ~4 us per match.
    young_threshold: int = 10_000

    def __post_init__(self) -> None:
        if not self.freeze_every_s > 0:
            raise ValueError(f"freeze_every_s must be more than 0, got {self.freeze_every_s}")
        if not self.reclaim_every_s >= self.freeze_every_s:
            raise ValueError(
                f"reclaim_every_s must be at least freeze_every_s ({self.freeze_every_s}), got {self.reclaim_every_s}"
            )
        if self.young_threshold < 1:
            raise ValueError(f"young_threshold must be 1 or more, got {self.young_threshold}")


@dataclass
class GcStats:
    freezes: int = 0
    reclaims: int = 0
    reclaimed: int = 0  # unreachable objects the reclaims found (frozen cyclic garbage, and the young one)
    last_reclaim_ms: float = 0.0


class FrozenHeap:
    """Applies a ``GcPolicy`` to this process while ``running()`` (one at a time per process).

    ``tick()`` is one step of the policy (the background task calls it every ``freeze_every_s``);
    ``reclaim()`` runs the full collection now.
    """

    _active = False  # gc.freeze() is process-wide: two owners would unfreeze each other's heap

    def __init__(self, policy: GcPolicy | None = None) -> None:
        self.policy = policy or GcPolicy()
        self.stats = GcStats()
        self._last_reclaim = 0.0

    def reclaim(self) -> int:
        """Unfreeze, collect everything, freeze again; returns the unreachable objects found."""
        started = time.perf_counter()
        gc.unfreeze()
        found = gc.collect()
        gc.freeze()
        self._last_reclaim = time.monotonic()
        took_ms = (time.perf_counter() - started) * 1000
        self.stats.reclaims += 1
        self.stats.reclaimed += found
        self.stats.last_reclaim_ms = took_ms
        logger.info("gc: reclaimed %d unreachable objects in %.0f ms", found, took_ms)
        return found

    def tick(self) -> None:
        """Freeze what survived since the last tick; reclaim instead when the interval has passed."""
        if time.monotonic() - self._last_reclaim >= self.policy.reclaim_every_s:
            self.reclaim()
        else:
            gc.freeze()
            self.stats.freezes += 1

    @contextlib.asynccontextmanager
    async def running(self) -> AsyncIterator[FrozenHeap]:
        """Freeze now and every ``freeze_every_s`` until the block ends; then unfreeze (the heap is the
        collector's again)."""
        if FrozenHeap._active:
            raise RuntimeError("a FrozenHeap is already running in this process")
        FrozenHeap._active = True
        thresholds = gc.get_threshold()
        gc.set_threshold(self.policy.young_threshold, *thresholds[1:])
        try:
            self.reclaim()
            task = asyncio.create_task(self._run(), name="gc freeze")
            try:
                yield self
            finally:
                task.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await task
        finally:
            gc.unfreeze()
            gc.set_threshold(*thresholds)
            FrozenHeap._active = False

    async def _run(self) -> None:
        while True:
            await asyncio.sleep(self.policy.freeze_every_s)
            self.tick()

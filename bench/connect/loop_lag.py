"""How late the benchmark's own event loop runs: is a slow call the system's, or the load process falling behind?

The load process runs every client (encoders, decoders, jitter buffers) on a
2-core machine shared with the services. When it falls behind, a first frame
is decoded or noticed late and the call looks slow for reasons no real
client would see. A task wakes every ``PERIOD_S`` and records how late it
woke; ``worst_between`` answers for one call's window.
"""

from __future__ import annotations

import asyncio
import bisect
import contextlib
import time
from collections.abc import AsyncIterator

__all__ = ["LoopLag", "watch_loop_lag"]

PERIOD_S = 0.01


class LoopLag:
    """Wake-up delays of the loop: (epoch ms of the wake-up, ms late), in time order."""

    def __init__(self) -> None:
        self._at: list[float] = []
        self._late: list[float] = []

    def record(self, at_ms: float, late_ms: float) -> None:
        self._at.append(at_ms)
        self._late.append(late_ms)

    def worst_between(self, start_ms: float, end_ms: float) -> float:
        """The largest delay of a wake-up in [start_ms, end_ms + one period] (0 when none)."""
        lo = bisect.bisect_left(self._at, start_ms)
        hi = bisect.bisect_right(self._at, end_ms + 1000 * PERIOD_S)
        return max(self._late[lo:hi], default=0.0)

    async def run(self) -> None:
        loop = asyncio.get_running_loop()
        while True:
            due = loop.time() + PERIOD_S
            await asyncio.sleep(PERIOD_S)
            self.record(time.time() * 1000, max(0.0, (loop.time() - due) * 1000))


@contextlib.asynccontextmanager
async def watch_loop_lag() -> AsyncIterator[LoopLag]:
    """Measure the running loop's lag while the block runs (the task is cancelled on exit)."""
    lag = LoopLag()
    task = asyncio.create_task(lag.run(), name="loop-lag")
    try:
        yield lag
    finally:
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task

"""How late a benchmark process's event loop runs, and whether it was busy or waiting for a core meanwhile.

A task wakes every ``PERIOD_S`` and records how late it woke and how much CPU
the process used since it went to sleep. bench-connect asks for the worst
delay within one call's window (is a slow call the system's, or the load
process falling behind?); bench-edge's processes under test report their
stalls since the last ask: a late wake-up with CPU used all along means the
process was busy (a long callback, the collector), one with little CPU used
means it was runnable but not running (the other processes had the cores).
Every packet that arrived meanwhile waited as long.
"""

from __future__ import annotations

import asyncio
import bisect
import contextlib
import time
from collections.abc import AsyncIterator
from dataclasses import dataclass

__all__ = ["LoopLag", "Stall", "watch_loop_lag"]

PERIOD_S = 0.01  # 100 wake-ups a second: well under 1% of a core


@dataclass(frozen=True)
class Stall:
    late_ms: float  # how much later than due the loop woke
    cpu_ms: float  # CPU time the process used from the sleep to the late wake-up (PERIOD_S + late_ms)

    @property
    def busy(self) -> bool:
        """Running (its own work) for most of the interval, rather than waiting for a core."""
        return self.cpu_ms >= 0.5 * (self.late_ms + 1000 * PERIOD_S)


class LoopLag:
    """Wake-up delays of the loop: (epoch ms of the wake-up, ms late, ms of CPU used), in time order."""

    def __init__(self) -> None:
        self._at: list[float] = []
        self._late: list[float] = []
        self._cpu: list[float] = []
        self._taken = 0  # wake-ups already handed out by stalls_since_last

    def record(self, at_ms: float, late_ms: float, cpu_ms: float = 0.0) -> None:
        self._at.append(at_ms)
        self._late.append(late_ms)
        self._cpu.append(cpu_ms)

    def worst_between(self, start_ms: float, end_ms: float) -> float:
        """The largest delay of a wake-up in [start_ms, end_ms + one period] (0 when none)."""
        lo = bisect.bisect_left(self._at, start_ms)
        hi = bisect.bisect_right(self._at, end_ms + 1000 * PERIOD_S)
        return max(self._late[lo:hi], default=0.0)

    def stalls_since_last(self, min_late_ms: float) -> list[Stall]:
        """The wake-ups at least ``min_late_ms`` late since the last call."""
        start, self._taken = self._taken, len(self._late)
        return [
            Stall(round(late, 1), round(cpu, 1))
            for late, cpu in zip(self._late[start:], self._cpu[start:], strict=True)
            if late >= min_late_ms
        ]

    async def run(self) -> None:
        loop = asyncio.get_running_loop()
        while True:
            due = loop.time() + PERIOD_S
            cpu = time.process_time()
            await asyncio.sleep(PERIOD_S)
            late_ms = max(0.0, (loop.time() - due) * 1000)
            self.record(time.time() * 1000, late_ms, (time.process_time() - cpu) * 1000)


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

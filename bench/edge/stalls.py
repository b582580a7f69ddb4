"""When a process under test stopped forwarding for a while: its event loop woke late, and why.

A task sleeps ``PERIOD_S`` again and again and notes each wake-up later than
``NOTED_MS``, with the CPU time the process used meanwhile: a late wake-up
with CPU used all along means the process was busy (a long callback, the
garbage collector); one with little CPU used means it was runnable but not
running (the other processes had the two cores). Every packet that arrived
meanwhile waited as long.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from dataclasses import dataclass

PERIOD_S = 0.01  # 100 wake-ups a second: well under 1% of a core
NOTED_MS = 5.0


@dataclass(frozen=True)
class Stall:
    late_ms: float  # how much later than due the loop woke
    cpu_ms: float  # CPU time this process used from the sleep to the late wake-up (PERIOD_S + late_ms)

    @property
    def busy(self) -> bool:
        """Running (its own work) for most of the interval, rather than waiting for a core."""
        return self.cpu_ms >= 0.5 * (self.late_ms + 1000 * PERIOD_S)


class LoopStalls:
    def __init__(self) -> None:
        self._stalls: list[Stall] = []
        self._task: asyncio.Task[None] | None = None

    def start(self) -> None:
        self._task = asyncio.create_task(self._run(), name="loop stalls")

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task

    def take(self) -> list[Stall]:
        """The stalls since the last take, and forget them."""
        taken, self._stalls = self._stalls, []
        return taken

    async def _run(self) -> None:
        loop = asyncio.get_running_loop()
        while True:
            due = loop.time() + PERIOD_S
            cpu = time.process_time()
            await asyncio.sleep(PERIOD_S)
            late_ms = (loop.time() - due) * 1000
            if late_ms >= NOTED_MS:
                used_ms = (time.process_time() - cpu) * 1000
                self._stalls.append(Stall(round(late_ms, 1), round(used_ms, 1)))

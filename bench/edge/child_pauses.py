"""The ``pauses`` command of a process under test (bench edge, floor loop): both ends of it.

The child keeps its collector's pauses (``bench/gc_pauses.py``) and its event
loop's lag (``bench/loop_lag.py``) while it serves; asked, it replies with
what happened since the last ask. The driver reads the reply back.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator, Callable, Coroutine
from typing import Any

from bench.gc_pauses import GcPauses
from bench.loop_lag import LoopLag, Stall, watch_loop_lag

STALL_MIN_MS = 5.0  # later wake-ups than this are reported


class ChildPauses:
    def __init__(self, gc: GcPauses, lag: LoopLag) -> None:
        self._gc = gc
        self._lag = lag

    def reply(self) -> dict[str, object]:
        """The reply to ``{"cmd": "pauses"}``: collector pauses (ms) and loop stalls since the last ask."""
        stalls = self._lag.stalls_since_last(STALL_MIN_MS)
        return {"gc_ms": [round(ms, 2) for ms in self._gc.take()], "stalls": [[s.late_ms, s.cpu_ms] for s in stalls]}


@contextlib.asynccontextmanager
async def watching() -> AsyncIterator[ChildPauses]:
    """Record this process's pauses while the block runs."""
    with GcPauses() as gc:
        async with watch_loop_lag() as lag:
            yield ChildPauses(gc, lag)


async def serve_commands(
    commands: Callable[[ChildPauses], Coroutine[object, object, None]], stop: asyncio.Event
) -> None:
    """Run the child's command reader with its pauses recorded until ``stop`` is set; then end the reader."""
    async with watching() as pauses:
        task = asyncio.create_task(commands(pauses))
        try:
            await stop.wait()
        finally:
            task.cancel()
            await asyncio.gather(task, return_exceptions=True)


def read_reply(reply: dict[str, Any]) -> tuple[list[float], list[Stall]]:
    """The driver's side: collector pauses (ms) and loop stalls from a child's reply."""
    return [float(ms) for ms in reply["gc_ms"]], [Stall(float(a), float(b)) for a, b in reply["stalls"]]

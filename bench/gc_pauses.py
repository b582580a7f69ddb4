"""How long the garbage collector held this process: every pass, timed by its own callbacks.

A benchmark that sees a latency spike needs to know whether the collector
caused it; CPython tells each pass's start and end (``gc.callbacks``).
"""

from __future__ import annotations

import gc
import time


class GcPauses:
    """Records every collector pass while installed (``with`` block, or ``install``/``uninstall``)."""

    def __init__(self) -> None:
        self.ms: list[float] = []
        self.full = 0  # passes over the oldest generation
        self._start = 0.0

    def _note(self, phase: str, info: dict[str, int]) -> None:
        if phase == "start":
            self._start = time.perf_counter()
        else:
            self.ms.append((time.perf_counter() - self._start) * 1000)
            self.full += info.get("generation") == 2

    def install(self) -> GcPauses:
        gc.callbacks.append(self._note)
        return self

    def uninstall(self) -> None:
        if self._note in gc.callbacks:
            gc.callbacks.remove(self._note)

    def take(self) -> list[float]:
        """The pauses (ms) since the last take, and forget them."""
        taken, self.ms = self.ms, []
        return taken

    def __enter__(self) -> GcPauses:
        return self.install()

    def __exit__(self, *exc: object) -> None:
        self.uninstall()

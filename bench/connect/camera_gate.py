"""A synthetic camera the benchmark switches off while its client is not in a call.

Each real client encodes on its own device. The benchmark runs all of a
pair's clients (up to eight) in one process on a shared 2-core machine,
where the encoders of the clients waiting for their turn competed with the
two in the call for the CPU: the load process fell behind and calls looked
slower than the system made them (docs/benchmarks.md). A gated camera
yields no frames while closed, so its encoder does not run; its client's
leg stays warm (ICE consent and DTLS need no media). It is opened before the
client asks for a partner, well before the match (the request alone crosses
the control plane), so the camera is running when the call is bridged.

Frames carry the same picture as :class:`SyntheticCamera` (its tag marker
and counter) with timestamps from the wall clock: after a closed spell the
next frame's timestamp jumps ahead like a camera that dropped frames,
instead of a burst of catch-up frames.
"""

from __future__ import annotations

import asyncio
import fractions
import time

import av
from aiortc.mediastreams import MediaStreamError, VideoStreamTrack

from duet.services.devkit.synthetic_media import SyntheticCamera

__all__ = ["GatedCamera"]

VIDEO_CLOCK_RATE = 90_000


class GatedCamera(VideoStreamTrack):
    """SyntheticCamera(tag)'s picture at ``fps``, produced only while ``open()``."""

    kind = "video"

    def __init__(self, tag: int, fps: int = 30) -> None:
        super().__init__()
        self.camera = SyntheticCamera(tag, fps=fps)  # only its painter is used: make_frame
        self.tag = tag
        self._interval = 1.0 / fps
        self._open = asyncio.Event()
        self._counter = 0
        self._next_at: float | None = None  # wall clock of the next frame
        self._epoch = time.time()

    def open(self) -> None:
        self._open.set()

    def close(self) -> None:
        self._open.clear()

    async def recv(self) -> av.VideoFrame:
        if self.readyState != "live":
            raise MediaStreamError
        if not self._open.is_set():
            await self._open.wait()
            self._next_at = None  # resume at once, on the wall clock
        now = time.time()
        if self._next_at is not None and self._next_at > now:
            await asyncio.sleep(self._next_at - now)
            now = self._next_at
        self._next_at = now + self._interval
        frame = self.camera.make_frame(self._counter)
        self._counter = (self._counter + 1) & 0xFFFF
        frame.pts = int((now - self._epoch) * VIDEO_CLOCK_RATE)
        frame.time_base = fractions.Fraction(1, VIDEO_CLOCK_RATE)
        return frame

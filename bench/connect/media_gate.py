"""A synthetic camera and microphone the benchmark switches off while their client is not in a call.

Each real client encodes on its own device. The benchmark runs all of a
pair's clients (up to eight) in one process on a shared 2-core machine,
where the encoders of the clients waiting for their turn competed with the
two in the call for the CPU: the load process fell behind and calls looked
slower than the system made them (docs/benchmarks.md). A gated track
yields no frames while closed, so its encoder does not run; its client's
leg stays warm (ICE consent and DTLS need no media). It is opened before the
client asks for a partner, well before the match (the request alone crosses
the control plane), so the camera is running when the call is bridged.

Frames carry the same picture as :class:`SyntheticCamera` (its tag marker
and counter) and the same tone as :class:`SyntheticMicrophone`, with
timestamps from the wall clock: after a closed spell the next frame's
timestamp jumps ahead like a device that dropped frames, instead of a burst
of catch-up frames.
"""

from __future__ import annotations

import asyncio
import fractions
import time

import av
import numpy as np
from aiortc.mediastreams import MediaStreamError, MediaStreamTrack

from duet.services.devkit.synthetic_media import SyntheticCamera, SyntheticMicrophone

__all__ = ["GatedCamera", "GatedMicrophone", "MediaGate"]

VIDEO_CLOCK_RATE = 90_000


class MediaGate:
    """Paces frames on the wall clock while open; holds the caller while closed."""

    def __init__(self, interval_s: float) -> None:
        self._interval = interval_s
        self._open = asyncio.Event()
        self._next_at: float | None = None  # wall clock of the next frame
        self.epoch = time.time()

    def open(self) -> None:
        self._open.set()

    def close(self) -> None:
        self._open.clear()

    async def next_frame_time(self) -> float:
        """Wait for the next frame's turn (and for the gate to open); its wall-clock time."""
        if not self._open.is_set():
            await self._open.wait()
            self._next_at = None  # resume at once, on the wall clock
        now = time.time()
        if self._next_at is not None and self._next_at > now:
            await asyncio.sleep(self._next_at - now)
            now = self._next_at
        self._next_at = now + self._interval
        return now


class _GatedTrack(MediaStreamTrack):
    def __init__(self, interval_s: float) -> None:
        super().__init__()
        self.gate = MediaGate(interval_s)

    def open(self) -> None:
        self.gate.open()

    def close(self) -> None:
        self.gate.close()

    def stop(self) -> None:
        # A closed gate would hold a reader (aiortc's relay task) forever: let it see the end.
        super().stop()
        self.gate.open()


class GatedCamera(_GatedTrack):
    """SyntheticCamera(tag)'s picture at ``fps``, produced only while open."""

    kind = "video"

    def __init__(self, tag: int, fps: int = 30) -> None:
        super().__init__(1.0 / fps)
        self.camera = SyntheticCamera(tag, fps=fps)  # only its painter is used: make_frame
        self.tag = tag
        self._counter = 0

    async def recv(self) -> av.VideoFrame:
        if self.readyState != "live":
            raise MediaStreamError
        at = await self.gate.next_frame_time()
        if self.readyState != "live":
            raise MediaStreamError
        frame = self.camera.make_frame(self._counter)
        self._counter = (self._counter + 1) & 0xFFFF
        frame.pts = int((at - self.gate.epoch) * VIDEO_CLOCK_RATE)
        frame.time_base = fractions.Fraction(1, VIDEO_CLOCK_RATE)
        return frame


class GatedMicrophone(_GatedTrack):
    """SyntheticMicrophone's tone in 20 ms frames, produced only while open."""

    kind = "audio"

    def __init__(self) -> None:
        mic = SyntheticMicrophone
        super().__init__(mic.SAMPLES / mic.SAMPLE_RATE)
        t = np.arange(mic.SAMPLES) / mic.SAMPLE_RATE
        tone = np.round(mic.AMPLITUDE * np.sin(2 * np.pi * mic.FREQUENCY_HZ * t)).astype(np.int16)
        self._samples = tone.reshape(1, -1)

    async def recv(self) -> av.AudioFrame:
        if self.readyState != "live":
            raise MediaStreamError
        at = await self.gate.next_frame_time()
        if self.readyState != "live":
            raise MediaStreamError
        rate = SyntheticMicrophone.SAMPLE_RATE
        frame = av.AudioFrame.from_ndarray(self._samples, format="s16", layout="mono")
        frame.sample_rate = rate
        # Whole frames on the wall clock: pts advance by a multiple of the frame's samples.
        frame.pts = round((at - self.gate.epoch) * rate / SyntheticMicrophone.SAMPLES) * SyntheticMicrophone.SAMPLES
        frame.time_base = fractions.Fraction(1, rate)
        return frame

"""A synthetic camera and microphone that are cheap to encode and easy to identify.

Random-noise test video saturated two cores with two VP8 encoders and some
calls never decoded (measured on a 2-core machine). This camera sends a flat picture
instead: a background colour derived from the sender's ``tag`` with a marker
drawn into it. The marker carries the 16-bit tag (who sent the frame) and a
16-bit frame counter as big black and white blocks that survive VP8 at low
bitrate, so a receiver can tell whose frame it decoded and which one.

Marker layout, in a 320x240 frame:

    x: 64 .. 256, y: 80 .. 144, a grid of 12 x 4 blocks of 16x16 pixels

    col 0        cols 1..10 (40 data bits, row-major)          col 11
    [W]   tag bits 15..6                                        [B]
    [B]   tag bits 5..0, counter bits 15..12                    [W]
    [W]   counter bits 11..2                                    [B]
    [B]   counter bits 1..0, CRC-8 of (tag, counter)            [W]

Every block is exactly one VP8 macroblock (16x16, aligned to the macroblock
grid); larger frames use 32x32 (2x2 macroblocks) and so on, centred the same
way. Alignment matters: with 20x20 blocks straddling macroblocks, aiortc's
realtime VP8 encoder left about one frame in ten with a half-updated block,
while aligned blocks decoded exactly in thousands of frames at 250-500 kbps.

Columns 0 and 11 are fixed calibration blocks (W = white, B = black): the
reader takes its black/white threshold from them and rejects the frame when
they do not contrast. The CRC-8 rejects frames that merely look like a marker
(another picture, or a frame half-updated across a partner switch).

Only the luma of the data blocks changes from frame to frame; the background
(luma and chroma) is computed once.

Because every frame names its sender, a client whose partners all send this
camera can tell the new partner's first frame exactly (:class:`MarkerRule`);
:func:`synthetic_client` builds such a client.
"""

from __future__ import annotations

import asyncio
import fractions
import functools
import time
from dataclasses import dataclass
from typing import Any

import av
import numpy as np
from aiortc.mediastreams import AudioStreamTrack, MediaStreamError, VideoStreamTrack

from duet.services.client import DuetClient, NewPartner

__all__ = [
    "FrameMarker",
    "MarkerPainter",
    "MarkerRule",
    "SyntheticCamera",
    "SyntheticMicrophone",
    "background_yuv",
    "read_marker",
    "synthetic_client",
]

VIDEO_CLOCK_RATE = 90_000
VIDEO_TIME_BASE = fractions.Fraction(1, VIDEO_CLOCK_RATE)

GRID_COLS = 12
GRID_ROWS = 4
DATA_BITS = 40  # 16 tag + 16 counter + 8 CRC
WHITE = 235  # video-range luma
BLACK = 16
NEUTRAL_CHROMA = 128

# Calibration blocks: (row, col) -> is white.
_CALIBRATION = {(r, 0): r % 2 == 0 for r in range(GRID_ROWS)} | {
    (r, GRID_COLS - 1): r % 2 == 1 for r in range(GRID_ROWS)
}
# Data blocks in bit order (most significant first).
_DATA_CELLS = [(i // 10, 1 + i % 10) for i in range(DATA_BITS)]

# The reader needs this much contrast between the white and black calibration
# blocks (out of 219 for video-range luma) ...
_MIN_CONTRAST = 96
# ... and every block must sit at least this fraction of that contrast away
# from the threshold, or the frame is not trusted.
_MIN_MARGIN = 0.2


@dataclass(frozen=True)
class FrameMarker:
    """What a synthetic camera frame says about itself."""

    tag: int  # 16 bits: which sender
    counter: int  # 16 bits: frame number at that sender, wrapping


def crc8(data: bytes) -> int:
    """CRC-8 (polynomial 0x07), enough to reject frames that are not markers."""
    crc = 0
    for byte in data:
        crc ^= byte
        for _ in range(8):
            crc = ((crc << 1) ^ 0x07) & 0xFF if crc & 0x80 else (crc << 1) & 0xFF
    return crc


def _marker_word(tag: int, counter: int) -> int:
    crc = crc8(bytes(((tag >> 8) & 0xFF, tag & 0xFF, (counter >> 8) & 0xFF, counter & 0xFF)))
    return (tag << 24) | (counter << 8) | crc


MACROBLOCK = 16
MIN_WIDTH = GRID_COLS * MACROBLOCK
MIN_HEIGHT = GRID_ROWS * MACROBLOCK


@functools.lru_cache(maxsize=16)
def _grid(width: int, height: int) -> tuple[tuple[int, ...], tuple[int, ...]]:
    """Block edges for a frame size: column x edges and row y edges.

    Blocks are k x k macroblocks (k = 1 at 320x240, 2 at 640x480, ...), and the
    grid is centred on the macroblock grid.
    """
    mb_cols, mb_rows = width // MACROBLOCK, height // MACROBLOCK
    k = max(1, min(mb_cols // 20, mb_rows // 15))
    ox = (mb_cols - GRID_COLS * k) // 2
    oy = (mb_rows - GRID_ROWS * k) // 2
    xs = tuple((ox + c * k) * MACROBLOCK for c in range(GRID_COLS + 1))
    ys = tuple((oy + r * k) * MACROBLOCK for r in range(GRID_ROWS + 1))
    return xs, ys


@functools.lru_cache(maxsize=16)
def _sample_index(width: int, height: int) -> tuple[np.ndarray, np.ndarray, int, int]:
    """Row and column indices of the central half of every block, for one vectorised mean."""
    xs, ys = _grid(width, height)
    kx = max(1, (xs[1] - xs[0]) // 2)
    ky = max(1, (ys[1] - ys[0]) // 2)
    cols = np.concatenate([np.arange(kx) + (xs[c] + xs[c + 1] - kx) // 2 for c in range(GRID_COLS)])
    rows = np.concatenate([np.arange(ky) + (ys[r] + ys[r + 1] - ky) // 2 for r in range(GRID_ROWS)])
    return rows, cols, ky, kx


def background_yuv(tag: int) -> tuple[int, int, int]:
    """The flat background colour (Y, U, V) for a sender tag: distinct per tag, mid luma."""
    h = (tag * 2654435761) & 0xFFFFFFFF  # Knuth's multiplicative hash spreads nearby tags
    y = 70 + (h & 0xFF) * 110 // 255
    u = 64 + ((h >> 8) & 0xFF) // 2
    v = 64 + ((h >> 16) & 0xFF) // 2
    return y, u, v


def _check_tag(tag: int) -> None:
    if not 0 <= tag <= 0xFFFF:
        raise ValueError(f"tag must fit in 16 bits (0..65535), got {tag}")


def _check_frame_size(width: int, height: int) -> None:
    if width < MIN_WIDTH or height < MIN_HEIGHT or width % 2 or height % 2:
        raise ValueError(f"frame size must be even and at least {MIN_WIDTH}x{MIN_HEIGHT}, got {width}x{height}")


class MarkerPainter:
    """Draws one sender's pictures: the flat background of its tag with the marker for a counter.

    The picture is a yuv420p ndarray in av's layout (``height * 3 // 2`` rows of
    ``width`` bytes: the Y plane, then U, then V), which is also the byte order
    of a raw I420 frame. The synthetic camera and the fake-capture files
    (``fake_capture.py``) both draw with it, so every reader sees one marker.
    """

    def __init__(self, tag: int, width: int = 320, height: int = 240) -> None:
        _check_tag(tag)
        _check_frame_size(width, height)
        self.tag = tag
        self.width = width
        self.height = height
        self._buffer = self._background()
        xs, ys = _grid(width, height)
        self._bit_slices = [(slice(ys[r], ys[r + 1]), slice(xs[c], xs[c + 1])) for r, c in _DATA_CELLS]

    def _background(self) -> np.ndarray:
        """The picture without data bits: background, neutral chroma under the marker, calibration."""
        w, h = self.width, self.height
        y, u, v = background_yuv(self.tag)
        luma = np.full((h, w), y, dtype=np.uint8)
        cu = np.full((h // 2, w // 2), u, dtype=np.uint8)
        cv = np.full((h // 2, w // 2), v, dtype=np.uint8)
        xs, ys = _grid(w, h)
        # Neutral chroma under the whole marker, so black and white are black and white.
        cu[ys[0] // 2 : ys[-1] // 2, xs[0] // 2 : xs[-1] // 2] = NEUTRAL_CHROMA
        cv[ys[0] // 2 : ys[-1] // 2, xs[0] // 2 : xs[-1] // 2] = NEUTRAL_CHROMA
        for (r, c), white in _CALIBRATION.items():
            luma[ys[r] : ys[r + 1], xs[c] : xs[c + 1]] = WHITE if white else BLACK
        return np.concatenate([luma, cu.reshape(h // 4, w), cv.reshape(h // 4, w)])

    def paint(self, counter: int) -> np.ndarray:
        """The picture for one counter value (wrapped to 16 bits).

        Only the data blocks' luma is redrawn, in one buffer the painter keeps:
        the array is valid until the next call (copy it to keep it).
        """
        word = _marker_word(self.tag, counter & 0xFFFF)
        buf = self._buffer
        for i, (rows, cols) in enumerate(self._bit_slices):
            buf[rows, cols] = WHITE if (word >> (DATA_BITS - 1 - i)) & 1 else BLACK
        return buf


class SyntheticCamera(VideoStreamTrack):
    """A flat-coloured video track with the sender tag and a frame counter drawn in."""

    kind = "video"

    def __init__(self, tag: int, width: int = 320, height: int = 240, fps: int = 30) -> None:
        super().__init__()
        self._painter = MarkerPainter(tag, width, height)
        if not 0 < fps <= 120:
            raise ValueError(f"fps must be in 1..120, got {fps}")
        self.tag = tag
        self.width = width
        self.height = height
        self.fps = fps
        self.counter = 0  # the counter of the next frame
        self._ptime_ticks = VIDEO_CLOCK_RATE // fps

    def make_frame(self, counter: int) -> av.VideoFrame:
        """The picture for one counter value (no pacing, no timestamps)."""
        return av.VideoFrame.from_ndarray(self._painter.paint(counter), format="yuv420p")

    async def next_timestamp(self) -> tuple[int, fractions.Fraction]:
        # As aiortc's VideoStreamTrack.next_timestamp, at this camera's frame rate.
        if self.readyState != "live":
            raise MediaStreamError
        if hasattr(self, "_timestamp"):
            self._timestamp += self._ptime_ticks
            wait = self._start + (self._timestamp / VIDEO_CLOCK_RATE) - time.time()
            await asyncio.sleep(wait)
        else:
            self._start = time.time()
            self._timestamp = 0
        return self._timestamp, VIDEO_TIME_BASE

    async def recv(self) -> av.VideoFrame:
        pts, time_base = await self.next_timestamp()
        frame = self.make_frame(self.counter)
        self.counter = (self.counter + 1) & 0xFFFF
        frame.pts = pts
        frame.time_base = time_base
        return frame


_LUMA_FORMATS = {"yuv420p", "yuvj420p", "yuv422p", "yuvj422p", "yuv444p", "yuvj444p", "nv12", "nv21", "gray"}


def _luma(frame: av.VideoFrame) -> np.ndarray:
    """The frame's luma plane as a (height, width) uint8 view, without copying when possible."""
    if frame.format.name not in _LUMA_FORMATS:
        frame = frame.reformat(format="yuv420p")
    plane = frame.planes[0]
    data = np.frombuffer(memoryview(plane), dtype=np.uint8)
    luma: np.ndarray = data.reshape(-1, plane.line_size)[: frame.height, : frame.width]
    return luma


def read_marker(frame: av.VideoFrame) -> FrameMarker | None:
    """Decode the marker of a SyntheticCamera frame, or None if the frame is not one."""
    if frame.width < MIN_WIDTH or frame.height < MIN_HEIGHT:
        return None
    luma = _luma(frame)
    rows, cols, ky, kx = _sample_index(frame.width, frame.height)
    cells = luma[np.ix_(rows, cols)].reshape(GRID_ROWS, ky, GRID_COLS, kx).mean(axis=(1, 3))

    whites = [cells[rc] for rc, white in _CALIBRATION.items() if white]
    blacks = [cells[rc] for rc, white in _CALIBRATION.items() if not white]
    contrast = min(whites) - max(blacks)
    if contrast < _MIN_CONTRAST:
        return None
    threshold = (float(np.mean(whites)) + float(np.mean(blacks))) / 2
    margin = _MIN_MARGIN * (float(np.mean(whites)) - float(np.mean(blacks)))

    data = np.array([cells[rc] for rc in _DATA_CELLS])
    if np.any(np.abs(data - threshold) < margin):
        return None
    word = 0
    for bit in data > threshold:
        word = (word << 1) | int(bit)
    tag, counter, crc = word >> 24, (word >> 8) & 0xFFFF, word & 0xFF
    if _marker_word(tag, counter) & 0xFF != crc:
        return None
    return FrameMarker(tag=tag, counter=counter)


class SyntheticMicrophone(AudioStreamTrack):
    """48 kHz mono 20 ms frames of a quiet 400 Hz tone (exactly 8 periods per frame)."""

    kind = "audio"
    SAMPLE_RATE = 48_000
    SAMPLES = 960  # 20 ms
    FREQUENCY_HZ = 400
    AMPLITUDE = 1_000  # of 32767: quiet

    def __init__(self) -> None:
        super().__init__()
        t = np.arange(self.SAMPLES) / self.SAMPLE_RATE
        tone = np.round(self.AMPLITUDE * np.sin(2 * np.pi * self.FREQUENCY_HZ * t)).astype(np.int16)
        self._samples = tone.reshape(1, -1)
        self._time_base = fractions.Fraction(1, self.SAMPLE_RATE)

    async def recv(self) -> av.AudioFrame:
        # Paced as aiortc's AudioStreamTrack.recv.
        if self.readyState != "live":
            raise MediaStreamError
        if hasattr(self, "_timestamp"):
            self._timestamp += self.SAMPLES
            wait = self._start + (self._timestamp / self.SAMPLE_RATE) - time.time()
            await asyncio.sleep(wait)
        else:
            self._start = time.time()
            self._timestamp = 0
        frame = av.AudioFrame.from_ndarray(self._samples, format="s16", layout="mono")
        frame.sample_rate = self.SAMPLE_RATE
        frame.pts = self._timestamp
        frame.time_base = self._time_base
        return frame


class MarkerRule:
    """The first-frame rule for partners that send a :class:`SyntheticCamera`: exact, by tag.

    The new partner's first frame is the first frame decoded after arming whose
    marker carries a tag other than our own, the current (about to be previous)
    partner's and that of the last frame decoded: the previous partner's frames
    still in flight, and its last frame that aiortc's jitter buffer holds until
    the next partner's first packet arrives, all carry the previous partner's tag.
    Frames without a readable marker (another picture, or a frame half-updated
    across a partner switch) never count.

    It also keeps per-partner statistics for tests and load generation.
    """

    def __init__(self, own_tag: int | None = None) -> None:
        self.own_tag = own_tag
        self.partner_tag: int | None = None  # tag of the current partner
        self.partner_frames = 0  # frames decoded from the current partner
        self.last_marker: FrameMarker | None = None  # of the last readable frame
        self.unreadable_frames = 0  # frames without a valid marker
        self._exclude: frozenset[int] | None = None  # armed: tags that are not a new partner

    def arm(self) -> None:
        last = self.last_marker.tag if self.last_marker is not None else None
        self._exclude = frozenset(tag for tag in (self.own_tag, self.partner_tag, last) if tag is not None)

    def matched(self) -> None:
        pass  # the tags alone tell partners apart

    def observe(self, frame: av.VideoFrame) -> NewPartner | None:
        marker = read_marker(frame)
        if marker is None:
            self.unreadable_frames += 1
            return None
        self.last_marker = marker
        verdict = None
        if self._exclude is not None and marker.tag not in self._exclude:
            self._exclude = None
            self.partner_tag = marker.tag
            self.partner_frames = 0
            verdict = NewPartner(marker=marker)
        if marker.tag == self.partner_tag:
            self.partner_frames += 1
        return verdict


def synthetic_client(
    matchmaker_address: str, user_id: str, display_name: str, *, tag: int, **client_kwargs: Any
) -> DuetClient:
    """A DuetClient that sends a SyntheticCamera(tag) and a SyntheticMicrophone and finds
    its partners' first frames by their markers (:class:`MarkerRule`).

    ``tag`` is drawn into every frame this client sends: give every client a
    different one. ``client_kwargs`` go to DuetClient (client_ip, timeouts, ...).
    """
    return DuetClient(
        matchmaker_address,
        user_id,
        display_name,
        video=SyntheticCamera(tag),
        audio=SyntheticMicrophone(),
        first_frame_rule=MarkerRule(own_tag=tag),
        **client_kwargs,
    )

"""Files that turn a browser's fake camera and microphone into a tagged synthetic sender.

Chromium can play files instead of its built-in test pattern and beep
(``--use-fake-device-for-media-stream --use-file-for-fake-video-capture=F.y4m
--use-file-for-fake-audio-capture=F.wav``), looping them. With these files a
browser client sends what a :class:`SyntheticCamera` sends: every frame
carries the marker of its sender's tag (drawn by the same
:class:`MarkerPainter`), so a receiver proves with :func:`read_marker` or
:class:`MarkerRule` that it decoded that very sender's picture. The sound is a
steady tone whose pitch is derived from the tag (:func:`tone_frequency_hz`),
so a receiver can tell it from silence and, roughly, whose it is
(:func:`dominant_frequency_hz`).

The file loops, so the frame counter runs 0 .. frames-1 and starts again.
:class:`MarkerRule` tells partners apart by tag alone and never looks at the
counter, so repeated counters are fine there; a check that the counter
advances must allow for the wrap at ``frames``, and for frame 0 twice in a
row there: Chromium 150's reader rereads the first frame on wrapping without
moving past it, so each loop after the first shows frame 0 twice.

Sizes: Chromium 150 sends 320x240, 352x288 and 640x480 (at 20 to 30 fps) at
the file's own size from the first frame, and every frame's marker reads back
exactly after its VP8 encoder. At 1280x720 it starts at 640x360 (its start
bitrate is too low for 720p), and a marker laid out for 1280x720 is not
readable in a picture scaled down: keep to 640x480 or less.

Chromium's y4m reader (``media/capture/video/file_video_capture_device.cc``)
is strict, and a file it rejects crashes the capture process rather than
failing getUserMedia:

- the header ends within the first 200 bytes, at the first ``FRAME``; tokens
  are separated by single spaces (an empty token is a crash);
- ``F`` is a ratio of integers, and the frame rate is their integer quotient
  (so ``30000:1001`` would be 29 fps);
- ``C`` must be ``420``, ``420jpeg``, ``420mpeg2`` or ``420paldv`` (I420 only);
- every frame header is exactly ``FRAME\\n`` (no per-frame parameters): the
  reader skips six bytes, it does not parse them;
- the file holds whole frames only: at the end it rereads from the first
  frame, and a partial last frame is a crash.

Writing the files is blocking I/O (a few MB); call :func:`fake_capture_files`
before starting an event loop, or through ``asyncio.to_thread``.
"""

from __future__ import annotations

import os
import tempfile
import wave
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import BinaryIO

import av
import numpy as np

from duet.services.devkit.synthetic_media import MarkerPainter

__all__ = [
    "AUDIO_SAMPLE_RATE",
    "FakeCaptureFiles",
    "dominant_frequency_hz",
    "fake_capture_files",
    "tone_frequency_hz",
    "write_wav",
    "write_y4m",
]

AUDIO_SAMPLE_RATE = 48_000
TONE_AMPLITUDE = 8_000  # of 32767, about -12 dBFS: clearly not silence, far from clipping
FRAME_HEADER = b"FRAME\n"
# Bumped whenever what the files contain changes, so a cache never serves an old drawing.
FORMAT_VERSION = 1


@dataclass(frozen=True)
class FakeCaptureFiles:
    """A tagged sender's camera (y4m) and microphone (wav) files, and what they hold."""

    tag: int
    video: Path
    audio: Path
    width: int
    height: int
    fps: int
    frames: int  # in the loop: the counter runs 0 .. frames-1, then again
    tone_hz: int


def tone_frequency_hz(tag: int) -> int:
    """The tone a tag's microphone file plays: 300..1450 Hz in 50 Hz steps (24 pitches).

    Whole hertz, so any whole number of seconds holds whole periods and the
    loop has no click; 50 Hz apart, so 100 ms of audio tells neighbours apart.
    """
    return 300 + 50 * (tag % 24)


def y4m_header(width: int, height: int, fps: int) -> bytes:
    """The stream header Chromium's y4m reader accepts: progressive I420, square pixels."""
    return f"YUV4MPEG2 W{width} H{height} F{fps}:1 Ip A1:1 C420jpeg\n".encode("ascii")


def write_y4m(out: BinaryIO, tag: int, *, width: int, height: int, fps: int, frames: int) -> None:
    """Write a y4m stream of ``frames`` marker pictures of ``tag`` (counters 0 .. frames-1)."""
    if not 0 < fps <= 120:
        raise ValueError(f"fps must be in 1..120, got {fps}")
    if not 0 < frames <= 0x10000:
        raise ValueError(f"frames must be in 1..65536 (the marker counter is 16 bits), got {frames}")
    painter = MarkerPainter(tag, width, height)
    out.write(y4m_header(width, height, fps))
    for counter in range(frames):
        out.write(FRAME_HEADER)
        out.write(painter.paint(counter).tobytes())


def write_wav(path: Path, frequency_hz: int, *, seconds: int, channels: int = 1) -> None:
    """Write 16-bit PCM at 48 kHz: a steady sine tone of ``seconds`` whole seconds."""
    if seconds <= 0:
        raise ValueError(f"seconds must be positive, got {seconds}")
    if not 0 < frequency_hz < AUDIO_SAMPLE_RATE // 2:
        raise ValueError(f"frequency must be in 1..{AUDIO_SAMPLE_RATE // 2 - 1} Hz, got {frequency_hz}")
    if channels not in (1, 2):
        raise ValueError(f"channels must be 1 or 2, got {channels}")
    t = np.arange(seconds * AUDIO_SAMPLE_RATE) / AUDIO_SAMPLE_RATE
    tone = np.round(TONE_AMPLITUDE * np.sin(2 * np.pi * frequency_hz * t)).astype("<i2")
    samples = np.repeat(tone, channels)  # interleaved: the same tone in every channel
    with wave.open(str(path), "wb") as wav:
        wav.setnchannels(channels)
        wav.setsampwidth(2)
        wav.setframerate(AUDIO_SAMPLE_RATE)
        wav.writeframes(samples.tobytes())


def _write_atomically(path: Path, write: Callable[[Path], None]) -> None:
    """Write through a temporary file in the same folder and rename it into place.

    A browser or a concurrent test never sees a half-written file (Chromium
    crashes on a partial y4m frame).
    """
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".part")
    os.close(fd)
    try:
        write(Path(tmp))
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def fake_capture_files(
    tag: int,
    directory: Path,
    *,
    width: int = 320,
    height: int = 240,
    fps: int = 30,
    seconds: int = 3,
) -> FakeCaptureFiles:
    """The y4m and wav files of a tagged sender, written into ``directory`` unless already there.

    The names carry every parameter (and the format version), so a file in the
    cache is always the one asked for. ``seconds`` is the loop's length: the
    video holds ``fps * seconds`` frames, the audio exactly as long.
    """
    if seconds <= 0:
        raise ValueError(f"seconds must be positive, got {seconds}")
    directory.mkdir(parents=True, exist_ok=True)
    frames = fps * seconds
    tone_hz = tone_frequency_hz(tag)
    video = directory / f"duet-camera-v{FORMAT_VERSION}-tag{tag}-{width}x{height}-{fps}fps-{frames}f.y4m"
    audio = directory / f"duet-microphone-v{FORMAT_VERSION}-tag{tag}-{tone_hz}hz-{seconds}s.wav"
    if not video.exists():

        def write_video(tmp: Path) -> None:
            with tmp.open("wb") as out:
                write_y4m(out, tag, width=width, height=height, fps=fps, frames=frames)

        _write_atomically(video, write_video)
    if not audio.exists():
        _write_atomically(audio, lambda tmp: write_wav(tmp, tone_hz, seconds=seconds))
    return FakeCaptureFiles(
        tag=tag, video=video, audio=audio, width=width, height=height, fps=fps, frames=frames, tone_hz=tone_hz
    )


def dominant_frequency_hz(frames: list[av.AudioFrame]) -> float:
    """The strongest frequency in a run of decoded audio frames (all channels mixed).

    Resolution is the inverse of the run's length: 20 ms frames give 50 Hz
    each, so pass at least five (100 ms) to tell :func:`tone_frequency_hz`'s
    pitches apart.
    """
    if not frames:
        raise ValueError("no audio frames to analyse")
    rate = frames[0].sample_rate
    signal = np.concatenate([_mono(f) for f in frames])
    spectrum = np.abs(np.fft.rfft(signal * np.hanning(len(signal))))
    spectrum[0] = 0  # a DC offset is not a tone
    return float(np.argmax(spectrum)) * rate / len(signal)


def _mono(frame: av.AudioFrame) -> np.ndarray:
    """One frame's samples as float, channels averaged, whatever the sample format."""
    data = frame.to_ndarray().astype(np.float64)
    channels = len(frame.layout.channels)
    mono: np.ndarray = (
        data.reshape(channels, -1).mean(axis=0) if frame.format.is_planar else data.reshape(-1, channels).mean(axis=1)
    )
    return mono

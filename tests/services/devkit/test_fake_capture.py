"""The fake-capture files: y4m as Chromium's reader needs it, marker in every frame; a tone in the wav."""

from __future__ import annotations

import io
import itertools
import wave
from pathlib import Path

import av
import numpy as np
import pytest

from duet.services.client import NewPartner
from duet.services.devkit.fake_capture import (
    AUDIO_SAMPLE_RATE,
    FakeCaptureFiles,
    dominant_frequency_hz,
    fake_capture_files,
    tone_frequency_hz,
    write_wav,
    write_y4m,
)
from duet.services.devkit.synthetic_media import FrameMarker, MarkerRule, read_marker

TAG = 0x2BAD


def parse_y4m(data: bytes) -> tuple[dict[str, str], list[bytes]]:
    """Header tokens by letter, and the raw frames, read the way Chromium's reader does."""
    header_end = data.index(b"FRAME")
    assert header_end < 200, "Chromium reads the header from the first 200 bytes only"
    header = data[:header_end].decode("ascii")
    assert header.endswith("\n") and header.count("\n") == 1
    tokens = header.rstrip("\n").split(" ")
    assert tokens[0] == "YUV4MPEG2" and all(tokens), f"empty token in {header!r}"
    fields = {t[0]: t[1:] for t in tokens[1:]}
    frame_size = int(fields["W"]) * int(fields["H"]) * 3 // 2
    body = data[header_end:]
    stride = len(b"FRAME\n") + frame_size
    assert len(body) % stride == 0, "the file must hold whole frames only"
    frames = []
    for offset in range(0, len(body), stride):
        assert body[offset : offset + 6] == b"FRAME\n", f"frame header at {offset} is not exactly FRAME\\n"
        frames.append(body[offset + 6 : offset + stride])
    return fields, frames


@pytest.fixture(scope="module")
def files(tmp_path_factory: pytest.TempPathFactory) -> FakeCaptureFiles:
    return fake_capture_files(TAG, tmp_path_factory.mktemp("capture"), seconds=2)


def test_y4m_header_and_frames_are_what_chromium_reads(files: FakeCaptureFiles) -> None:
    fields, frames = parse_y4m(files.video.read_bytes())
    assert fields == {"W": "320", "H": "240", "F": "30:1", "I": "p", "A": "1:1", "C": "420jpeg"}
    assert len(frames) == files.frames == 60
    assert all(len(f) == 320 * 240 * 3 // 2 for f in frames)


def test_every_frame_carries_the_tag_and_its_counter(files: FakeCaptureFiles) -> None:
    _, raw = parse_y4m(files.video.read_bytes())
    for counter, data in enumerate(raw):
        picture = np.frombuffer(data, dtype=np.uint8).reshape(240 * 3 // 2, 320)
        assert read_marker(av.VideoFrame.from_ndarray(picture, format="yuv420p")) == FrameMarker(TAG, counter)


def test_ffmpeg_decodes_the_y4m_to_the_same_markers(files: FakeCaptureFiles) -> None:
    # A second, independent y4m reader: the file is standard, not just our own reading of it.
    with av.open(str(files.video)) as container:
        stream = container.streams.video[0]
        assert (stream.codec_context.width, stream.codec_context.height) == (320, 240)
        assert stream.average_rate == 30
        markers = [read_marker(f) for f in container.decode(stream)]
    assert markers == [FrameMarker(TAG, i) for i in range(60)]


def test_a_larger_size_and_another_rate() -> None:
    out = io.BytesIO()
    write_y4m(out, 7, width=640, height=480, fps=20, frames=3)
    fields, raw = parse_y4m(out.getvalue())
    assert (fields["W"], fields["H"], fields["F"]) == ("640", "480", "20:1")
    pictures = [np.frombuffer(d, dtype=np.uint8).reshape(720, 640) for d in raw]
    assert [read_marker(av.VideoFrame.from_ndarray(p, format="yuv420p")) for p in pictures] == [
        FrameMarker(7, i) for i in range(3)
    ]


def test_marker_rule_follows_the_sender_across_the_loop(files: FakeCaptureFiles) -> None:
    # A looped file repeats its counters; the rule goes by tag and must not care.
    _, raw = parse_y4m(files.video.read_bytes())
    rule = MarkerRule(own_tag=1)
    rule.arm()
    verdicts = []
    looped = itertools.islice(itertools.cycle(raw), 2 * len(raw) + 5)
    for data in looped:
        picture = np.frombuffer(data, dtype=np.uint8).reshape(360, 320)
        verdicts.append(rule.observe(av.VideoFrame.from_ndarray(picture, format="yuv420p")))
    assert verdicts[0] == NewPartner(marker=FrameMarker(TAG, 0))
    assert verdicts[1:] == [None] * (len(verdicts) - 1)
    assert rule.partner_tag == TAG and rule.partner_frames == 2 * len(raw) + 5
    assert rule.unreadable_frames == 0


def test_wav_is_16_bit_48k_pcm_of_the_tags_tone(files: FakeCaptureFiles) -> None:
    with wave.open(str(files.audio), "rb") as wav:
        assert (wav.getnchannels(), wav.getsampwidth(), wav.getframerate()) == (1, 2, AUDIO_SAMPLE_RATE)
        assert wav.getcomptype() == "NONE"
        assert wav.getnframes() == 2 * AUDIO_SAMPLE_RATE
        samples = np.frombuffer(wav.readframes(wav.getnframes()), dtype="<i2").astype(np.float64)
    rms = np.sqrt(np.mean(samples**2))
    assert 4000 < rms < 7000  # a -12 dBFS sine: 8000 / sqrt(2)
    assert files.tone_hz == tone_frequency_hz(TAG)
    # Whole periods: the loop joins without a click (the sample after the last would be the first, 0).
    step = 2 * np.pi * files.tone_hz / AUDIO_SAMPLE_RATE
    assert samples[0] == 0 and samples[-1] == round(-8000 * np.sin(step))


def test_ffmpeg_hears_the_tone_at_its_pitch(files: FakeCaptureFiles) -> None:
    with av.open(str(files.audio)) as container:
        frames = list(container.decode(audio=0))
    assert frames and frames[0].sample_rate == AUDIO_SAMPLE_RATE
    assert abs(dominant_frequency_hz(frames) - files.tone_hz) < 2


def test_stereo_wav_and_dominant_frequency_of_interleaved_audio(tmp_path: Path) -> None:
    path = tmp_path / "stereo.wav"
    write_wav(path, 1000, seconds=1, channels=2)
    with wave.open(str(path), "rb") as wav:
        assert (wav.getnchannels(), wav.getnframes()) == (2, AUDIO_SAMPLE_RATE)
    with av.open(str(path)) as container:
        frames = list(container.decode(audio=0))
    assert abs(dominant_frequency_hz(frames) - 1000) < 2


def test_silence_has_no_dominant_tone_worth_the_name() -> None:
    # The receiving test's "not silence" check is a level check; the frequency alone would not do.
    frame = av.AudioFrame.from_ndarray(np.zeros((1, 960), dtype=np.int16), format="s16", layout="mono")
    frame.sample_rate = AUDIO_SAMPLE_RATE
    assert dominant_frequency_hz([frame]) == 0.0


def test_neighbouring_tags_get_pitches_50_hz_apart() -> None:
    pitches = [tone_frequency_hz(tag) for tag in range(24)]
    assert len(set(pitches)) == 24
    assert min(pitches) == 300 and max(pitches) == 1450
    assert all(abs(a - b) >= 50 for a, b in itertools.combinations(pitches, 2))


def test_files_are_cached_by_parameters(tmp_path: Path) -> None:
    first = fake_capture_files(5, tmp_path, seconds=1)
    stamp = (first.video.stat().st_mtime_ns, first.audio.stat().st_mtime_ns)
    again = fake_capture_files(5, tmp_path, seconds=1)
    assert again == first
    assert (again.video.stat().st_mtime_ns, again.audio.stat().st_mtime_ns) == stamp  # not rewritten
    other = fake_capture_files(6, tmp_path, seconds=1)
    bigger = fake_capture_files(5, tmp_path, seconds=1, width=640, height=480, fps=20)
    assert len({first.video, other.video, bigger.video}) == 3
    assert bigger.frames == 20
    assert not list(tmp_path.glob("*.part")) and not list(tmp_path.glob(".*"))  # no temporary leftovers


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"tag": 70000}, "16 bits"),
        ({"width": 321}, "even"),
        ({"height": 32}, "at least"),
        ({"fps": 0}, "fps"),
        ({"frames": 0x10001}, "16 bits"),
    ],
)
def test_write_y4m_refuses_what_cannot_be_marked(kwargs: dict[str, int], message: str) -> None:
    args = {"tag": 1, "width": 320, "height": 240, "fps": 30, "frames": 1} | kwargs
    tag = args.pop("tag")
    with pytest.raises(ValueError, match=message):
        write_y4m(io.BytesIO(), tag, **args)


def test_write_wav_refuses_bad_parameters(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="seconds"):
        write_wav(tmp_path / "a.wav", 440, seconds=0)
    with pytest.raises(ValueError, match="frequency"):
        write_wav(tmp_path / "a.wav", 30_000, seconds=1)
    with pytest.raises(ValueError, match="channels"):
        write_wav(tmp_path / "a.wav", 440, seconds=1, channels=3)

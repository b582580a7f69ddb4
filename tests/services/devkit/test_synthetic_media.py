"""The synthetic camera's marker survives VP8 and a real WebRTC leg; the microphone is well-formed."""

from __future__ import annotations

import asyncio
import fractions
import itertools

import av
import numpy as np
import pytest
from aiortc import RTCConfiguration, RTCPeerConnection
from aiortc.codecs import depayload, get_decoder, get_encoder
from aiortc.jitterbuffer import JitterFrame
from aiortc.rtcrtpparameters import RTCRtpCodecParameters

from duet.edge.ice_hosts import restore_ice_defaults, restrict_ice_to
from duet.services.devkit.synthetic_media import (
    FrameMarker,
    SyntheticCamera,
    SyntheticMicrophone,
    background_yuv,
    read_marker,
)

VP8 = RTCRtpCodecParameters(mimeType="video/VP8", clockRate=90000, payloadType=97)
VIDEO_TIME_BASE = fractions.Fraction(1, 90000)


def vp8_round_trip(frames: list[av.VideoFrame], keyframes: set[int] = frozenset()) -> list[av.VideoFrame]:
    """Encode with aiortc's VP8 encoder (default bitrate), depayload, decode; one output per input."""
    encoder, decoder = get_encoder(VP8), get_decoder(VP8)
    out = []
    for i, frame in enumerate(frames):
        frame.pts = i * 3000
        frame.time_base = VIDEO_TIME_BASE
        payloads, timestamp = encoder.encode(frame, force_keyframe=i in keyframes)
        data = b"".join(depayload(VP8, p) for p in payloads)
        decoded = decoder.decode(JitterFrame(data, timestamp))
        assert len(decoded) == 1
        out.append(decoded[0])
    return out


def test_marker_reads_back_exactly_without_compression() -> None:
    camera = SyntheticCamera(tag=0x1234)
    for counter in (0, 1, 0x00FF, 0xABCD, 0xFFFF):
        assert read_marker(camera.make_frame(counter)) == FrameMarker(0x1234, counter)


@pytest.mark.parametrize("tag", [0, 1, 0xBEEF, 0xFFFF])
def test_marker_survives_vp8_for_consecutive_frames(tag: int) -> None:
    camera = SyntheticCamera(tag=tag)
    start = 0xFFF0  # crosses the 16-bit wrap
    frames = [camera.make_frame((start + i) & 0xFFFF) for i in range(90)]
    decoded = vp8_round_trip(frames, keyframes={45})
    markers = [read_marker(f) for f in decoded]
    assert markers == [FrameMarker(tag, (start + i) & 0xFFFF) for i in range(90)]
    counters = [m.counter for m in markers]
    assert all((b - a) & 0xFFFF == 1 for a, b in itertools.pairwise(counters))


def test_marker_survives_vp8_at_a_larger_size() -> None:
    camera = SyntheticCamera(tag=777, width=640, height=480)
    decoded = vp8_round_trip([camera.make_frame(i) for i in range(20)])
    assert [read_marker(f) for f in decoded] == [FrameMarker(777, i) for i in range(20)]


def test_recv_paces_and_counts() -> None:
    async def main() -> list[av.VideoFrame]:
        camera = SyntheticCamera(tag=5, fps=30)
        frames = [await camera.recv() for _ in range(4)]
        camera.stop()
        return frames

    frames = asyncio.run(main())
    assert [read_marker(f) for f in frames] == [FrameMarker(5, i) for i in range(4)]
    assert [f.pts for f in frames] == [0, 3000, 6000, 9000]
    assert all(f.time_base == VIDEO_TIME_BASE and f.format.name == "yuv420p" for f in frames)


def test_other_pictures_are_not_markers() -> None:
    rng = np.random.default_rng(1)
    noise = av.VideoFrame.from_ndarray(rng.integers(0, 256, (240, 320, 3), dtype=np.uint8), format="rgb24")
    flat = av.VideoFrame.from_ndarray(np.full((240, 320, 3), (200, 30, 90), dtype=np.uint8), format="rgb24")
    tiny = av.VideoFrame.from_ndarray(np.zeros((24, 32, 3), dtype=np.uint8), format="rgb24")
    assert read_marker(noise) is None
    assert read_marker(flat) is None
    assert read_marker(tiny) is None
    for frame in vp8_round_trip([noise, flat]):
        assert read_marker(frame) is None


def test_a_corrupted_marker_is_rejected() -> None:
    camera = SyntheticCamera(tag=0x0F0F)
    frame = camera.make_frame(3)
    yuv = frame.to_ndarray()
    # Flip one data bit (row 0, column 5: x 144..160, y 80..96 at 320x240): the CRC catches it.
    yuv[80:96, 144:160] = 251 - yuv[80:96, 144:160]
    assert read_marker(av.VideoFrame.from_ndarray(yuv, format="yuv420p")) is None
    # Wipe a calibration block: no contrast reference, no marker.
    yuv = frame.to_ndarray()
    yuv[80:96, 64:80] = 16
    assert read_marker(av.VideoFrame.from_ndarray(yuv, format="yuv420p")) is None


def test_background_differs_per_tag_and_rgb_frames_read() -> None:
    assert len({background_yuv(t) for t in range(64)}) == 64
    rgb = SyntheticCamera(tag=99).make_frame(7).reformat(format="rgb24")
    assert read_marker(rgb) == FrameMarker(99, 7)


def test_bad_arguments_are_refused() -> None:
    with pytest.raises(ValueError):
        SyntheticCamera(tag=70000)
    with pytest.raises(ValueError):
        SyntheticCamera(tag=1, width=100, height=50)


async def test_microphone_frames() -> None:
    mic = SyntheticMicrophone()
    frames = [await mic.recv() for _ in range(3)]
    mic.stop()
    for i, frame in enumerate(frames):
        assert (frame.sample_rate, frame.samples, frame.layout.name, frame.format.name) == (48000, 960, "mono", "s16")
        assert frame.pts == i * 960
        samples = frame.to_ndarray()
        assert 0 < np.abs(samples).max() <= 1000


@pytest.fixture
def loopback_ice():
    restrict_ice_to(["127.0.0.1"])
    yield
    restore_ice_defaults()


async def test_camera_survives_a_real_webrtc_leg(loopback_ice: None) -> None:
    config = RTCConfiguration(iceServers=[])
    a, b = RTCPeerConnection(config), RTCPeerConnection(config)
    camera = SyntheticCamera(tag=4242)
    a.addTransceiver(camera, direction="sendonly")
    markers: asyncio.Queue[FrameMarker] = asyncio.Queue()
    tasks: list[asyncio.Task[None]] = []

    async def consume(track) -> None:
        while True:
            frame = await track.recv()
            marker = read_marker(frame)
            if marker is not None:
                markers.put_nowait(marker)

    @b.on("track")
    def on_track(track) -> None:
        tasks.append(asyncio.create_task(consume(track)))

    try:
        await a.setLocalDescription(await a.createOffer())
        assert all(
            " 127.0.0.1 " in line for line in a.localDescription.sdp.splitlines() if line.startswith("a=candidate")
        )
        await b.setRemoteDescription(a.localDescription)
        await b.setLocalDescription(await b.createAnswer())
        await a.setRemoteDescription(b.localDescription)
        seen = [await asyncio.wait_for(markers.get(), 10) for _ in range(5)]
    finally:
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        await a.close()
        await b.close()
    assert all(m.tag == 4242 for m in seen)
    counters = [m.counter for m in seen]
    assert counters == sorted(counters) and len(set(counters)) == 5

"""Chromium's fake camera playing a tagged y4m, straight to an aiortc peer and back.

Proves the two halves a browser test of Duet relies on: an aiortc receiver
decodes Chromium's VP8 and reads the tag the y4m file drew into every frame
(and hears the file's tone), and Chromium decodes aiortc's synthetic camera
(its stats count decoded frames, and the picture it shows carries aiortc's tag).
No Duet server is involved: the two peers meet directly on 127.0.0.1.
"""

from __future__ import annotations

import asyncio
import collections
import contextlib
import itertools
import re
import time
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import av
import numpy as np
import pytest
from aiortc import MediaStreamTrack, RTCPeerConnection, RTCSessionDescription

from duet.edge.ice_hosts import restore_ice_defaults, restrict_ice_to
from duet.services.client import NewPartner
from duet.services.devkit.fake_capture import FakeCaptureFiles, dominant_frequency_hz, fake_capture_files
from duet.services.devkit.synthetic_media import (
    FrameMarker,
    MarkerRule,
    SyntheticCamera,
    SyntheticMicrophone,
    read_marker,
)
from tests.browser.chromium import blank_page, chromium_args, launch_chromium, video_snapshot

pytestmark = [pytest.mark.browser, pytest.mark.slow]

CHROMIUM_TAG = 0x0C0D  # drawn into the y4m Chromium's camera plays
AIORTC_TAG = 0x0A1E  # drawn by the aiortc side's SyntheticCamera
WANT_VIDEO_FRAMES = 120  # four seconds at 30 fps: more than the file's 3 s loop
WANT_AUDIO_FRAMES = 50  # one second of 20 ms frames
TIMEOUT_S = 20.0

# Runs in the page: a PeerConnection with the fake camera and microphone, offered whole
# (non-trickle: the offer carries every candidate). Audio processing is off: noise
# suppression treats a steady tone as noise and would silence the very thing we listen for.
OFFER_JS = """
async () => {
  const stream = await navigator.mediaDevices.getUserMedia({
    video: true,
    audio: {echoCancellation: false, noiseSuppression: false, autoGainControl: false},
  });
  const pc = new RTCPeerConnection();
  window.duetPc = pc;
  const remote = new MediaStream();
  const video = document.createElement('video');
  video.id = 'remote-video';
  video.muted = true;
  video.autoplay = true;
  video.srcObject = remote;
  document.body.appendChild(video);
  pc.addEventListener('track', (e) => remote.addTrack(e.track));
  for (const track of stream.getTracks()) pc.addTrack(track, stream);
  await pc.setLocalDescription(await pc.createOffer());
  if (pc.iceGatheringState !== 'complete') {
    await new Promise((resolve) => pc.addEventListener('icegatheringstatechange', () => {
      if (pc.iceGatheringState === 'complete') resolve();
    }));
  }
  return pc.localDescription.sdp;
}
"""

ANSWER_JS = """
async (sdp) => {
  const pc = window.duetPc;
  await pc.setRemoteDescription({type: 'answer', sdp});
  const connected = () => pc.connectionState === 'connected';
  if (!connected()) {
    await new Promise((resolve, reject) => pc.addEventListener('connectionstatechange', () => {
      if (connected()) resolve();
      if (pc.connectionState === 'failed') reject(new Error('Chromium: connection failed'));
    }));
  }
}
"""

STATS_JS = """
async () => {
  const out = {};
  (await window.duetPc.getStats()).forEach((s) => {
    if (s.type === 'inbound-rtp' && s.kind === 'video') {
      out.inbound = {framesDecoded: s.framesDecoded, frameWidth: s.frameWidth, frameHeight: s.frameHeight,
                     decoderImplementation: s.decoderImplementation, codecId: s.codecId};
    }
    if (s.type === 'outbound-rtp' && s.kind === 'video') {
      out.outbound = {framesEncoded: s.framesEncoded, frameWidth: s.frameWidth, frameHeight: s.frameHeight,
                      encoderImplementation: s.encoderImplementation,
                      qualityLimitationReason: s.qualityLimitationReason, codecId: s.codecId,
                      keyFramesEncoded: s.keyFramesEncoded};
    }
    if (s.type === 'codec') { out[s.id] = s.mimeType; }
  });
  return out;
}
"""


@dataclass
class Received:
    """What the aiortc side decoded from Chromium."""

    # Armed from the start: Chromium's first readable frame is the "new partner's" first.
    rule: MarkerRule = field(default_factory=lambda: MarkerRule(own_tag=AIORTC_TAG))
    verdicts: list[NewPartner] = field(default_factory=list)
    counters: list[int] = field(default_factory=list)  # of readable frames with Chromium's tag
    other_tags: collections.Counter[int] = field(default_factory=collections.Counter)
    sizes: collections.Counter[tuple[int, int]] = field(default_factory=collections.Counter)
    audio: list[av.AudioFrame] = field(default_factory=list)
    first_video_at: float | None = None
    enough: asyncio.Event = field(default_factory=asyncio.Event)

    def __post_init__(self) -> None:
        self.rule.arm()

    def video(self, frame: av.VideoFrame) -> None:
        if self.first_video_at is None:
            self.first_video_at = time.monotonic()
        self.sizes[(frame.width, frame.height)] += 1
        unreadable = self.rule.unreadable_frames
        verdict = self.rule.observe(frame)
        if verdict is not None:
            self.verdicts.append(verdict)
        marker = self.rule.last_marker
        if self.rule.unreadable_frames == unreadable and marker is not None:
            if marker.tag == CHROMIUM_TAG:
                self.counters.append(marker.counter)
            else:
                self.other_tags[marker.tag] += 1
        self.check()

    def check(self) -> None:
        if len(self.counters) >= WANT_VIDEO_FRAMES and len(self.audio) >= WANT_AUDIO_FRAMES:
            self.enough.set()


async def consume(track: MediaStreamTrack, received: Received) -> None:
    with contextlib.suppress(Exception):  # MediaStreamError when the connection closes
        while True:
            frame = await track.recv()
            if track.kind == "video":
                received.video(frame)
            else:
                received.audio.append(frame)
                received.check()


@contextlib.asynccontextmanager
async def aiortc_peer(received: Received) -> AsyncIterator[RTCPeerConnection]:
    restrict_ice_to(["127.0.0.1"])
    pc = RTCPeerConnection()
    tasks: list[asyncio.Task[None]] = []
    pc.on("track", lambda track: tasks.append(asyncio.create_task(consume(track, received))))
    try:
        yield pc
    finally:
        await pc.close()
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        restore_ice_defaults()


def is_loopback_udp(candidate_line: str) -> bool:
    # a=candidate:<foundation> <component> <transport> <priority> <address> <port> typ ...
    fields = candidate_line.split()
    return fields[2].lower() == "udp" and fields[4] == "127.0.0.1"


def loopback_candidates_only(sdp: str) -> str:
    """Keep only Chromium's UDP candidates on 127.0.0.1.

    Chromium offers every interface (here also ::1, the sandbox's own IPv4 and
    IPv6 addresses, and TCP): the aiortc side must only ever send to loopback.
    """
    lines = sdp.splitlines()
    kept = [ln for ln in lines if not ln.startswith("a=candidate:") or is_loopback_udp(ln)]
    assert any(ln.startswith("a=candidate:") for ln in kept), "Chromium offered no 127.0.0.1 candidate:\n" + sdp
    return "\r\n".join(kept) + "\r\n"


def summarise_offer(sdp: str) -> str:
    """Codecs, RTX and header extensions per m-section, one line each."""
    out = []
    for section in re.split(r"\r?\n(?=m=)", sdp)[1:]:
        kind = section.split(" ", 1)[0][2:]
        codecs = re.findall(r"a=rtpmap:(\d+) ([^\r\n]+)", section)
        exts = re.findall(r"a=extmap:(\d+)(?:/\w+)? (\S+)", section)
        out.append(f"{kind}: codecs " + ", ".join(f"{pt} {name}" for pt, name in codecs))
        out.append(f"{kind}: extmap " + ", ".join(f"{i}={uri.rsplit('/', 1)[-1]}" for i, uri in exts))
    return "\n".join(out)


@dataclass
class ChromiumCall:
    """One call's outcome and timings (seconds), for the assertions and the printed figures."""

    version: str
    offer: str
    received: Received
    stats: dict[str, Any]  # Chromium's getStats, condensed by STATS_JS
    shown: FrameMarker | None  # the marker in the picture Chromium showed of aiortc's video
    launch_s: float
    offer_s: float  # page asks for the camera -> complete offer
    connect_s: float  # offer -> both peers connected
    first_frame_s: float  # page asks for the camera -> aiortc decoded Chromium's first frame

    def summary(self, loop_frames: int) -> str:
        r = self.received
        sent_codec = self.stats.get(self.stats.get("outbound", {}).get("codecId", ""), "?")
        steps = collections.Counter((b - a) % loop_frames for a, b in itertools.pairwise(r.counters))
        return (
            f"Chromium {self.version}: launch {self.launch_s * 1000:.0f} ms, getUserMedia + offer "
            f"{self.offer_s * 1000:.0f} ms, offer -> connected {self.connect_s * 1000:.0f} ms, first frame "
            f"decoded by aiortc {self.first_frame_s * 1000:.0f} ms after the page asked for the camera\n"
            f"aiortc decoded {sum(r.sizes.values())} frames {dict(r.sizes)} of Chromium's {sent_codec}: "
            f"{len(r.counters)} with Chromium's tag, {r.rule.unreadable_frames} without a readable marker, "
            f"other tags {dict(r.other_tags)}; counter steps (mod the loop) {dict(steps)}\n"
            f"audio: {len(r.audio)} frames, dominant {dominant_frequency_hz(r.audio[-25:]):.0f} Hz\n"
            f"Chromium stats: {self.stats}; Chromium shows {self.shown}"
        )


async def call_chromium(files: FakeCaptureFiles) -> ChromiumCall:
    """Chromium playing ``files`` <-> an aiortc peer sending SyntheticCamera(AIORTC_TAG), until enough arrived."""
    received = Received()
    args = chromium_args(video=files.video, audio=files.audio)
    async with launch_chromium(args) as chromium, aiortc_peer(received) as pc:
        page = await blank_page(chromium.browser)
        started = time.monotonic()
        offer = await asyncio.wait_for(page.evaluate(OFFER_JS), TIMEOUT_S)
        offered_at = time.monotonic()

        await pc.setRemoteDescription(RTCSessionDescription(sdp=loopback_candidates_only(offer), type="offer"))
        pc.addTrack(SyntheticCamera(AIORTC_TAG))
        pc.addTrack(SyntheticMicrophone())
        await pc.setLocalDescription(await pc.createAnswer())
        await asyncio.wait_for(page.evaluate(ANSWER_JS, pc.localDescription.sdp), TIMEOUT_S)
        connected_at = time.monotonic()

        try:
            await asyncio.wait_for(received.enough.wait(), TIMEOUT_S)
        except TimeoutError:
            raise AssertionError(
                f"in {TIMEOUT_S:.0f} s aiortc decoded {len(received.counters)} of {WANT_VIDEO_FRAMES} video "
                f"frames with Chromium's tag ({received.rule.unreadable_frames} unreadable, sizes "
                f"{dict(received.sizes)}) and {len(received.audio)} of {WANT_AUDIO_FRAMES} audio frames"
            ) from None
        stats: dict[str, Any] = {}
        for _ in range(100):
            stats = await page.evaluate(STATS_JS)
            if stats.get("inbound", {}).get("framesDecoded", 0) > 0:
                break
            await asyncio.sleep(0.1)
        shown = read_marker(await asyncio.wait_for(video_snapshot(page, "#remote-video"), TIMEOUT_S))
    assert received.first_video_at is not None
    return ChromiumCall(
        version=chromium.browser.version,
        offer=offer,
        received=received,
        stats=stats,
        shown=shown,
        launch_s=chromium.launch_s,
        offer_s=offered_at - started,
        connect_s=connected_at - offered_at,
        first_frame_s=received.first_video_at - started,
    )


@pytest.fixture(scope="module")
def capture_files(tmp_path_factory: pytest.TempPathFactory) -> FakeCaptureFiles:
    return fake_capture_files(CHROMIUM_TAG, tmp_path_factory.mktemp("fake-capture"))


async def test_chromium_and_aiortc_decode_each_others_tagged_video(capture_files: FakeCaptureFiles) -> None:
    call = await call_chromium(capture_files)
    print(f"\nChromium's offer:\n{call.offer}\n{summarise_offer(call.offer)}\n{call.summary(capture_files.frames)}")
    received = call.received

    # Every readable frame names Chromium's camera file and no one else.
    assert not received.other_tags
    assert len(received.counters) >= WANT_VIDEO_FRAMES
    # MarkerRule found Chromium as the partner once, and kept counting it across the loop.
    assert [v.marker for v in received.verdicts if isinstance(v.marker, FrameMarker)] == [
        FrameMarker(CHROMIUM_TAG, received.counters[0])
    ]
    assert len(received.verdicts) == 1
    assert received.rule.partner_frames == len(received.counters)
    # Live video from the file, in its loop: counters stay within it, move on, and start again.
    assert all(c < capture_files.frames for c in received.counters)
    assert len(set(received.counters)) > capture_files.frames // 2
    assert any(b < a for a, b in itertools.pairwise(received.counters)), "the file never looped"
    # Chromium's tone, not silence: loud enough and at the file's pitch.
    last = received.audio[-25:]
    samples = np.concatenate([f.to_ndarray().ravel() for f in last]).astype(np.float64)
    assert np.sqrt(np.mean(samples**2)) > 1000, "Chromium's audio is (nearly) silent"
    assert abs(dominant_frequency_hz(last) - capture_files.tone_hz) < 25
    # Chromium decoded aiortc's video, and the picture it shows is aiortc's.
    assert call.stats.get("inbound", {}).get("framesDecoded", 0) > 0, f"Chromium decoded no video: {call.stats}"
    assert call.shown is not None and call.shown.tag == AIORTC_TAG, f"Chromium shows {call.shown}"


async def test_missing_chromium_fails_and_says_how_to_get_it(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setenv("DUET_CHROMIUM", str(tmp_path / "no-chromium-here"))
    with pytest.raises(AssertionError, match=r"`make test` installs it"):
        async with launch_chromium(chromium_args()):
            pass

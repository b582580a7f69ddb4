"""The end-to-end baseline: the same aiortc clients negotiating directly with each other.

After the match, with no edge in between, the call needs the whole WebRTC
setup across the world: the match reaches client a (control plane + last
mile), a's offer and b's answer cross the matchmaker's region (as signalling
through it would), then ICE, DTLS and the first frames run client to client
through a plain UDP relay on the route (:mod:`bench.connect.udp_relay`, as a
TURN-relayed call would), each direction delayed by both last miles and the
backbone trip. The clients are the SDK's: the synthetic camera and
microphone, VP8 (+RTX) and Opus, host candidates on loopback only, and the
partner's first frame told by its marker (:class:`MarkerRule`).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from dataclasses import dataclass, field

import av
from aiortc import RTCBundlePolicy, RTCConfiguration, RTCPeerConnection, RTCRtpSender, RTCSessionDescription
from aiortc.mediastreams import MediaStreamError, MediaStreamTrack

from bench.connect.pairs import PairPath
from bench.connect.udp_relay import UdpPairRelay, rewrite_candidates
from duet.edge.ice_hosts import ice_restricted_from_env
from duet.services.client.media import LEG_CODECS
from duet.services.client.stages import now_ms
from duet.services.devkit.synthetic_media import MarkerRule, SyntheticCamera, SyntheticMicrophone
from duet.services.devkit.wan import LinkProfile

__all__ = ["BaselineResult", "baseline_call"]

logger = logging.getLogger("bench.connect")


@dataclass
class BaselineResult:
    pair: tuple[str, str]
    connect_ms: float | None  # match -> the later of the two first frames; None when it failed
    stages: dict[str, float] = field(default_factory=dict)  # ms after the match
    error: str = ""


class _Peer:
    """One client: a peer connection with the synthetic camera and microphone, watching for the partner."""

    def __init__(self, name: str, tag: int) -> None:
        self.name = name
        self.rule = MarkerRule(own_tag=tag)
        self.rule.arm()
        # One transport for audio and video from the start (the edges bundle too): one relayed address.
        self.pc = RTCPeerConnection(RTCConfiguration(iceServers=[], bundlePolicy=RTCBundlePolicy.MAX_BUNDLE))
        self.first_frame = asyncio.get_running_loop().create_future()
        self.connected_at = 0.0
        self._tasks: set[asyncio.Task[None]] = set()
        self._tracks: list[MediaStreamTrack] = [SyntheticCamera(tag), SyntheticMicrophone()]
        for track in self._tracks:
            transceiver = self.pc.addTransceiver(track, direction="sendrecv")
            wanted = LEG_CODECS[track.kind]
            codecs = RTCRtpSender.getCapabilities(track.kind).codecs
            preferred = [c for c in codecs if c.mimeType in wanted]
            transceiver.setCodecPreferences(preferred + [c for c in codecs if c.mimeType == f"{track.kind}/rtx"])
        self.pc.on("track", self._on_track)
        self.pc.on("connectionstatechange", self._on_state)

    def _on_state(self) -> None:
        if self.pc.connectionState == "connected" and not self.connected_at:
            self.connected_at = now_ms()

    def _on_track(self, track: MediaStreamTrack) -> None:
        task = asyncio.create_task(self._consume(track), name=f"baseline {self.name} {track.kind}")
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def _consume(self, track: MediaStreamTrack) -> None:
        # aiortc queues every decoded frame: keep taking them, and time the partner's first picture.
        while True:
            try:
                frame = await track.recv()
            except MediaStreamError:
                return
            if isinstance(frame, av.VideoFrame) and not self.first_frame.done() and self.rule.observe(frame):
                self.first_frame.set_result(now_ms())

    async def close(self) -> None:
        for task in list(self._tasks):
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)
        for track in self._tracks:
            track.stop()
        await self.pc.close()


async def baseline_call(path: PairPath, *, tags: tuple[int, int], timeout: float = 15.0) -> BaselineResult:
    """One end-to-end call between a client in each region of ``path``, timed from the match."""
    ice_restricted_from_env()  # host candidates on loopback, as the SDK's clients gather them
    media = LinkProfile(delay_ms=path.media_one_way_ms)
    relay = UdpPairRelay(media, media)
    peers: list[_Peer] = []
    stages: dict[str, float] = {}
    try:
        a_seen_at, b_seen_at = await relay.start()
        matched = now_ms()
        await asyncio.sleep(path.notify_a_ms / 1000)  # Matched reaches a, which makes the offer
        a = _Peer("a", tags[0])
        peers.append(a)
        await a.pc.setLocalDescription(await a.pc.createOffer())
        offer, relay.real_a = rewrite_candidates(a.pc.localDescription.sdp, a_seen_at)
        stages["offer_sent"] = now_ms() - matched
        await asyncio.sleep(path.signalling_one_way_ms / 1000)  # through the matchmaker's region to b
        b = _Peer("b", tags[1])
        peers.append(b)
        await b.pc.setRemoteDescription(RTCSessionDescription(sdp=offer, type="offer"))
        await b.pc.setLocalDescription(await b.pc.createAnswer())
        answer, relay.real_b = rewrite_candidates(b.pc.localDescription.sdp, b_seen_at)
        stages["answer_sent"] = now_ms() - matched
        await asyncio.sleep(path.signalling_one_way_ms / 1000)
        await a.pc.setRemoteDescription(RTCSessionDescription(sdp=answer, type="answer"))
        stages["answer_applied"] = now_ms() - matched
        firsts = await asyncio.wait_for(asyncio.gather(a.first_frame, b.first_frame), timeout)
        for peer in (a, b):
            if peer.connected_at:
                stages[f"connected_{peer.name}"] = peer.connected_at - matched
        stages["first_frame_a"], stages["first_frame_b"] = (t - matched for t in firsts)
        return BaselineResult(path.key, max(firsts) - matched, stages)
    except TimeoutError:
        return BaselineResult(path.key, None, stages, f"no first frame on both sides within {timeout:.0f} s")
    except Exception as exc:  # one failed call is reported, the run goes on
        logger.exception("baseline call %s failed", path.key)
        return BaselineResult(path.key, None, stages, f"{type(exc).__name__}: {exc}")
    finally:
        for peer in peers:
            with contextlib.suppress(Exception):
                await peer.close()
        relay.close()

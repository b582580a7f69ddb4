"""The media side of a session: one RTCPeerConnection to the edge carrying the
caller's tracks, and a watch on the partner's decoded video.

The leg always has one video and one audio section, offering only codecs an
edge forwards (VP8 and/or H.264 with RTX, Opus). The edge answers VP8 first
when it is offered, so that is what the client sends; offering H.264 too lets
it decode a partner who can send only H.264. A kind the caller gives no track
for is offered receive-only:
the user still sees and hears the partner, and an edge needs a video section in
every offer anyway.

The partner's video is decoded (aiortc always decodes what it receives) and
every frame goes through the session's :class:`FirstFrameRule`. While a watch
is armed, the rule's first "this is the new partner" becomes a
:class:`PartnerFrame` on the session's inbox.

The partner's audio is decoded too (aiortc decodes whatever it receives); the
leg counts its frames and keeps the last half second of them
(:data:`RECENT_AUDIO_FRAMES`), so a caller can tell the partner's sound from
silence without a playback device. Keeping them is an append to a bounded
deque: nothing is computed on the frames here.
"""

from __future__ import annotations

import asyncio
import collections
import logging
from collections.abc import Callable, Coroutine, Sequence
from dataclasses import dataclass
from typing import Any

import av
from aiortc import RTCConfiguration, RTCPeerConnection, RTCRtpSender, RTCSessionDescription
from aiortc.contrib.media import MediaRelay
from aiortc.mediastreams import MediaStreamError, MediaStreamTrack

from duet.services.client.first_frame import FirstFrameRule
from duet.services.client.inbox import DuetClientError, LegState, PartnerFrame, SessionInbox
from duet.services.client.stages import now_ms

__all__ = ["LEG_CODECS", "RECENT_AUDIO_FRAMES", "VIDEO_CODECS", "MediaLeg"]

logger = logging.getLogger("duet.client")

# Codecs an edge forwards (edge/payload_types.py), by the name a caller picks
# them with; offering only these keeps the SDP small and the negotiation unambiguous.
VIDEO_CODECS = {"VP8": "video/VP8", "H264": "video/H264"}
LEG_CODECS = {"video": tuple(VIDEO_CODECS.values()), "audio": ("audio/opus",)}
# The partner's decoded audio kept for callers: aiortc's Opus decoder yields 20 ms
# frames, so 25 of them are the last half second, enough for a level or a pitch
# (an FFT over 0.5 s resolves 2 Hz). About 190 kB of 48 kHz stereo s16 per leg.
RECENT_AUDIO_FRAMES = 25


@dataclass
class _Watch:
    """Armed when the client asks for a partner: report the rule's next verdict."""

    number: int
    frames_at_arm: int


class MediaLeg:
    """The client's WebRTC leg: the caller's tracks out, the partner's media in.

    The leg takes ownership of the tracks it is given: :meth:`close` stops them
    (a MediaPlayer then closes its file or device). To keep using a track after
    the session, give the leg ``MediaRelay().subscribe(track)`` instead.
    """

    def __init__(
        self,
        *,
        video: MediaStreamTrack | None,
        audio: MediaStreamTrack | None,
        first_frame_rule: FirstFrameRule,
        inbox: SessionInbox,
        name: str,
        video_codecs: Sequence[str] = tuple(VIDEO_CODECS),
        clock: Callable[[], float] = now_ms,
    ) -> None:
        """``clock``: epoch ms, what leg_connected and first-frame times are taken with."""
        unknown = [c for c in video_codecs if c not in VIDEO_CODECS]
        if unknown or not video_codecs:
            raise ValueError(f"video_codecs must name some of {', '.join(VIDEO_CODECS)}; got {list(video_codecs)}")
        self._offered = {"video": [VIDEO_CODECS[c] for c in video_codecs], "audio": list(LEG_CODECS["audio"])}
        for kind, track in (("video", video), ("audio", audio)):
            if track is not None and track.kind != kind:
                raise ValueError(f"{kind}= takes a {kind} track, not {track.kind}")
        self._tracks = {"video": video, "audio": audio}
        # Each connection sends a relay of the caller's tracks, never the tracks themselves: aiortc stops
        # a sender's track when the far end closes the connection (a matchmaker detaching the leg of a
        # lost session does), and the caller's tracks must live on for the next leg.
        self._relay = MediaRelay()
        self._rule = first_frame_rule
        self._inbox = inbox
        self._name = name
        self._clock = clock
        self._pc: RTCPeerConnection | None = None
        self._tasks: set[asyncio.Task[None]] = set()
        self._watch: _Watch | None = None
        self._watches = 0
        self.frames_decoded = 0  # every video frame the decoder produced on this leg
        self.audio_frames_decoded = 0  # every audio frame the decoder produced on this leg
        self.recent_audio: collections.deque[av.AudioFrame] = collections.deque(maxlen=RECENT_AUDIO_FRAMES)

    @property
    def peer_connection(self) -> RTCPeerConnection | None:
        return self._pc

    async def create_offer(self) -> str:
        """A new RTCPeerConnection and its SDP offer, ICE candidates included."""
        if self._pc is not None:
            raise RuntimeError("the leg already has a peer connection")
        # No STUN/TURN: edges are reached on their host candidates.
        self._pc = pc = RTCPeerConnection(RTCConfiguration(iceServers=[]))
        for kind, track in self._tracks.items():
            sent = self._relay.subscribe(track, buffered=False) if track is not None else kind
            transceiver = pc.addTransceiver(sent, direction="sendrecv" if track else "recvonly")
            codecs = RTCRtpSender.getCapabilities(kind).codecs
            wanted = self._offered[kind]
            preferred = sorted((c for c in codecs if c.mimeType in wanted), key=lambda c: wanted.index(c.mimeType))
            # RTX with each codec, so retransmissions can be repaired on this leg.
            transceiver.setCodecPreferences(preferred + [c for c in codecs if c.mimeType == f"{kind}/rtx"])
        pc.on("track", self._on_track)
        pc.on("connectionstatechange", self._on_connection_state)
        # aiortc gathers all candidates in setLocalDescription and puts them in the SDP.
        await pc.setLocalDescription(await pc.createOffer())
        sdp: str = pc.localDescription.sdp
        return sdp

    async def accept_answer(self, sdp: str, leg_id: str) -> None:
        """Apply the edge's answer; ICE and DTLS then run (watch the inbox for LegState)."""
        if self._pc is None:
            raise RuntimeError("create_offer() first")
        try:
            await self._pc.setRemoteDescription(RTCSessionDescription(sdp=sdp, type="answer"))
        except Exception as exc:  # aiortc raises ValueError / InvalidStateError / OperationError
            raise DuetClientError(f"the edge's SDP answer for leg {leg_id} was rejected: {exc}") from exc

    # -- the partner's first frame ---------------------------------------------------

    def watch(self) -> int:
        """Arm: the rule's next "new partner" goes to the inbox tagged with the returned number.

        Call it before asking for a partner: media may be bridged before Matched arrives.
        """
        self._watches += 1
        self._watch = _Watch(number=self._watches, frames_at_arm=self.frames_decoded)
        self._rule.arm()
        return self._watches

    def matched(self) -> None:
        """Matched arrived: the edge has switched the leg to the new partner."""
        self._rule.matched()

    def unwatch(self) -> None:
        """The watch fired or was given up on: report nothing more."""
        self._watch = None

    def _on_track(self, track: MediaStreamTrack) -> None:
        if track.kind == "video":
            self._spawn(self._consume_video(track), "video consumer")
        else:
            self._spawn(self._consume_audio(track), "audio consumer")

    async def _consume_video(self, track: MediaStreamTrack) -> None:
        # Runs for the life of the leg: aiortc queues every decoded frame, unbounded.
        while True:
            try:
                frame = await track.recv()
            except MediaStreamError:
                return
            at = self._clock()
            self.frames_decoded += 1
            if not isinstance(frame, av.VideoFrame):
                continue
            try:
                verdict = self._rule.observe(frame)
            except Exception:  # never stop draining over one odd frame
                logger.exception("%s: the first-frame rule failed on a frame", self._name)
                continue
            watch = self._watch
            if verdict is not None and watch is not None:
                self._watch = None
                self._inbox.put(
                    PartnerFrame(
                        marker=verdict.marker,
                        at_ms=at,
                        frames_decoded=self.frames_decoded - watch.frames_at_arm,
                        watch=watch.number,
                    )
                )

    async def _consume_audio(self, track: MediaStreamTrack) -> None:
        # aiortc decodes and queues every frame it receives, unbounded: keep taking them.
        while True:
            try:
                frame = await track.recv()
            except MediaStreamError:
                return
            self.audio_frames_decoded += 1
            if isinstance(frame, av.AudioFrame):
                self.recent_audio.append(frame)

    def _on_connection_state(self) -> None:
        state = self._pc.connectionState if self._pc is not None else "closed"
        logger.debug("%s: leg state %s", self._name, state)
        self._inbox.put(LegState(state=state, at_ms=self._clock()))

    # -- ownership -------------------------------------------------------------------

    def _spawn(self, coro: Coroutine[Any, Any, None], name: str) -> None:
        task = asyncio.create_task(coro, name=f"duet-client {self._name} {name}")
        self._tasks.add(task)
        task.add_done_callback(self._task_done)

    def _task_done(self, task: asyncio.Task[None]) -> None:
        self._tasks.discard(task)
        if not task.cancelled() and task.exception() is not None:
            logger.error("%s: %s crashed", self._name, task.get_name(), exc_info=task.exception())

    async def reset(self) -> None:
        """Close the connection (its edge is gone) but keep the caller's tracks for the next one.

        :meth:`create_offer` then starts a new connection with the same tracks.
        """
        self._watch = None
        await self._cancel_consumers()
        pc, self._pc = self._pc, None
        if pc is None:
            return
        pc.remove_all_listeners()  # its "closed" is no news for the session
        await pc.close()  # its senders stop their relays, not the caller's tracks

    async def _cancel_consumers(self) -> None:
        tasks = list(self._tasks)
        for task in tasks:
            task.cancel()
        if tasks:
            await asyncio.gather(*tasks, return_exceptions=True)

    async def close(self) -> None:
        """Stop watching, cancel the consumers, stop the caller's tracks, close the connection."""
        self._watch = None
        await self._cancel_consumers()
        for track in self._tracks.values():
            if track is not None:
                track.stop()
        if self._pc is not None:
            await self._pc.close()

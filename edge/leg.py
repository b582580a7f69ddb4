"""One client's WebRTC leg, terminated at the edge with aiortc but never decoded.

aiortc decodes everything it receives and encodes everything it sends. An
edge must do neither, so each leg takes its media off aiortc's path at the
DTLS transport (see ``edge.aiortc_internals``): decrypted RTP goes straight to
the forwarding callback, and outgoing RTP is SRTP-protected and sent as is.
The leg's own senders carry a track that never yields, so their encoders never
run; they exist so the SDP answer announces an SSRC and payload type per kind.
"""

from __future__ import annotations

import asyncio
import logging
import secrets
import time
import uuid
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any, NoReturn

import pylibsrtp
from aiortc import RTCPeerConnection, RTCRtpSender, RTCSessionDescription
from aiortc.mediastreams import MediaStreamError, MediaStreamTrack
from aiortc.sdp import SessionDescription

from duet.edge import aiortc_internals
from duet.edge.backbone_wire import StreamKind
from duet.edge.bandwidth import build_remb, parse_rembs
from duet.edge.header_extensions import BACKBONE_IDS, MID, ExtensionRewriter
from duet.edge.keyframe import starts_keyframe_as
from duet.edge.keyframe_cache import KeyframeCache
from duet.edge.payload_types import BACKBONE_CODECS, NegotiatedCodec, PayloadTypeMap, codec_name
from duet.edge.retransmission import SentHistory, UpstreamRequests, build_nack, build_rtx, parse_nacks, unwrap_rtx
from duet.edge.rtp_rewrite import StreamRewriter, build_pli, parse_keyframe_requests

logger = logging.getLogger("duet.edge.leg")

# What a leg may negotiate, per kind, in the edge's order of preference: the
# codecs the edge can forward (``payload_types.BACKBONE_CODECS``), never decoded.
LEG_CODECS = {kind: [c.name for c in BACKBONE_CODECS if c.kind.name.lower() == kind] for kind in ("video", "audio")}

# A receiver that cannot decode asks again and again; one keyframe per interval
# is all a sender is asked for: no keyframe storms (docs/architecture.md, "Keyframes").
KEYFRAME_REQUEST_INTERVAL_S = 0.3

# Bounded so a stalled leg sheds packets instead of growing without limit.
OUTBOX_PACKETS = 512

RtpHandler = Callable[["Leg", StreamKind, bytes], None]
KeyframeHandler = Callable[["Leg", StreamKind], None]
# Packets of the partner's stream this leg's client lost and this edge does not hold (sender numbering).
NackHandler = Callable[["Leg", StreamKind, list[int]], None]
# The bitrate (bit/s) this leg's client says it can receive, for the partner's sender.
BitrateHandler = Callable[["Leg", int], None]

# A receiver reports its estimate about once a second, more often when it drops; passing on
# more than one per this interval would only add RTCP.
BITRATE_INTERVAL_S = 0.1
ClosedHandler = Callable[["Leg"], Awaitable[None]]


_BACKBONE_URIS = {ext_id: uri for uri, ext_id in BACKBONE_IDS.items()}


class OfferError(ValueError):
    """The client's SDP offer cannot be used for a leg."""


class SilentTrack(MediaStreamTrack):
    """A track that never produces a frame, so the sender's encoder never runs."""

    def __init__(self, kind: str) -> None:
        super().__init__()
        self.kind = kind

    async def recv(self) -> NoReturn:
        await asyncio.Event().wait()
        raise MediaStreamError  # never reached: the wait above does not end


@dataclass
class _Stream:
    """One media kind on this leg: what we send and what the client sends."""

    kind: StreamKind
    rewriter: StreamRewriter
    # What was sent into this leg, for answering the client's NACKs (video only).
    history: SentHistory | None
    # Client repairs this edge asked for (client numbering): their RTX may pass.
    upstream: UpstreamRequests
    # RTX into this leg (when negotiated): the SSRC the answer announced, its own numbers.
    rtx_ssrc: int
    rtx_seq: int
    # Header extensions: the client's IDs -> the backbone's on the way in, back into the client's on the way out.
    from_client: ExtensionRewriter
    to_client: ExtensionRewriter
    sender_ssrc: int
    client_ssrc: int | None
    last_keyframe_request: float = 0.0
    packets_from_client: int = 0
    packets_to_client: int = 0


@dataclass
class LegCounters:
    dropped: dict[str, int] = field(default_factory=dict)
    # Loss recovery, by event: "nacked" (packets the client asked for), "resent" (answered from
    # this leg's history; "resent as rtx": as RTX), "nack suppressed" (asked again too soon),
    # "asked upstream" (not held here: asked of the sender), "repaired by client" (this client's
    # RTX answers, passed on as the packets they carry), "repair passed on" (such a repair sent
    # into this leg; "... as rtx": as RTX).
    recovery: dict[str, int] = field(default_factory=dict)
    # Bandwidth feedback: "remb from client" (its receiver's estimates), "remb to client" (its
    # partner's, passed on), "remb rate-limited".
    feedback: dict[str, int] = field(default_factory=dict)

    def drop(self, reason: str) -> None:
        self.dropped[reason] = self.dropped.get(reason, 0) + 1

    def count(self, event: str, n: int = 1) -> None:
        self.recovery[event] = self.recovery.get(event, 0) + n

    def count_feedback(self, event: str) -> None:
        self.feedback[event] = self.feedback.get(event, 0) + 1


class Leg:
    def __init__(
        self,
        session_id: str,
        *,
        on_rtp: RtpHandler,
        on_keyframe_request: KeyframeHandler,
        on_closed: ClosedHandler,
        on_nack_upstream: NackHandler | None = None,
        on_bitrate: BitrateHandler | None = None,
        connect_timeout_s: float = 30.0,
    ) -> None:
        self.leg_id = uuid.uuid4().hex[:16]
        self.session_id = session_id
        self.connected_at: float | None = None
        self.counters = LegCounters()
        self._on_rtp = on_rtp
        self._on_keyframe_request = on_keyframe_request
        self._on_nack_upstream = on_nack_upstream
        self._on_bitrate = on_bitrate
        self._last_bitrate_sent = 0.0
        self._on_closed = on_closed
        self._connect_timeout_s = connect_timeout_s
        self._pc = RTCPeerConnection()
        self._streams: dict[StreamKind, _Stream] = {}
        # This leg's payload types <-> the backbone's; also what its client sends and decodes.
        self.payload_types = PayloadTypeMap()
        # The client's latest keyframe and what followed, for a new partner (edge/keyframe_cache.py).
        self.keyframe_cache = KeyframeCache(self._starts_keyframe)
        self._kind_by_sender_ssrc: dict[int, StreamKind] = {}
        self._send: dict[StreamKind, Callable[[bytes], Awaitable[None]]] = {}
        # Once connected: the synchronous sender of the fast path, per kind (aiortc_internals).
        self._send_now: dict[StreamKind, aiortc_internals.SyncSender] = {}
        self._dtls: dict[StreamKind, Any] = {}
        self._closed = False
        self._timeout_task: asyncio.Task[None] | None = None
        self._outbox: asyncio.Queue[tuple[StreamKind, bytes]] = asyncio.Queue(maxsize=OUTBOX_PACKETS)
        self._drain_task: asyncio.Task[None] | None = None

    @property
    def connected(self) -> bool:
        return self.connected_at is not None and not self._closed

    async def accept(self, offer_sdp: str) -> str:
        """Apply the client's offer and return the SDP answer."""
        kinds = _validate_offer(offer_sdp)
        transceivers = {}
        for kind in kinds:
            t = self._pc.addTransceiver(SilentTrack(kind), direction="sendrecv")
            t.setCodecPreferences(_codec_preferences(kind))
            transceivers[kind] = t

        @self._pc.on("connectionstatechange")
        async def _on_state() -> None:
            state = self._pc.connectionState
            if state == "connected" and self.connected_at is None:
                self._take_fast_path()
                self.connected_at = time.time() * 1000
                logger.info("leg %s connected (session %s)", self.leg_id, self.session_id)
            elif state in ("failed", "closed"):
                await self.close(reason=state)

        try:
            await self._pc.setRemoteDescription(RTCSessionDescription(sdp=offer_sdp, type="offer"))
            answer = await self._pc.createAnswer()
            await self._pc.setLocalDescription(answer)
        except Exception as exc:  # aiortc raises ValueError, OperationError, InvalidStateError...
            await self._pc.close()
            raise OfferError(f"the SDP offer was rejected: {exc}") from exc

        remote = SessionDescription.parse(offer_sdp)
        for kind, t in transceivers.items():
            skind = StreamKind.VIDEO if kind == "video" else StreamKind.AUDIO
            self.payload_types.add(
                skind,
                (
                    NegotiatedCodec(c.mimeType, c.payloadType, c.clockRate, dict(c.parameters))
                    for c in aiortc_internals.negotiated_codecs(t)
                ),
            )
            send_codec = self.payload_types.send.get(skind)
            if send_codec is None:
                await self._pc.close()
                raise OfferError(
                    f"the offer's {kind} section has none of the codecs Duet forwards ({', '.join(LEG_CODECS[kind])})"
                )
            own_pt = self.payload_types.from_backbone[_backbone_pt(send_codec)]
            media = next((m for m in remote.media if m.kind == kind), None)
            client_ssrc = _client_media_ssrc(media)
            sender_ssrc = aiortc_internals.sender_ssrc(t.sender)
            extensions = aiortc_internals.negotiated_header_extensions(t)
            self._streams[skind] = _Stream(
                kind=skind,
                rewriter=StreamRewriter(
                    ssrc=sender_ssrc, payload_type=own_pt, clock_rate=self.payload_types.clock_rate[skind]
                ),
                history=SentHistory() if skind == StreamKind.VIDEO else None,
                upstream=UpstreamRequests(),
                rtx_ssrc=aiortc_internals.sender_rtx_ssrc(t.sender),
                rtx_seq=secrets.randbits(16),
                from_client=ExtensionRewriter(extensions, BACKBONE_IDS, two_byte=True, dropped=self.counters.dropped),
                to_client=ExtensionRewriter(
                    _BACKBONE_URIS,
                    {uri: ext_id for ext_id, uri in extensions.items()},
                    # aiortc answers without extmap-allow-mixed: one-byte form only.
                    two_byte=False,
                    replace={MID: (t.mid or "").encode()} if t.mid else {},
                    dropped=self.counters.dropped,
                ),
                sender_ssrc=sender_ssrc,
                client_ssrc=client_ssrc,
            )
            self._kind_by_sender_ssrc[sender_ssrc] = skind
            dtls = t.sender.transport
            self._dtls[skind] = dtls
            self._send[skind] = dtls._send_rtp
            aiortc_internals.intercept_media(
                dtls, self._handle_rtp_data, self._handle_rtcp_data, self._count_refused_rtcp
            )

        self._timeout_task = asyncio.create_task(self._expire_if_not_connected())
        self._drain_task = asyncio.create_task(self._drain_outbox())
        return self._pc.localDescription.sdp

    async def _expire_if_not_connected(self) -> None:
        await asyncio.sleep(self._connect_timeout_s)
        if self.connected_at is None:
            logger.warning("leg %s did not connect within %.0f s; closing", self.leg_id, self._connect_timeout_s)
            await self.close(reason="connect timeout")

    def _take_fast_path(self) -> None:
        """After ICE and DTLS: RTP in and everything out without aiortc's queues (aiortc_internals)."""
        senders: dict[int, aiortc_internals.SyncSender] = {}
        for kind, dtls in self._dtls.items():
            if id(dtls) not in senders:  # BUNDLE: one transport for both kinds
                try:
                    senders[id(dtls)] = aiortc_internals.fast_media_path(dtls, self._receive_rtp, self.counters.drop)
                except ConnectionError:
                    logger.warning("leg %s: transport not connected; media stays on aiortc's path", self.leg_id)
                    return
            self._send_now[kind] = senders[id(dtls)]

    async def _handle_rtp_data(self, data: bytes, arrival_time_ms: int = 0) -> None:
        self._receive_rtp(data)

    def _receive_rtp(self, data: bytes) -> None:
        if len(data) < 12:
            self.counters.drop("short rtp")
            return
        pt = data[1] & 0x7F
        kind = self.payload_types.kind_of.get(pt)
        if kind is None:
            self.counters.drop("unknown payload type")
            return
        stream = self._streams[kind]
        if pt in self.payload_types.rtx:
            # The client's RTX: a repair this edge asked for goes on as the packet it carries.
            # Anything else is the client probing its own uplink with old packets, which belongs
            # to this hop only: forwarded, a repair 100+ packets behind makes an aiortc receiver
            # reset its jitter buffer and fail to decode (measured with Chromium's probes).
            original = unwrap_rtx(data, self.payload_types.apt_of[pt], stream.client_ssrc or 0)
            if original is None or not stream.upstream.answered((original[2] << 8) | original[3], time.monotonic()):
                self.counters.drop("rtx not requested")
                return
            self.counters.count("repaired by client")
            self._on_rtp(self, kind, original)
            return
        stream.packets_from_client += 1
        if stream.client_ssrc is None:
            stream.client_ssrc = int.from_bytes(data[8:12], "big")
        if kind == StreamKind.VIDEO:
            self.keyframe_cache.add(data)
        self._on_rtp(self, kind, data)

    def _starts_keyframe(self, packet: bytes) -> bool:
        backbone_pt = self.payload_types.to_backbone.get(packet[1] & 0x7F)
        return backbone_pt is not None and starts_keyframe_as(backbone_pt, packet)

    def cached_keyframe(self) -> list[bytes]:
        """This client's latest keyframe (its packets, client terms), for a new partner; may be empty."""
        return self.keyframe_cache.replay()

    def to_backbone(self, kind: StreamKind, data: bytes) -> bytearray | None:
        """This client's RTP in backbone terms (header extension IDs, payload type): a private copy, or None to drop.

        Called only for media that will be forwarded: a warm leg waiting in
        the queue publishes too, and that media is dropped before this work.
        """
        packet = self._streams[kind].from_client.rewrite(data)
        if packet is None:
            self.counters.drop("malformed rtp")
            return None
        # kind_of passed in _handle_rtp_data, so the payload type is one of this leg's.
        packet[1] = (packet[1] & 0x80) | self.payload_types.to_backbone[packet[1] & 0x7F]
        return packet

    def _count_refused_rtcp(self, exc: Exception) -> None:
        logger.debug("leg %s: aiortc refused the client's RTCP: %r", self.leg_id, exc)
        self.counters.drop("malformed rtcp")

    async def _handle_rtcp_data(self, data: bytes) -> None:
        for media_ssrc in parse_keyframe_requests(data):
            kind = self._kind_by_sender_ssrc.get(media_ssrc)
            if kind is not None:
                self._on_keyframe_request(self, kind)
        for media_ssrc, seqs in parse_nacks(data).items():
            kind = self._kind_by_sender_ssrc.get(media_ssrc)
            if kind is not None:
                self._answer_nack(kind, seqs)
        for bitrate, ssrcs in parse_rembs(data):
            if any(self._kind_by_sender_ssrc.get(s) == StreamKind.VIDEO for s in ssrcs):
                self.counters.count_feedback("remb from client")
                if self._on_bitrate is not None:
                    self._on_bitrate(self, bitrate)

    def apply_bitrate(self, bitrate: int) -> None:
        """Tell this leg's client what its partner can take (REMB about the client's own video SSRC)."""
        stream = self._streams.get(StreamKind.VIDEO)
        if stream is None or stream.client_ssrc is None or not self.connected:
            return
        now = time.monotonic()
        if now - self._last_bitrate_sent < BITRATE_INTERVAL_S:
            self.counters.count_feedback("remb rate-limited")
            return
        self._last_bitrate_sent = now
        if self._enqueue(StreamKind.VIDEO, build_remb(stream.sender_ssrc, bitrate, [stream.client_ssrc])):
            self.counters.count_feedback("remb to client")

    def _answer_nack(self, kind: StreamKind, seqs: list[int]) -> None:
        """Resend what this leg sent and still holds; ask the partner's sender for the rest."""
        stream = self._streams[kind]
        if stream.history is None or not self.connected:
            return
        self.counters.count("nacked", len(seqs))
        now = time.monotonic()
        missing = []
        for seq in seqs:
            packet = stream.history.for_resend(seq, now)
            if packet is False:
                self.counters.count("nack suppressed")
                continue
            if packet is None:
                missing.append(seq)
                continue
            assert isinstance(packet, bytes)
            self._resend(stream, packet, "resent")
        upstream = [s for s in (stream.rewriter.input_seq(m) for m in missing) if s is not None]
        if upstream and self._on_nack_upstream is not None:
            self.counters.count("asked upstream", len(upstream))
            self._on_nack_upstream(self, kind, upstream)

    def _resend(self, stream: _Stream, packet: bytes, event: str) -> bool:
        """A packet of this leg's stream again: as RTX when the leg negotiated it for the codec.

        ``event`` names it in the recovery counters ("<event>", "<event> as rtx").
        """
        rtx_pt = self.payload_types.rtx_for.get(packet[1] & 0x7F)
        if rtx_pt is not None:
            rtx = build_rtx(packet, rtx_pt, stream.rtx_ssrc, stream.rtx_seq)
            if rtx is None:
                return False
            stream.rtx_seq = (stream.rtx_seq + 1) & 0xFFFF
            packet = rtx
            self.counters.count(f"{event} as rtx")
        if not self._enqueue(stream.kind, packet):
            return False
        self.counters.count(event)
        return True

    def request_retransmission(self, kind: StreamKind, seqs: list[int]) -> None:
        """Ask this leg's client to resend packets (its numbering) a partner lost upstream of its edge."""
        stream = self._streams.get(kind)
        if stream is None or stream.client_ssrc is None or not self.connected:
            return
        fresh = stream.upstream.ask(seqs, time.monotonic())
        if fresh:
            self._enqueue(kind, build_nack(stream.sender_ssrc, stream.client_ssrc, fresh))

    def send_rtp(self, kind: StreamKind, packet: bytearray) -> bool:
        """Rewrite a partner's RTP packet for this leg (in place) and queue it for sending."""
        stream = self._streams.get(kind)
        if stream is None or not self.connected:
            self.counters.drop("leg not ready")
            return False
        backbone_pt = packet[1] & 0x7F
        own_pt = self.payload_types.from_backbone.get(backbone_pt)
        if own_pt is None:
            self.counters.drop("codec not negotiated by receiver")
            return False
        # Extensions into this leg's IDs first (the block may change size), then the fixed header.
        out = stream.to_client.rewrite(packet)
        if out is None:
            self.counters.drop("malformed rtp")
            return False
        if not stream.rewriter.rewrite(out, payload_type=own_pt):
            self.counters.drop("malformed rtp")
            return False
        data = bytes(out)
        if stream.history is not None:
            seq = (data[2] << 8) | data[3]
            stream.history.add(seq, data)
            if seq != stream.rewriter.last_seq:
                # Older than what this leg already carried: a repair coming through (or a late
                # packet), which a receiver that negotiated RTX expects as RTX.
                if not self._resend(stream, data, "repair passed on"):
                    return False
                stream.packets_to_client += 1
                return True
        if not self._enqueue(kind, data):
            return False
        stream.packets_to_client += 1
        return True

    def _enqueue(self, kind: StreamKind, data: bytes) -> bool:
        send = self._send_now.get(kind)
        if send is not None:
            try:
                send(data)
            except ConnectionError:
                self.counters.drop("leg transport closed")
                return False
            except pylibsrtp.Error:
                # SRTP refuses an index 1024+ behind the highest sent: a client's very late or
                # replayed packet, or a new source's packet reordered across a switch.
                self.counters.drop("srtp refused (packet too old)")
                return False
            return True
        if self._outbox.full():
            self.counters.drop("leg send queue full")
            return False
        self._outbox.put_nowait((kind, data))
        return True

    async def _drain_outbox(self) -> None:
        # One sender task per leg keeps packets in order; callers never await the socket.
        while True:
            kind, data = await self._outbox.get()
            try:
                await self._send[kind](data)
            except ConnectionError:
                self.counters.drop("leg transport closed")
            except pylibsrtp.Error:
                # SRTP refuses an index 1024+ behind the highest sent: a client's very late or
                # replayed packet, or a new source's packet reordered across a switch.
                self.counters.drop("srtp refused (packet too old)")

    def switch_source(self, kind: StreamKind | None = None) -> None:
        """The partner changed (or its stream restarts): keep this leg's numbers continuous.

        ``kind``: only that stream (None: all of them).
        """
        for stream in self._streams.values():
            if kind is not None and stream.kind != kind:
                continue
            stream.rewriter.switch_source()

    def request_keyframe(self, kind: StreamKind = StreamKind.VIDEO, *, force: bool = False) -> bool:
        """Ask this leg's client for a keyframe (RTCP PLI), rate-limited unless forced."""
        stream = self._streams.get(kind)
        if stream is None or stream.client_ssrc is None or not self.connected:
            return False
        now = time.monotonic()
        if not force and now - stream.last_keyframe_request < KEYFRAME_REQUEST_INTERVAL_S:
            self.counters.drop("keyframe request rate-limited")
            return False
        stream.last_keyframe_request = now
        return self._enqueue(kind, build_pli(stream.sender_ssrc, stream.client_ssrc))

    def packets_from_client(self, kind: StreamKind) -> int:
        stream = self._streams.get(kind)
        return stream.packets_from_client if stream else 0

    async def close(self, reason: str = "closed") -> None:
        if self._closed:
            return
        self._closed = True
        current = asyncio.current_task()
        for task in (self._timeout_task, self._drain_task):
            if task is not None and task is not current:
                task.cancel()
        logger.info("leg %s closed: %s", self.leg_id, reason)
        await self._pc.close()
        await self._on_closed(self)


def _codec_preferences(kind: str) -> list[Any]:
    """aiortc's capabilities for the codecs a leg of ``kind`` may negotiate, preferred first, RTX last."""
    caps = RTCRtpSender.getCapabilities(kind).codecs
    ordered = []
    for codec in BACKBONE_CODECS:
        if codec.kind.name.lower() != kind:
            continue
        for cap in caps:
            if cap.mimeType.lower() == codec.mime_type.lower() and {
                k: str(v) for k, v in cap.parameters.items()
            } == dict(codec.parameters):
                ordered.append(cap)
    # One RTX entry enables RTX for every codec above (aiortc pairs them by apt).
    ordered += [cap for cap in caps if cap.mimeType.lower() == f"{kind}/rtx"]
    return ordered


def _backbone_pt(name: str) -> int:
    return next(c.pt for c in BACKBONE_CODECS if c.name == name)


def _client_media_ssrc(media: Any) -> int | None:
    """The SSRC the client announced for its media (not its RTX), if any."""
    if media is None or not media.ssrc:
        return None
    for group in getattr(media, "ssrc_group", None) or []:
        if group.semantic == "FID" and group.items:
            return int(group.items[0])
    return int(media.ssrc[0].ssrc)


def _validate_offer(offer_sdp: str) -> list[str]:
    """Kinds offered, in order; raises OfferError with a message a person can act on."""
    if not offer_sdp.strip():
        raise OfferError("offer_sdp is empty: send the SDP offer of your RTCPeerConnection")
    if not offer_sdp.lstrip().startswith("v=0"):
        raise OfferError("offer_sdp is not SDP (it must start with 'v=0')")
    try:
        parsed = SessionDescription.parse(offer_sdp)
    except Exception as exc:
        raise OfferError(f"offer_sdp could not be parsed: {exc}") from exc
    kinds = [m.kind for m in parsed.media if m.kind in ("audio", "video")]
    if "video" not in kinds:
        raise OfferError("the offer has no video section: a leg needs at least one video m-line")
    if len(kinds) != len(set(kinds)):
        raise OfferError("the offer has more than one section of the same kind; send one audio and one video")
    for media in parsed.media:
        if media.kind in LEG_CODECS and not any(codec_name(c.mimeType, c.parameters) for c in media.rtp.codecs):
            offered = ", ".join(sorted({c.mimeType.split("/")[-1] for c in media.rtp.codecs})) or "none"
            raise OfferError(
                f"the offer's {media.kind} section has none of the codecs Duet forwards "
                f"({', '.join(LEG_CODECS[media.kind])}); it offers {offered}"
            )
    return kinds

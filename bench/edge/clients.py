"""The synthetic call ends in the load process: real aiortc peers for the edge, bare UDP sockets for the floor.

Neither decodes: once connected, an aiortc client takes its RTP off aiortc's
path on the edge's fast path (``aiortc_internals.fast_media_path``: SRTP
unprotected in the socket callback) and only counts and timestamps it; its
own senders carry a track that never yields a frame, and its media is
pre-built RTP SRTP-protected and written to the socket by the same fast path.
The load process's own CPU per packet stays low that way, so it takes less of
the two cores from the process under test. Every receiver asks the kernel when
each packet arrived (``arrival.py``).
"""

from __future__ import annotations

import asyncio
import os
import random
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import NoReturn, Protocol, cast

from aiortc import RTCPeerConnection, RTCRtpSender, RTCSessionDescription
from aiortc.mediastreams import MediaStreamError, MediaStreamTrack
from aiortc.rtp import RtcpReceiverInfo, RtcpSenderInfo, RtcpSrPacket
from pylibsrtp import Error as SrtpError

from bench.edge import arrival
from bench.edge.floor_process import SRTP_KEY_BYTES, srtp_session
from bench.edge.traffic import ABS_SEND_TIME_URI, AUDIO_LEVEL_URI, MID_URI, OutStream, Tally, stamp_send_time
from duet.edge import aiortc_internals
from duet.edge.rtp_rewrite import parse_keyframe_requests, rtp_header_length
from duet.v1 import edge_pb2, edge_pb2_grpc

RTCP_INTERVAL_S = 1.0  # a real client's compound SR/RR, about once a second (randomised +-25%)


class Endpoint(Protocol):
    streams: list[OutStream]

    async def send(self, packets: list[bytearray], send_time_at: int) -> None: ...

    async def send_rtcp(self) -> None: ...

    async def close(self) -> None: ...


class _NoFrames(MediaStreamTrack):
    """Gives the client's senders an SSRC and a payload type; never a frame, so no encoder runs."""

    def __init__(self, kind: str) -> None:
        super().__init__()
        self.kind = kind

    async def recv(self) -> NoReturn:
        await asyncio.Event().wait()
        raise MediaStreamError


@dataclass
class AiortcClient:
    """One side of a call: a real RTCPeerConnection attached to an edge through EdgeControl gRPC."""

    pc: RTCPeerConnection
    tally: Tally
    leg_id: str = ""
    streams: list[OutStream] = field(default_factory=list)
    _send_now: Callable[[bytes], None] | None = None
    _fd: int | None = None  # the socket media arrives on, for its kernel arrival times
    _received_seq: dict[int, int] = field(default_factory=dict)

    @classmethod
    async def attach(cls, stub: edge_pb2_grpc.EdgeControlStub, session_id: str, tally: Tally) -> AiortcClient:
        pc = RTCPeerConnection()
        client = cls(pc, tally)
        video = pc.addTransceiver(_NoFrames("video"), direction="sendrecv")
        video.setCodecPreferences(
            [c for c in RTCRtpSender.getCapabilities("video").codecs if c.mimeType == "video/VP8"]
        )
        audio = pc.addTransceiver(_NoFrames("audio"), direction="sendrecv")
        await pc.setLocalDescription(await pc.createOffer())
        reply = await stub.AttachLeg(
            edge_pb2.AttachLegRequest(session_id=session_id, offer_sdp=pc.localDescription.sdp)
        )
        client.leg_id = reply.leg_id
        await pc.setRemoteDescription(RTCSessionDescription(sdp=reply.answer_sdp, type="answer"))
        for _ in range(300):
            if pc.connectionState == "connected":
                break
            if pc.connectionState in ("failed", "closed"):
                break
            await asyncio.sleep(0.02)
        if pc.connectionState != "connected":
            await pc.close()
            raise RuntimeError(f"client {session_id} did not connect to the edge (state {pc.connectionState})")
        dtls = video.sender.transport
        # RTCP (the edge's PLIs) keeps aiortc's path; RTP before the fast path is in place too.
        aiortc_internals.intercept_media(dtls, client._on_rtp, client._on_rtcp, lambda exc: None)
        client._send_now = aiortc_internals.fast_media_path(dtls, client._on_fast_rtp, client._on_drop)
        client._fd = aiortc_internals.selected_socket_fd(dtls)
        if client._fd is not None and not arrival.enable(client._fd):
            client._fd = None
        start = time.perf_counter() + random.random() / 30  # calls do not all burst at once
        for t, is_video in ((video, True), (audio, False)):
            codec = aiortc_internals.negotiated_codecs(t)[0]
            client.streams.append(
                OutStream(
                    ssrc=aiortc_internals.sender_ssrc(t.sender),
                    payload_type=codec.payloadType,
                    video=is_video,
                    extensions=aiortc_internals.negotiated_header_extensions(t),
                    mid=(t.mid or "").encode(),
                    start=start,
                )
            )
        return client

    async def _on_rtp(self, data: bytes, arrival_time_ms: int) -> None:
        self._count(data, None)

    def _on_fast_rtp(self, data: bytes) -> None:
        # Called inside the socket's callback, right after the read: the kernel's time is this packet's.
        self._count(data, None if self._fd is None else arrival.last_arrival_ns(self._fd))

    def _on_drop(self, reason: str) -> None:
        self.tally.unstamped += 1

    def _count(self, data: bytes, arrived_ns: int | None) -> None:
        at = rtp_header_length(data)
        if at < 0:
            self.tally.unstamped += 1
            return
        self._received_seq[int.from_bytes(data[8:12], "big")] = (data[2] << 8) | data[3]
        self.tally.count(data, at, arrived_ns)

    async def _on_rtcp(self, data: bytes) -> None:
        for ssrc in parse_keyframe_requests(data):
            for stream in self.streams:
                if stream.video and stream.ssrc == ssrc:
                    stream.keyframe_wanted = True

    async def send(self, packets: list[bytearray], send_time_at: int) -> None:
        send = self._send_now
        assert send is not None  # set by attach()
        for packet in packets:
            send(stamp_send_time(packet, send_time_at))

    async def send_rtcp(self) -> None:
        ntp = int((time.time() + 2208988800) * (1 << 32))
        reports = [
            RtcpReceiverInfo(ssrc=ssrc, fraction_lost=0, packets_lost=0, highest_sequence=seq, jitter=0, lsr=0, dlsr=0)
            for ssrc, seq in self._received_seq.items()
        ]
        compound = b"".join(
            bytes(
                RtcpSrPacket(
                    ssrc=s.ssrc,
                    sender_info=RtcpSenderInfo(
                        ntp_timestamp=ntp,
                        rtp_timestamp=s.timestamp,
                        packet_count=s.packets_sent,
                        octet_count=s.octets_sent,
                    ),
                    reports=reports if i == 0 else [],
                )
            )
            for i, s in enumerate(self.streams)
        )
        assert self._send_now is not None
        self._send_now(compound)

    async def close(self) -> None:
        await self.pc.close()


class FloorClient(asyncio.DatagramProtocol):
    """One side of a floor call: a UDP socket, SRTP with fixed keys (or none), the same packet pattern."""

    def __init__(self, tally: Tally, srtp: bool, index: int) -> None:
        self.tally = tally
        self.tx_key = os.urandom(SRTP_KEY_BYTES) if srtp else b""
        self.rx_key = os.urandom(SRTP_KEY_BYTES) if srtp else b""
        self._tx = srtp_session(self.tx_key, inbound=False) if srtp else None
        self._rx = srtp_session(self.rx_key, inbound=True) if srtp else None
        self.transport: asyncio.DatagramTransport | None = None
        self._fd: int | None = None
        start = time.perf_counter() + random.random() / 30
        base = 0x10000000 + index * 4
        self.streams = [
            OutStream(base, 96, True, {1: MID_URI, 3: ABS_SEND_TIME_URI}, b"0", start),
            OutStream(base + 1, 111, False, {1: MID_URI, 2: AUDIO_LEVEL_URI}, b"1", start),
        ]

    async def open(self, host: str, floor: tuple[str, int]) -> tuple[str, int]:
        loop = asyncio.get_running_loop()
        transport, _ = await loop.create_datagram_endpoint(lambda: self, local_addr=(host, 0), remote_addr=floor)
        self.transport = transport
        fd = transport.get_extra_info("socket").fileno()
        self._fd = fd if arrival.enable(fd) else None
        address: tuple[str, int] = transport.get_extra_info("sockname")[:2]
        return address

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = cast(asyncio.DatagramTransport, transport)

    def datagram_received(self, data: bytes, addr: tuple[str, int]) -> None:
        arrived_ns = None if self._fd is None else arrival.last_arrival_ns(self._fd)
        if self._rx is not None:
            try:
                data = self._rx.unprotect(data)
            except SrtpError:
                self.tally.unstamped += 1
                return
        at = rtp_header_length(data)
        if at < 0:
            self.tally.unstamped += 1
            return
        self.tally.count(data, at, arrived_ns)

    async def send(self, packets: list[bytearray], send_time_at: int) -> None:
        assert self.transport is not None
        for packet in packets:
            data = stamp_send_time(packet, send_time_at)
            self.transport.sendto(self._tx.protect(data) if self._tx is not None else data)

    async def send_rtcp(self) -> None:
        """The floor forwards RTP only: its sender sends no RTCP (a few packets/s per call less)."""

    async def close(self) -> None:
        if self.transport is not None:
            self.transport.close()

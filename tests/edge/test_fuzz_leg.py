"""A client's bad packet never reaches its partner: fuzzed RTP and RTCP fed into one leg's
intercepted handlers (what aiortc's transport loop awaits after SRTP decryption), with two
real aiortc clients connected to in-process EdgeRelays, bridged on one edge or across the
real UDP backbone.

Checked per batch of packets: nothing raises out of a handler; every packet that reaches
the partner leg's send path parses with aiortc's ``RtpPacket.parse`` under the partner's
negotiated extension map (RTCP with ``RtcpPacket.parse``); every packet that does not
arrive is counted once in ``EdgeRelay.stats().dropped`` under a documented reason. At the
end the partner's own aiortc client is still connected: nothing it received killed it.
"""

from __future__ import annotations

import asyncio
import dataclasses
import struct
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from dataclasses import dataclass, field

import pytest
from aiortc import RTCDtlsTransport, RTCPeerConnection, RTCSessionDescription
from aiortc.rtp import HeaderExtensionsMap, RtcpPacket, RtpPacket
from aiortc.sdp import SessionDescription
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from duet.edge.backbone_wire import StreamKind
from duet.edge.ice_hosts import restrict_ice_to
from duet.edge.leg import Leg
from duet.edge.relay import EdgeRelay
from duet.edge.rtp_rewrite import build_pli
from tests.edge.harness import two_edges
from tests.edge.rtp_strategies import (
    LYING_REMB,
    RtcpPart,
    RtpSpec,
    compound_rtcp,
    mutate_rtcp,
    packet_bytes,
    receiver_map,
    rtp_specs,
)

# Drops of a whole RTP packet: each fed packet that does not reach the partner adds one.
PACKET_DROPS = {
    "short rtp",
    "unknown payload type",
    "media from unbridged leg",
    "malformed rtp",
    "video before keyframe",
    "unknown bridge",
    "bridge/peer mismatch",
    "leg not ready",
    "leg send queue full",
    "rtx not requested",
    "codec not negotiated by receiver",
    "video after cached keyframe",
    "cached keyframe after live video",
    "delivery error",  # the backbone's catch-all: must stay 0 (asserted below)
}
# Counted per extension element (the packet itself goes on), or for keyframe requests.
OTHER_DROPS = {
    "extension not negotiated",
    "malformed extension value",
    "malformed extension block",
    "extension needs the two-byte form the receiver did not allow",
    "extension value longer than 255 bytes",
    "keyframe request rate-limited",
    "malformed rtcp",  # aiortc refused a client's RTCP; the leg goes on
    "srtp refused (packet too old)",  # reached leg B's send path (recorded), then refused by SRTP
}
KIND = {"video": StreamKind.VIDEO, "audio": StreamKind.AUDIO}
VP8_KEYFRAME_START = bytes((0x10, 0x00, 0x9D, 0x01, 0x2A))  # descriptor S=1 PID=0, then P=0


@dataclass
class LegView:
    """What the SDP says about one leg: payload types, header-extension map and our sender's SSRC per kind."""

    pt: dict[StreamKind, int]  # the codec the client sends (the answer's first)
    media_pts: dict[StreamKind, set[int]]  # every negotiated media (not RTX) payload type
    extensions: dict[StreamKind, dict[str, int]]  # URI -> ID
    sender_ssrc: dict[StreamKind, int]
    rtx_pts: dict[StreamKind, set[int]] = field(default_factory=dict)  # negotiated RTX payload types
    rtx_ssrc: dict[StreamKind, int] = field(default_factory=dict)  # our sender's RTX SSRC (ssrc-group FID)

    @classmethod
    def from_answer(cls, answer: str) -> LegView:
        view = cls({}, {}, {}, {})
        for media in SessionDescription.parse(answer).media:
            kind = KIND[media.kind]
            codecs = [c for c in media.rtp.codecs if not c.mimeType.lower().endswith("/rtx")]
            view.pt[kind] = codecs[0].payloadType
            view.media_pts[kind] = {c.payloadType for c in codecs}
            view.rtx_pts[kind] = {c.payloadType for c in media.rtp.codecs if c.mimeType.lower().endswith("/rtx")}
            for group in media.ssrc_group:
                if group.semantic == "FID":
                    view.rtx_ssrc[kind] = group.items[1]
            view.extensions[kind] = {e.uri: e.id for e in media.rtp.headerExtensions}
            view.sender_ssrc[kind] = media.ssrc[0].ssrc
        return view


@dataclass
class Call:
    edges: tuple[EdgeRelay, ...]
    leg_a: Leg
    leg_b: Leg
    dtls_a: RTCDtlsTransport  # leg A's transport: its RTP handler is the one the edge installed
    view_a: LegView
    view_b: LegView
    clients: list[RTCPeerConnection]
    sent_to_b: list[tuple[StreamKind, bytes]] = field(default_factory=list)
    fed: int = 0  # RTP packets fed into leg A
    good_fed: int = 0  # well-formed packets under one of leg A's payload types

    def packet_drops(self) -> int:
        return sum(n for e in self.edges for r, n in e.stats().dropped.items() if r in PACKET_DROPS)

    def rtp_to_b(self) -> list[tuple[StreamKind, bytes]]:
        return [(k, p) for k, p in self.sent_to_b if not 192 <= p[1] <= 223]


async def _client(relay: EdgeRelay, session: str) -> tuple[RTCPeerConnection, str, str]:
    """An aiortc client with a video and an audio section but no tracks: it sends no media of its own."""
    pc = RTCPeerConnection()
    pc.addTransceiver("video", direction="sendrecv")
    pc.addTransceiver("audio", direction="sendrecv")
    await pc.setLocalDescription(await pc.createOffer())
    attached = await relay.attach_leg(session, pc.localDescription.sdp)
    await pc.setRemoteDescription(RTCSessionDescription(sdp=attached.answer_sdp, type="answer"))
    return pc, attached.leg_id, attached.answer_sdp


async def _wait_for(condition: Callable[[], bool], timeout: float, what: str) -> None:
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout
    while not condition():
        if loop.time() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        await asyncio.sleep(0.005)


@asynccontextmanager
async def _call(across_backbone: bool) -> AsyncIterator[Call]:
    restrict_ice_to(["127.0.0.1"])
    async with two_edges() as (e1, e2):
        edge_b = e2 if across_backbone else e1
        pc_a, leg_a_id, answer_a = await _client(e1, "fuzz-a")
        pc_b, leg_b_id, answer_b = await _client(edge_b, "fuzz-b")
        leg_a, leg_b = e1.legs[leg_a_id], edge_b.legs[leg_b_id]
        try:
            await _wait_for(lambda: leg_a.connected and leg_b.connected, 15.0, "both legs to connect")
            e1.bridge(1, leg_a_id, 0, edge_b.edge_id)
            edge_b.bridge(1, leg_b_id, 1, e1.edge_id)
            dtls_a = leg_a._pc.getTransceivers()[0].sender.transport  # BUNDLE: one transport per leg
            view_a, view_b = LegView.from_answer(answer_a), LegView.from_answer(answer_b)
            call = Call((e1, e2), leg_a, leg_b, dtls_a, view_a, view_b, [pc_a, pc_b])
            # Record what reaches leg B's send path (SRTP and the socket: the connected leg's fast
            # path, edge/aiortc_internals.py), then send it on to client B.
            assert leg_b._send_now, "leg B is connected but not on the fast path"
            for kind, send in list(leg_b._send_now.items()):
                leg_b._send_now[kind] = _recording(call, kind, send)
            yield call
        finally:
            await pc_a.close()
            await pc_b.close()


def _recording(call: Call, kind: StreamKind, send: Callable[[bytes], None]) -> Callable[[bytes], None]:
    """Records each packet leg B sends, then sends it (SRTP may still refuse it: the leg counts that)."""

    def record_and_send(data: bytes) -> None:
        call.sent_to_b.append((kind, data))
        send(data)

    return record_and_send


async def _feed_rtp(call: Call, packets: list[bytes]) -> None:
    """Into leg A's intercepted RTP handler; then wait until each packet arrived at B or was dropped."""
    before = len(call.rtp_to_b()) + call.packet_drops()
    for packet in packets:
        # What aiortc's receive loop awaits after SRTP decryption: raising here would end the leg.
        await call.dtls_a._handle_rtp_data(packet, 0)
    call.fed += len(packets)
    await _wait_for(
        lambda: len(call.rtp_to_b()) + call.packet_drops() >= before + len(packets),
        5.0,
        "every fed packet to arrive at leg B or be counted as dropped",
    )


def _open_keyframe_gate(call: Call) -> bytes:
    """A VP8 keyframe start from client A, so B's side forwards the video that follows."""
    return struct.pack("!BBHII", 0x80, call.view_a.pt[StreamKind.VIDEO], 1, 1, 42) + VP8_KEYFRAME_START


def _check_what_b_got(call: Call) -> None:
    maps: dict[StreamKind, HeaderExtensionsMap] = {k: receiver_map(ids) for k, ids in call.view_b.extensions.items()}
    for kind, data in call.sent_to_b:
        if 192 <= data[1] <= 223:
            RtcpPacket.parse(data)  # keyframe requests the edge itself sends client B
            continue
        parsed = RtpPacket.parse(data, maps[kind])  # any exception fails the test
        if parsed.payload_type in call.view_b.rtx_pts[kind]:
            # A packet older than what B's leg already carried goes to B as RTX: B's RTX SSRC,
            # the original sequence number in front of the payload.
            assert parsed.ssrc == call.view_b.rtx_ssrc[kind] and len(parsed.payload) >= 2
            continue
        # A's client may send under any codec both negotiated.
        assert parsed.payload_type in call.view_b.media_pts[kind]
        assert parsed.ssrc == call.view_b.sender_ssrc[kind]
    # Every RTP packet fed into A either reached B's send path or was dropped and counted, once.
    assert len(call.rtp_to_b()) + call.packet_drops() == call.fed
    dropped = {r: n for e in call.edges for r, n in e.stats().dropped.items()}
    assert set(dropped) <= PACKET_DROPS | OTHER_DROPS, dropped
    assert "delivery error" not in dropped


@st.composite
def _client_specs(draw: st.DrawFn, view: LegView) -> RtpSpec:
    """Packets client A might send: mostly under its own payload types and extension IDs."""
    kind = draw(st.sampled_from([StreamKind.VIDEO, StreamKind.AUDIO]))
    spec = draw(rtp_specs(view.extensions[kind], max_payload=48))
    if draw(st.integers(0, 4)):
        spec = dataclasses.replace(spec, payload_type=view.pt[kind], marker=False)
    return spec


@pytest.mark.parametrize("across_backbone", [False, True], ids=["same-edge", "across-backbone"])
def test_fuzzed_client_rtp_and_rtcp_never_raise_and_never_reach_the_partner_unparseable(across_backbone: bool) -> None:
    with asyncio.Runner() as runner:
        cm = _call(across_backbone)
        call = runner.run(cm.__aenter__())
        try:
            runner.run(_feed_rtp(call, [_open_keyframe_gate(call)]))
            assert len(call.rtp_to_b()) == 1, "the keyframe start did not reach leg B"

            @settings(
                max_examples=40 if across_backbone else 60,
                deadline=None,
                database=None,  # the call's state (counters, gate) carries across examples
                suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
            )
            @given(
                specs=st.lists(_client_specs(call.view_a), min_size=1, max_size=4), rtcp=compound_rtcp(), data=st.data()
            )
            def fuzz(specs: list[RtpSpec], rtcp: tuple[list[RtcpPart], list[int]], data: st.DataObject) -> None:
                # Each one well-formed, mutated or arbitrary bytes.
                packets = [packet_bytes(data, spec) for spec in specs]
                arrived = len(call.rtp_to_b())
                runner.run(_feed_rtp(call, packets))
                # Good media is not collateral damage: each well-formed packet under one of the
                # leg's payload types reaches the partner.
                good = sum(
                    p == s.build() and s.payload_type in call.view_a.pt.values()
                    for p, s in zip(packets, specs, strict=True)
                )
                assert len(call.rtp_to_b()) - arrived >= good, {e.edge_id: e.stats().dropped for e in call.edges}
                call.good_fed += good
                # RTCP, with a PLI for A's video sender among the parts, into the intercepted handler
                # (the edge's parsing, then aiortc's); only the edge's part for the known aiortc crash.
                parts = [*rtcp[0], RtcpPart(1, 206, build_pli(1, call.view_a.sender_ssrc[StreamKind.VIDEO])[4:])]
                packet = mutate_rtcp(data, parts) if data.draw(st.booleans()) else b"".join(p.build() for p in parts)
                runner.run(call.dtls_a._handle_rtcp_data(packet))
                _check_what_b_got(call)

            fuzz()

            async def settle() -> None:
                await asyncio.sleep(0.3)  # client B's receive loop works through what it was sent

            runner.run(settle())
            assert call.good_fed > 0, "no well-formed packet was fed: the run checked too little"
            # A receive loop that raised would have closed its DTLS transport.
            client_b_dtls = call.clients[1].getTransceivers()[0].receiver.transport
            assert client_b_dtls.state == "connected", "client B's aiortc died on something the edge sent it"
            assert call.dtls_a.state == "connected" and call.leg_a.connected
        finally:
            runner.run(cm.__aexit__(None, None, None))


def test_a_lying_remb_does_not_raise_out_of_the_intercepted_rtcp_handler() -> None:
    with asyncio.Runner() as runner:
        cm = _call(across_backbone=False)
        call = runner.run(cm.__aenter__())
        try:
            runner.run(call.dtls_a._handle_rtcp_data(LYING_REMB))
        finally:
            runner.run(cm.__aexit__(None, None, None))


def test_a_packet_far_behind_does_not_stop_the_partner_legs_sender() -> None:
    with asyncio.Runner() as runner:
        cm = _call(across_backbone=False)
        call = runner.run(cm.__aenter__())
        try:
            pt = call.view_a.pt[StreamKind.AUDIO]  # audio: no keyframe gate in the way
            # B's leg numbers its first packet at random; started below 2000, the old packet's
            # number would wrap and look far *ahead* to SRTP, which then accepts it.
            call.leg_b._streams[StreamKind.AUDIO].rewriter.initial_seq = 30000
            first = struct.pack("!BBHII", 0x80, pt, 5000, 960, 0x1234) + b"\x01\x02"
            far_behind = struct.pack("!BBHII", 0x80, pt, 3000, 0, 0x1234) + b"\x05"
            next_one = struct.pack("!BBHII", 0x80, pt, 5001, 1920, 0x1234) + b"\x03\x04"

            async def feed() -> None:
                for packet in (first, far_behind, next_one):
                    await call.dtls_a._handle_rtp_data(packet, 0)
                await _wait_for(lambda: len(call.rtp_to_b()) == 3, 2.0, "the packet after the old one to be sent")
                # The old one reached the send path and SRTP refused it: counted, and the sender goes on.
                await _wait_for(
                    lambda: call.edges[0].stats().dropped.get("srtp refused (packet too old)") == 1,
                    2.0,
                    "the refusal to be counted",
                )

            runner.run(feed())
        finally:
            runner.run(cm.__aexit__(None, None, None))

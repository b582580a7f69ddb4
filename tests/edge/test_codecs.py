"""Codecs between legs that numbered them differently: Chromium's offer, H.264, RTX, incompatible legs."""

from __future__ import annotations

import asyncio
import struct
from pathlib import Path

import pytest
from aiortc.sdp import SessionDescription

from duet.edge.backbone_wire import StreamKind
from duet.edge.payload_types import BACKBONE_CODECS
from duet.edge.relay import EdgeRelay
from tests.edge.harness import KEY, close_client, make_client, two_edges

CHROMIUM_OFFER = (Path(__file__).parent / "data" / "chromium_offer.sdp").read_text()


async def test_chromium_offer_is_answered_with_vp8_first_and_rtx_for_each_codec() -> None:
    edge = EdgeRelay("fra-1", 1, KEY)
    await edge.start("127.0.0.1")
    try:
        leg = await edge.attach_leg("s1", CHROMIUM_OFFER)
        assert leg.video_send_codec == "VP8"
        assert leg.video_receive_codecs == ("VP8", "H264/42e01f", "H264/42001f")
        answer = SessionDescription.parse(leg.answer_sdp)
        video = next(m for m in answer.media if m.kind == "video")
        audio = next(m for m in answer.media if m.kind == "audio")
        # Chromium's own numbers, VP8 first (what Chromium will send), each codec followed by its RTX.
        assert video.fmt[:6] == [96, 97, 109, 114, 103, 104]
        assert [c.payloadType for c in audio.rtp.codecs] == [111]
        # The edge announces an RTX SSRC for the RTX it negotiated.
        assert video.ssrc_group and video.ssrc_group[0].semantic == "FID" and len(video.ssrc) == 2
        pmap = edge.legs[leg.leg_id].payload_types
        assert pmap.rtx == {97, 114, 104}
    finally:
        await edge.stop()


def _video_codecs_only(sdp: str, keep: set[int]) -> str:
    """The offer with its video section cut down to the payload types in ``keep``."""
    lines, in_video = [], False
    for line in sdp.splitlines():
        if line.startswith("m="):
            in_video = line.startswith("m=video")
            if in_video:
                head = line.split()[:3]
                line = " ".join(head + [pt for pt in line.split()[3:] if int(pt) in keep])
        elif (
            in_video
            and line.startswith(("a=rtpmap:", "a=fmtp:", "a=rtcp-fb:"))
            and int(line.split(":", 1)[1].split()[0]) not in keep
        ):
            continue
        lines.append(line)
    return "\r\n".join(lines) + "\r\n"


async def test_an_offer_without_a_forwardable_video_codec_is_refused_in_words() -> None:
    edge = EdgeRelay("fra-1", 1, KEY)
    await edge.start("127.0.0.1")
    vp9_only = _video_codecs_only(CHROMIUM_OFFER, {98, 99})  # VP9 and its RTX
    assert vp9_only != CHROMIUM_OFFER
    try:
        with pytest.raises(
            ValueError, match=r"none of the codecs Duet forwards \(VP8, H264/42e01f, H264/42001f\); it offers VP9, rtx"
        ):
            await edge.attach_leg("s1", vp9_only)
        assert not edge.legs
    finally:
        await edge.stop()


@pytest.mark.slow
async def test_h264_only_clients_see_each_other_across_the_backbone() -> None:
    async with two_edges() as (e1, e2):
        a, leg_a = await make_client(e1, tag=41, video_codecs=["video/H264"])
        b, leg_b = await make_client(e2, tag=42, video_codecs=["video/H264"])
        try:
            assert e1.legs[leg_a].payload_types.send[StreamKind.VIDEO] == "H264/42e01f"
            e1.bridge(9, leg_a, 0, "vir-1")
            e2.bridge(9, leg_b, 1, "fra-1")
            # The marker survives: H.264 keyframes were recognised (video is held back until one starts).
            assert (await b.wait_for_tag(41, timeout=15)).tag == 41
            assert (await a.wait_for_tag(42, timeout=15)).tag == 42
            assert "codec not negotiated by receiver" not in e2.stats().dropped
        finally:
            await close_client(a)
            await close_client(b)


@pytest.mark.slow
async def test_video_a_leg_cannot_decode_is_dropped_and_counted_not_sent() -> None:
    async with two_edges() as (e1, _):
        vp8, leg_vp8 = await make_client(e1, tag=51)  # sends VP8, decodes VP8 and H.264
        h264, leg_h264 = await make_client(e1, tag=52, video_codecs=["video/H264"])
        try:
            e1.bridge(3, leg_vp8, 0, "fra-1")
            e1.bridge(3, leg_h264, 1, "fra-1")
            assert (await vp8.wait_for_tag(52, timeout=15)).tag == 52  # H.264 into a leg that decodes it
            await asyncio.sleep(0.5)
            assert e1.stats().dropped.get("codec not negotiated by receiver", 0) > 0
            assert not any(m.tag == 51 for m in h264.markers)
        finally:
            await close_client(vp8)
            await close_client(h264)


@pytest.mark.slow
async def test_rtx_is_renumbered_into_the_receiving_legs_rtx_stream() -> None:
    async with two_edges() as (e1, _):
        a, leg_a = await make_client(e1, tag=61)
        b, leg_b = await make_client(e1, tag=62)
        try:
            e1.bridge(4, leg_a, 0, "fra-1")
            e1.bridge(4, leg_b, 1, "fra-1")
            await b.wait_for_tag(61)
            sender, receiver = e1.legs[leg_a], e1.legs[leg_b]
            sent: list[bytes] = []
            original_enqueue = receiver._enqueue

            def record(kind: StreamKind, data: bytes) -> bool:
                if kind == StreamKind.VIDEO and data[1] & 0x7F in receiver.payload_types.rtx:
                    sent.append(data)
                return original_enqueue(kind, data)

            receiver._enqueue = record  # type: ignore[method-assign]
            a_rtx_pt = next(iter(sender.payload_types.rtx))
            stream_b = receiver._streams[StreamKind.VIDEO]
            # A repair of a packet a's client sent and the edge forwarded into b's leg: the last one.
            osn = (stream_b.rewriter.last_seq - stream_b.rewriter._seq_off) & 0xFFFF

            def rtx_of(seq: int, pt: int) -> bytearray:
                return bytearray(
                    struct.pack("!BBHII", 0x80, pt, 7, 1234, 0xABCDEF01) + struct.pack("!H", seq) + b"\x10" * 20
                )

            # From a's client, unrequested (the edge relays no NACK): dropped at once, counted.
            await sender._handle_rtp_data(bytes(rtx_of(osn, a_rtx_pt)))
            assert not sent and e1.stats().dropped["rtx not requested"] == 1

            # Into b's leg (in backbone terms, as a repair would reach it): b's RTX numbers and SSRC.
            vp8_rtx = next(c.rtx_pt for c in BACKBONE_CODECS if c.name == "VP8")
            assert receiver.send_rtp(StreamKind.VIDEO, rtx_of(osn, vp8_rtx))
            assert len(sent) == 1
            out = sent[0]
            assert out[1] & 0x7F in receiver.payload_types.rtx
            assert stream_b.rtx_rewriter is not None
            assert (
                struct.unpack_from("!I", out, 8)[0] == stream_b.rtx_rewriter.ssrc
            )  # the RTX SSRC b's answer announced
            assert struct.unpack_from("!H", out, 12)[0] == stream_b.rewriter.output_seq(
                osn
            )  # repaired packet, b's numbers
            assert out[14:] == b"\x10" * 20
            # A repair of a packet b's leg never carried (held back before the keyframe, or not sent yet)
            # would be decoded into b's stream: dropped and counted instead.
            assert not receiver.send_rtp(StreamKind.VIDEO, rtx_of((osn + 3000) & 0xFFFF, vp8_rtx))
            assert len(sent) == 1
            assert e1.stats().dropped["rtx of a packet not sent on this leg"] == 1
        finally:
            await close_client(a)
            await close_client(b)

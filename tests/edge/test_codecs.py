"""Codecs between legs that numbered them differently: Chromium's offer, H.264, RTX, incompatible legs."""

from __future__ import annotations

import asyncio
from pathlib import Path

import pytest
from aiortc.sdp import SessionDescription

from duet.edge.backbone_wire import StreamKind
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

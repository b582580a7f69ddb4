"""Bandwidth feedback: REMB parsing and building, and a receiver's estimate reaching the sender."""

from __future__ import annotations

import asyncio

import pytest
from aiortc.rtp import RtcpPacket, RtcpPsfbPacket, unpack_remb_fci
from hypothesis import given
from hypothesis import strategies as st

from duet.edge.backbone_wire import StreamKind
from duet.edge.bandwidth import MAX_BITRATE, build_remb, parse_rembs
from tests.edge.harness import close_client, make_client, two_edges


@given(
    st.integers(0, 2**32 - 1),
    st.integers(0, 10**10),
    st.lists(st.integers(0, 2**32 - 1), max_size=5),
)
def test_remb_round_trip_and_aiortc_reads_it(sender: int, bitrate: int, ssrcs: list[int]) -> None:
    packet = build_remb(sender, bitrate, ssrcs)
    [(got, got_ssrcs)] = parse_rembs(packet)
    assert got_ssrcs == ssrcs
    assert got <= bitrate and got >= bitrate - (bitrate >> 17)  # 18 bits of mantissa: within 0.001 %
    [parsed] = RtcpPacket.parse(packet)
    assert isinstance(parsed, RtcpPsfbPacket) and parsed.fmt == 15
    assert unpack_remb_fci(parsed.fci) == (got, ssrcs)


def test_the_largest_bitrates_saturate() -> None:
    assert parse_rembs(build_remb(1, 2**90, [2]))[0][0] == MAX_BITRATE


@given(st.binary(max_size=64))
def test_parse_rembs_never_raises(data: bytes) -> None:
    assert isinstance(parse_rembs(data), list)


@pytest.mark.slow
async def test_a_receivers_estimate_reaches_the_senders_encoder_across_the_backbone() -> None:
    async with two_edges() as (e1, e2):
        a, leg_a = await make_client(e1, tag=111)
        b, leg_b = await make_client(e2, tag=112)
        try:
            e1.bridge(13, leg_a, 0, "vir-1")
            e2.bridge(13, leg_b, 1, "fra-1")
            await b.wait_for_tag(111)
            # b's receiver (aiortc) estimates from abs-send-time and reports REMB on its own.
            for _ in range(100):
                if e1.stats().feedback.get("remb to client", 0) > 0:
                    break
                await asyncio.sleep(0.05)
            assert e2.stats().feedback["remb from client"] > 0 and e1.stats().feedback["remb to client"] > 0
            # A receiver whose estimate changes: a's encoder is told at once (aiortc keeps VP8 within 250-1500 kbit/s).
            leg = e2.legs[leg_b]
            sender_ssrc = leg._streams[StreamKind.VIDEO].sender_ssrc
            await asyncio.sleep(0.15)  # past the pass-on interval
            await leg._handle_rtcp_data(build_remb(0xB, 432_000, [sender_ssrc]))
            encoder = a.pc.getSenders()[0]._RTCRtpSender__encoder  # aiortc's, private: the proof it arrived
            for _ in range(100):
                if encoder is not None and encoder.target_bitrate == 432_000:
                    break
                await asyncio.sleep(0.02)
                encoder = a.pc.getSenders()[0]._RTCRtpSender__encoder
            assert encoder is not None and encoder.target_bitrate == 432_000
        finally:
            await close_client(a)
            await close_client(b)

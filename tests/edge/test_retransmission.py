"""Loss recovery: NACK parsing and building, RTX wrapping, the sent history (unit and properties),
and NACKs through real legs: answered from the edge, or asked of the sender and passed on."""

from __future__ import annotations

import asyncio
import struct
from collections import Counter

import pytest
from aiortc.rtp import RtcpPacket, RtcpRtpfbPacket, RtpPacket
from hypothesis import given
from hypothesis import strategies as st

from duet.edge.backbone_wire import StreamKind
from duet.edge.retransmission import (
    RESEND_GUARD_S,
    SentHistory,
    UpstreamRequests,
    build_nack,
    build_rtx,
    parse_nacks,
    unwrap_rtx,
)
from tests.edge.harness import close_client, make_client, two_edges

seqs = st.lists(st.integers(0, 0xFFFF), min_size=1, max_size=60, unique=True)


@given(seqs, st.integers(0, 2**32 - 1), st.integers(0, 2**32 - 1))
def test_nack_round_trip_and_aiortc_reads_the_same_numbers(lost: list[int], sender: int, media: int) -> None:
    packet = build_nack(sender, media, lost)
    assert sorted(parse_nacks(packet)[media]) == sorted(lost)
    parsed = RtcpPacket.parse(packet)
    assert len(parsed) == 1 and isinstance(parsed[0], RtcpRtpfbPacket)
    assert sorted({s & 0xFFFF for s in parsed[0].lost}) == sorted(lost)


@given(st.binary(max_size=80))
def test_parse_nacks_never_raises(data: bytes) -> None:
    assert isinstance(parse_nacks(data), dict)


def test_nacks_in_a_compound_packet_are_found_per_ssrc() -> None:
    rr = struct.pack("!BBHI", 0x80, 201, 1, 9)  # an empty receiver report first
    packet = rr + build_nack(1, 0xAA, [10, 11, 30]) + build_nack(1, 0xBB, [65535, 0])
    assert {k: sorted(v) for k, v in parse_nacks(packet).items()} == {0xAA: [10, 11, 30], 0xBB: [0, 65535]}
    assert parse_nacks(packet[:-2]) == {0xAA: [10, 11, 30]}  # the cut part is ignored, not the rest


rtp_packets = st.builds(
    lambda seq, ts, marker, csrcs, ext, payload, pad: _rtp(seq, ts, marker, csrcs, ext, payload, pad),
    st.integers(0, 0xFFFF),
    st.integers(0, 2**32 - 1),
    st.booleans(),
    st.lists(st.integers(0, 2**32 - 1), max_size=3),
    # one-byte-form blocks aiortc reads: padding only, ID 1 with one byte, ID 2 with three bytes
    st.sampled_from([None, bytes(4), b"\x10\xaa\x00\x00", b"\x22\x01\x02\x03\x00\x00\x00\x00"]),
    st.binary(max_size=40),
    st.integers(0, 3),
)


def _rtp(seq: int, ts: int, marker: bool, csrcs: list[int], ext: bytes | None, payload: bytes, pad: int) -> bytes:
    b0 = 0x80 | (0x10 if ext is not None else 0) | (0x20 if pad else 0) | len(csrcs)
    head = struct.pack("!BBHII", b0, (0x80 if marker else 0) | 96, seq, ts, 0x1234)
    head += b"".join(struct.pack("!I", c) for c in csrcs)
    if ext is not None:
        head += struct.pack("!HH", 0xBEDE, len(ext) // 4) + ext
    return head + payload + (bytes(pad - 1) + bytes([pad]) if pad else b"")


@given(rtp_packets, st.integers(0, 0xFFFF))
def test_rtx_carries_the_packet_and_unwraps_to_it(packet: bytes, rtx_seq: int) -> None:
    rtx = build_rtx(packet, 97, 0x5678, rtx_seq)
    assert rtx is not None
    parsed = RtpPacket.parse(rtx)
    original = RtpPacket.parse(packet)
    assert (parsed.payload_type, parsed.ssrc, parsed.sequence_number) == (97, 0x5678, rtx_seq)
    assert parsed.timestamp == original.timestamp and parsed.marker == original.marker
    assert parsed.csrc == original.csrc and parsed.padding_size == 0
    assert parsed.payload == struct.pack("!H", original.sequence_number) + original.payload
    back = unwrap_rtx(rtx, 96, 0x1234)
    assert back is not None
    again = RtpPacket.parse(back)
    assert (again.sequence_number, again.payload_type, again.ssrc, again.payload) == (
        original.sequence_number,
        96,
        0x1234,
        original.payload,
    )


def test_padding_only_rtx_and_garbage_unwrap_to_nothing() -> None:
    probe = struct.pack("!BBHII", 0xA0, 97, 1, 2, 3) + bytes(9) + b"\x0a"  # P bit, 10 bytes of padding
    assert unwrap_rtx(probe, 96, 1) is None
    assert unwrap_rtx(b"\x80\x61", 96, 1) is None and build_rtx(b"junk", 97, 1, 1) is None


def test_history_holds_the_latest_packets_and_guards_against_repeat_nacks() -> None:
    history = SentHistory(size=4)
    for seq in range(10, 16):
        history.add(seq, bytes([seq]))
    assert history.for_resend(11, now=1.0) is None and history.get(11) is None  # overwritten by 15
    assert history.get(14) == bytes([14])
    assert history.for_resend(15, now=1.0) == bytes([15])
    assert history.for_resend(15, now=1.0 + RESEND_GUARD_S / 2) is False  # the receiver asked again at once
    assert history.for_resend(15, now=1.0 + RESEND_GUARD_S * 2) == bytes([15])  # the first answer was lost
    with pytest.raises(ValueError):
        SentHistory(size=6)


def test_upstream_requests_let_each_asked_repair_through_once() -> None:
    asked = UpstreamRequests(ttl_s=1.0, guard_s=0.05)
    assert asked.ask([5, 6], now=0.0) == [5, 6]
    assert asked.ask([5, 7], now=0.01) == [7]  # 5 was just asked
    assert asked.answered(5, now=0.2) and not asked.answered(5, now=0.2)
    assert not asked.answered(8, now=0.2)  # never asked: a probe, not a repair
    assert asked.ask([6], now=0.5) == [6]
    assert not asked.answered(6, now=2.0)  # asked too long ago


@pytest.mark.slow
async def test_a_nack_is_answered_from_the_edge_and_what_it_lacks_is_asked_of_the_sender() -> None:
    async with two_edges() as (e1, _):
        a, leg_a = await make_client(e1, tag=101)
        b, leg_b = await make_client(e1, tag=102)
        try:
            e1.bridge(12, leg_a, 0, "fra-1")
            e1.bridge(12, leg_b, 1, "fra-1")
            await b.wait_for_tag(101)
            await asyncio.sleep(0.5)  # some live video after the fresh keyframe, so there is history
            sender, receiver = e1.legs[leg_a], e1.legs[leg_b]
            into_b: list[bytes] = []
            into_a: list[bytes] = []
            for leg, record in ((receiver, into_b), (sender, into_a)):
                original = leg._enqueue

                def recording(kind: StreamKind, data: bytes, original=original, record=record) -> bool:  # type: ignore[no-untyped-def]
                    record.append(data)
                    return original(kind, data)

                leg._enqueue = recording  # type: ignore[method-assign]
            stream_b = receiver._streams[StreamKind.VIDEO]
            assert stream_b.history is not None
            lost = stream_b.rewriter.last_seq
            sent = stream_b.history.get(lost)  # what b's leg carried under that number
            assert sent is not None
            media_ssrc = stream_b.sender_ssrc

            # b's client lost it: the edge answers from what it sent, as RTX (b negotiated it).
            await receiver._handle_rtcp_data(build_nack(0xB, media_ssrc, [lost]))
            rtx = [RtpPacket.parse(p) for p in into_b if p[1] & 0x7F in receiver.payload_types.rtx]
            assert len(rtx) == 1
            assert rtx[0].ssrc == stream_b.rtx_ssrc
            assert rtx[0].payload == struct.pack("!H", lost) + RtpPacket.parse(sent).payload
            assert receiver.payload_types.apt_of[rtx[0].payload_type] == sent[1] & 0x7F
            await receiver._handle_rtcp_data(build_nack(0xB, media_ssrc, [lost]))  # asked again at once
            assert e1.stats().recovery["nack suppressed"] == 1

            # A packet the edge no longer holds: asked of a's client, in a's numbering.
            older = (lost - 3) & 0xFFFF
            stream_b.history._seqs[older & (stream_b.history.size - 1)] = -1  # aged out
            await receiver._handle_rtcp_data(build_nack(0xB, media_ssrc, [older]))
            asked = [parse_nacks(p) for p in into_a if p[1] == 205]
            stream_a = sender._streams[StreamKind.VIDEO]
            a_number = stream_b.rewriter.input_seq(older)
            assert asked == [{stream_a.client_ssrc: [a_number]}]

            # a's client answers with RTX: it reaches b as the repair of the packet b lost.
            a_rtx_pt = sender.payload_types.rtx_for[next(iter(sender.payload_types.rtx_for))]
            repair = struct.pack("!BBHII", 0x80, a_rtx_pt, 1, 0, 0x77) + struct.pack("!H", a_number) + b"\x10\x00"
            before = len(into_b)
            await sender._handle_rtp_data(repair)
            passed = [RtpPacket.parse(p) for p in into_b[before:]]
            assert len(passed) == 1 and passed[0].payload[:2] == struct.pack("!H", older)
            await sender._handle_rtp_data(repair)  # the same answer twice: not asked for any more
            assert len(into_b) == before + 1
            recovery = e1.stats().recovery
            assert recovery["nacked"] == 3 and recovery["resent as rtx"] == 1 and recovery["asked upstream"] == 1
            assert recovery["repaired by client"] == 1 and recovery["repair passed on as rtx"] == 1
            # The same events per bridge side (the edge's only bridge): b's side asked and was
            # answered, a's client repaired.
            by_side = {s.side: s.recovery() for s in e1.stats(12).bridges}
            assert by_side[0] == {"repaired by client": 1}
            assert by_side[1]["nacked"] == 3 and by_side[1]["asked upstream"] == 1
            assert Counter(by_side[0]) + Counter(by_side[1]) == Counter(recovery)
            assert e1.stats().dropped["rtx not requested"] >= 1
        finally:
            await close_client(a)
            await close_client(b)

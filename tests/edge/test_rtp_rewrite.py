"""edge.rtp_rewrite: in-place RTP header rewriting and RTCP keyframe-request helpers."""

from __future__ import annotations

import struct

import pytest
from aiortc.rtcrtpparameters import RTCRtpHeaderExtensionParameters, RTCRtpParameters
from aiortc.rtp import (
    HeaderExtensionsMap,
    RtcpPacket,
    RtcpPsfbPacket,
    RtcpReceiverInfo,
    RtcpRrPacket,
    RtpPacket,
)
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from duet.edge import rtp_rewrite
from duet.edge.rtp_rewrite import (
    MIN_SWITCH_GAP_S,
    StreamRewriter,
    bench_rewrite,
    build_fir,
    build_pli,
    is_rtp,
    parse_keyframe_requests,
    rtp_header_length,
    rtp_ssrc,
)

M16 = 0xFFFF
M32 = 0xFFFFFFFF


def rtp(
    seq: int,
    ts: int,
    ssrc: int,
    *,
    pt: int = 96,
    marker: int = 0,
    payload: bytes = b"payload",
    csrcs: tuple[int, ...] = (),
    ext: bytes | None = None,
    padding: int = 0,
) -> bytearray:
    """A raw RTP packet; ``ext`` is the extension body (a multiple of 4 bytes)."""
    b0 = 0x80 | (0x20 if padding else 0) | (0x10 if ext is not None else 0) | len(csrcs)
    data = struct.pack("!BBHII", b0, (marker << 7) | pt, seq & M16, ts & M32, ssrc)
    data += b"".join(struct.pack("!I", c) for c in csrcs)
    if ext is not None:
        assert len(ext) % 4 == 0
        data += struct.pack("!HH", 0xBEDE, len(ext) // 4) + ext
    data += payload
    if padding:
        data += bytes(padding - 1) + bytes((padding,))
    return bytearray(data)


def fields(buf: bytes | bytearray, offset: int = 0) -> tuple[int, int, int, int, int]:
    """(marker, pt, seq, ts, ssrc)."""
    _, b1, seq, ts, ssrc = struct.unpack_from("!BBHII", buf, offset)
    return b1 >> 7, b1 & 0x7F, seq, ts, ssrc


def serial_forward(a: int, b: int, bits: int) -> int:
    """b - a in RFC 1982 serial arithmetic (negative when b is "before" a)."""
    d = (b - a) & ((1 << bits) - 1)
    return d - (1 << bits) if d >= 1 << (bits - 1) else d


# -- StreamRewriter: unit tests ------------------------------------------------


def test_first_packet_maps_to_initial_values_and_rewrites_header_in_place() -> None:
    rw = StreamRewriter(ssrc=0xCAFEBABE, payload_type=102, clock_rate=90000, initial_seq=500, initial_ts=7000)
    buf = rtp(40000, 123456, 0x11111111, pt=96, marker=1, payload=b"\x01\x02\x03", csrcs=(7,))
    before = bytes(buf)
    assert rw.rewrite(buf, now=10.0)
    assert fields(buf) == (1, 102, 500, 7000, 0xCAFEBABE)
    assert buf[0] == before[0]  # V/P/X/CC untouched
    assert buf[12:] == before[12:]  # CSRCs and payload untouched
    assert len(buf) == len(before)
    assert (rw.packets_rewritten, rw.sources_seen, rw.packets_rejected) == (1, 1, 0)


def test_payload_type_per_packet_and_output_seq_of_the_current_source() -> None:
    rw = StreamRewriter(ssrc=5, payload_type=102, clock_rate=90000, initial_seq=500, initial_ts=7000)
    assert rw.output_seq(40000) is None  # nothing sent yet
    buf = rtp(40000, 123456, 0x11111111, pt=96, marker=1)
    assert rw.rewrite(buf, now=1.0, payload_type=98)
    assert fields(buf)[:2] == (1, 98)  # marker kept, the given payload type written
    assert rw.output_seq(40000) == 500
    assert rw.output_seq(39990) is None  # before the source's first packet here: never sent on this leg
    assert rw.output_seq(40001) is None  # not sent yet
    for seq in (40001, 40002, 40004):
        assert rw.rewrite(rtp(seq, 123456, 0x11111111), now=1.0)
    assert [rw.output_seq(s) for s in (40001, 40003, 40004, 40005)] == [501, 503, 504, None]
    rw.switch_source()
    assert rw.rewrite(rtp(7, 1, 0x22222222), now=2.0)
    assert rw.output_seq(40001) is None and rw.output_seq(7) == 505  # only the current source's packets


def test_initial_values_are_random_by_default() -> None:
    draws = {(r.initial_seq, r.initial_ts) for r in (StreamRewriter(1, 96, 90000) for _ in range(8))}
    assert len(draws) > 1
    assert all(0 <= s <= M16 and 0 <= t <= M32 for s, t in draws)


def test_constructor_validates() -> None:
    with pytest.raises(ValueError):
        StreamRewriter(ssrc=-1, payload_type=96, clock_rate=90000)
    with pytest.raises(ValueError):
        StreamRewriter(ssrc=1, payload_type=128, clock_rate=90000)
    with pytest.raises(ValueError):
        StreamRewriter(ssrc=1, payload_type=96, clock_rate=0)


def test_same_source_keeps_loss_and_reordering() -> None:
    rw = StreamRewriter(ssrc=9, payload_type=111, clock_rate=48000, initial_seq=65530, initial_ts=M32 - 500)
    order = [100, 101, 103, 102, 107, 104]  # a loss (105, 106) and two reorderings
    outs = []
    for seq in order:
        buf = rtp(seq, seq * 960, 42, pt=111)
        assert rw.rewrite(buf, now=0.0)
        outs.append(fields(buf))
    for seq, (_, _, oseq, ots, _) in zip(order, outs, strict=True):
        assert oseq == (65530 + seq - 100) & M16
        assert ots == (M32 - 500 + (seq - 100) * 960) & M32
    assert rw.sources_seen == 1
    assert rw.last_seq == (65530 + 7) & M16  # the highest, not the last, in serial order


def test_new_ssrc_reanchors_continuously_with_elapsed_wall_time() -> None:
    rw = StreamRewriter(ssrc=9, payload_type=96, clock_rate=90000, initial_seq=10, initial_ts=1000)
    for i in range(3):
        assert rw.rewrite(rtp(5000 + i, 90000 + i * 3000, 0xA), now=100.0 + i / 30)
    last_ts = 1000 + 2 * 3000
    # New partner 1.5 s after the last frame was sent: its ts continues by 1.5 s.
    buf = rtp(30000, 4_000_000_000, 0xB)
    assert rw.rewrite(buf, now=100.0 + 2 / 30 + 1.5)
    _, _, seq, ts, ssrc = fields(buf)
    assert (seq, ssrc) == (13, 9)
    assert ts == last_ts + 135000
    # ...and then follows the new source's own timing.
    buf = rtp(30001, 4_000_000_000 + 3000, 0xB)
    assert rw.rewrite(buf, now=200.0)
    assert fields(buf)[2:4] == (14, last_ts + 135000 + 3000)
    assert rw.sources_seen == 2


def test_switch_without_elapsed_time_uses_minimum_step() -> None:
    rw = StreamRewriter(ssrc=9, payload_type=96, clock_rate=48000, initial_seq=0, initial_ts=0)
    assert rw.rewrite(rtp(1, 1, 0xA), now=5.0)
    buf = rtp(1, 1, 0xB)
    assert rw.rewrite(buf, now=5.0)
    assert fields(buf)[2:4] == (1, int(48000 * MIN_SWITCH_GAP_S))


def test_huge_idle_gap_is_capped_so_timestamps_still_move_forward() -> None:
    rw = StreamRewriter(ssrc=9, payload_type=96, clock_rate=90000, initial_seq=0, initial_ts=0)
    assert rw.rewrite(rtp(1, 1, 0xA), now=0.0)
    buf = rtp(1, 1, 0xB)
    assert rw.rewrite(buf, now=10**6)  # 11.5 days: would be > 2^31 ticks
    assert serial_forward(0, fields(buf)[3], 32) > 0


def test_switch_source_reanchors_even_with_the_same_ssrc() -> None:
    rw = StreamRewriter(ssrc=9, payload_type=96, clock_rate=90000, initial_seq=0, initial_ts=0)
    assert rw.rewrite(rtp(100, 100, 0xA), now=0.0)
    rw.switch_source()
    buf = rtp(7, 7, 0xA)  # the same client again (re-matched), restarted numbering
    assert rw.rewrite(buf, now=0.0)
    assert fields(buf)[2] == 1
    assert rw.sources_seen == 2


def test_reanchor_uses_highest_output_after_reordering() -> None:
    rw = StreamRewriter(ssrc=9, payload_type=96, clock_rate=90000, initial_seq=0, initial_ts=0)
    for seq in (10, 12, 11):  # 12 is the highest; 11 arrives last
        assert rw.rewrite(rtp(seq, seq * 3000, 0xA), now=0.0)
    buf = rtp(500, 0, 0xB)
    assert rw.rewrite(buf, now=0.0)
    assert fields(buf)[2] == 3  # after 2 (= 12's output), not after 1 (= 11's)


def test_now_defaults_to_monotonic(monkeypatch: pytest.MonkeyPatch) -> None:
    clock = [50.0]
    monkeypatch.setattr(rtp_rewrite.time, "monotonic", lambda: clock[0])
    rw = StreamRewriter(ssrc=9, payload_type=96, clock_rate=90000, initial_seq=0, initial_ts=0)
    assert rw.rewrite(rtp(1, 1, 0xA))
    clock[0] = 52.0
    buf = rtp(1, 1, 0xB)
    assert rw.rewrite(buf)
    assert fields(buf)[3] == 180000


def test_rewrite_at_an_offset_leaves_the_prefix_alone() -> None:
    rw = StreamRewriter(ssrc=0x01020304, payload_type=100, clock_rate=90000, initial_seq=1, initial_ts=2)
    prefix = b"backbone-header!"
    buf = bytearray(prefix) + rtp(9, 9, 0xA, marker=1)
    assert rw.rewrite(buf, offset=len(prefix), now=0.0)
    assert buf[: len(prefix)] == prefix
    assert fields(buf, len(prefix)) == (1, 100, 1, 2, 0x01020304)
    assert rtp_ssrc(buf, len(prefix)) == 0x01020304
    assert is_rtp(buf, len(prefix))


@pytest.mark.parametrize(
    "packet",
    [
        pytest.param(b"", id="empty"),
        pytest.param(bytes(rtp(1, 1, 1))[:11], id="short fixed header"),
        pytest.param(b"\x40" + bytes(rtp(1, 1, 1))[1:], id="version 1"),
        pytest.param(b"\xc0" + bytes(rtp(1, 1, 1))[1:], id="version 3"),
        pytest.param(bytes(rtp(1, 1, 1, csrcs=(1, 2), payload=b""))[:18], id="truncated csrc"),
        pytest.param(bytes(rtp(1, 1, 1, ext=b"\x10\x00\x00\x00", payload=b""))[:14], id="truncated ext header"),
        pytest.param(bytes(rtp(1, 1, 1, ext=b"\x10\x00\x00\x00" * 2, payload=b""))[:22], id="truncated ext body"),
        pytest.param(bytes(rtp(1, 1, 1, padding=4, payload=b""))[:-1] + b"\x00", id="zero padding count"),
        pytest.param(bytes(rtp(1, 1, 1, padding=4, payload=b""))[:-1] + b"\x09", id="padding past header"),
        pytest.param(bytes(rtp(1, 1, 1, pt=72, marker=1)), id="rtcp range (sender report)"),
    ],
)
def test_rejects_malformed_packets_untouched(packet: bytes) -> None:
    rw = StreamRewriter(ssrc=9, payload_type=96, clock_rate=90000)
    buf = bytearray(packet)
    assert not is_rtp(buf)
    assert not rw.rewrite(buf, now=0.0)
    assert buf == packet
    assert (rw.packets_rejected, rw.packets_rewritten, rw.sources_seen) == (1, 0, 0)


def test_valid_header_shapes_are_accepted() -> None:
    for packet in (
        rtp(1, 1, 1, payload=b""),
        rtp(1, 1, 1, csrcs=(1, 2, 3)),
        rtp(1, 1, 1, ext=b""),
        rtp(1, 1, 1, ext=b"\x10\xaa\x00\x00", csrcs=(5,), padding=3),
    ):
        assert is_rtp(packet)
    assert rtp_header_length(rtp(1, 1, 1, ext=b"\x10\xaa\x00\x00", csrcs=(5,))) == 12 + 4 + 4 + 4


def test_rtp_ssrc() -> None:
    assert rtp_ssrc(rtp(1, 2, 0xDEADBEEF)) == 0xDEADBEEF
    with pytest.raises(ValueError):
        rtp_ssrc(b"\x80" * 11)


def test_bench_rewrite_runs() -> None:
    # It runs the rewrite and gives a per-call figure (timing goals live in make bench-edge).
    assert 0 <= bench_rewrite(2000) < 1e6


# -- aiortc cross-checks ---------------------------------------------------------


def _extensions_map() -> HeaderExtensionsMap:
    m = HeaderExtensionsMap()
    m.configure(
        RTCRtpParameters(
            headerExtensions=[
                RTCRtpHeaderExtensionParameters(id=1, uri="urn:ietf:params:rtp-hdrext:sdes:mid"),
                RTCRtpHeaderExtensionParameters(id=2, uri="http://www.webrtc.org/experiments/rtp-hdrext/abs-send-time"),
                RTCRtpHeaderExtensionParameters(
                    id=3, uri="http://www.ietf.org/id/draft-holmer-rmcat-transport-wide-cc-extensions-01"
                ),
                RTCRtpHeaderExtensionParameters(id=4, uri="urn:ietf:params:rtp-hdrext:ssrc-audio-level"),
            ]
        )
    )
    return m


@pytest.mark.parametrize("padding", [0, 5])
def test_aiortc_parses_rewritten_packet(padding: int) -> None:
    ext_map = _extensions_map()
    original = RtpPacket(
        payload_type=96, marker=1, sequence_number=65535, timestamp=M32, ssrc=0x1234, payload=b"x" * 300
    )
    original.csrc = [0xAAAA, 0xBBBB]
    original.extensions.mid = "0"
    original.extensions.abs_send_time = 0x123456
    original.extensions.transport_sequence_number = 4242
    original.extensions.audio_level = (True, 30)
    original.padding_size = padding
    buf = bytearray(original.serialize(ext_map))

    rw = StreamRewriter(ssrc=0x55667788, payload_type=109, clock_rate=90000, initial_seq=17, initial_ts=99)
    assert rw.rewrite(buf, now=0.0)
    parsed = RtpPacket.parse(bytes(buf), ext_map)
    assert (parsed.ssrc, parsed.payload_type, parsed.sequence_number, parsed.timestamp) == (0x55667788, 109, 17, 99)
    assert parsed.marker == 1
    assert parsed.csrc == original.csrc
    assert parsed.extensions == original.extensions
    assert parsed.payload == original.payload
    assert parsed.padding_size == padding

    # The next packet of the source crosses both wraparounds.
    nxt = RtpPacket(payload_type=96, marker=0, sequence_number=0, timestamp=2999, ssrc=0x1234, payload=b"y")
    buf = bytearray(nxt.serialize(ext_map))
    assert rw.rewrite(buf, now=0.0)
    parsed = RtpPacket.parse(bytes(buf), ext_map)
    assert (parsed.sequence_number, parsed.timestamp, parsed.marker) == (18, 99 + 3000, 0)


@settings(max_examples=300, deadline=None)
@given(st.binary(min_size=0, max_size=48), st.integers(0, 255))
def test_is_rtp_agrees_with_aiortc_parser(data: bytes, first: int) -> None:
    data = bytes((first,)) + data
    try:
        RtpPacket.parse(data)
        aiortc_ok = True
    except ValueError as exc:
        aiortc_ok = False
        extension_content = "header extension" in str(exc)
    rtcp_range = len(data) > 1 and 192 <= data[1] <= 223
    if aiortc_ok and not rtcp_range:
        assert is_rtp(data)
    if is_rtp(data):
        # We check that the extension block fits, not the elements inside it.
        assert aiortc_ok or extension_content


# -- StreamRewriter: properties --------------------------------------------------

source_st = st.fixed_dictionaries(
    {
        "seq": st.one_of(st.integers(0, M16), st.integers(M16 - 40, M16)),
        "ts": st.one_of(st.integers(0, M32), st.integers(M32 - 200_000, M32)),
    }
)
segment_st = st.tuples(
    st.integers(0, 3),  # which source
    st.integers(1, 12),  # packets in the segment
    st.booleans(),  # switch_source() before it
    st.one_of(st.floats(0, 2), st.floats(0, 1e5)),  # wall-clock gap before it, seconds
    st.lists(st.integers(0, 6000), min_size=1, max_size=4),  # ts increments, cycled
)


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    sources=st.lists(source_st, min_size=4, max_size=4),
    segments=st.lists(segment_st, min_size=1, max_size=12),
    clock_rate=st.sampled_from([90000, 48000, 8000]),
    pt=st.integers(0, 127),
    out_ssrc=st.integers(0, M32),
    initial=st.one_of(st.none(), st.tuples(st.integers(M16 - 5, M16), st.integers(M32 - 5000, M32))),
    data=st.data(),
)
def test_output_is_one_continuous_stream(sources, segments, clock_rate, pt, out_ssrc, initial, data) -> None:
    init_seq, init_ts = initial if initial is not None else (None, None)
    rw = StreamRewriter(ssrc=out_ssrc, payload_type=pt, clock_rate=clock_rate, initial_seq=init_seq, initial_ts=init_ts)
    state = [dict(s) for s in sources]
    in_ssrcs = [0x10000 + i for i in range(len(state))]
    now = 1000.0
    prev_in_ssrc = None
    prev_in_ts = 0
    outs: list[tuple[int, int]] = []  # (seq, ts)
    expected_anchors = 0
    for src, count, switch, gap, steps in segments:
        if switch:
            rw.switch_source()
        now += gap
        for i in range(count):
            s = state[src]
            marker = data.draw(st.integers(0, 1), label="marker")
            payload = data.draw(st.binary(max_size=20), label="payload")
            buf = rtp(s["seq"], s["ts"], in_ssrcs[src], pt=96 + pt % 32, marker=marker, payload=payload)
            original = bytes(buf)
            anchor = (i == 0 and switch) or in_ssrcs[src] != prev_in_ssrc
            expected_anchors += anchor
            assert rw.rewrite(buf, now=now)
            m, opt, oseq, ots, ossrc = fields(buf)
            assert (m, opt, ossrc) == (marker, pt, out_ssrc)
            assert buf[0] == original[0] and buf[12:] == original[12:]
            if outs:
                pseq, pts = outs[-1]
                assert oseq == (pseq + 1) & M16  # strictly continuous across switches
                dts = serial_forward(pts, ots, 32)
                assert dts >= 0  # never backwards
                if anchor:
                    assert dts >= rw._min_step
                else:
                    assert dts == serial_forward(prev_in_ts, s["ts"], 32)  # source timing kept
            elif initial is not None:
                assert (oseq, ots) == initial
            outs.append((oseq, ots))
            prev_in_ssrc, prev_in_ts = in_ssrcs[src], s["ts"]
            s["seq"] = (s["seq"] + 1) & M16
            s["ts"] = (s["ts"] + steps[i % len(steps)]) & M32
            now += 0.005
    assert rw.sources_seen == expected_anchors
    assert rw.packets_rewritten == len(outs)


@settings(max_examples=150, deadline=None)
@given(
    seq0=st.integers(0, M16),
    ts0=st.integers(0, M32),
    order=st.lists(st.integers(0, 300), min_size=1, max_size=40),
)
def test_within_a_source_offsets_are_constant(seq0: int, ts0: int, order: list[int]) -> None:
    """Loss, duplication and reordering inside one source reach the receiver unchanged."""
    rw = StreamRewriter(ssrc=1, payload_type=96, clock_rate=90000)
    offsets = set()
    for k in order:
        seq, ts = (seq0 + k) & M16, (ts0 + k * 1500) & M32
        buf = rtp(seq, ts, 0xABC)
        assert rw.rewrite(buf, now=0.0)
        _, _, oseq, ots, _ = fields(buf)
        offsets.add(((oseq - seq) & M16, (ots - ts) & M32))
    assert len(offsets) == 1
    assert rw.sources_seen == 1


@settings(max_examples=400, deadline=None)
@given(st.binary(max_size=80), st.integers(-3, 90), st.one_of(st.none(), st.integers(0, 255)))
def test_garbage_never_raises(data: bytes, offset: int, first: int | None) -> None:
    if first is not None and 0 <= offset < len(data):
        data = data[:offset] + bytes((first,)) + data[offset + 1 :]  # often version 2
    rw = StreamRewriter(ssrc=1, payload_type=96, clock_rate=90000)
    buf = bytearray(data)
    valid = is_rtp(buf, offset)
    assert rw.rewrite(buf, offset, now=0.0) == valid
    if not valid:
        assert buf == data
    else:
        assert len(buf) == len(data) and buf[:offset] == data[:offset]
    if offset >= 0 and len(data) - offset >= 1 and data[offset] >> 6 != 2:
        assert not valid


# -- RTCP keyframe requests --------------------------------------------------------


def test_build_pli_layout_and_roundtrip() -> None:
    pli = build_pli(0x11223344, 0xAABBCCDD)
    assert pli == bytes.fromhex("81ce0002 11223344 aabbccdd")
    assert parse_keyframe_requests(pli) == [0xAABBCCDD]


def test_aiortc_parses_build_pli() -> None:
    (packet,) = RtcpPacket.parse(build_pli(7, 0xFFFFFFFF))
    assert isinstance(packet, RtcpPsfbPacket)
    assert (packet.fmt, packet.ssrc, packet.media_ssrc, packet.fci) == (1, 7, 0xFFFFFFFF, b"")


def test_fir_roundtrip_and_aiortc() -> None:
    fir = build_fir(7, 0x99, seq_nr=300)
    assert len(fir) == 20
    assert parse_keyframe_requests(fir) == [0x99]
    (packet,) = RtcpPacket.parse(fir)
    assert isinstance(packet, RtcpPsfbPacket)
    assert (packet.fmt, packet.ssrc, packet.media_ssrc) == (4, 7, 0)
    assert packet.fci == struct.pack("!IB3x", 0x99, 300 & 0xFF)


def test_compound_packet_with_reports_pli_fir_and_remb() -> None:
    rr = bytes(RtcpRrPacket(ssrc=1, reports=[RtcpReceiverInfo(2, 0, 0, 0, 0, 0, 0)]))
    aiortc_pli = bytes(RtcpPsfbPacket(fmt=1, ssrc=1, media_ssrc=0x42))
    remb = bytes(RtcpPsfbPacket(fmt=15, ssrc=1, media_ssrc=0, fci=b"REMB\x01\x00\x00\x00\x00\x00\x00\x77"))
    fir = bytes(RtcpPsfbPacket(fmt=4, ssrc=1, media_ssrc=0, fci=struct.pack("!IB3xIB3x", 0x50, 1, 0x51, 1)))
    compound = rr + aiortc_pli + remb + fir + build_pli(1, 0x42)
    assert len(RtcpPacket.parse(compound)) == 5  # well-formed per aiortc
    assert parse_keyframe_requests(compound) == [0x42, 0x50, 0x51]  # REMB ignored, duplicates once


def test_padded_fir_ignores_the_padding() -> None:
    body = struct.pack("!IIIB3x", 1, 0, 0x61, 1) + b"\x00\x00\x00\x04"  # one entry + 4 padding bytes
    packet = struct.pack("!BBH", 0xA4, 206, len(body) // 4) + body
    assert RtcpPacket.parse(packet)[0].fci == struct.pack("!IB3x", 0x61, 1)
    assert parse_keyframe_requests(packet) == [0x61]


def test_malformed_rtcp_stops_parsing_but_keeps_earlier_requests() -> None:
    good = build_pli(1, 0x42)
    assert parse_keyframe_requests(good + b"\x81\xce\x00\x09" + bytes(8)) == [0x42]  # length past end
    assert parse_keyframe_requests(good + b"\x41\xce\x00\x02" + bytes(8) + build_pli(1, 5)) == [0x42]  # version 1
    assert parse_keyframe_requests(good[:11]) == []
    assert parse_keyframe_requests(b"\x81\xce\x00\x01" + bytes(4)) == []  # PLI without media SSRC
    assert parse_keyframe_requests(b"") == []


@settings(max_examples=400, deadline=None)
@given(st.binary(max_size=120))
def test_parse_keyframe_requests_never_raises(data: bytes) -> None:
    found = parse_keyframe_requests(data)
    assert isinstance(found, list) and all(0 <= s <= M32 for s in found)
    assert parse_keyframe_requests(bytearray(data)) == found
    assert parse_keyframe_requests(memoryview(data)) == found


@settings(max_examples=100, deadline=None)
@given(st.lists(st.tuples(st.booleans(), st.integers(0, M32), st.integers(0, M32)), min_size=1, max_size=6))
def test_built_requests_parse_back(requests: list[tuple[bool, int, int]]) -> None:
    compound = b"".join(build_fir(s, m, 1) if fir else build_pli(s, m) for fir, s, m in requests)
    expected: list[int] = []
    for _, _, m in requests:
        if m not in expected:
            expected.append(m)
    assert parse_keyframe_requests(compound) == expected
    assert len(RtcpPacket.parse(compound)) == len(requests)


def test_pli_targets_wrap_to_32_bits() -> None:
    assert parse_keyframe_requests(build_pli(-1, 1 << 32 | 5)) == [5]

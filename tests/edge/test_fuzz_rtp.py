"""Fuzzing the edge's RTP parsers and rewriters: odd input is dropped, never raised;
what comes out of a rewrite is something the receiving leg's aiortc can parse."""

from __future__ import annotations

import dataclasses
import itertools
import struct
from collections import Counter

import pytest
from aiortc.rtp import RtpPacket, unpack_header_extensions
from hypothesis import given, settings
from hypothesis import strategies as st

from duet.edge.header_extensions import BACKBONE_IDS, MID, ExtensionRewriter, MalformedExtensions, elements
from duet.edge.keyframe import is_vp8_keyframe_start
from duet.edge.rtp_rewrite import MIN_SWITCH_GAP_S, StreamRewriter, is_rtp, rtp_header_length, rtp_ssrc
from tests.edge.rtp_strategies import (
    ONE_BYTE,
    TWO_BYTE,
    RtpSpec,
    id_maps,
    mutate,
    packet_bytes,
    receiver_map,
    rtp_specs,
)

NOT_NEGOTIATED = "extension not negotiated"
MALFORMED_VALUE = "malformed extension value"
NEEDS_TWO_BYTE = "extension needs the two-byte form the receiver did not allow"
MALFORMED_BLOCK = "malformed extension block"
TOO_LONG = "extension value longer than 255 bytes"


def _aiortc_refuses(packet: bytes) -> bool:
    try:
        RtpPacket.parse(packet)
    except ValueError:
        return True
    return False


@settings(max_examples=200, deadline=None)
@given(spec=rtp_specs(), sender=id_maps(max_id=255), receiver=id_maps(), two_byte=st.booleans(), data=st.data())
def test_no_parser_or_rewriter_raises_on_arbitrary_or_mutated_packets(
    spec: RtpSpec, sender: dict[str, int], receiver: dict[str, int], two_byte: bool, data: st.DataObject
) -> None:
    packet = packet_bytes(data, spec)

    # The header-length check agrees with the receiver's parser (RFC 5761's RTCP range aside).
    hlen = rtp_header_length(packet)
    assert hlen == -1 or 12 <= hlen <= len(packet)
    assert is_rtp(packet) == (hlen >= 0)
    assert rtp_header_length(b"\0\0" + packet, 2) == hlen
    refused = _aiortc_refuses(packet)
    if hlen < 0 and (len(packet) < 2 or not 192 <= packet[1] <= 223):
        assert refused
    if hlen >= 0 and refused:
        # The structure holds, so only the elements inside the extension block can be
        # what aiortc refused: rtp_header_length does not look inside it (the edge
        # rebuilds every block with ExtensionRewriter before a packet leaves).
        assert packet[0] & 0x10
        x = 12 + 4 * (packet[0] & 0x0F)
        profile, words = struct.unpack_from("!HH", packet, x)
        with pytest.raises(ValueError):
            unpack_header_extensions(profile, packet[x + 4 : x + 4 + 4 * words])

    if len(packet) >= 12:
        assert rtp_ssrc(packet) == struct.unpack_from("!I", packet, 8)[0]

    assert isinstance(is_vp8_keyframe_start(packet), bool)

    # StreamRewriter: rewritten and parseable, or refused with the buffer untouched.
    buf = bytearray(packet)
    rewriter = StreamRewriter(ssrc=0xCAFE, payload_type=111, clock_rate=48000, initial_seq=0, initial_ts=0)
    if rewriter.rewrite(buf, now=0.0):
        assert _aiortc_refuses(bytes(buf)) == refused  # the fixed header is not what it refuses
        if not refused:
            parsed = RtpPacket.parse(bytes(buf))
            assert (parsed.ssrc, parsed.payload_type) == (0xCAFE, 111)
        assert buf[12:] == packet[12:]  # only the fixed header changes
    else:
        assert buf == packet and rewriter.packets_rejected == 1

    # ExtensionRewriter: None, or a packet the receiver parses with its own extension map.
    rw = ExtensionRewriter({i: u for u, i in sender.items()}, receiver, two_byte=two_byte)
    out = rw.rewrite(packet)
    # Refused exactly when the structure is bad (the second byte is not its business).
    structure_ok = len(packet) >= 2 and rtp_header_length(packet[:1] + b"\0" + packet[2:]) >= 0
    assert (out is not None) == structure_ok
    if out is not None:
        RtpPacket.parse(bytes(out), receiver_map(receiver))  # any exception fails the test
        assert set(rw.dropped) <= {NOT_NEGOTIATED, MALFORMED_VALUE, NEEDS_TWO_BYTE, MALFORMED_BLOCK, TOO_LONG}

    # The block parser raises its own error and nothing else.
    if len(packet) >= 16:
        profile, words = struct.unpack_from("!HH", packet, 12)
        try:
            list(elements(profile, packet[16 : 16 + 4 * words]))
        except MalformedExtensions:
            pass


# MIDs as SDP carries them (text), short or longer than either extension form can carry.
_mids = st.text(min_size=1, max_size=20).map(str.encode) | st.text(min_size=250, max_size=300).map(str.encode)


def _expected(
    spec: RtpSpec, sender: dict[str, int], receiver: dict[str, int], two_byte: bool, replace: dict[str, bytes]
) -> tuple[list[tuple[int, bytes]], Counter[str]]:
    """What ExtensionRewriter must keep, in order, and what it must count as dropped: from the spec."""
    by_id = {i: u for u, i in sender.items()}
    kept: list[tuple[int, bytes]] = []
    drops: Counter[str] = Counter()
    for e in spec.elements:
        uri = by_id.get(e.ext_id)
        if uri is None or uri not in receiver:
            drops[NOT_NEGOTIATED] += 1
        elif uri in replace:
            kept.append((receiver[uri], replace[uri]))
        elif not e.well_formed:
            drops[MALFORMED_VALUE] += 1
        else:
            kept.append((receiver[uri], e.value))
    too_long = [(i, v) for i, v in kept if len(v) > 255]  # a replacement that fits no form
    drops[TOO_LONG] += len(too_long)
    kept = [e for e in kept if e not in too_long]
    if not two_byte and not all(i <= 14 and 1 <= len(v) <= 16 for i, v in kept):
        fits = [(i, v) for i, v in kept if i <= 14 and 1 <= len(v) <= 16]
        drops[NEEDS_TWO_BYTE] += len(kept) - len(fits)
        kept = fits
    return kept, drops


@settings(max_examples=200, deadline=None)
@given(
    sender=id_maps(max_id=255),
    receiver=id_maps(max_id=255),
    two_byte=st.booleans(),
    mid=st.none() | _mids,
    data=st.data(),
)
def test_well_formed_packets_keep_payload_padding_and_csrcs_and_map_ids_by_uri(
    sender: dict[str, int], receiver: dict[str, int], two_byte: bool, mid: bytes | None, data: st.DataObject
) -> None:
    spec = data.draw(rtp_specs(sender))
    src = spec.build()
    replace = {MID: mid} if mid is not None else {}
    rw = ExtensionRewriter({i: u for u, i in sender.items()}, receiver, two_byte=two_byte, replace=replace)
    out = rw.rewrite(src)
    assert out is not None

    kept, drops = _expected(spec, sender, receiver, two_byte, replace)
    assert Counter(rw.dropped) == drops
    assert out[0] & ~0x10 == src[0] & ~0x10 and out[1:12] == src[1:12]
    csrc_end = 12 + 4 * len(spec.csrcs)
    assert out[12:csrc_end] == src[12:csrc_end]
    if kept:
        assert out[0] & 0x10
        profile, words = struct.unpack_from("!HH", out, csrc_end)
        assert profile == (ONE_BYTE if all(i <= 14 and 1 <= len(v) <= 16 for i, v in kept) else TWO_BYTE)
        assert list(elements(profile, out[csrc_end + 4 : csrc_end + 4 + 4 * words])) == kept
        tail = out[csrc_end + 4 + 4 * words :]
    else:
        assert not out[0] & 0x10
        tail = out[csrc_end:]
    assert tail == src[spec.header_length :]  # payload and padding, byte for byte

    # The property that matters: the receiving leg parses it, and sees the same media.
    parsed = RtpPacket.parse(bytes(out), receiver_map(receiver))
    assert parsed.csrc == list(spec.csrcs)
    assert parsed.payload == spec.payload and parsed.padding_size == spec.padding
    assert (parsed.sequence_number, parsed.timestamp, parsed.ssrc) == (spec.seq, spec.ts, spec.ssrc)


@settings(max_examples=100, deadline=None)
@given(
    mid_id=st.integers(1, 255),
    out_id=st.integers(1, 255),
    two_byte=st.booleans(),
    replacement=_mids,
    data=st.data(),
)
def test_a_replacement_value_of_any_length_never_raises(
    mid_id: int, out_id: int, two_byte: bool, replacement: bytes, data: st.DataObject
) -> None:
    """The MID each packet carries to a leg is replaced with that leg's own: whatever its length,
    the rewrite drops what no form can carry instead of raising into the forwarding path."""
    spec = data.draw(rtp_specs({MID: mid_id}))
    rw = ExtensionRewriter({mid_id: MID}, {MID: out_id}, two_byte=two_byte, replace={MID: replacement})
    out = rw.rewrite(spec.build())
    assert out is not None
    parsed = RtpPacket.parse(bytes(out), receiver_map({MID: out_id}))
    assert parsed.payload == spec.payload
    carried = any(e.ext_id == mid_id for e in spec.elements)
    fits = len(replacement) <= 255 and (two_byte or (out_id <= 14 and 1 <= len(replacement) <= 16))
    assert bool(out[0] & 0x10) == (carried and fits)
    if carried and fits:
        assert parsed.extensions.mid == replacement.decode()
    if carried and len(replacement) > 255:
        assert rw.dropped[TOO_LONG] >= 1


@given(st.binary(max_size=8).filter(lambda v: not v or not _is_utf8(v)))
def test_a_malformed_replacement_is_refused_when_configured(value: bytes) -> None:
    with pytest.raises(ValueError, match="not a well-formed"):
        ExtensionRewriter({1: MID}, {MID: 1}, replace={MID: value})


def _is_utf8(value: bytes) -> bool:
    try:
        value.decode()
    except UnicodeDecodeError:
        return False
    return True


@settings(max_examples=200, deadline=None)
@given(
    sender=id_maps(max_id=255),
    receiver=id_maps(),
    mid=st.text(min_size=1, max_size=4).map(str.encode),  # an SDP token, so text
    well_formed=st.booleans(),
    data=st.data(),
)
def test_client_to_backbone_to_partner_never_hands_the_partner_an_unparseable_packet(
    sender: dict[str, int], receiver: dict[str, int], mid: bytes, well_formed: bool, data: st.DataObject
) -> None:
    """The leg's two translations and the fixed-header rewrite, chained as in a bridge."""
    spec = data.draw(rtp_specs(sender))
    packet = spec.build() if well_formed else mutate(data, spec)
    from_client = ExtensionRewriter({i: u for u, i in sender.items()}, BACKBONE_IDS, two_byte=True)
    to_partner = ExtensionRewriter(
        {i: u for u, i in BACKBONE_IDS.items()}, receiver, two_byte=False, replace={MID: mid}
    )
    rewriter = StreamRewriter(ssrc=0xBEEF, payload_type=97, clock_rate=90000)

    on_backbone = from_client.rewrite(packet)
    if on_backbone is None:
        assert not well_formed
        return
    out = to_partner.rewrite(on_backbone)
    assert out is not None  # what the first translation lets through, the second accepts
    if not rewriter.rewrite(out, now=0.0):
        assert not well_formed and 192 <= packet[1] <= 223
        return
    parsed = RtpPacket.parse(bytes(out), receiver_map(receiver))
    assert (parsed.ssrc, parsed.payload_type) == (0xBEEF, 97)
    if well_formed:
        assert parsed.payload == spec.payload and parsed.csrc == list(spec.csrcs)
        assert parsed.padding_size == spec.padding
        carried_mid = any(e.ext_id == sender.get(MID) and e.well_formed for e in spec.elements)
        if carried_mid and MID in receiver and len(mid) <= 16:
            assert parsed.extensions.mid == mid.decode()  # the receiver's own m-line, not the sender's


@st.composite
def _sources(draw: st.DrawFn) -> list[tuple[int, int, int, int]]:
    """(ssrc, first seq, first ts, packets) per source, in the order they feed the leg."""
    return draw(
        st.lists(
            st.tuples(
                st.integers(0, 0xFFFFFFFF), st.integers(0, 0xFFFF), st.integers(0, 0xFFFFFFFF), st.integers(1, 6)
            ),
            min_size=1,
            max_size=4,
        )
    )


@settings(max_examples=80, deadline=None)
@given(sources=_sources(), clock_rate=st.sampled_from([48000, 90000]), data=st.data())
def test_sequence_and_timestamps_stay_continuous_across_switches_and_garbage(
    sources: list[tuple[int, int, int, int]], clock_rate: int, data: st.DataObject
) -> None:
    """Refused packets between good ones neither change the stream nor shift its numbering."""
    rewriter = StreamRewriter(ssrc=7, payload_type=100, clock_rate=clock_rate, initial_seq=0xFFF0, initial_ts=1)
    step = int(clock_rate * 0.02)  # 20 ms per packet within a source
    now = 0.0
    out: list[tuple[int, int, int]] = []  # (source index, seq, ts)
    for index, (ssrc, seq0, ts0, count) in enumerate(sources):
        rewriter.switch_source()
        spec = data.draw(rtp_specs(max_payload=8), label="packet shape")
        for k in range(count):
            good = dataclasses.replace(spec, ssrc=ssrc, seq=(seq0 + k) & 0xFFFF, ts=(ts0 + k * step) & 0xFFFFFFFF)
            garbage = mutate(data, good)
            if not is_rtp(garbage):
                buf = bytearray(garbage)
                assert not rewriter.rewrite(buf, now=now) and buf == garbage
            buf = bytearray(good.build())
            assert rewriter.rewrite(buf, now=now)
            parsed = RtpPacket.parse(bytes(buf))
            assert parsed.payload == good.payload
            out.append((index, parsed.sequence_number, parsed.timestamp))
            now += 0.02
        now += data.draw(st.sampled_from([0.0, 0.5, 30.0]), label="pause before the next source")

    assert out[0][1:] == (0xFFF0, 1)
    for (i0, s0, t0), (i1, s1, t1) in itertools.pairwise(out):
        assert s1 == (s0 + 1) & 0xFFFF  # one stream: no gap, no repeat, across every switch
        d = (t1 - t0) & 0xFFFFFFFF
        if i0 == i1:
            assert d == step
        else:
            assert int(clock_rate * MIN_SWITCH_GAP_S) <= d < 0x80000000


def test_mutations_are_not_all_garbage() -> None:
    """Some mutated packets stay RTP (they exercise the rewriters), most do not (they exercise the drops)."""
    outcomes: list[bool] = []

    @settings(max_examples=200, deadline=None, database=None)
    @given(spec=rtp_specs(), data=st.data())
    def mutated(spec: RtpSpec, data: st.DataObject) -> None:
        outcomes.append(is_rtp(mutate(data, spec)))

    mutated()
    assert any(outcomes) and not all(outcomes)

"""Header-extension translation between two legs' ID maps, with aiortc's parser as the oracle."""

from __future__ import annotations

import struct

import pytest
from aiortc.rtcrtpparameters import RTCRtpHeaderExtensionParameters, RTCRtpParameters
from aiortc.rtp import HeaderExtensionsMap, RtpPacket
from hypothesis import given, settings
from hypothesis import strategies as st

from duet.edge.header_extensions import (
    ABS_SEND_TIME,
    AUDIO_LEVEL,
    BACKBONE_IDS,
    MID,
    TRANSPORT_CC,
    ExtensionRewriter,
    MalformedExtensions,
    elements,
)

URIS = list(BACKBONE_IDS)


def receiver_map(ids: dict[str, int]) -> HeaderExtensionsMap:
    hmap = HeaderExtensionsMap()
    hmap.configure(
        RTCRtpParameters(headerExtensions=[RTCRtpHeaderExtensionParameters(id=i, uri=u) for u, i in ids.items()])
    )
    return hmap


def rtp(
    block: bytes = b"", *, profile: int = 0xBEDE, csrcs: int = 0, payload: bytes = b"payload", padding: int = 0
) -> bytes:
    b0 = 0x80 | csrcs | (0x10 if block or profile != 0xBEDE else 0) | (0x20 if padding else 0)
    head = struct.pack("!BBHII", b0, 96, 1, 2, 3) + b"".join(struct.pack("!I", 100 + i) for i in range(csrcs))
    ext = b""
    if b0 & 0x10:
        block += b"\0" * (-len(block) % 4)
        ext = struct.pack("!HH", profile, len(block) // 4) + block
    pad = (b"\0" * (padding - 1) + bytes((padding,))) if padding else b""
    return head + ext + payload + pad


def one_byte(ext_id: int, value: bytes) -> bytes:
    return bytes(((ext_id << 4) | (len(value) - 1),)) + value


def test_ids_are_mapped_into_the_receivers_terms() -> None:
    # Chromium-like sender: abs-send-time 2, transport-cc 3; the receiver agreed 3 and 5.
    rw = ExtensionRewriter({2: ABS_SEND_TIME, 3: TRANSPORT_CC}, {ABS_SEND_TIME: 3, TRANSPORT_CC: 5})
    out = rw.rewrite(rtp(one_byte(2, b"\x01\x02\x03") + one_byte(3, b"\x00\x07")))
    assert out is not None
    parsed = RtpPacket.parse(bytes(out), receiver_map({ABS_SEND_TIME: 3, TRANSPORT_CC: 5}))
    assert parsed.extensions.abs_send_time == 0x010203
    assert parsed.extensions.transport_sequence_number == 7
    assert parsed.payload == b"payload"


def test_what_the_receiver_did_not_negotiate_is_removed_and_x_cleared() -> None:
    rw = ExtensionRewriter({2: ABS_SEND_TIME}, {AUDIO_LEVEL: 1})
    src = rtp(one_byte(2, b"\x01\x02\x03"), csrcs=2, padding=3)
    out = rw.rewrite(src)
    assert out is not None
    assert not out[0] & 0x10 and out[0] & 0x20  # no extension left; padding kept
    assert out == bytes((src[0] & ~0x10,)) + src[1:20] + src[28:]  # header + CSRCs, then payload + padding
    assert rw.dropped == {"extension not negotiated": 1}


def test_a_value_the_receiver_would_choke_on_is_dropped() -> None:
    # The crash seen with a browser partner: abs-send-time under an ID the receiver
    # reads as abs-send-time, but 1 byte long. aiortc raises struct.error on it.
    bad = rtp(one_byte(3, b"\x01"))
    with pytest.raises(struct.error):
        RtpPacket.parse(bad, receiver_map({ABS_SEND_TIME: 3}))
    rw = ExtensionRewriter({3: ABS_SEND_TIME}, {ABS_SEND_TIME: 3})
    out = rw.rewrite(bad)
    assert out is not None
    RtpPacket.parse(bytes(out), receiver_map({ABS_SEND_TIME: 3}))
    assert rw.dropped == {"malformed extension value": 1}
    bad_mid = rtp(one_byte(1, b"\xff\xfe"))
    rw = ExtensionRewriter({1: MID}, {MID: 1})
    out = rw.rewrite(bad_mid)
    assert out is not None and not out[0] & 0x10


def test_two_byte_input_becomes_one_byte_when_it_fits() -> None:
    block = bytes((7, 3)) + b"\x0a\x0b\x0c" + b"\0" + bytes((9, 2)) + b"\x00\x2a"
    rw = ExtensionRewriter({7: ABS_SEND_TIME, 9: TRANSPORT_CC}, {ABS_SEND_TIME: 2, TRANSPORT_CC: 4})
    out = rw.rewrite(rtp(block, profile=0x1000))
    assert out is not None
    assert out[12:14] == b"\xbe\xde"
    parsed = RtpPacket.parse(bytes(out), receiver_map({ABS_SEND_TIME: 2, TRANSPORT_CC: 4}))
    assert (parsed.extensions.abs_send_time, parsed.extensions.transport_sequence_number) == (0x0A0B0C, 42)


def test_two_byte_form_only_where_the_receiver_allows_it() -> None:
    long_mid = b"m" * 20  # longer than a one-byte element can carry
    src = rtp(bytes((1, len(long_mid))) + long_mid, profile=0x1000)
    strict = ExtensionRewriter({1: MID}, {MID: 1})
    out = strict.rewrite(src)
    assert out is not None and not out[0] & 0x10
    assert strict.dropped == {"extension needs the two-byte form the receiver did not allow": 1}
    mixed = ExtensionRewriter({1: MID}, {MID: 1}, two_byte=True)
    out = mixed.rewrite(src)
    assert out is not None and out[12:14] == b"\x10\x00"
    assert RtpPacket.parse(bytes(out), receiver_map({MID: 1})).extensions.mid == "m" * 20


def test_id_15_ends_one_byte_parsing_and_a_truncated_block_is_removed_whole() -> None:
    assert list(elements(0xBEDE, one_byte(1, b"a") + b"\xf0" + one_byte(2, b"b"))) == [(1, b"a")]
    with pytest.raises(MalformedExtensions):
        list(elements(0xBEDE, bytes(((1 << 4) | 5,)) + b"ab"))
    rw = ExtensionRewriter({1: MID}, {MID: 1})
    out = rw.rewrite(rtp(bytes(((1 << 4) | 5,)) + b"ab"))
    assert out is not None and not out[0] & 0x10 and out.endswith(b"payload")
    assert rw.dropped == {"malformed extension block": 1}


def test_not_rtp_is_refused() -> None:
    rw = ExtensionRewriter({}, {})
    assert rw.rewrite(b"\x80\x60") is None
    assert rw.rewrite(b"\x40" + bytes(11)) is None  # version 1
    assert rw.rewrite(rtp(one_byte(1, b"a"))[:15]) is None  # extension header cut off
    assert rw.rewrite(rtp(padding=3)[:-1] + b"\x50") is None  # padding count past the payload


# -- properties -------------------------------------------------------------------


@st.composite
def id_maps(draw: st.DrawFn, max_id: int) -> dict[str, int]:
    uris = draw(st.lists(st.sampled_from(URIS), unique=True, max_size=len(URIS)))
    ids = draw(st.lists(st.integers(1, max_id), unique=True, min_size=len(uris), max_size=len(uris)))
    return dict(zip(uris, ids, strict=True))


@st.composite
def blocks(draw: st.DrawFn) -> tuple[int, bytes]:
    """An extension block, well-formed or not, in either form."""
    two_byte = draw(st.booleans())
    parts = []
    for _ in range(draw(st.integers(0, 5))):
        if draw(st.integers(0, 9)) == 0:
            parts.append(b"\0")  # padding between elements
            continue
        if two_byte:
            value = draw(st.binary(max_size=20))
            parts.append(bytes((draw(st.integers(1, 255)), len(value))) + value)
        else:
            value = draw(st.binary(min_size=1, max_size=16))
            parts.append(bytes(((draw(st.integers(1, 15)) << 4) | (len(value) - 1),)) + value)
    block = b"".join(parts) + draw(st.binary(max_size=3))  # sometimes a truncated tail
    return (0x1000 if two_byte else 0xBEDE), block


@settings(max_examples=400, deadline=None)
@given(
    sender=id_maps(max_id=255),
    receiver=id_maps(max_id=14),
    two_byte_receiver=st.booleans(),
    block=blocks(),
    csrcs=st.integers(0, 3),
    padding=st.integers(0, 8),
    payload=st.binary(max_size=40),
)
def test_the_receiver_always_parses_what_comes_out(
    sender: dict[str, int],
    receiver: dict[str, int],
    two_byte_receiver: bool,
    block: tuple[int, bytes],
    csrcs: int,
    padding: int,
    payload: bytes,
) -> None:
    profile, body = block
    src = rtp(body, profile=profile, csrcs=csrcs, payload=payload, padding=padding)
    rw = ExtensionRewriter({i: u for u, i in sender.items()}, receiver, two_byte=two_byte_receiver)
    out = rw.rewrite(src)
    assert out is not None  # well-formed RTP around the block: never refused
    parsed = RtpPacket.parse(bytes(out), receiver_map(receiver))  # must not raise
    assert (parsed.csrc, parsed.payload, parsed.padding_size) == ([100 + i for i in range(csrcs)], payload, padding)
    assert out[1:12] == src[1:12]
    # Every element that survives carries the sender's value for the same URI.
    if out[0] & 0x10:
        (out_profile, words) = struct.unpack_from("!HH", out, 12 + 4 * csrcs)
        kept = list(elements(out_profile, out[16 + 4 * csrcs : 16 + 4 * csrcs + 4 * words]))
        sent = list(elements(profile, body.ljust(len(body) + (-len(body) % 4), b"\0")))
        by_receiver_id = {i: u for u, i in receiver.items()}
        for out_id, value in kept:
            assert (sender[by_receiver_id[out_id]], value) in sent


@settings(max_examples=300, deadline=None)
@given(data=st.binary(max_size=80))
def test_arbitrary_bytes_never_raise(data: bytes) -> None:
    rw = ExtensionRewriter({1: ABS_SEND_TIME, 2: MID}, {ABS_SEND_TIME: 3, MID: 1})
    out = rw.rewrite(data)
    if out is not None:
        RtpPacket.parse(bytes(out), receiver_map({ABS_SEND_TIME: 3, MID: 1}))


@settings(max_examples=300, deadline=None)
@given(
    sender=id_maps(max_id=14),
    receiver=id_maps(max_id=14),
    block=blocks(),
    padding=st.integers(0, 8),
    payload=st.binary(max_size=40),
    mid=st.one_of(st.none(), st.sampled_from([b"0", b"1", b"video", b"a" * 16, b"a" * 17])),
)
def test_the_in_place_shortcut_means_what_the_general_rewrite_means(
    sender: dict[str, int],
    receiver: dict[str, int],
    block: tuple[int, bytes],
    padding: int,
    payload: bytes,
    mid: bytes | None,
) -> None:
    profile, body = block
    src = rtp(body, profile=profile, payload=payload, padding=padding)
    incoming = {i: u for u, i in sender.items()}
    replace = {MID: mid} if mid is not None else {}
    fast = ExtensionRewriter(incoming, receiver, replace=replace)
    general = ExtensionRewriter(incoming, receiver, replace=replace)
    general._in_place = {}  # always the long way
    a, b = fast.rewrite(src), general.rewrite(src)
    assert a is not None and b is not None
    hmap = receiver_map(receiver)
    pa, pb = RtpPacket.parse(bytes(a), hmap), RtpPacket.parse(bytes(b), hmap)
    assert (pa.extensions, pa.payload, pa.padding_size) == (pb.extensions, pb.payload, pb.padding_size)
    assert fast.dropped == general.dropped


def test_in_place_keeps_the_block_and_only_renumbers() -> None:
    rw = ExtensionRewriter({3: ABS_SEND_TIME, 5: TRANSPORT_CC}, {ABS_SEND_TIME: 2, TRANSPORT_CC: 9})
    src = rtp(one_byte(3, b"\x01\x02\x03") + b"\0" + one_byte(5, b"\x04\x05"))
    out = rw.rewrite(src)
    assert out is not None and len(out) == len(src)
    assert bytes(out[16:24]) == one_byte(2, b"\x01\x02\x03") + b"\0" + one_byte(9, b"\x04\x05")

"""edge.backbone_wire: authenticated datagrams between edges."""

from __future__ import annotations

import hmac
import struct

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from duet.edge.backbone_wire import (
    DEFAULT_TTL,
    HEADER_SIZE,
    OVERHEAD,
    TAG_SIZE,
    TTL_OFFSET,
    BackboneError,
    BackboneHeader,
    PacketType,
    StreamKind,
    bench_backbone,
    decrement_ttl,
    pack,
    pack_into,
    unpack,
)

KEY = b"cluster-key-for-tests-0123456789"

header_st = st.builds(
    BackboneHeader,
    ptype=st.sampled_from(PacketType),
    dest_edge=st.integers(0, 0xFFFF),
    src_edge=st.integers(0, 0xFFFF),
    bridge_id=st.integers(0, 2**64 - 1),
    side=st.integers(0, 1),
    kind=st.sampled_from(StreamKind),
    ttl=st.integers(0, 255),
)
key_st = st.binary(min_size=1, max_size=100)  # covers keys longer than the SHA-256 block


def header(**overrides: object) -> BackboneHeader:
    fields: dict[str, object] = dict(
        ptype=PacketType.MEDIA, dest_edge=2, src_edge=1, bridge_id=77, side=1, kind=StreamKind.VIDEO, ttl=8
    )
    fields.update(overrides)
    return BackboneHeader(**fields)  # type: ignore[arg-type]


def signed_datagram(raw_header: bytes, ttl: int, payload: bytes, key: bytes = KEY) -> bytes:
    """A datagram with a valid tag over arbitrary header bytes, built independently of the module."""
    assert len(raw_header) == 18
    tag = hmac.digest(key, raw_header + payload, "sha256")[:TAG_SIZE]
    return raw_header + bytes((ttl,)) + tag + payload


def test_sizes_and_golden_layout() -> None:
    assert (HEADER_SIZE, TAG_SIZE, OVERHEAD, TTL_OFFSET) == (19, 8, 27, 18)
    h = BackboneHeader(PacketType.KEYFRAME_REQUEST, 0x0102, 0x0304, 0x05060708090A0B0C, 1, StreamKind.AUDIO, 9)
    d = pack(h, b"", KEY)
    assert d[:19] == bytes.fromhex("4455 01 02 00 01 0102 0304 05060708090a0b0c 09")
    assert d[19:] == hmac.digest(KEY, d[:18], "sha256")[:8]


@settings(max_examples=200, deadline=None)
@given(header_st, st.binary(max_size=1500), key_st)
def test_roundtrip(h: BackboneHeader, payload: bytes, key: bytes) -> None:
    d = pack(h, payload, key)
    assert len(d) == OVERHEAD + len(payload)
    # The tag is plain truncated HMAC-SHA256 over the header without the TTL, then the payload.
    assert d[HEADER_SIZE:OVERHEAD] == hmac.digest(key, d[:TTL_OFFSET] + d[OVERHEAD:], "sha256")[:TAG_SIZE]
    for form in (d, bytearray(d), memoryview(d)):
        got, body = unpack(form, key)
        assert got == h
        assert isinstance(got.ptype, PacketType) and isinstance(got.kind, StreamKind)
        assert isinstance(body, memoryview) and body.tobytes() == payload
    buf = bytearray(OVERHEAD) + payload
    assert pack_into(h, buf, key) == len(d)
    assert buf == d
    assert pack(h, memoryview(payload), key) == pack(h, bytearray(payload), key) == d


def test_payload_is_a_view_not_a_copy() -> None:
    d = bytearray(pack(header(), b"rtp-bytes", KEY))
    _, body = unpack(d, KEY)
    assert body.obj is d
    d[OVERHEAD] = ord("R")
    assert body.tobytes() == b"Rtp-bytes"


def test_pack_into_at_offset() -> None:
    buf = bytearray(b"xyz") + bytearray(OVERHEAD) + b"payload"
    assert pack_into(header(), buf, KEY, offset=3) == OVERHEAD + 7
    assert buf[:3] == b"xyz"
    assert buf[3:] == pack(header(), b"payload", KEY)
    with pytest.raises(ValueError):
        pack_into(header(), bytearray(OVERHEAD - 1), KEY)


@settings(max_examples=200, deadline=None)
@given(header_st, st.binary(max_size=64), st.data())
def test_any_bit_flip_outside_ttl_is_rejected(h: BackboneHeader, payload: bytes, data: st.DataObject) -> None:
    d = bytearray(pack(h, payload, KEY))
    index = data.draw(st.integers(0, len(d) - 1).filter(lambda i: i != TTL_OFFSET), label="byte")
    bit = data.draw(st.integers(0, 7), label="bit")
    d[index] ^= 1 << bit
    with pytest.raises(BackboneError) as err:
        unpack(d, KEY)
    expected = "magic" if index < 2 else "version" if index == 2 else "tag"
    assert err.value.reason == expected


@settings(max_examples=50, deadline=None)
@given(header_st, st.binary(max_size=64), st.integers(0, 255))
def test_ttl_is_not_covered_by_the_tag(h: BackboneHeader, payload: bytes, ttl: int) -> None:
    d = bytearray(pack(h, payload, KEY))
    d[TTL_OFFSET] = ttl
    got, body = unpack(d, KEY)
    assert got.ttl == ttl
    h.ttl = ttl
    assert got == h and body.tobytes() == payload


@settings(max_examples=100, deadline=None)
@given(header_st, st.binary(max_size=64), key_st)
def test_wrong_key_fails(h: BackboneHeader, payload: bytes, other: bytes) -> None:
    if other == KEY:
        return
    with pytest.raises(BackboneError) as err:
        unpack(pack(h, payload, KEY), other)
    assert err.value.reason == "tag"


@settings(max_examples=100, deadline=None)
@given(header_st, st.binary(min_size=1, max_size=64), st.data())
def test_truncated_or_extended_datagrams_fail(h: BackboneHeader, payload: bytes, data: st.DataObject) -> None:
    d = pack(h, payload, KEY)
    cut = data.draw(st.integers(0, len(d) - 1), label="cut")
    with pytest.raises(BackboneError) as err:
        unpack(d[:cut], KEY)
    assert err.value.reason == ("short" if cut < OVERHEAD else "tag")
    with pytest.raises(BackboneError) as err:
        unpack(d + b"\x00", KEY)
    assert err.value.reason == "tag"


@settings(max_examples=500, deadline=None)
@given(st.binary(max_size=80), st.booleans())
def test_random_bytes_only_raise_backbone_error(data: bytes, with_magic: bool) -> None:
    if with_magic:
        data = b"DU\x01" + data  # get past the cheap checks to the tag
    for form in (data, bytearray(data), memoryview(data)):
        try:
            unpack(form, KEY)
        except BackboneError as exc:
            assert exc.reason in {"short", "magic", "version", "tag", "type", "kind", "side"}
        else:  # pragma: no cover - a 2^-64 forgery
            pytest.fail("random bytes authenticated")


def test_odd_buffer_types_only_raise_backbone_error() -> None:
    import array

    d = pack(header(), b"abcd", KEY)
    strided = memoryview(d * 2)[::2]
    for weird in (memoryview(array.array("I", [1, 2, 3, 4, 5, 6, 7, 8])), strided, "not bytes", None, 42):
        with pytest.raises(BackboneError):
            unpack(weird, KEY)  # type: ignore[arg-type]
    # A non-byte memoryview over valid bytes is read as bytes.
    assert unpack(memoryview(d + b"\x00" * (-len(d) % 4)).cast("I").cast("B")[: len(d)], KEY)[0] == header()


@pytest.mark.parametrize(
    ("raw", "reason"),
    [
        (b"DU\x01\x00\x01\x00" + bytes(12), "type"),
        (b"DU\x01\x08\x01\x00" + bytes(12), "type"),
        (b"DU\x01\x01\x02\x00" + bytes(12), "kind"),
        (b"DU\x01\x01\x01\x02" + bytes(12), "side"),
    ],
)
def test_authentic_but_invalid_fields(raw: bytes, reason: str) -> None:
    with pytest.raises(BackboneError) as err:
        unpack(signed_datagram(raw, 3, b"x"), KEY)
    assert err.value.reason == reason
    assert isinstance(err.value, ValueError)


def test_version_and_magic_checked_before_tag() -> None:
    d = bytearray(pack(header(), b"x", KEY))
    d[2] = 2
    with pytest.raises(BackboneError, match="version"):
        unpack(d, KEY)
    with pytest.raises(BackboneError) as err:
        unpack(b"XX" + bytes(40), KEY)
    assert err.value.reason == "magic"


def test_pack_rejects_out_of_range_fields() -> None:
    for bad in (
        dict(dest_edge=0x10000),
        dict(src_edge=-1),
        dict(bridge_id=2**64),
        dict(side=2),
        dict(ttl=256),
        dict(ptype=9),
        dict(kind=2),
    ):
        h = header(**bad)
        with pytest.raises(ValueError):
            pack(h, b"", KEY)
        with pytest.raises(ValueError):
            pack_into(h, bytearray(OVERHEAD), KEY)


def test_decrement_ttl() -> None:
    d = bytearray(pack(header(ttl=3), b"media", KEY))
    assert decrement_ttl(d)
    assert unpack(d, KEY)[0].ttl == 2  # still authentic
    assert not decrement_ttl(bytearray(pack(header(ttl=1), b"", KEY)))  # reaches 0: drop
    zero = bytearray(pack(header(ttl=0), b"", KEY))
    assert not decrement_ttl(zero)
    assert zero[TTL_OFFSET] == 0  # never wraps to 255
    assert not decrement_ttl(bytearray(OVERHEAD - 1))


@settings(max_examples=50, deadline=None)
@given(header_st.filter(lambda h: h.ttl > 0), st.binary(max_size=32))
def test_relay_chain_is_bounded_by_ttl(h: BackboneHeader, payload: bytes) -> None:
    d = bytearray(pack(h, payload, KEY))
    relays = 0
    while decrement_ttl(d):
        relays += 1
        assert unpack(d, KEY)[0].ttl == h.ttl - relays
    assert relays == h.ttl - 1


def test_default_ttl_and_error_reason() -> None:
    assert BackboneHeader(PacketType.PROBE, 1, 2, 3, 0, StreamKind.AUDIO).ttl == DEFAULT_TTL
    err = BackboneError("tag")
    assert err.reason == "tag" and "tag" in str(err)


def test_bench_backbone_runs() -> None:
    pack_ns, unpack_ns = bench_backbone(200)
    assert pack_ns > 0 and unpack_ns > 0


def test_header_struct_field_order_matches_docstring() -> None:
    d = pack(header(dest_edge=513, src_edge=1027, bridge_id=1, side=0, kind=StreamKind.AUDIO, ttl=4), b"", KEY)
    assert struct.unpack_from("!2sBBBBHHQB", d) == (b"DU", 1, 1, 0, 0, 513, 1027, 1, 4)


def test_one_edge_number_range_from_topology_to_wire() -> None:
    """The highest number a topology accepts is the highest the header carries, and it round-trips."""
    from duet.edge.backbone_wire import EDGE_NUMBER_MAX
    from duet.routing.topology import MAX_EDGE_NUMBER, EdgeNode, Region, Topology

    assert MAX_EDGE_NUMBER == EDGE_NUMBER_MAX == 2**16 - 1
    Topology((Region("R", 0.0, 0.0),), (EdgeNode("top", MAX_EDGE_NUMBER, "R"),), ())  # valid
    h = header(dest_edge=MAX_EDGE_NUMBER, src_edge=MAX_EDGE_NUMBER)
    got, _ = unpack(pack(h, b"x", KEY), KEY)
    assert (got.dest_edge, got.src_edge) == (MAX_EDGE_NUMBER, MAX_EDGE_NUMBER)
    with pytest.raises(ValueError):
        pack(header(dest_edge=MAX_EDGE_NUMBER + 1), b"x", KEY)

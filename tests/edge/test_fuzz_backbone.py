"""Fuzzing the backbone's receive path: arbitrary and mutated datagrams never raise; each bad
one is dropped and counted once under a documented reason; good ones are delivered or relayed."""

from __future__ import annotations

import hmac
import struct
from typing import Any

from hypothesis import given, settings
from hypothesis import strategies as st

from duet.edge.backbone import Backbone, RouteEntry
from duet.edge.backbone_wire import (
    OVERHEAD,
    TTL_OFFSET,
    BackboneError,
    BackboneHeader,
    PacketType,
    StreamKind,
    decrement_ttl,
    pack,
    unpack,
)

KEY = b"fuzz-cluster-key"
THIS_EDGE, OTHER_EDGE = 2, 3
WIRE_REASONS = {"short", "magic", "version", "tag", "type", "kind", "side"}
RECEIVE_REASONS = {f"bad datagram: {r}" for r in WIRE_REASONS} | {"no route", "ttl expired"}

headers = st.builds(
    BackboneHeader,
    ptype=st.sampled_from(list(PacketType)),
    dest_edge=st.sampled_from([THIS_EDGE, OTHER_EDGE, 9]),  # this edge, one it routes to, one it does not
    src_edge=st.integers(0, 0xFFFF),
    bridge_id=st.integers(0, 2**64 - 1),
    side=st.integers(0, 1),
    kind=st.sampled_from(list(StreamKind)),
    ttl=st.integers(0, 255),
)


def signed(fields: tuple[Any, ...], ttl: int, payload: bytes, key: bytes = KEY) -> bytes:
    """A datagram built field by field and tagged with the key: authentic, whatever the fields say."""
    head = struct.pack("!2sBBBBHHQ", *fields)
    tag = hmac.digest(key, head + payload, "sha256")[:8]
    return head + bytes((ttl,)) + tag + payload


@st.composite
def datagrams(draw: st.DrawFn) -> bytes:
    """Arbitrary bytes, authentic datagrams (some with field values no edge sends), and damaged ones."""
    payload = draw(st.binary(max_size=40))
    how = draw(st.sampled_from(["arbitrary", "good", "fields", "flip", "cut", "extend", "key"]))
    if how == "arbitrary":
        return draw(st.binary(max_size=60))
    header = draw(headers)
    good = pack(header, payload, KEY)
    if how == "good":
        return good
    if how == "fields":  # signed with the right key, but a type, kind, side, magic or version no edge sends
        fields = [b"DU", 1, int(header.ptype), int(header.kind), header.side, header.dest_edge, header.src_edge, 7]
        at = draw(st.sampled_from([0, 1, 2, 3, 4]))
        fields[at] = draw(
            [
                st.sampled_from([b"DV", b"\0\0"]),
                st.integers(0, 255),
                st.integers(max(PacketType) + 1, 255),
                st.integers(2, 255),
                st.integers(2, 255),
            ][at]
        )
        return signed(tuple(fields), header.ttl, payload)
    buf = bytearray(good)
    if how == "flip":
        i = draw(st.integers(0, len(buf) - 1))
        buf[i] ^= 1 << draw(st.integers(0, 7))
    elif how == "cut":
        buf = buf[: draw(st.integers(0, len(buf) - 1))]
    elif how == "extend":
        buf += draw(st.binary(min_size=1, max_size=8))
    else:
        buf = bytearray(pack(header, payload, draw(st.binary(min_size=1, max_size=32).filter(lambda k: k != KEY))))
    return bytes(buf)


@settings(max_examples=300, deadline=None)
@given(datagram=datagrams(), as_type=st.sampled_from([bytes, bytearray, memoryview]))
def test_unpack_returns_or_raises_backbone_error_with_a_documented_reason(datagram: bytes, as_type: type) -> None:
    try:
        header, payload = unpack(as_type(datagram), KEY)
    except BackboneError as exc:
        assert exc.reason in WIRE_REASONS
        return
    # Accepted only when the key signed exactly these bytes.
    assert hmac.compare_digest(
        hmac.digest(KEY, datagram[:TTL_OFFSET] + datagram[OVERHEAD:], "sha256")[:8], datagram[TTL_OFFSET + 1 : OVERHEAD]
    )
    assert bytes(payload) == datagram[OVERHEAD:] and header.side in (0, 1)


@settings(max_examples=200, deadline=None)
@given(buf=st.binary(max_size=40))
def test_decrement_ttl_never_raises(buf: bytes) -> None:
    ba = bytearray(buf)
    forward = decrement_ttl(ba)
    if len(buf) < OVERHEAD:
        assert not forward and ba == buf
    else:
        assert forward == (buf[TTL_OFFSET] > 1)


class _Transport:
    """Stands in for the UDP socket: records what the backbone sends."""

    def __init__(self) -> None:
        self.sent: list[tuple[bytes, Any]] = []

    def sendto(self, data: bytes, addr: Any) -> None:
        self.sent.append((bytes(data), addr))

    def close(self) -> None:
        pass


@settings(max_examples=250, deadline=None)
@given(batch=st.lists(datagrams(), min_size=1, max_size=6))
def test_receiving_never_raises_and_counts_each_drop_once_by_reason(batch: list[bytes]) -> None:
    delivered: list[tuple[BackboneHeader, bytes]] = []
    backbone = Backbone(THIS_EDGE, KEY, lambda h, p: delivered.append((h, bytes(p))))
    backbone.routes.replace(1, [RouteEntry("other", OTHER_EDGE, "other", ("127.0.0.1", 9), 10.0)])
    transport = _Transport()
    backbone.connection_made(transport)  # type: ignore[arg-type]
    replies: list[tuple[int, int]] = []
    backbone.on_probe_reply = lambda src, number: replies.append((src, number))
    probes = 0

    for i, datagram in enumerate(batch):
        before = sum(backbone.counters.dropped.values())
        backbone.datagram_received(datagram, ("127.0.0.1", 1000 + i))
        drops = sum(backbone.counters.dropped.values()) - before
        try:
            header, _ = unpack(datagram, KEY)
        except BackboneError as exc:
            assert drops == 1 and backbone.counters.dropped.get(f"bad datagram: {exc.reason}", 0) >= 1
            continue
        if header.dest_edge == THIS_EDGE and header.ptype is PacketType.PROBE:
            # Answered at once, to the address it came from, with its number.
            probes += 1
            answer, to = transport.sent[-1]
            reply, _ = unpack(answer, KEY)
            assert drops == 0 and to == ("127.0.0.1", 1000 + i)
            assert (reply.ptype, reply.dest_edge, reply.src_edge, reply.bridge_id) == (
                PacketType.PROBE_REPLY,
                header.src_edge,
                THIS_EDGE,
                header.bridge_id,
            )
        elif header.dest_edge == THIS_EDGE and header.ptype is PacketType.PROBE_REPLY:
            probes += 1
            assert drops == 0 and replies[-1] == (header.src_edge, header.bridge_id)
        elif header.dest_edge == THIS_EDGE:
            assert drops == 0 and delivered[-1] == (header, datagram[OVERHEAD:])
        elif header.dest_edge == OTHER_EDGE and header.ttl > 1:
            assert drops == 0 and transport.sent[-1] == (
                datagram[:TTL_OFFSET] + bytes((header.ttl - 1,)) + datagram[TTL_OFFSET + 1 :],
                ("127.0.0.1", 9),
            )
        else:
            assert drops == 1  # no route, or the TTL ran out

    assert set(backbone.counters.dropped) <= RECEIVE_REASONS
    assert backbone.counters.packets_in == len(delivered) + probes + backbone.counters.packets_relayed + sum(
        backbone.counters.dropped.get(r, 0) for r in ("no route", "ttl expired")
    )

"""Walking compound RTCP: every well-formed part in order, nothing after a malformed one."""

from __future__ import annotations

import struct

from hypothesis import given
from hypothesis import strategies as st

from duet.edge.rtcp import rtcp_parts


def part(ptype: int, fmt: int, body: bytes, pad: int = 0) -> bytes:
    padding = bytes(pad - 1) + bytes([pad]) if pad else b""
    words = (len(body) + len(padding)) // 4
    return struct.pack("!BBH", 0x80 | (0x20 if pad else 0) | fmt, ptype, words) + body + padding


def test_parts_in_order_with_padding_removed_and_stop_at_a_malformed_one() -> None:
    rr = part(201, 0, bytes(4))
    pli = part(206, 1, bytes(8), pad=4)
    broken = struct.pack("!BBH", 0x80, 205, 9) + bytes(4)  # claims 36 bytes, has 4
    after = part(206, 1, bytes(8))
    parts = list(rtcp_parts(rr + pli + broken + after))
    assert [(p.ptype, p.fmt, len(p.data)) for p in parts] == [(201, 0, 8), (206, 1, 12)]


@given(st.binary(max_size=120))
def test_never_raises_and_parts_stay_inside_the_packet(data: bytes) -> None:
    total = 0
    for p in rtcp_parts(data):
        assert data.find(p.data) >= 0 and p.data[0] & 0xC0 == 0x80
        total += len(p.data)
    assert total <= len(data)

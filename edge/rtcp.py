"""Walking a compound RTCP packet (RFC 3550 section 6.1), for the edge's feedback parsers.

Keyframe requests, NACKs and REMBs each read one kind of part; they share
this walk so each checks the same things: version 2, a length that stays
inside the packet, and a padding count that fits. Parsing stops at the first
malformed part: what came before it is still used.
"""

from __future__ import annotations

import struct
from collections.abc import Iterator
from dataclasses import dataclass

__all__ = ["RtcpPart", "rtcp_parts"]

_HEADER = struct.Struct("!BBH")


@dataclass(frozen=True, slots=True)
class RtcpPart:
    """One part of a compound packet: its type, its count/format field, and its bytes without padding."""

    ptype: int
    fmt: int  # the 5-bit count (RR, SR, SDES, BYE) or format (feedback) field
    data: bytes  # the whole part, header included, padding removed


def rtcp_parts(rtcp: bytes | bytearray | memoryview) -> Iterator[RtcpPart]:
    """The parts of a compound RTCP packet, in order, until the first malformed one. Never raises."""
    try:
        buf = bytes(rtcp)
    except Exception:  # not a buffer at all
        return
    n = len(buf)
    pos = 0
    while pos + 4 <= n:
        b0, ptype, words = _HEADER.unpack_from(buf, pos)
        end = pos + 4 + (words << 2)
        if b0 & 0xC0 != 0x80 or end > n:
            return
        body_end = end
        if b0 & 0x20:  # padding: the count is the part's last byte
            pad = buf[end - 1]
            if pad == 0 or pad > words << 2:
                return
            body_end -= pad
        yield RtcpPart(ptype, b0 & 0x1F, buf[pos:body_end])
        pos = end

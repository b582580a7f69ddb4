"""Bandwidth feedback between the two clients of a call: a receiver's REMB reaches the sender.

A sender only slows down when it learns the path is full. libwebrtc and
aiortc receivers estimate the bitrate they can take from the arrival times
of the packets (abs-send-time, which edges carry through) and report it as
REMB (draft-alvestrand-rmcat-remb: RTCP PSFB FMT=15, "REMB", the estimate
as a 6-bit exponent and 18-bit mantissa, and the SSRCs it applies to). The
receiver sends it to its edge, about the SSRC that edge sends on; the edge
passes the bitrate to the sender's edge, which tells its client in a REMB
about the client's own SSRC. The estimate covers the whole path (sender's
last mile, backbone, receiver's last mile), since the receiver measured what
arrived. transport-cc is not relayed: aiortc does not negotiate it.

Pure and transport-free: bytes in, bytes out.
"""

from __future__ import annotations

import struct

__all__ = ["MAX_BITRATE", "build_remb", "parse_rembs"]

_RTCP_PSFB = 206
_PSFB_AFB = 15  # application layer feedback; REMB is the one carrying "REMB"
_RTCP_HEADER = struct.Struct("!BBH")
_HEAD = struct.Struct("!BBHII")
MAX_BITRATE = 0x3FFFF << 63  # what 18 bits of mantissa and 6 of exponent can say


def parse_rembs(rtcp: bytes | bytearray | memoryview) -> list[tuple[int, list[int]]]:
    """(bitrate in bit/s, SSRCs) of each REMB in a compound RTCP packet. Never raises."""
    found: list[tuple[int, list[int]]] = []
    try:
        n = len(rtcp)
        pos = 0
        while pos + 4 <= n:
            b0, ptype, words = _RTCP_HEADER.unpack_from(rtcp, pos)
            end = pos + 4 + (words << 2)
            if b0 & 0xC0 != 0x80 or end > n:
                break
            if (
                ptype == _RTCP_PSFB
                and b0 & 0x1F == _PSFB_AFB
                and end - pos >= 20
                and rtcp[pos + 12 : pos + 16] == b"REMB"
            ):
                count = rtcp[pos + 16]
                exponent = rtcp[pos + 17] >> 2
                mantissa = ((rtcp[pos + 17] & 0x03) << 16) | (rtcp[pos + 18] << 8) | rtcp[pos + 19]
                if pos + 20 + 4 * count <= end:
                    ssrcs = [int.from_bytes(rtcp[pos + 20 + 4 * i : pos + 24 + 4 * i], "big") for i in range(count)]
                    found.append((mantissa << exponent, ssrcs))
            pos = end
    except Exception:  # never let odd input (or an odd buffer type) escape the RTCP handler
        pass
    return found


def build_remb(sender_ssrc: int, bitrate: int, ssrcs: list[int]) -> bytes:
    """A REMB telling the holder of ``ssrcs`` it may send up to ``bitrate`` bit/s."""
    bitrate = max(0, min(bitrate, MAX_BITRATE))
    exponent = 0
    while bitrate >> exponent > 0x3FFFF:
        exponent += 1
    mantissa = bitrate >> exponent
    fci = b"REMB" + bytes((len(ssrcs), (exponent << 2) | (mantissa >> 16), (mantissa >> 8) & 0xFF, mantissa & 0xFF))
    fci += b"".join(struct.pack("!I", s & 0xFFFFFFFF) for s in ssrcs)
    words = 2 + len(fci) // 4
    return _HEAD.pack(0x80 | _PSFB_AFB, _RTCP_PSFB, words, sender_ssrc & 0xFFFFFFFF, 0) + fci

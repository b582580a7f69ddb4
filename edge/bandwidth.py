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

from duet.edge.rtcp import rtcp_parts

__all__ = ["MAX_BITRATE", "build_remb", "parse_rembs"]

_RTCP_PSFB = 206
_PSFB_AFB = 15  # application layer feedback; REMB is the one carrying "REMB"
_HEAD = struct.Struct("!BBHII")
MAX_BITRATE = 0x3FFFF << 63  # what 18 bits of mantissa and 6 of exponent can say


def parse_rembs(rtcp: bytes | bytearray | memoryview) -> list[tuple[int, list[int]]]:
    """(bitrate in bit/s, SSRCs) of each REMB in a compound RTCP packet. Never raises."""
    found: list[tuple[int, list[int]]] = []
    for part in rtcp_parts(rtcp):
        data = part.data
        if part.ptype != _RTCP_PSFB or part.fmt != _PSFB_AFB or len(data) < 20 or data[12:16] != b"REMB":
            continue
        count, exponent = data[16], data[17] >> 2
        mantissa = ((data[17] & 0x03) << 16) | (data[18] << 8) | data[19]
        if 20 + 4 * count <= len(data):
            ssrcs = [int.from_bytes(data[20 + 4 * i : 24 + 4 * i], "big") for i in range(count)]
            found.append((mantissa << exponent, ssrcs))
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

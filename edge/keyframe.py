"""Recognising the start of a VP8 keyframe in an RTP packet, without decoding.

After a bridge or a "next", the receiver can decode nothing until a keyframe
arrives; inter frames forwarded before it only produce decode errors. The edge
therefore holds a new partner's video back until a keyframe starts (RFC 7741
payload descriptor: S=1, PID=0, then the VP8 payload header's P bit is 0).
"""

from __future__ import annotations

from duet.edge.rtp_rewrite import rtp_header_length


def is_vp8_keyframe_start(buf: bytes | bytearray | memoryview, offset: int = 0) -> bool:
    """True when this RTP packet carries the first bytes of a VP8 keyframe."""
    header = rtp_header_length(buf, offset)
    if header < 0:
        return False
    i = offset + header
    end = len(buf)
    if buf[offset] & 0x20:  # RTP padding: the last byte counts padding bytes
        end -= buf[end - 1]
    if i >= end:
        return False
    first = buf[i]
    if not first & 0x10 or first & 0x07:  # S (start of partition) and PID == 0
        return False
    i += 1
    if first & 0x80:  # X: extension byte follows
        if i >= end:
            return False
        ext = buf[i]
        i += 1
        if ext & 0x80:  # I: PictureID, 7 or 15 bits
            if i >= end:
                return False
            i += 2 if buf[i] & 0x80 else 1
        if ext & 0x40:  # L: TL0PICIDX
            i += 1
        if ext & 0x30:  # T or K: TID/Y/KEYIDX
            i += 1
    if i >= end:
        return False
    return not buf[i] & 0x01  # VP8 payload header: P = 0 means keyframe

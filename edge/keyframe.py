"""Recognising the start of a keyframe in an RTP packet, without decoding.

After a bridge or a "next", the receiver can decode nothing until a keyframe
arrives; inter frames forwarded before it only produce decode errors. The edge
therefore holds a new partner's video back until a keyframe starts:

- VP8 (RFC 7741): payload descriptor S=1, PID=0, then the VP8 payload header's
  P bit is 0;
- H.264 (RFC 6184): a sequence parameter set or an IDR slice starts, alone, in
  an aggregation packet (STAP-A) or as the first fragment of an FU-A.

Packets on the backbone carry backbone payload types
(``edge.payload_types``), which say which rule applies.
"""

from __future__ import annotations

from duet.edge.payload_types import codec_by_backbone_pt
from duet.edge.rtp_rewrite import rtp_payload_bounds

_H264_IDR = 5
_H264_SPS = 7
_H264_STAP_A = 24
_H264_FU_A = 28


def is_keyframe_start(buf: bytes | bytearray | memoryview, offset: int = 0) -> bool:
    """True when this RTP packet (in backbone payload types) starts a keyframe."""
    if len(buf) - offset < 12:
        return False
    return starts_keyframe_as(buf[offset + 1] & 0x7F, buf, offset)


def starts_keyframe_as(backbone_pt: int, buf: bytes | bytearray | memoryview, offset: int = 0) -> bool:
    """True when this RTP packet starts a keyframe of the codec ``backbone_pt`` stands for.

    For packets still in a client's payload types (the leg maps the number first).
    """
    codec = codec_by_backbone_pt(backbone_pt)
    if codec is None:
        return False
    name = codec.name
    if name == "VP8":
        return is_vp8_keyframe_start(buf, offset)
    if name.startswith("H264"):
        return is_h264_keyframe_start(buf, offset)
    return False


def is_h264_keyframe_start(buf: bytes | bytearray | memoryview, offset: int = 0) -> bool:
    """True when this RTP packet carries an H.264 SPS or the start of an IDR slice."""
    bounds = rtp_payload_bounds(buf, offset)
    if bounds is None or bounds[0] >= bounds[1]:
        return False
    i, end = bounds
    nal_type = buf[i] & 0x1F
    if nal_type in (_H264_IDR, _H264_SPS):
        return True
    if nal_type == _H264_FU_A:
        if i + 1 >= end:
            return False
        fu = buf[i + 1]
        return bool(fu & 0x80) and (fu & 0x1F) in (_H264_IDR, _H264_SPS)
    if nal_type == _H264_STAP_A:
        i += 1
        while i + 2 < end:
            size = (buf[i] << 8) | buf[i + 1]
            if size == 0 or i + 2 + size > end:
                return False
            if buf[i + 2] & 0x1F in (_H264_IDR, _H264_SPS):
                return True
            i += 2 + size
    return False


def is_vp8_keyframe_start(buf: bytes | bytearray | memoryview, offset: int = 0) -> bool:
    """True when this RTP packet carries the first bytes of a VP8 keyframe."""
    bounds = rtp_payload_bounds(buf, offset)
    if bounds is None or bounds[0] >= bounds[1]:
        return False
    i, end = bounds
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

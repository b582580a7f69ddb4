"""Loss recovery at the edge: NACKs answered from what a leg sent, and repairs asked upstream.

A receiver that lost a packet sends a generic NACK (RFC 4585 RTPFB FMT=1)
naming it. The edge that feeds that receiver keeps the packets it sent into
the leg (``SentHistory``, in the leg's own numbering) and answers at once:
as RTX (RFC 4588) when the leg negotiated it, else by sending the packet
again. What it does not hold was lost before it reached this edge: the
numbers are translated into the sender's and the sender is asked
(``build_nack``) through its own edge, which lets the client's RTX answer
through (``UpstreamRequests``), turned back into the original packet
(``unwrap_rtx``); from there it travels as the media it repairs.

Pure and transport-free: bytes in, bytes out.
"""

from __future__ import annotations

import struct
from dataclasses import dataclass, field

from duet.edge.rtcp import rtcp_parts
from duet.edge.rtp_rewrite import rtp_payload_bounds

__all__ = [
    "HISTORY_PACKETS",
    "RESEND_GUARD_S",
    "SentHistory",
    "UpstreamRequests",
    "build_nack",
    "build_rtx",
    "parse_nacks",
    "unwrap_rtx",
]

_RTCP_RTPFB = 205
_RTPFB_NACK = 1
_U32 = struct.Struct("!I")
_NACK_HEAD = struct.Struct("!BBHII")
_FCI = struct.Struct("!HH")
_RTP_FIXED = struct.Struct("!BBHII")

# ~5 s of 1 Mbit/s video: more than any receiver's NACK horizon (libwebrtc gives up on a
# packet after about 1 s), a power of two so the slot is seq & mask.
HISTORY_PACKETS = 512
# A receiver repeats its NACK until the packet arrives; one answer per RTT is enough. Loopback
# RTTs are well under this; a repeat after it is answered again (the first answer was lost).
RESEND_GUARD_S = 0.05


def parse_nacks(rtcp: bytes | bytearray | memoryview) -> dict[int, list[int]]:
    """Sequence numbers asked for by the generic NACKs in a compound RTCP packet, by media SSRC.

    Never raises: parsing stops at the first malformed part and what was found
    before it is returned. Each number appears once per SSRC, in order.
    """
    found: dict[int, list[int]] = {}
    for part in rtcp_parts(rtcp):
        if part.ptype != _RTCP_RTPFB or part.fmt != _RTPFB_NACK or len(part.data) < 12:
            continue
        seqs = found.setdefault(_U32.unpack_from(part.data, 8)[0], [])
        for entry in range(12, len(part.data) - 3, 4):
            pid, blp = _FCI.unpack_from(part.data, entry)
            for seq in [pid] + [(pid + d + 1) & 0xFFFF for d in range(16) if blp >> d & 1]:
                if seq not in seqs:
                    seqs.append(seq)
    return {ssrc: seqs for ssrc, seqs in found.items() if seqs}


def build_nack(sender_ssrc: int, media_ssrc: int, seqs: list[int]) -> bytes:
    """A generic NACK naming ``seqs`` (any order), packed into as few PID+BLP entries as they allow."""
    fci = b""
    pending = sorted({s & 0xFFFF for s in seqs})
    while pending:
        pid = pending.pop(0)
        blp = 0
        while pending and 0 < (pending[0] - pid) & 0xFFFF <= 16:
            blp |= 1 << (((pending.pop(0) - pid) & 0xFFFF) - 1)
        fci += _FCI.pack(pid, blp)
    words = 2 + len(fci) // 4
    return _NACK_HEAD.pack(0x80 | _RTPFB_NACK, _RTCP_RTPFB, words, sender_ssrc, media_ssrc) + fci


def build_rtx(packet: bytes | bytearray, rtx_pt: int, rtx_ssrc: int, rtx_seq: int) -> bytes | None:
    """The RTX packet (RFC 4588) repairing ``packet``: same timestamp, marker, CSRCs and extensions,
    payload prefixed with the original sequence number, padding dropped. None if not RTP."""
    bounds = rtp_payload_bounds(packet)
    if bounds is None:
        return None
    hlen, end = bounds
    b0, b1, seq, ts, _ = _RTP_FIXED.unpack_from(packet, 0)
    head = _RTP_FIXED.pack(b0 & ~0x20 & 0xFF, (b1 & 0x80) | rtx_pt, rtx_seq & 0xFFFF, ts, rtx_ssrc)
    return head + bytes(packet[12:hlen]) + struct.pack("!H", seq) + bytes(packet[hlen:end])


def unwrap_rtx(packet: bytes | bytearray, media_pt: int, media_ssrc: int) -> bytes | None:
    """The original packet an RTX packet carries (its number, the media SSRC and payload type);
    None when not RTP or with no original sequence number (padding only)."""
    bounds = rtp_payload_bounds(packet)
    if bounds is None:
        return None
    hlen, end = bounds
    if end - hlen < 2:
        return None
    b0, b1, _, ts, _ = _RTP_FIXED.unpack_from(packet, 0)
    original = (packet[hlen] << 8) | packet[hlen + 1]
    head = _RTP_FIXED.pack(b0 & ~0x20 & 0xFF, (b1 & 0x80) | media_pt, original, ts, media_ssrc)
    return head + bytes(packet[12:hlen]) + bytes(packet[hlen + 2 : end])


@dataclass
class SentHistory:
    """The last HISTORY_PACKETS packets sent into a leg, by their (leg) sequence number."""

    size: int = HISTORY_PACKETS
    # Three parallel rings rather than a tuple per packet: a slot's packet lives a few seconds, long enough
    # for a tuple to reach the collector's oldest generation and, dying there, to bring on full
    # collections (pauses that hold every packet of the edge); ints, floats and bytes are not tracked.
    _seqs: list[int] = field(init=False, repr=False)  # -1: empty
    _packets: list[bytes] = field(init=False, repr=False)
    _resent: list[float] = field(init=False, repr=False)  # when last sent again
    _mask: int = field(init=False, repr=False)

    def __post_init__(self) -> None:
        if self.size <= 0 or self.size & (self.size - 1):
            raise ValueError(f"history size must be a power of two, got {self.size}")
        self._seqs = [-1] * self.size
        self._packets = [b""] * self.size
        self._resent = [-RESEND_GUARD_S] * self.size
        self._mask = self.size - 1

    def add(self, seq: int, packet: bytes) -> None:
        slot = seq & self._mask
        self._seqs[slot] = seq
        self._packets[slot] = packet
        self._resent[slot] = -RESEND_GUARD_S

    def get(self, seq: int) -> bytes | None:
        """The packet sent under ``seq``, if still held."""
        slot = seq & self._mask
        return self._packets[slot] if self._seqs[slot] == seq else None

    def for_resend(self, seq: int, now: float) -> bytes | bool | None:
        """The packet to send again; None if not held; False if it was resent less than RESEND_GUARD_S ago."""
        slot = seq & self._mask
        if self._seqs[slot] != seq:
            return None
        if now - self._resent[slot] < RESEND_GUARD_S:
            return False
        self._resent[slot] = now
        return self._packets[slot]


@dataclass
class UpstreamRequests:
    """Packets this edge asked its client to resend (client numbering), so their RTX may pass.

    A request is good for ``ttl_s``; asking again for a number already asked
    within ``guard_s`` is suppressed (receivers repeat their NACKs).
    """

    ttl_s: float = 1.0
    guard_s: float = RESEND_GUARD_S
    _asked: dict[int, float] = field(default_factory=dict, repr=False)

    def ask(self, seqs: list[int], now: float) -> list[int]:
        """Of ``seqs``, those to ask for now."""
        if len(self._asked) > 4 * HISTORY_PACKETS:
            self._asked = {s: t for s, t in self._asked.items() if now - t < self.ttl_s}
        fresh = [s for s in seqs if now - self._asked.get(s, -1e9) >= self.guard_s]
        for s in fresh:
            self._asked[s] = now
        return fresh

    def answered(self, seq: int, now: float) -> bool:
        """True (once) when ``seq`` was asked for within ttl_s: its repair may pass."""
        asked = self._asked.pop(seq, None)
        return asked is not None and now - asked < self.ttl_s

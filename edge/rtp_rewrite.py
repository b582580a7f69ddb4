"""In-place RTP header rewriting and RTCP keyframe-request helpers for the edge.

The edge forwards a client's RTP (SRTP-decrypted, never decoded) to the
partner's leg. That leg's sender announced its own SSRC and negotiated its own
payload type, and its receiver must see one continuous stream even when the
partner behind it changes ("next"). ``StreamRewriter`` patches SSRC, payload
type, sequence number and timestamp directly in the packet buffer: this is the
media hot path, so no packet object is built and nothing is re-serialised
(aiortc's ``RtpPacket`` costs several microseconds and a few allocations per
packet).

Pure and transport-free: bytes in, bytes out.
"""

from __future__ import annotations

import secrets
import struct
import time
from dataclasses import dataclass, field

from duet.edge.rtcp import rtcp_parts

__all__ = [
    "StreamRewriter",
    "bench_rewrite",
    "build_fir",
    "build_pli",
    "is_rtp",
    "parse_keyframe_requests",
    "rtp_header_length",
    "rtp_payload_bounds",
    "rtp_ssrc",
]

_M16 = 0xFFFF
_M32 = 0xFFFFFFFF
_HALF16 = 0x8000
_HALF32 = 0x80000000

# byte 0 (V/P/X/CC) and 1 (M/PT), sequence number, timestamp, SSRC.
_RTP_FIXED = struct.Struct("!BBHII")
# Everything rewritten, written in one call starting at byte 1: M/PT, seq, ts, SSRC.
_RTP_REWRITE = struct.Struct("!BHII")
_U32 = struct.Struct("!I")
_U16 = struct.Struct("!H")

# The re-anchor timestamp step is never smaller than this: one 20 ms audio frame,
# a little under one 30 fps video frame. Receivers then never see two sources'
# frames share a timestamp, even when "next" happens between two packets.
MIN_SWITCH_GAP_S = 0.020
# ...and never 2^31 ticks or more, which serial-number arithmetic (RFC 1982) would
# read as a step backwards (at 90 kHz that is an idle gap of ~6.6 hours).
_MAX_TS_STEP = _HALF32 - 1


def rtp_header_length(buf: bytes | bytearray | memoryview, offset: int = 0) -> int:
    """Length of the RTP header (fixed + CSRCs + extension) at ``buf[offset:]``, or -1.

    -1 when the bytes are not a well-formed RTP v2 packet running to the end of
    ``buf``: too short for the fixed header, the CSRC list or the extension,
    version != 2, invalid padding count, or a second byte in 192..223, which
    RFC 5761 reserves for RTCP on a muxed port. The checks match
    ``aiortc.rtp.RtpPacket.parse`` for everything outside the extension block;
    the elements inside it are not looked at (aiortc refuses a packet whose
    element runs past the block): the edge rebuilds every block with
    ``duet.edge.header_extensions.ExtensionRewriter`` before a packet leaves.
    """
    n = len(buf) - offset
    if offset < 0 or n < 12:
        return -1
    b0 = buf[offset]
    if b0 & 0xC0 != 0x80:
        return -1
    if 192 <= buf[offset + 1] <= 223:
        return -1
    hlen = 12 + ((b0 & 0x0F) << 2)
    if b0 & 0x10:
        if n < hlen + 4:
            return -1
        x = offset + hlen
        hlen += 4 + (((buf[x + 2] << 8) | buf[x + 3]) << 2)
    if n < hlen:
        return -1
    if b0 & 0x20:
        pad = buf[-1]  # padding count: last byte of the packet, which ends with buf
        if pad == 0 or pad > n - hlen:
            return -1
    return hlen


def rtp_payload_bounds(buf: bytes | bytearray | memoryview, offset: int = 0) -> tuple[int, int] | None:
    """(start, end) of the payload of the RTP packet at ``buf[offset:]``, padding excluded; None
    when it is not well-formed RTP (see ``rtp_header_length``). The payload may be empty."""
    header = rtp_header_length(buf, offset)
    if header < 0:
        return None
    end = len(buf)
    if buf[offset] & 0x20:  # RTP padding: the last byte counts padding bytes
        end -= buf[end - 1]
    return offset + header, end


def is_rtp(buf: bytes | bytearray | memoryview, offset: int = 0) -> bool:
    """True if ``buf[offset:]`` is a well-formed RTP v2 packet (see ``rtp_header_length``)."""
    return rtp_header_length(buf, offset) >= 0


def rtp_ssrc(buf: bytes | bytearray | memoryview, offset: int = 0) -> int:
    """SSRC of the RTP packet at ``buf[offset:]``; ValueError if under 12 bytes.

    Does not validate the rest of the header: call ``is_rtp`` first if unsure.
    """
    if offset < 0 or len(buf) - offset < 12:
        raise ValueError("RTP packet shorter than the 12-byte fixed header")
    ssrc: int = _U32.unpack_from(buf, offset + 8)[0]
    return ssrc


@dataclass(slots=True)
class StreamRewriter:
    """Maps the RTP of whichever source currently feeds a leg onto that leg's stream.

    One rewriter per outgoing leg and media kind. Per source (incoming SSRC) the
    mapping is a constant offset on sequence number (mod 2^16) and timestamp
    (mod 2^32), so loss, reordering and frame structure within a source reach the
    receiver exactly as sent.

    Re-anchoring: the first packet of a new source (an incoming SSRC different
    from the previous packet's, or the first after ``switch_source()``) gets
    output seq = highest output seq + 1 and output ts = highest output ts +
    max(MIN_SWITCH_GAP_S, wall time elapsed since that highest ts was first sent)
    x clock_rate. The receiver's jitter buffer and RTCP statistics thus see one
    stream with a short pause, not a restart. "Highest" is in serial-number
    order, which equals "last" for in-order input and avoids reusing numbers
    when the packet before a switch arrived out of order.

    The first packet ever is mapped onto ``initial_seq`` / ``initial_ts``,
    random by default (RFC 3550 section 5.1 random initial values), not the
    source's own values: a leg's output must not reveal or depend on which
    client happened to come first. Pass them explicitly to match an existing
    sender state or for reproducible tests.

    Packets of a previous source that arrive after the switch re-anchor again
    (their SSRC differs from the last one); the bridge must stop forwarding a
    source before it switches, and ``switch_source()`` should be called then.
    A packet of the new source that is older than its first one (reordered
    across the switch) maps below the anchor and the receiver treats it as
    late; it is still forwarded.
    """

    ssrc: int  # SSRC announced by the edge on the outgoing leg
    payload_type: int  # payload type negotiated on the outgoing leg
    clock_rate: int  # 90000 video, 48000 audio
    initial_seq: int | None = None  # first output sequence number; random if None
    initial_ts: int | None = None  # first output timestamp; random if None

    # Counters (read freely; reset by nobody).
    packets_rewritten: int = field(default=0, init=False)
    packets_rejected: int = field(default=0, init=False)  # not RTP: left untouched
    sources_seen: int = field(default=0, init=False)  # re-anchors, including the first packet

    _in_ssrc: int = field(default=-1, init=False, repr=False)  # -1: next packet re-anchors
    _seq_off: int = field(default=0, init=False, repr=False)
    _ts_off: int = field(default=0, init=False, repr=False)
    _hi_seq: int = field(default=0, init=False, repr=False)
    _first_seq: int = field(default=0, init=False, repr=False)  # output seq of the current source's first packet
    _hi_ts: int = field(default=0, init=False, repr=False)
    _hi_time: float = field(default=0.0, init=False, repr=False)  # when _hi_ts was first sent
    _min_step: int = field(default=0, init=False, repr=False)

    def __post_init__(self) -> None:
        if not 0 <= self.ssrc <= _M32:
            raise ValueError(f"ssrc {self.ssrc} is not a 32-bit unsigned integer")
        if not 0 <= self.payload_type <= 127:
            raise ValueError(f"payload type {self.payload_type} is not in 0..127")
        if self.clock_rate <= 0:
            raise ValueError(f"clock rate {self.clock_rate} must be positive")
        if self.initial_seq is None:
            self.initial_seq = secrets.randbits(16)
        if self.initial_ts is None:
            self.initial_ts = secrets.randbits(32)
        self.initial_seq &= _M16
        self.initial_ts &= _M32
        self._min_step = max(1, int(self.clock_rate * MIN_SWITCH_GAP_S))

    @property
    def last_seq(self) -> int:
        """Highest output sequence number so far (``initial_seq - 1`` before any packet)."""
        return self._hi_seq if self.sources_seen else (self.initial_seq - 1) & _M16  # type: ignore[operator]

    @property
    def last_timestamp(self) -> int:
        """Highest output timestamp so far (``initial_ts`` before any packet)."""
        return self._hi_ts if self.sources_seen else self.initial_ts  # type: ignore[return-value]

    def switch_source(self) -> None:
        """The partner changed: the next packet re-anchors even if its SSRC is the old one."""
        self._in_ssrc = -1

    def output_seq(self, seq: int) -> int | None:
        """The number this leg gave the current source's packet ``seq``; None if it cannot have sent it.

        An RTX packet names the packet it repairs by its original sequence
        number; the receiver knows that packet by its rewritten one. A number
        before the source's first packet on this leg, or past its highest, was
        never sent here (libwebrtc re-sends old packets over RTX as bandwidth
        probes, including ones the edge held back before a keyframe): the
        receiver must not get those.
        """
        if not self.sources_seen:
            return None
        out = (seq + self._seq_off) & _M16
        if (out - self._first_seq) & _M16 > (self._hi_seq - self._first_seq) & _M16:
            return None
        return out

    def input_seq(self, out: int) -> int | None:
        """The current source's own number for this leg's packet ``out``; None if not sent here."""
        if not self.sources_seen or (out - self._first_seq) & _M16 > (self._hi_seq - self._first_seq) & _M16:
            return None
        return (out - self._seq_off) & _M16

    def rewrite(self, buf: bytearray, offset: int = 0, now: float | None = None, payload_type: int = -1) -> bool:
        """Rewrite the RTP packet at ``buf[offset:]`` in place for this leg.

        Sets SSRC and payload type (``payload_type`` when given, else the
        rewriter's; the marker bit is kept) and maps sequence number and
        timestamp; CSRCs, extensions, payload and padding are not touched. Returns False, leaving ``buf`` unchanged, if it is not a
        well-formed RTP v2 packet. ``now`` (seconds, monotonic) defaults to
        ``time.monotonic()`` and is only read when a timestamp advances or a
        source changes.
        """
        # Validation inlined (same rules as rtp_header_length) and masks written as
        # literals: this runs per packet, and each global lookup costs.
        n = len(buf) - offset
        if n < 12 or offset < 0:
            self.packets_rejected += 1
            return False
        b0, b1, seq, ts, ssrc = _RTP_FIXED.unpack_from(buf, offset)
        if b0 & 0xC0 != 0x80 or 192 <= b1 <= 223:
            self.packets_rejected += 1
            return False
        if b0 & 0x3F:  # padding, extension or CSRCs: check they fit
            hlen = 12 + ((b0 & 0x0F) << 2)
            if b0 & 0x10:
                if n < hlen + 4:
                    self.packets_rejected += 1
                    return False
                x = offset + hlen
                hlen += 4 + (((buf[x + 2] << 8) | buf[x + 3]) << 2)
            if n < hlen or (b0 & 0x20 and not 0 < buf[-1] <= n - hlen):
                self.packets_rejected += 1
                return False
        if ssrc != self._in_ssrc:
            if now is None:
                now = time.monotonic()
            self._anchor(ssrc, seq, ts, now)
        out_seq = (seq + self._seq_off) & 0xFFFF
        out_ts = (ts + self._ts_off) & 0xFFFFFFFF
        if payload_type < 0:
            payload_type = self.payload_type
        _RTP_REWRITE.pack_into(buf, offset + 1, (b1 & 0x80) | payload_type, out_seq, out_ts, self.ssrc)
        if (out_seq - self._hi_seq) & 0xFFFF < 0x8000:
            self._hi_seq = out_seq
        d = (out_ts - self._hi_ts) & 0xFFFFFFFF
        if 0 < d < 0x80000000:
            # Remember when this timestamp was first sent: a later re-anchor adds the
            # wall time elapsed since then, like a sender whose clock kept running.
            self._hi_ts = out_ts
            self._hi_time = time.monotonic() if now is None else now
        self.packets_rewritten += 1
        return True

    def _anchor(self, ssrc: int, seq: int, ts: int, now: float) -> None:
        if self.sources_seen:
            out_seq = (self._hi_seq + 1) & _M16
            step = int((now - self._hi_time) * self.clock_rate)
            step = min(max(step, self._min_step), _MAX_TS_STEP)
            out_ts = (self._hi_ts + step) & _M32
        else:
            out_seq = self.initial_seq  # type: ignore[assignment]
            out_ts = self.initial_ts  # type: ignore[assignment]
        self._seq_off = (out_seq - seq) & _M16
        self._ts_off = (out_ts - ts) & _M32
        self._hi_seq = out_seq
        self._first_seq = out_seq
        self._hi_ts = out_ts
        self._hi_time = now
        self._in_ssrc = ssrc
        self.sources_seen += 1


# -- RTCP keyframe requests -------------------------------------------------

_RTCP_PSFB = 206
_PSFB_PLI = 1  # RFC 4585 section 6.3.1
_PSFB_FIR = 4  # RFC 5104 section 4.3.1
_PLI = struct.Struct("!BBHII")
_FIR_ENTRY = struct.Struct("!IB3x")


def build_pli(sender_ssrc: int, media_ssrc: int) -> bytes:
    """RTCP Picture Loss Indication (RFC 4585 PSFB, FMT=1): 12 bytes, no FCI."""
    return _PLI.pack(0x80 | _PSFB_PLI, _RTCP_PSFB, 2, sender_ssrc & _M32, media_ssrc & _M32)


def build_fir(sender_ssrc: int, media_ssrc: int, seq_nr: int) -> bytes:
    """RTCP Full Intra Request (RFC 5104 PSFB, FMT=4) with one FCI entry: 20 bytes.

    The header's media SSRC is 0 as RFC 5104 requires; the target is in the FCI.
    ``seq_nr`` (mod 256) must increase for each new request to the same target.
    """
    return _PLI.pack(0x80 | _PSFB_FIR, _RTCP_PSFB, 4, sender_ssrc & _M32, 0) + _FIR_ENTRY.pack(
        media_ssrc & _M32, seq_nr & 0xFF
    )


def parse_keyframe_requests(rtcp: bytes | bytearray | memoryview) -> list[int]:
    """Media SSRCs asked for a keyframe by the PLIs and FIRs in a compound RTCP packet.

    PLI: the header's media SSRC. FIR: the SSRC of every FCI entry. Each SSRC
    appears once, in order of first mention. Never raises: a malformed packet
    (wrong version, length past the end, bad padding) stops parsing and what was
    found before it is returned.
    """
    found: list[int] = []
    for part in rtcp_parts(rtcp):
        if part.ptype != _RTCP_PSFB:
            continue
        data = part.data
        if part.fmt == _PSFB_PLI and len(data) >= 12:
            ssrcs = [_U32.unpack_from(data, 8)[0]]
        elif part.fmt == _PSFB_FIR:
            ssrcs = [_U32.unpack_from(data, entry)[0] for entry in range(12, len(data) - 7, 8)]
        else:
            continue
        for ssrc in ssrcs:
            if ssrc not in found:
                found.append(ssrc)
    return found


# -- micro-benchmark (not a test) ---------------------------------------------


def bench_rewrite(n: int = 200_000, payload_size: int = 1100) -> float:
    """Nanoseconds per ``StreamRewriter.rewrite`` call on a typical video packet.

    Packets carry a one-byte-header extension (as browsers send); a source switch
    every 1000 packets includes the re-anchor path. ``now`` is passed, as the
    leg's receive path can, so the clock read is not measured.
    """
    ext = b"\xbe\xde\x00\x01" + b"\x22\x00\x00\x01"  # abs-send-time-like, padded to 4 bytes
    packet = bytearray(_RTP_FIXED.pack(0x90, 96, 0, 0, 0x1234) + ext + bytes(payload_size))
    rewriter = StreamRewriter(ssrc=0xCAFE, payload_type=102, clock_rate=90000)
    pack_into = _RTP_FIXED.pack_into
    # Prepare inputs outside the timed loop so only ``rewrite`` is measured.
    inputs = [(0x1234 + i // 1000, i & _M16, (i * 3000) & _M32) for i in range(min(n, 65536))]
    m = len(inputs)
    now = 0.0
    total = 0
    for start in range(0, n, m):
        batch = inputs[: min(m, n - start)]
        t0 = time.perf_counter_ns()
        for ssrc, seq, ts in batch:
            pack_into(packet, 0, 0x90, 96, seq, ts, ssrc)  # restore the input header
            rewriter.rewrite(packet, 0, now)
        total += time.perf_counter_ns() - t0
        now += 1.0
    # Subtract the cost of restoring the header, measured the same way.
    t0 = time.perf_counter_ns()
    for ssrc, seq, ts in inputs[: min(m, n)]:
        pack_into(packet, 0, 0x90, 96, seq, ts, ssrc)
    restore = (time.perf_counter_ns() - t0) / min(m, n)
    # Measured apart, the restore can cost more than the whole loop did when the machine is
    # busy (a preempted timing): report no cost rather than a negative one.
    return max(0.0, total / n - restore)

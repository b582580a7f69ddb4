"""The synthetic call traffic: what a real sender puts on the wire, pre-built so sending is cheap.

Per direction of a call: VP8 video at ~1 Mbit/s (30 frames/s of 3, 3, 4
packets of ~1200 bytes: 100 packets/s, marker bit on each frame's last packet,
90 kHz timestamps) and Opus at 50 packets/s of ~100 bytes (20 ms, 48 kHz), with
the header extensions the client negotiated. Every payload carries a stamp
(step number and send time) so the receiver counts packets per measuring step
and measures latency; sender and receiver share one process, so one clock
(CLOCK_REALTIME, the clock of the kernel's arrival times: ``arrival.py``).
"""

from __future__ import annotations

import struct
import time
from dataclasses import dataclass, field

VIDEO_FPS = 30
VIDEO_PACKETS_PER_FRAME = (3, 3, 4)  # 10 packets per 3 frames: 100 packets/s
VIDEO_PAYLOAD_BYTES = 1200
AUDIO_PACKETS_PER_S = 50
AUDIO_PAYLOAD_BYTES = 100
PACKETS_PER_CALL_DIRECTION = (
    VIDEO_FPS * sum(VIDEO_PACKETS_PER_FRAME) // len(VIDEO_PACKETS_PER_FRAME) + AUDIO_PACKETS_PER_S
)
KEYFRAME_EVERY_FRAMES = 90  # and on every PLI

MID_URI = "urn:ietf:params:rtp-hdrext:sdes:mid"
ABS_SEND_TIME_URI = "http://www.webrtc.org/experiments/rtp-hdrext/abs-send-time"
AUDIO_LEVEL_URI = "urn:ietf:params:rtp-hdrext:ssrc-audio-level"

# The stamp sits 4 bytes into the payload, after where a VP8 payload descriptor and header go.
STAMP_OFFSET = 4
STAMP = struct.Struct("!4sIQ")  # magic, step, send time (time_ns)
SEND_TIME = struct.Struct("!Q")  # the stamp's last field, rewritten just before the packet is protected and sent
SEND_TIME_OFFSET = 8  # within the stamp
STAMP_MAGIC = b"dBnc"
WARMUP_STEP = 0  # packets outside a measuring window: forwarded, not counted


@dataclass
class OutStream:
    """One RTP stream a synthetic client sends; ``packets_due`` builds what is due by a time."""

    ssrc: int
    payload_type: int
    video: bool
    extensions: dict[int, str]  # negotiated id -> uri
    mid: bytes
    start: float  # perf_counter seconds when the stream starts
    seq: int = 1000
    timestamp: int = 12345
    units_sent: int = 0  # frames (video) or packets (audio)
    packets_sent: int = 0
    octets_sent: int = 0
    keyframe_wanted: bool = True
    _extension_block: bytes = field(default=b"", init=False)
    _abs_send_time_at: int = field(default=-1, init=False)

    def __post_init__(self) -> None:
        self._extension_block, self._abs_send_time_at = _extension_block(self.extensions, self.mid, self.video)

    @property
    def send_time_at(self) -> int:
        """Where the send time sits in this stream's packets (see ``stamp_send_time``)."""
        return 12 + len(self._extension_block) + STAMP_OFFSET + SEND_TIME_OFFSET

    def next_due(self) -> float:
        """When the next frame (video) or packet (audio) is due, in perf_counter seconds."""
        return self.start + (self.units_sent + 1) / (VIDEO_FPS if self.video else AUDIO_PACKETS_PER_S)

    def packets_due(self, now: float, step: int) -> list[bytearray]:
        """Every packet whose time has come; a late caller gets a burst, as a late encoder does."""
        rate = VIDEO_FPS if self.video else AUDIO_PACKETS_PER_S
        due_units = int((now - self.start) * rate)
        out: list[bytearray] = []
        while self.units_sent < due_units:
            if self.video:
                count = VIDEO_PACKETS_PER_FRAME[self.units_sent % len(VIDEO_PACKETS_PER_FRAME)]
                key = self.keyframe_wanted or self.units_sent % KEYFRAME_EVERY_FRAMES == 0
                self.keyframe_wanted = False
                for i in range(count):
                    out.append(self._packet(step, marker=i == count - 1, first=i == 0, key=key))
                self.timestamp = (self.timestamp + 90000 // VIDEO_FPS) & 0xFFFFFFFF
            else:
                out.append(self._packet(step, marker=False, first=True, key=False))
                self.timestamp = (self.timestamp + 48000 // AUDIO_PACKETS_PER_S) & 0xFFFFFFFF
            self.units_sent += 1
        return out

    def _packet(self, step: int, *, marker: bool, first: bool, key: bool) -> bytearray:
        ext = self._extension_block
        size = VIDEO_PAYLOAD_BYTES if self.video else AUDIO_PAYLOAD_BYTES
        buf = bytearray(12 + len(ext) + size)
        buf[0] = 0x90 if ext else 0x80
        buf[1] = (0x80 if marker else 0) | self.payload_type
        struct.pack_into("!HII", buf, 2, self.seq, self.timestamp, self.ssrc)
        buf[12 : 12 + len(ext)] = ext
        if self._abs_send_time_at >= 0:
            # 6.18 fixed-point seconds, 24 bits
            abs_time = int(time.time() * (1 << 18)) & 0xFFFFFF
            buf[12 + self._abs_send_time_at : 15 + self._abs_send_time_at] = abs_time.to_bytes(3, "big")
        payload = 12 + len(ext)
        if self.video:
            # VP8 payload descriptor: S=1 PID=0 on a frame's first packet; payload header P=0 on a keyframe.
            buf[payload] = 0x10 if first else 0x00
            buf[payload + 1] = 0x00 if (first and key) else 0x01
        else:
            buf[payload] = 0x78  # an Opus TOC byte (SILK-only wideband 20 ms): cosmetic
        STAMP.pack_into(buf, payload + STAMP_OFFSET, STAMP_MAGIC, step, time.time_ns())
        self.seq = (self.seq + 1) & 0xFFFF
        self.packets_sent += 1
        self.octets_sent += size
        return buf


def stamp_send_time(packet: bytearray, send_time_at: int) -> bytes:
    """The packet, its send time set to now: called just before it is protected and sent, so a packet
    late in a burst is not charged for the ones sent before it."""
    SEND_TIME.pack_into(packet, send_time_at, time.time_ns())
    return bytes(packet)


def _extension_block(extensions: dict[int, str], mid: bytes, video: bool) -> tuple[bytes, int]:
    """A one-byte-form (RFC 8285) extension block; returns it and where abs-send-time's value sits (-1: none)."""
    body = bytearray()
    abs_at = -1
    for ext_id, uri in sorted(extensions.items()):
        if uri == MID_URI and mid:
            value = mid
        elif uri == ABS_SEND_TIME_URI:
            abs_at = 4 + len(body) + 1
            value = b"\x00\x00\x00"
        elif uri == AUDIO_LEVEL_URI and not video:
            value = b"\xa8"  # voice activity, -40 dBov
        else:
            continue
        body.append((ext_id << 4) | (len(value) - 1))
        body += value
    if not body:
        return b"", -1
    while len(body) % 4:
        body.append(0)
    return b"\xbe\xde" + struct.pack("!H", len(body) // 4) + bytes(body), abs_at


@dataclass
class Tally:
    """What a receiver counted: packets per step and their one-way latencies (µs).

    ``latency_us``: send time to the packet's arrival at the receiving socket (the kernel's arrival time
    when the receiver knows it, else when it read the packet); ``read_latency_us``: send time to when
    the receiving process read it, which adds the load process's own delay in getting to its sockets.
    """

    received: dict[int, int] = field(default_factory=dict)
    latency_us: dict[int, list[float]] = field(default_factory=dict)
    read_latency_us: dict[int, list[float]] = field(default_factory=dict)
    kernel_timed: dict[int, int] = field(default_factory=dict)  # per step: packets timed by the kernel's arrival
    unstamped: int = 0

    def count(self, data: bytes | bytearray | memoryview, payload_at: int, arrived_ns: int | None = None) -> None:
        now = time.time_ns()
        at = payload_at + STAMP_OFFSET
        if len(data) < at + STAMP.size:
            self.unstamped += 1
            return
        magic, step, sent_ns = STAMP.unpack_from(data, at)
        if magic != STAMP_MAGIC:
            self.unstamped += 1
            return
        self.received[step] = self.received.get(step, 0) + 1
        if step != WARMUP_STEP:
            if arrived_ns is not None:
                self.kernel_timed[step] = self.kernel_timed.get(step, 0) + 1
            self.latency_us.setdefault(step, []).append(((now if arrived_ns is None else arrived_ns) - sent_ns) / 1000)
            self.read_latency_us.setdefault(step, []).append((now - sent_ns) / 1000)

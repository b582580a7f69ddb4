"""One client's latest keyframe, kept at the edge it sends to.

A new partner can decode nothing until a keyframe; asking the sender for one
costs a round trip over its last mile plus an encode, and libwebrtc honours
at most one keyframe request per 300 ms, so a "next" soon after the previous
one waited ~400 ms. The edge that receives a client's video therefore keeps
its latest keyframe (every packet of that frame) and sends it to a new
partner at once, while the sender is asked for a fresh one as before. The
partner's edge holds the live video that follows the replayed keyframe back
until that fresh keyframe: live frames refer to pictures the partner never
got.

Only the keyframe is replayed, not what followed it: measured with Chromium
receivers, replaying the frames since the keyframe as a burst (up to ~0.5 s
of video at once) made libwebrtc's jitter buffer raise its playout delay on
every switch (connect time grew from ~70 ms to 450 ms over 20 switches, with
dropped frames and freezes). One frame, stamped "now" by the receiving leg's
rewriter, does not.

Packets are kept as the client sent them (aiortc hands over immutable bytes,
so keeping one is a reference, not a copy) and are mapped to backbone terms
only when replayed.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field

__all__ = ["MAX_KEYFRAME_PACKETS", "KeyframeCache"]

# A 640x480 VP8 keyframe is 10-40 packets, 1280x720 ~100: below a leg's 512-packet send
# queue, which a replay fills at once. A larger keyframe is not kept.
MAX_KEYFRAME_PACKETS = 256


@dataclass
class KeyframeCache:
    """The latest complete keyframe of one client's video (client terms)."""

    # True when a packet starts a keyframe (the leg knows the client's payload types).
    starts_keyframe: Callable[[bytes], bool]
    max_packets: int = MAX_KEYFRAME_PACKETS

    keyframes_seen: int = field(default=0, init=False)
    _complete: list[bytes] = field(default_factory=list, init=False, repr=False)  # the one to replay
    _building: list[bytes] = field(default_factory=list, init=False, repr=False)  # a keyframe still arriving
    _building_ts: int = field(default=-1, init=False, repr=False)

    def add(self, packet: bytes) -> None:
        """One video RTP packet from the client, in arrival order (well-formed: at least 12 bytes)."""
        ts = int.from_bytes(packet[4:8], "big")
        # (A repeated first packet of the keyframe being built is not a new one.)
        if self.starts_keyframe(packet) and not (self._building and ts == self._building_ts):
            self._building = [packet]
            self._building_ts = ts
        elif self._building and ts == self._building_ts:
            if len(self._building) >= self.max_packets:
                self._building = []  # a keyframe this large is not worth a replay
                return
            self._building.append(packet)
        else:
            self._building = []  # another frame began before the keyframe's last packet
            return
        if packet[1] & 0x80:  # RTP marker: the frame's last packet
            self._complete = self._building
            self._building = []
            self.keyframes_seen += 1

    def replay(self) -> list[bytes]:
        """The packets of the latest complete keyframe, in order; empty before the first one."""
        return list(self._complete)

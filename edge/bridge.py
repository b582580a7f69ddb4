"""Bridges: which local leg carries which side of which call.

A call is one bridge id with two sides (0 and 1). Each edge holds the sides
whose legs it terminates; the other side is on ``peer_edge`` (possibly this
same edge). A leg belongs to at most one bridge at a time; re-bridging it
("next") replaces the old side.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field

from duet.edge.leg import Leg


@dataclass
class BridgeSide:
    bridge_id: int
    side: int
    leg: Leg
    peer_edge_id: str
    peer_edge_number: int
    bridged_ms: float
    first_packet_at_edge_ms: float = 0.0  # partner's first video RTP (a keyframe's) sent into this leg
    packets_out: int = 0  # partner RTP sent into this leg
    packets_in: int = 0  # this leg's RTP sent toward the partner
    bytes_out: int = 0  # RTP bytes (header + payload, before SRTP) of packets_out
    bytes_in: int = 0  # ... of packets_in
    keyframe_requests_relayed: int = 0
    # Partner video is held back until a keyframe starts (see edge/keyframe.py).
    awaiting_keyframe: bool = True
    # The partner's video so far is a keyframe replayed from its edge's cache: live video
    # waits for a fresh keyframe (see edge/keyframe_cache.py).
    video_from_cache: bool = False
    last_keyframe_ask: float = 0.0
    # This leg's client video replayed to the partner from the keyframe cache at bridge time.
    cache_packets_replayed: int = 0
    # The leg's loss-recovery counters when this side was installed: the side's own are the
    # leg's since then (a leg serves one side at a time).
    recovery_at_start: dict[str, int] = field(default_factory=dict)

    @property
    def peer_side(self) -> int:
        return 1 - self.side

    def note_packet_out(self, video: bool, size: int) -> None:
        if video and not self.first_packet_at_edge_ms:
            self.first_packet_at_edge_ms = time.time() * 1000
        self.packets_out += 1
        self.bytes_out += size

    def recovery(self) -> dict[str, int]:
        """Loss-recovery events of this side's leg since the side was installed, by event."""
        since = self.recovery_at_start
        counts = {event: n - since.get(event, 0) for event, n in self.leg.counters.recovery.items()}
        return {event: n for event, n in counts.items() if n}


class BridgeTable:
    def __init__(self) -> None:
        self._sides: dict[tuple[int, int], BridgeSide] = {}
        self._by_leg: dict[str, BridgeSide] = {}

    def add(self, side: BridgeSide) -> BridgeSide | None:
        """Install a side; returns the side its leg was bridged on before, if any."""
        previous = self._by_leg.pop(side.leg.leg_id, None)
        if previous is not None:
            self._sides.pop((previous.bridge_id, previous.side), None)
        replaced = self._sides.pop((side.bridge_id, side.side), None)
        if replaced is not None and replaced.leg.leg_id != side.leg.leg_id:
            self._by_leg.pop(replaced.leg.leg_id, None)
        self._sides[(side.bridge_id, side.side)] = side
        self._by_leg[side.leg.leg_id] = side
        return previous

    def remove(self, bridge_id: int, side: int) -> BridgeSide | None:
        found = self._sides.pop((bridge_id, side), None)
        if found is not None:
            self._by_leg.pop(found.leg.leg_id, None)
        return found

    def remove_leg(self, leg_id: str) -> BridgeSide | None:
        found = self._by_leg.pop(leg_id, None)
        if found is not None:
            self._sides.pop((found.bridge_id, found.side), None)
        return found

    def get(self, bridge_id: int, side: int) -> BridgeSide | None:
        return self._sides.get((bridge_id, side))

    def of_leg(self, leg_id: str) -> BridgeSide | None:
        return self._by_leg.get(leg_id)

    def all(self) -> list[BridgeSide]:
        return list(self._sides.values())

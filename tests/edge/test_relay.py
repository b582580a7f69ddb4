"""EdgeRelay's own checks (forwarding through it is covered by test_forwarding.py)."""

from __future__ import annotations

import pytest

from duet.edge.backbone_wire import EDGE_NUMBER_MAX
from duet.edge.relay import EdgeRelay


def test_edge_numbers_follow_the_wire_range() -> None:
    relay = EdgeRelay("e", 0, b"k")  # 0: not registered yet
    relay.assign_number(EDGE_NUMBER_MAX)
    assert relay.number == relay.backbone.edge_number == EDGE_NUMBER_MAX
    for bad in (0, EDGE_NUMBER_MAX + 1):
        with pytest.raises(ValueError, match=f"1..{EDGE_NUMBER_MAX}"):
            relay.assign_number(bad)
    with pytest.raises(ValueError):
        EdgeRelay("e", EDGE_NUMBER_MAX + 1, b"k")


def test_media_for_a_bridge_side_that_never_comes_is_dropped_after_the_hold(monkeypatch: pytest.MonkeyPatch) -> None:
    from duet.edge import relay as relay_module
    from duet.edge.backbone_wire import BackboneHeader, PacketType, StreamKind

    clock = [100.0]
    monkeypatch.setattr(relay_module.time, "monotonic", lambda: clock[0])
    edge = relay_module.EdgeRelay("fra-1", 1, b"k")
    header = BackboneHeader(PacketType.MEDIA, dest_edge=1, src_edge=2, bridge_id=5, side=1, kind=StreamKind.VIDEO)
    for _ in range(3):
        edge._deliver_from_backbone(header, memoryview(b"\x80\x60\x00\x01" + bytes(8)))
    assert "unknown bridge" not in edge.stats().dropped  # held: the side may be about to be installed
    clock[0] += relay_module.EARLY_MEDIA_HOLD_S + 0.1
    other = BackboneHeader(PacketType.MEDIA, dest_edge=1, src_edge=2, bridge_id=6, side=0, kind=StreamKind.AUDIO)
    edge._deliver_from_backbone(other, memoryview(b"\x80\x6f\x00\x01" + bytes(8)))
    assert edge.stats().dropped["unknown bridge"] == 3  # bridge 5 never came: its packets expired
    for n in range(relay_module.EARLY_MEDIA_MAX_SIDES + 2):
        edge._deliver_from_backbone(
            BackboneHeader(PacketType.MEDIA, dest_edge=1, src_edge=2, bridge_id=100 + n, side=0, kind=StreamKind.AUDIO),
            memoryview(b"\x80\x6f\x00\x01" + bytes(8)),
        )
    assert edge.stats().dropped["unknown bridge"] == 3 + 3  # bounded: past the limit, dropped at once


class _RecordingLeg:
    """Just what the relay asks of a leg when delivering into it."""

    leg_id = "leg-b"

    def __init__(self) -> None:
        self.sent: list[bytes] = []
        self.restarts = 0

    def send_rtp(self, kind: object, packet: bytearray) -> bool:
        self.sent.append(bytes(packet))
        return True

    def switch_source(self, kind: object = None) -> None:
        self.restarts += 1

    def request_keyframe(self, kind: object, *, force: bool = False) -> bool:
        return True


def test_live_video_after_a_cached_keyframe_waits_for_a_fresh_keyframe() -> None:
    from duet.edge.backbone_wire import BackboneHeader, PacketType, StreamKind
    from duet.edge.bridge import BridgeSide

    edge = EdgeRelay("vir-1", 2, b"k")
    leg = _RecordingLeg()
    edge.bridges.add(BridgeSide(7, 1, leg, "fra-1", 1, bridged_ms=0.0))  # type: ignore[arg-type]

    def vp8(seq: int, key: bool) -> memoryview:  # backbone payload type 96 (VP8)
        return memoryview(bytes([0x80, 96, 0, seq, 0, 0, 0, seq, 0, 0, 0, 9, 0x10 if key else 0x00, 0x00]))

    def header(ptype: PacketType) -> BackboneHeader:
        return BackboneHeader(ptype, dest_edge=2, src_edge=1, bridge_id=7, side=1, kind=StreamKind.VIDEO)

    edge._deliver_from_backbone(header(PacketType.CACHED_MEDIA), vp8(1, key=True))  # the replayed keyframe
    edge._deliver_from_backbone(header(PacketType.MEDIA), vp8(40, key=False))  # live, refers to frames b never got
    assert len(leg.sent) == 1 and edge.stats().dropped["video after cached keyframe"] == 1
    edge._deliver_from_backbone(header(PacketType.MEDIA), vp8(41, key=True))  # the fresh keyframe
    edge._deliver_from_backbone(header(PacketType.MEDIA), vp8(42, key=False))
    assert [p[3] for p in leg.sent] == [1, 41, 42]
    assert leg.restarts == 1  # the leg's video restarts at the fresh keyframe: its numbers stay continuous
    edge._deliver_from_backbone(header(PacketType.CACHED_MEDIA), vp8(2, key=True))  # a replay arriving late
    assert [p[3] for p in leg.sent] == [1, 41, 42]
    assert edge.stats().dropped["cached keyframe after live video"] == 1

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

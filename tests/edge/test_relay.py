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

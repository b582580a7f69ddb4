"""The bridge table: one bridge per leg, re-bridging replaces, lookups by side and leg."""

from __future__ import annotations

from types import SimpleNamespace

from duet.edge.bridge import BridgeSide, BridgeTable
from duet.edge.leg import LegCounters


def side(bridge_id: int, s: int, leg_id: str) -> BridgeSide:
    return BridgeSide(bridge_id, s, SimpleNamespace(leg_id=leg_id), "peer", 2, 0.0)  # type: ignore[arg-type]


def test_rebridging_a_leg_replaces_its_old_side() -> None:
    t = BridgeTable()
    assert t.add(side(1, 0, "a")) is None
    old = t.add(side(2, 0, "a"))  # "next": leg a joins bridge 2
    assert old is not None and old.bridge_id == 1
    assert t.get(1, 0) is None and t.get(2, 0) is not None
    assert t.of_leg("a").bridge_id == 2  # type: ignore[union-attr]
    assert len(t.all()) == 1


def test_a_side_taken_by_another_leg_forgets_the_first_leg() -> None:
    t = BridgeTable()
    t.add(side(1, 0, "a"))
    t.add(side(1, 0, "b"))
    assert t.of_leg("a") is None and t.get(1, 0).leg.leg_id == "b"  # type: ignore[union-attr]


def test_remove_by_side_and_by_leg() -> None:
    t = BridgeTable()
    t.add(side(1, 0, "a"))
    t.add(side(1, 1, "b"))
    assert t.remove(1, 0) is not None and t.of_leg("a") is None
    assert t.remove(1, 0) is None
    assert t.remove_leg("b") is not None and t.get(1, 1) is None
    assert t.all() == []


def test_first_packet_time_is_the_first_video_packet_and_set_once() -> None:
    s = side(1, 0, "a")
    s.note_packet_out(False, 100)
    assert s.first_packet_at_edge_ms == 0.0
    s.note_packet_out(True, 1200)
    first = s.first_packet_at_edge_ms
    s.note_packet_out(True, 1000)
    assert first > 0 and s.first_packet_at_edge_ms == first and s.packets_out == 3
    assert s.bytes_out == 2300


def test_a_sides_recovery_counts_only_what_happened_since_it_was_installed() -> None:
    leg = SimpleNamespace(leg_id="a", counters=LegCounters())
    s = BridgeSide(1, 0, leg, "peer", 2, 0.0)  # type: ignore[arg-type]
    s.leg.counters.count("nacked", 5)
    s.recovery_at_start = dict(s.leg.counters.recovery)
    assert s.recovery() == {}
    s.leg.counters.count("nacked", 2)
    s.leg.counters.count("resent")
    assert s.recovery() == {"nacked": 2, "resent": 1}

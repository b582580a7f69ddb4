"""EdgeCollector: the exposition text of an edge's snapshot, families, labels and values."""

from __future__ import annotations

from dataclasses import dataclass, field
from types import SimpleNamespace
from typing import cast

from prometheus_client import generate_latest
from prometheus_client.openmetrics.exposition import generate_latest as generate_openmetrics
from prometheus_client.parser import text_string_to_metric_families

from duet.edge.bridge import BridgeSide
from duet.edge.leg import Leg, LegCounters
from duet.edge.relay import EdgeRelay, EdgeStatsSnapshot
from duet.services.edge_server.metrics import edge_registry


def _side(bridge_id: int, side: int, peer: str, recovery: dict[str, int] | None = None, **counts: int) -> BridgeSide:
    counters = LegCounters(recovery=dict(recovery or {}))
    leg = cast(Leg, SimpleNamespace(leg_id=f"leg-{bridge_id}-{side}", counters=counters))
    return BridgeSide(bridge_id, side, leg, peer, 2, bridged_ms=1_700_000_000_000.0, **counts)


@dataclass
class FakeEdge:
    """Stands in for EdgeRelay: its snapshot is whatever the test says, read at every scrape."""

    snapshot: EdgeStatsSnapshot
    asked: list[int] = field(default_factory=list)

    def stats(self, bridge_id: int = 0) -> EdgeStatsSnapshot:
        self.asked.append(bridge_id)
        return self.snapshot


def _samples(text: str) -> dict[tuple[str, frozenset[tuple[str, str]]], float]:
    return {
        (s.name, frozenset(s.labels.items())): s.value
        for family in text_string_to_metric_families(text)
        for s in family.samples
    }


def _labels(**kv: str) -> frozenset[tuple[str, str]]:
    return frozenset(kv.items())


def test_every_family_carries_the_snapshots_figures_with_their_labels() -> None:
    edge = FakeEdge(
        EdgeStatsSnapshot(
            edge_id="fra-1",
            legs=3,
            bridges=[
                _side(
                    7,
                    0,
                    "vir-1",
                    recovery={"nacked": 4, "resent": 3},
                    packets_in=120,
                    packets_out=95,
                    bytes_in=120_000,
                    bytes_out=90_500,
                    keyframe_requests_relayed=2,
                ),
                _side(9, 1, "fra-1", packets_in=4, packets_out=5, cache_packets_replayed=17),
            ],
            dropped={"media from unbridged leg": 41, "no route": 2},
            backbone_packets_in=800,
            backbone_packets_out=650,
            backbone_bytes_in=880_000,
            backbone_bytes_out=700_000,
            recovery={"nacked": 6, "resent as rtx": 5, "asked upstream": 1},
            feedback={"remb from client": 3},
        )
    )
    got = _samples(generate_latest(edge_registry(edge)).decode())
    fra = _labels(edge="fra-1")
    assert got[("duet_edge_legs", fra)] == 3
    assert got[("duet_edge_bridge_sides", fra)] == 2
    assert got[("duet_edge_backbone_received_packets_total", fra)] == 800
    assert got[("duet_edge_backbone_sent_packets_total", fra)] == 650
    assert got[("duet_edge_backbone_received_bytes_total", fra)] == 880_000
    assert got[("duet_edge_backbone_sent_bytes_total", fra)] == 700_000
    assert got[("duet_edge_dropped_packets_total", _labels(edge="fra-1", reason="media from unbridged leg"))] == 41
    assert got[("duet_edge_dropped_packets_total", _labels(edge="fra-1", reason="no route"))] == 2
    assert got[("duet_edge_recovery_events_total", _labels(edge="fra-1", event="nacked"))] == 6
    assert got[("duet_edge_recovery_events_total", _labels(edge="fra-1", event="resent as rtx"))] == 5
    assert got[("duet_edge_recovery_events_total", _labels(edge="fra-1", event="asked upstream"))] == 1
    assert got[("duet_edge_feedback_events_total", _labels(edge="fra-1", event="remb from client"))] == 3
    side7 = _labels(edge="fra-1", bridge_id="7", side="0", peer_edge="vir-1")
    side9 = _labels(edge="fra-1", bridge_id="9", side="1", peer_edge="fra-1")
    assert got[("duet_edge_bridge_from_client_packets_total", side7)] == 120
    assert got[("duet_edge_bridge_to_client_packets_total", side7)] == 95
    assert got[("duet_edge_bridge_keyframe_requests_relayed_total", side7)] == 2
    assert got[("duet_edge_bridge_keyframe_cache_replayed_packets_total", side7)] == 0
    assert got[("duet_edge_bridge_from_client_bytes_total", side7)] == 120_000
    assert got[("duet_edge_bridge_to_client_bytes_total", side7)] == 90_500
    side7_event = {**dict(side7), "event": "nacked"}
    assert got[("duet_edge_bridge_recovery_events_total", frozenset(side7_event.items()))] == 4
    assert got[("duet_edge_bridge_recovery_events_total", frozenset({**side7_event, "event": "resent"}.items()))] == 3
    # a side with no recovery has no recovery series
    assert not any(name == "duet_edge_bridge_recovery_events_total" and ("bridge_id", "9") in lb for name, lb in got)
    assert got[("duet_edge_bridge_from_client_packets_total", side9)] == 4
    assert got[("duet_edge_bridge_to_client_packets_total", side9)] == 5
    assert got[("duet_edge_bridge_keyframe_cache_replayed_packets_total", side9)] == 17
    # the whole edge, never one bridge
    assert edge.asked == [0]
    # and the process's own figures beside them
    assert any(name == "process_cpu_seconds_total" for name, _ in got)


def test_each_scrape_reads_a_fresh_snapshot_and_unbridged_sides_go_away() -> None:
    snapshot = EdgeStatsSnapshot(
        edge_id="sin-1", legs=1, bridges=[_side(3, 0, "vir-1", packets_in=10)], dropped={"no route": 1}
    )
    edge = FakeEdge(snapshot)
    registry = edge_registry(edge)
    first = _samples(generate_latest(registry).decode())
    edge.snapshot = EdgeStatsSnapshot(edge_id="sin-1", legs=1, bridges=[], dropped={"no route": 4})
    second = _samples(generate_latest(registry).decode())
    side3 = _labels(edge="sin-1", bridge_id="3", side="0", peer_edge="vir-1")
    assert first[("duet_edge_bridge_from_client_packets_total", side3)] == 10
    assert ("duet_edge_bridge_from_client_packets_total", side3) not in second
    assert second[("duet_edge_bridge_sides", _labels(edge="sin-1"))] == 0
    assert second[("duet_edge_dropped_packets_total", _labels(edge="sin-1", reason="no route"))] == 4


def test_openmetrics_names_the_units_and_dates_each_bridge_sides_series_from_its_bridge_time() -> None:
    edge = FakeEdge(EdgeStatsSnapshot(edge_id="fra-1", legs=1, bridges=[_side(7, 0, "vir-1", packets_in=1)]))
    text = generate_openmetrics(edge_registry(edge)).decode()
    assert "# UNIT duet_edge_backbone_received_packets packets" in text
    assert (
        'duet_edge_bridge_from_client_packets_created{bridge_id="7",edge="fra-1",peer_edge="vir-1",side="0"} 1.7e+09'
        in text
    )


def test_a_real_relay_with_nothing_attached_reports_zeros() -> None:
    relay = EdgeRelay("vir-1", 2, b"key")
    got = _samples(generate_latest(edge_registry(relay)).decode())
    vir = _labels(edge="vir-1")
    assert got[("duet_edge_legs", vir)] == 0
    assert got[("duet_edge_backbone_received_packets_total", vir)] == 0
    assert not [name for name, _ in got if name.startswith("duet_edge_bridge_from_client")]

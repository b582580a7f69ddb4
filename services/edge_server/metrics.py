"""The edge's counters as Prometheus metrics, read from ``EdgeRelay.stats()`` at scrape time.

The collector keeps no counters of its own: the relay already counts every
packet, drop and recovery event for ``GetStats``, so a scrape takes one
snapshot and turns it into metric families. Forwarding pays nothing extra.

Per-edge families carry an ``edge`` label; per-bridge-side families also
``bridge_id``, ``side`` and ``peer_edge``. A bridge side's series exist while
the side is installed and end when it is unbridged (its final figures are in
``Unbridge``'s reply); their ``created`` time (OpenMetrics) is the bridge time.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Protocol

from prometheus_client import CollectorRegistry
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric
from prometheus_client.process_collector import ProcessCollector
from prometheus_client.registry import Collector

from duet.edge.relay import EdgeStatsSnapshot

__all__ = ["EdgeCollector", "StatsSource", "edge_registry"]

_SIDE_LABELS = ["edge", "bridge_id", "side", "peer_edge"]


class StatsSource(Protocol):
    """What the collector reads: ``EdgeRelay`` (or a test's stand-in)."""

    def stats(self, bridge_id: int = 0) -> EdgeStatsSnapshot: ...


class EdgeCollector(Collector):
    def __init__(self, source: StatsSource) -> None:
        self.source = source

    def collect(self) -> Iterable[Metric]:
        snap = self.source.stats()
        edge = [snap.edge_id]

        legs = GaugeMetricFamily("duet_edge_legs", "WebRTC legs attached to this edge", labels=["edge"])
        legs.add_metric(edge, snap.legs)
        sides = GaugeMetricFamily(
            "duet_edge_bridge_sides", "bridge sides installed on this edge (one per bridged leg)", labels=["edge"]
        )
        sides.add_metric(edge, len(snap.bridges))

        received = CounterMetricFamily(
            "duet_edge_backbone_received_packets",
            "authenticated backbone datagrams received, for this edge or to relay onward",
            labels=["edge"],
            unit="packets",
        )
        received.add_metric(edge, snap.backbone_packets_in)
        sent = CounterMetricFamily(
            "duet_edge_backbone_sent_packets",
            "backbone datagrams this edge sent from its own legs (relayed datagrams not included)",
            labels=["edge"],
            unit="packets",
        )
        sent.add_metric(edge, snap.backbone_packets_out)
        received_bytes = CounterMetricFamily(
            "duet_edge_backbone_received",
            "bytes of the backbone datagrams counted by duet_edge_backbone_received_packets",
            labels=["edge"],
            unit="bytes",
        )
        received_bytes.add_metric(edge, snap.backbone_bytes_in)
        sent_bytes = CounterMetricFamily(
            "duet_edge_backbone_sent",
            "bytes of the backbone datagrams counted by duet_edge_backbone_sent_packets",
            labels=["edge"],
            unit="bytes",
        )
        sent_bytes.add_metric(edge, snap.backbone_bytes_out)

        dropped = CounterMetricFamily(
            "duet_edge_dropped_packets",
            "packets (and header elements) the edge dropped, by reason, including those of legs since closed",
            labels=["edge", "reason"],
            unit="packets",
        )
        for reason, n in sorted(snap.dropped.items()):
            dropped.add_metric([*edge, reason], n)
        recovery = CounterMetricFamily(
            "duet_edge_recovery_events",
            "loss recovery events (NACKs received, answered, passed upstream, suppressed; retransmissions), by event",
            labels=["edge", "event"],
        )
        for event, n in sorted(snap.recovery.items()):
            recovery.add_metric([*edge, event], n)
        feedback = CounterMetricFamily(
            "duet_edge_feedback_events",
            "bandwidth feedback events (receivers' REMBs, passed on to senders, rate-limited), by event",
            labels=["edge", "event"],
        )
        for event, n in sorted(snap.feedback.items()):
            feedback.add_metric([*edge, event], n)

        from_client = CounterMetricFamily(
            "duet_edge_bridge_from_client_packets",
            "RTP from this side's client forwarded toward its partner (GetStats packets_in)",
            labels=_SIDE_LABELS,
            unit="packets",
        )
        to_client = CounterMetricFamily(
            "duet_edge_bridge_to_client_packets",
            "partner RTP sent into this side's leg (GetStats packets_out)",
            labels=_SIDE_LABELS,
            unit="packets",
        )
        keyframe_requests = CounterMetricFamily(
            "duet_edge_bridge_keyframe_requests_relayed",
            "keyframe requests (PLI) the edge passed to this side's client",
            labels=_SIDE_LABELS,
        )
        replayed = CounterMetricFamily(
            "duet_edge_bridge_keyframe_cache_replayed_packets",
            "this side's client video replayed to the partner from the keyframe cache at bridge time",
            labels=_SIDE_LABELS,
            unit="packets",
        )
        from_client_bytes = CounterMetricFamily(
            "duet_edge_bridge_from_client",
            "RTP bytes of duet_edge_bridge_from_client_packets",
            labels=_SIDE_LABELS,
            unit="bytes",
        )
        to_client_bytes = CounterMetricFamily(
            "duet_edge_bridge_to_client",
            "RTP bytes of duet_edge_bridge_to_client_packets",
            labels=_SIDE_LABELS,
            unit="bytes",
        )
        side_recovery = CounterMetricFamily(
            "duet_edge_bridge_recovery_events",
            "loss recovery on this side's leg since the side was installed, by event (as duet_edge_recovery_events)",
            labels=[*_SIDE_LABELS, "event"],
        )
        for s in snap.bridges:
            labels = [snap.edge_id, str(s.bridge_id), str(s.side), s.peer_edge_id]
            created = s.bridged_ms / 1000
            from_client.add_metric(labels, s.packets_in, created=created)
            to_client.add_metric(labels, s.packets_out, created=created)
            from_client_bytes.add_metric(labels, s.bytes_in, created=created)
            to_client_bytes.add_metric(labels, s.bytes_out, created=created)
            for event, n in sorted(s.recovery().items()):
                side_recovery.add_metric([*labels, event], n, created=created)
            keyframe_requests.add_metric(labels, s.keyframe_requests_relayed, created=created)
            replayed.add_metric(labels, s.cache_packets_replayed, created=created)

        return [
            legs,
            sides,
            received,
            sent,
            received_bytes,
            sent_bytes,
            dropped,
            recovery,
            feedback,
            from_client,
            to_client,
            from_client_bytes,
            to_client_bytes,
            side_recovery,
            keyframe_requests,
            replayed,
        ]


def edge_registry(source: StatsSource) -> CollectorRegistry:
    """A registry with the edge's families and the process's own (CPU seconds, memory, open files)."""
    registry = CollectorRegistry()
    registry.register(EdgeCollector(source))
    ProcessCollector(registry=registry)
    return registry

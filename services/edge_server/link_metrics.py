"""The edge's backbone links as Prometheus gauges: what its probes measure, per neighbour.

A scrape reads the prober's current readings (the figures the next heartbeat
reports); nothing is counted per probe for it.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Protocol

from prometheus_client.core import GaugeMetricFamily, Metric
from prometheus_client.registry import Collector

from duet.edge.probes import LinkSample


class LinkReadings(Protocol):
    def samples(self) -> list[LinkSample]: ...


class LinkCollector(Collector):
    def __init__(self, edge_id: str, prober: LinkReadings) -> None:
        self.edge_id = edge_id
        self.prober = prober

    def collect(self) -> Iterable[Metric]:
        labels = ["edge", "peer"]
        rtt = GaugeMetricFamily(
            "duet_edge_link_rtt_seconds", "smoothed probe RTT to the neighbour (0: none answered yet)", labels=labels
        )
        loss = GaugeMetricFamily(
            "duet_edge_link_loss_ratio", "fraction of recent probes to the neighbour unanswered", labels=labels
        )
        reachable = GaugeMetricFamily(
            "duet_edge_link_reachable",
            "1 while the neighbour answers probes; 0 after 0.4 s without an answer (3 s on an idle link)",
            labels=labels,
        )
        for s in self.prober.samples():
            key = [self.edge_id, s.peer_edge_id]
            rtt.add_metric(key, s.rtt_ms / 1000)
            loss.add_metric(key, s.loss)
            reachable.add_metric(key, 1.0 if s.reachable else 0.0)
        return [rtt, loss, reachable]

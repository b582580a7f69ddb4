"""LinkCollector: each neighbour link's probe readings as gauges."""

from __future__ import annotations

from prometheus_client import CollectorRegistry, generate_latest
from prometheus_client.parser import text_string_to_metric_families

from duet.edge.probes import LinkSample
from duet.services.edge_server.link_metrics import LinkCollector


class FakeProber:
    def __init__(self, samples: list[LinkSample]) -> None:
        self.now = samples

    def samples(self) -> list[LinkSample]:
        return self.now


def test_each_link_is_a_labelled_gauge_read_at_scrape_time() -> None:
    prober = FakeProber([LinkSample("vir-1", 89.5, 0.0, True), LinkSample("sin-1", 0.0, 0.75, False)])
    registry = CollectorRegistry()
    registry.register(LinkCollector("fra-1", prober))

    def scrape() -> dict[tuple[str, str], float]:
        return {
            (s.name, s.labels["peer"]): s.value
            for f in text_string_to_metric_families(generate_latest(registry).decode())
            for s in f.samples
            if s.labels.get("edge") == "fra-1"
        }

    assert scrape() == {
        ("duet_edge_link_rtt_seconds", "vir-1"): 0.0895,
        ("duet_edge_link_loss_ratio", "vir-1"): 0.0,
        ("duet_edge_link_reachable", "vir-1"): 1.0,
        ("duet_edge_link_rtt_seconds", "sin-1"): 0.0,
        ("duet_edge_link_loss_ratio", "sin-1"): 0.75,
        ("duet_edge_link_reachable", "sin-1"): 0.0,
    }
    prober.now = [LinkSample("vir-1", 90.0, 0.1, True)]
    assert scrape()[("duet_edge_link_loss_ratio", "vir-1")] == 0.1 and len(scrape()) == 3

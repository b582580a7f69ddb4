"""The matchmaker's Prometheus metrics: connect stages per region pair, and the pool.

:class:`MatchmakerMetrics` is the core's ``CallTelemetry``: histograms filled
when each stage happens (a match, a route, both bridges, Matched sent, the
edge's first packet and the client's first frame, each as time since the
match), and a collector that reads the waiting pool at scrape time (tickets
waiting per region and language group, the pool's first index level).
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Callable, Iterable, Mapping

from prometheus_client import CollectorRegistry, Histogram
from prometheus_client import Counter as CounterMetric
from prometheus_client.core import GaugeMetricFamily, Metric
from prometheus_client.process_collector import ProcessCollector
from prometheus_client.registry import Collector

from duet.services.matchmaker.ticket import Ticket

__all__ = ["STAGE_BUCKETS_S", "MatchmakerMetrics"]

# Seconds: fine around the 600 ms target, coarse beyond it.
STAGE_BUCKETS_S = (0.005, 0.01, 0.025, 0.05, 0.075, 0.1, 0.15, 0.2, 0.25, 0.3, 0.4, 0.5, 0.6, 0.8, 1.0, 1.5, 2.5, 5.0)
WAIT_BUCKETS_S = (0.01, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0, 120.0)


class _PoolCollector(Collector):
    def __init__(self, waiting: Callable[[], Iterable[Ticket]]) -> None:
        self.waiting = waiting

    def collect(self) -> Iterable[Metric]:
        family = GaugeMetricFamily(
            "duet_matchmaker_waiting_tickets",
            "tickets waiting in the pool, by the region of their edge and language group (a ticket with "
            "several languages counts in each; 'any' = gave none)",
            labels=["region", "language"],
        )
        counts: Counter[tuple[str, str]] = Counter()
        for t in self.waiting():
            for language in sorted(t.preferences.languages) or ["any"]:
                counts[(t.region, language)] += 1
        for (region, language), n in sorted(counts.items()):
            family.add_metric([region, language], n)
        yield family


class _ShardCollector(Collector):
    """Per shard, at scrape time: tickets waiting here, and whether this replica owns it."""

    def __init__(self, waiting: Callable[[], Mapping[str, int]], owned: Callable[[], Mapping[str, bool]]) -> None:
        self.waiting = waiting
        self.owned = owned

    def collect(self) -> Iterable[Metric]:
        waiting = GaugeMetricFamily(
            "duet_matchmaker_shard_waiting_tickets",
            "tickets waiting on this replica per shard (in the pool, and restored ones whose users have not "
            "come back yet)",
            labels=["shard"],
        )
        for shard, n in sorted(self.waiting().items()):
            waiting.add_metric([shard], n)
        yield waiting
        owned = GaugeMetricFamily(
            "duet_matchmaker_shard_owned",
            "1 while this replica owns the shard (holds its lock), else 0",
            labels=["shard"],
        )
        for shard, mine in sorted(self.owned().items()):
            owned.add_metric([shard], 1 if mine else 0)
        yield owned


class MatchmakerMetrics:
    """Histograms and counters in their own registry (``registry``), served by ``MetricsServer``."""

    def __init__(
        self,
        waiting: Callable[[], Iterable[Ticket]],
        *,
        shards: Callable[[], Mapping[str, int]] | None = None,
        owned: Callable[[], Mapping[str, bool]] | None = None,
    ) -> None:
        """``shards``: tickets waiting per shard; ``owned``: each shard, and whether this replica owns it."""
        self.registry = CollectorRegistry()
        self._stage = Histogram(
            "duet_matchmaker_stage_seconds",
            "time from the match to each stage of a call: route_picked, bridged, notified (both clients "
            "sent Matched) per call with region_a = side 0's region; first_packet_at_edge and first_frame "
            "per side with region_a = the receiving side's region, region_b = its partner's. first_frame "
            "is on the matchmaker's clock (clock-synced client), first_packet_at_edge on the edge's",
            ["stage", "region_a", "region_b"],
            buckets=STAGE_BUCKETS_S,
            registry=self.registry,
        )
        self._wait = Histogram(
            "duet_matchmaker_time_to_match_seconds",
            "time a ticket waited in the pool before it was paired, by the region of its edge",
            ["region"],
            buckets=WAIT_BUCKETS_S,
            registry=self.registry,
        )
        self._failed = CounterMetric(
            "duet_matchmaker_call_start_failures",
            "matches that could not become calls, by reason (no route, bridge failed)",
            ["reason"],
            registry=self.registry,
        )
        # Five observations per match: the labelled children are looked up once (regions x stages of them).
        self._stage_children: dict[tuple[str, str, str], Histogram] = {}
        self._wait_children: dict[str, Histogram] = {}
        self.registry.register(_PoolCollector(waiting))
        if shards is not None and owned is not None:
            self.registry.register(_ShardCollector(shards, owned))
        ProcessCollector(registry=self.registry)

    def ticket_matched(self, region: str, waited_ms: float) -> None:
        child = self._wait_children.get(region)
        if child is None:
            child = self._wait_children[region] = self._wait.labels(region)
        child.observe(max(0.0, waited_ms) / 1000)

    def call_stage(self, stage: str, region_a: str, region_b: str, since_match_ms: float) -> None:
        key = (stage, region_a, region_b)
        child = self._stage_children.get(key)
        if child is None:
            child = self._stage_children[key] = self._stage.labels(*key)
        child.observe(max(0.0, since_match_ms) / 1000)

    def call_start_failed(self, reason: str) -> None:
        self._failed.labels(reason).inc()

"""The routing service's Prometheus metrics: how long ingress and route picks take, and route pushes.

Filled by the servicer as each request is answered or each table is pushed
(``observe_pick``, ``route_pushed``); served by ``MetricsServer``.
"""

from __future__ import annotations

import functools
import time
from collections.abc import Awaitable, Callable
from typing import Any, Protocol, TypeVar

from prometheus_client import CollectorRegistry, Counter, Histogram
from prometheus_client.process_collector import ProcessCollector

__all__ = ["PICK_BUCKETS_S", "RoutingMetrics", "timed"]

# Seconds: a pick is a table look-up, well under a millisecond when healthy.
PICK_BUCKETS_S = (0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25)


class RoutingMetrics:
    def __init__(self) -> None:
        self.registry = CollectorRegistry()
        self._pick = Histogram(
            "duet_routing_pick_seconds",
            "time to answer PickIngress and PickRoute inside the routing service, by method and outcome "
            "(ok, or the status code's name)",
            ["method", "outcome"],
            buckets=PICK_BUCKETS_S,
            registry=self.registry,
        )
        self._pushes = Counter(
            "duet_routing_route_pushes",
            "next-hop tables pushed to an edge over WatchRoutes (at its watch, then after every change of its routes; "
            "a delta counts as one)",
            ["edge"],
            registry=self.registry,
        )
        self._push_entries = Counter(
            "duet_routing_route_push_entries",
            "next-hop entries in the tables (and deltas) pushed to an edge",
            ["edge"],
            registry=self.registry,
        )
        ProcessCollector(registry=self.registry)

    def observe_pick(self, method: str, outcome: str, seconds: float) -> None:
        self._pick.labels(method, outcome).observe(seconds)

    def route_pushed(self, edge_id: str, entries: int) -> None:
        self._pushes.labels(edge_id).inc()
        self._push_entries.labels(edge_id).inc(entries)


class _Measured(Protocol):
    metrics: RoutingMetrics | None


F = TypeVar("F", bound=Callable[..., Awaitable[Any]])


def timed(method: str) -> Callable[[F], F]:
    """Time a servicer method into ``self.metrics`` (when it has one): outcome "ok", or "error" when it raised."""

    def decorate(fn: F) -> F:
        @functools.wraps(fn)
        async def wrapper(self: _Measured, *args: Any) -> Any:
            start = time.perf_counter()
            outcome = "error"
            try:
                result = await fn(self, *args)
                outcome = "ok"
                return result
            finally:
                if self.metrics is not None:
                    self.metrics.observe_pick(method, outcome, time.perf_counter() - start)

        return wrapper  # type: ignore[return-value]

    return decorate

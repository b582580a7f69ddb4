"""A latency estimate from a fixed table of region pairs."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field


@dataclass
class FixedLatency:
    """RTTs (ms) by region pair, either order; the same region is 1 ms; a pair not listed is unknown."""

    rtts: Mapping[frozenset[str], float] = field(default_factory=dict)

    @classmethod
    def of(cls, table: Mapping[tuple[str, str], float]) -> FixedLatency:
        return cls({frozenset(pair): rtt for pair, rtt in table.items()})

    def rtt_ms(self, region_a: str, region_b: str) -> float | None:
        if region_a == region_b:
            return 1.0
        return self.rtts.get(frozenset((region_a, region_b)))

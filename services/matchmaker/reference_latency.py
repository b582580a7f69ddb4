"""The LatencyEstimate port over the routing library's reference RTTs between regions.

Region names are the topology's (an edge's region, e.g. "Frankfurt"): the
measured median between shipped regions, else the distance prior. A region
the shipped data does not know gives None (not near, unknown latency).
"""

from __future__ import annotations

import functools

from duet.routing.reference import reference_rtt_ms


class ReferenceLatency:
    def rtt_ms(self, region_a: str, region_b: str) -> float | None:
        return _cached(region_a, region_b) if region_a <= region_b else _cached(region_b, region_a)


@functools.lru_cache(maxsize=4096)
def _cached(region_a: str, region_b: str) -> float | None:
    try:
        return reference_rtt_ms(region_a, region_b)
    except ValueError:
        return None

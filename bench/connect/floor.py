"""The physical floor of one call after the match (the connect-time model the benchmark compares with).

Kept as one small pure function so it can be replaced by the routing
library's connect-time model (``routing/connect_model.py``) where that exists:
the same inputs, the same sum.
"""

from __future__ import annotations

from dataclasses import dataclass

__all__ = ["FloorTerms", "physical_floor_ms"]


@dataclass(frozen=True)
class FloorTerms:
    """The floor's parts for one pair, in ms (kept for the report)."""

    control_one_way_ms: float  # the matchmaker's region -> the farther of the two edges
    backbone_one_way_ms: float  # one trip between the two edges along the route (path RTT / 2)
    last_mile_ms: float  # one client leg, one way (counted twice)
    frame_interval_ms: float  # the receiver's jitter buffer releases a frame when the next one starts

    @property
    def total_ms(self) -> float:
        return physical_floor_ms(
            self.control_one_way_ms, self.backbone_one_way_ms, self.last_mile_ms, self.frame_interval_ms
        )


def physical_floor_ms(
    control_one_way_ms: float, backbone_one_way_ms: float, last_mile_ms: float, frame_interval_ms: float
) -> float:
    """Match -> first frame, at best: the Bridge reaching the farther edge, media crossing the backbone once,
    both last miles, and one frame interval.

    ``control_one_way_ms``: one-way delay from the matchmaker's region to the
    farther of the two edges (the Bridge must reach it). ``backbone_one_way_ms``:
    one trip between the two edges along the route. ``last_mile_ms``: one
    client leg one way; two legs are counted (the sender's, the receiver's).
    ``frame_interval_ms``: 1000 / fps. No processing time is counted.
    """
    return control_one_way_ms + backbone_one_way_ms + 2 * last_mile_ms + frame_interval_ms

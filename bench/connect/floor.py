"""The physical floor of one call after the match, from the routing library's connect-time model.

``duet.routing.connect_model.predict_connect`` predicts match -> first frame
for a region pair as control + backbone + access + frame + a processing
allowance. The benchmark compares each pair's p95 with the physical part
only (the allowance is no physics; the model's total is kept beside it):

    control one-way from the matchmaker's region to the farther edge
    + one backbone trip between the two edges along the route
    + the two last miles (one way each)
    + one frame interval (the receiver's jitter buffer releases a frame when the next one starts)
"""

from __future__ import annotations

from dataclasses import dataclass

from duet.routing.connect_model import predict_connect
from duet.routing.topology import Topology

__all__ = ["FloorTerms", "pair_floor"]


@dataclass(frozen=True)
class FloorTerms:
    """The floor's parts for one pair, in ms (kept for the report)."""

    control_one_way_ms: float  # the matchmaker's region -> the farther of the two edges
    backbone_one_way_ms: float  # one trip between the two edges along the route (path RTT / 2)
    access_ms: float  # both last miles, one way each
    frame_interval_ms: float
    model_ms: float  # the connect model's whole prediction, its processing allowance included

    @property
    def total_ms(self) -> float:
        return self.control_one_way_ms + self.backbone_one_way_ms + self.access_ms + self.frame_interval_ms


def pair_floor(
    topology: Topology, control_region: str, region_a: str, region_b: str, *, last_mile_ms: float
) -> FloorTerms:
    """The floor for a user in each region; ValueError when the model finds the pair unreachable or unknown."""
    p = predict_connect(topology, control_region, region_a, region_b, last_mile_ms=last_mile_ms)
    if p.unreachable:
        raise ValueError(f"{region_a}-{region_b}: {p.unreachable}")
    return FloorTerms(p.control_ms, p.backbone_ms, p.access_ms, p.frame_ms, p.total_ms)

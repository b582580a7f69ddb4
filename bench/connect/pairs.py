"""The region pairs the benchmark measures and the emulated path between each pair's clients.

Every delay here comes from the same places the world cluster's emulation
takes them: the topology's links (backbone, RTT / 2 each way along the
least-cost route), the control plane (the matchmaker's region to each
region, RTT / 2) and the last mile. The baseline's relay and signalling
delays are derived from them, so both sides of the comparison cross the same
emulated world.
"""

from __future__ import annotations

import itertools
from collections.abc import Sequence
from dataclasses import dataclass

from bench.connect.floor import FloorTerms, pair_floor
from duet.routing.paths import shortest_path
from duet.routing.topology import Topology
from duet.services.devkit.wan import ControlPlane

__all__ = ["QUICK_PAIRS", "PairPath", "all_pairs", "pair_path"]

# --quick: the worst pair of the shipped regions and a short transatlantic one.
QUICK_PAIRS = (("Sydney", "Johannesburg"), ("Frankfurt", "Virginia"))


@dataclass(frozen=True)
class PairPath:
    """Two clients, one in each region, and what lies between them under emulation."""

    region_a: str
    region_b: str
    edge_a: str
    edge_b: str
    route: tuple[str, ...]  # edge ids, a's edge first
    route_rtt_ms: float
    control_a_ms: float  # one way, the matchmaker's region <-> region a
    control_b_ms: float
    last_mile_ms: float
    floor_terms: FloorTerms  # the connect model's physical floor for the pair

    @property
    def key(self) -> tuple[str, str]:
        return (self.region_a, self.region_b)

    def floor(self) -> FloorTerms:
        return self.floor_terms

    # The end-to-end baseline over the same world:
    @property
    def media_one_way_ms(self) -> float:
        """Client to client through a relay on the route: both last miles and the backbone trip."""
        return self.last_mile_ms + self.route_rtt_ms / 2 + self.last_mile_ms

    @property
    def signalling_one_way_ms(self) -> float:
        """An SDP from a to b through the matchmaker's region (either way: the path is symmetric)."""
        return self.last_mile_ms + self.control_a_ms + self.control_b_ms + self.last_mile_ms

    @property
    def notify_a_ms(self) -> float:
        """The match reaching client a (it then makes the offer)."""
        return self.control_a_ms + self.last_mile_ms


def pair_path(
    topology: Topology, control: ControlPlane, region_a: str, region_b: str, *, last_mile_ms: float
) -> PairPath:
    """The path between the first edges of two regions (ValueError naming a region the topology lacks)."""
    edges = {}
    for region in (region_a, region_b):
        found = topology.edges_in_region(region)
        if not found:
            raise ValueError(f"region {region!r} has no edge in the topology")
        edges[region] = found[0].edge_id
    route = shortest_path(topology, edges[region_a], edges[region_b])
    return PairPath(
        region_a=region_a,
        region_b=region_b,
        edge_a=edges[region_a],
        edge_b=edges[region_b],
        route=route.edge_ids,
        route_rtt_ms=route.rtt_ms,
        control_a_ms=control.one_way_ms(region_a),
        control_b_ms=control.one_way_ms(region_b),
        last_mile_ms=last_mile_ms,
        floor_terms=pair_floor(topology, control.region, region_a, region_b, last_mile_ms=last_mile_ms),
    )


def all_pairs(regions: Sequence[str], *, same_region: bool) -> list[tuple[str, str]]:
    """Every unordered pair of distinct regions (13 regions: 78), plus each region with itself if asked."""
    pairs = list(itertools.combinations(regions, 2))
    if same_region:
        pairs += [(r, r) for r in regions]
    return pairs

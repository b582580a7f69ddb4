"""The connect-time model: the predicted floor of match -> partner's first frame for a region pair.

After two users are matched, the first frame needs, at the least:

1. **control**: the matchmaker's bridge instructions reach both edges; they go
   out concurrently, so the farther edge counts: one way from the
   matchmaker's region to that edge's region (half the reference RTT between
   the regions, ``reference_rtt_ms``: the measured median or the distance
   prior; control traffic rides the public internet, not the backbone);
2. **backbone**: one one-way trip along the path the routing service picks
   between the two users' edges (half the sum of link RTTs on the least-cost
   path, with the same costs and draining rule as ``paths.shortest_path``);
3. **access**: the two last-mile legs, one way each (``last_mile_ms``, 15 ms by
   default): the sender's media up to its edge and the receiver's down from
   its edge. A user whose region has no usable edge attaches where ingress
   sends them (the nearest ACTIVE edge by distance, as ``ingress.pick_ingress``
   chooses) and their leg is longer by half the distance-prior RTT to it;
4. **frame**: one frame interval (33 ms at 30 fps): the receiver's jitter
   buffer releases a frame when the next one starts;
5. **processing**: a fixed allowance for the edges' and clients' own work
   (bridging, keyframe request, decode); 15 ms, the order of what a call
   needs on loopback beyond the frame interval on the 2-core test machines.

The **bound** (``connect_bound_ms``) is what a measured call must stay under:
``BOUND_FIXED_MS + BOUND_SCALE x (control + backbone + access) + frame``. The
one-way delays get a margin in proportion (emulated and real delays are
timers and queues that run late in proportion to how much is in flight), the
rest a fixed allowance for a busy 2-core machine: the processing allowance
plus the scheduling stalls of the services and the clients' encoders and
decoders sharing it. docs/connect-time-in-ci.md gives the measurements the
two constants come from. The connect-time property tests hold every call of
random topologies to it, and the pytest plugin hands it to users' tests.

The prediction is a pure function of (topology, matchmaker region, region
pair, last mile): no measurements, no clock. It is the floor the connect
benchmark reports each pair's p95 against, what ``duet topology diff`` and
``apply --dry-run`` print before and after a change, and what ``duet topology
lint`` holds against a budget. Raising a link's RTT never lowers a lossless
topology's prediction; with lossy links the routing may switch to a longer
path with less loss, and so does the model.
"""

from __future__ import annotations

import itertools
import math
from collections.abc import Sequence
from dataclasses import dataclass

import networkx as nx

from duet.routing.geo import Location
from duet.routing.ingress import NoEdgeAvailable, pick_ingress
from duet.routing.paths import NoRoute, build_graph, shortest_path
from duet.routing.reference import reference_rtt_ms
from duet.routing.topology import EdgeNode, Topology

__all__ = [
    "BOUND_FIXED_MS",
    "BOUND_SCALE",
    "FRAME_INTERVAL_MS",
    "LAST_MILE_MS",
    "PROCESSING_MS",
    "ConnectPrediction",
    "connect_bound_ms",
    "predict_all_pairs",
    "predict_connect",
    "region_pairs",
]

LAST_MILE_MS = 15.0  # one way, client <-> its edge
FRAME_INTERVAL_MS = 33.0  # 30 fps
PROCESSING_MS = 15.0
BOUND_SCALE = 1.25  # x the one-way delays (control + backbone + access)
BOUND_FIXED_MS = 150.0  # processing and a noisy machine's stalls, beyond the frame interval


@dataclass(frozen=True)
class ConnectPrediction:
    """The predicted connect floor of one region pair, in ms, with its parts.

    ``unreachable`` is empty when the pair can connect; otherwise it says why
    not and ``total_ms`` is infinite.
    """

    region_a: str
    region_b: str
    edge_a: str = ""
    edge_b: str = ""
    path: tuple[str, ...] = ()
    control_ms: float = 0.0
    backbone_ms: float = 0.0
    access_ms: float = 0.0
    frame_ms: float = FRAME_INTERVAL_MS
    processing_ms: float = PROCESSING_MS
    unreachable: str = ""

    @property
    def total_ms(self) -> float:
        if self.unreachable:
            return math.inf
        return self.control_ms + self.backbone_ms + self.access_ms + self.frame_ms + self.processing_ms

    @property
    def one_way_ms(self) -> float:
        """The delays of the path: control to the farther edge, the backbone trip and both last miles."""
        return self.control_ms + self.backbone_ms + self.access_ms


def connect_bound_ms(
    prediction: ConnectPrediction, *, scale: float = BOUND_SCALE, fixed_ms: float = BOUND_FIXED_MS
) -> float:
    """The most a call of the predicted pair may take, match -> first frame (inf when unreachable).

    ``fixed_ms + scale x prediction.one_way_ms + prediction.frame_ms``; ValueError for
    a ``scale`` below 1 or a negative ``fixed_ms`` (the bound never undercuts the floor).
    """
    if not (math.isfinite(scale) and scale >= 1):
        raise ValueError(f"scale must be a finite number >= 1, got {scale!r}")
    if not (math.isfinite(fixed_ms) and fixed_ms >= 0):
        raise ValueError(f"fixed_ms must be a finite number >= 0, got {fixed_ms!r}")
    if prediction.unreachable:
        return math.inf
    return fixed_ms + scale * prediction.one_way_ms + prediction.frame_ms


def region_pairs(topology: Topology) -> list[tuple[str, str]]:
    """Every unordered pair of the topology's regions, a region with itself included, in declaration order."""
    names = [r.name for r in topology.regions]
    return list(itertools.combinations_with_replacement(names, 2))


@dataclass(frozen=True)
class _Attachment:
    edge: EdgeNode
    extra_one_way_ms: float  # beyond the last mile: the way from the region to an edge elsewhere


def _attach(topology: Topology, region: str) -> _Attachment:
    r = topology.region(region)
    choice = pick_ingress(topology, Location(r.lat, r.lon), default_region=region)
    return _Attachment(choice.edge, choice.estimated_rtt_ms / 2)


def _one_way_control_ms(topology: Topology, matchmaker_region: str, edge: EdgeNode) -> float:
    return reference_rtt_ms(topology.region(matchmaker_region), topology.region(edge.region)) / 2


def predict_connect(
    topology: Topology,
    matchmaker_region: str,
    region_a: str,
    region_b: str,
    *,
    last_mile_ms: float = LAST_MILE_MS,
    graph: nx.Graph[str] | None = None,
) -> ConnectPrediction:
    """The predicted connect floor (ms after the match) between a user in ``region_a`` and one in ``region_b``.

    Edges count as usable whether or not they have registered (a topology
    file has no addresses): the prediction is for the topology once its edges
    are up. ``graph`` is ``build_graph(topology)``, to share one across many
    pairs. Raises ``ValueError`` for a region the topology does not declare or
    a negative or non-finite ``last_mile_ms``; a pair that cannot connect (no
    ACTIVE edge, no route) is a prediction with ``unreachable`` set.
    """
    for name, what in ((matchmaker_region, "matchmaker region"), (region_a, "region"), (region_b, "region")):
        if not topology.has_region(name):
            raise ValueError(f"{what} {name!r} is not in the topology")
    if not (isinstance(last_mile_ms, (int, float)) and math.isfinite(last_mile_ms) and last_mile_ms >= 0):
        raise ValueError(f"last_mile_ms must be a finite number >= 0, got {last_mile_ms!r}")
    try:
        a, b = _attach(topology, region_a), _attach(topology, region_b)
    except NoEdgeAvailable:
        return ConnectPrediction(region_a, region_b, unreachable="no ACTIVE edge takes clients")
    try:
        path = shortest_path(graph if graph is not None else build_graph(topology), a.edge.edge_id, b.edge.edge_id)
    except NoRoute as exc:
        return ConnectPrediction(region_a, region_b, a.edge.edge_id, b.edge.edge_id, unreachable=str(exc))
    control = max(_one_way_control_ms(topology, matchmaker_region, e) for e in (a.edge, b.edge))
    return ConnectPrediction(
        region_a,
        region_b,
        a.edge.edge_id,
        b.edge.edge_id,
        path.edge_ids,
        control_ms=control,
        backbone_ms=path.rtt_ms / 2,
        access_ms=2 * last_mile_ms + a.extra_one_way_ms + b.extra_one_way_ms,
    )


def predict_all_pairs(
    topology: Topology,
    matchmaker_region: str,
    *,
    last_mile_ms: float = LAST_MILE_MS,
    pairs: Sequence[tuple[str, str]] | None = None,
) -> list[ConnectPrediction]:
    """``predict_connect`` for every region pair (default: ``region_pairs(topology)``), in that order."""
    graph = build_graph(topology)
    return [
        predict_connect(topology, matchmaker_region, a, b, last_mile_ms=last_mile_ms, graph=graph)
        for a, b in (region_pairs(topology) if pairs is None else pairs)
    ]

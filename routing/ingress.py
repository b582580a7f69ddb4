"""Ingress choice: which edge a client should attach its WebRTC leg to.

For each eligible edge we estimate the client's RTT:

* a client-reported probe RTT to that edge when there is one (a measurement
  beats any model);
* otherwise the distance prior from the client's location to the edge's
  region: great-circle km x 2 / 200 km-per-ms x 1.8. Light in fibre covers
  ~200 km/ms, and measured backbone RTTs are a median 1.83x that straight-line
  floor (see routing/distance.py and routing/data/ATTRIBUTION.md).

The estimate is then weighted by load: ``score = max(rtt, 5 ms) x (1 + 10 x max(0, u - 0.8))``
with ``u = load / capacity`` (loads: the legs each edge reports in its heartbeat). Below 80 % utilisation load does not matter; a
full edge looks 3x as far. Multiplying (rather than adding) means load only
moves clients between edges of comparable latency (two edges in one metro),
never to another continent, and the penalty is continuous so choices do not
flap around a threshold.

Without a location (private, loopback, unknown address) the client is assumed
to be at the default region, so its edges win, and if they are all drained
the nearest other region's edges do.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass
from types import MappingProxyType

from duet.routing.distance import great_circle_km, prior_rtt_ms
from duet.routing.geo import LocateResult, Location
from duet.routing.topology import EdgeNode, EdgeState, Topology

LOAD_THRESHOLD = 0.8  # utilisation above which an edge is penalised
LOAD_PENALTY = 10.0  # score multiplier added per unit of utilisation above the threshold
# No client is 0 ms from an edge (there is a last mile): without a floor, edges at the
# client's own location would score 0 and load would never move a client between them.
SCORE_FLOOR_MS = 5.0

_EMPTY: Mapping[str, float] = MappingProxyType({})


class NoEdgeAvailable(RuntimeError):
    """No edge can take the client (none active, or none registered)."""


@dataclass(frozen=True)
class IngressChoice:
    edge: EdgeNode
    estimated_rtt_ms: float
    client_region: str  # nearest topology region to the client (or the default region)
    reason: str  # e.g. "geoip; sin-1 by distance estimate (3 ms)", "fallback: loopback (default region Frankfurt); ..."


def load_factor(load: float, capacity: int) -> float:
    """Score multiplier for an edge's load (same unit as its capacity)."""
    return 1.0 + LOAD_PENALTY * max(0.0, load / capacity - LOAD_THRESHOLD)


def estimated_rtt_ms(topology: Topology, location: Location, edge: EdgeNode) -> float:
    """Distance-prior RTT from a client location to an edge's region."""
    region = topology.region(edge.region)
    return prior_rtt_ms(great_circle_km(location.lat, location.lon, region.lat, region.lon))


def nearest_region(topology: Topology, location: Location) -> str:
    """The topology region closest (great-circle) to a location."""
    if not topology.regions:
        raise NoEdgeAvailable("the topology has no regions")
    return min(topology.regions, key=lambda r: great_circle_km(location.lat, location.lon, r.lat, r.lon)).name


def _check_measurements(what: str, values: Mapping[str, float]) -> None:
    for edge_id, v in values.items():
        if isinstance(v, bool) or not isinstance(v, (int, float)) or not math.isfinite(v) or v < 0:
            raise ValueError(f"{what} for edge {edge_id!r} must be a finite number >= 0, got {v!r}")


def pick_ingress(
    topology: Topology,
    location: Location | LocateResult | None,
    *,
    probes: Mapping[str, float] = _EMPTY,
    loads: Mapping[str, float] = _EMPTY,
    default_region: str,
    require_registered: bool = False,
) -> IngressChoice:
    """Pick the ingress edge with the lowest load-weighted estimated RTT.

    ``location`` may be a ``LocateResult`` (straight from ``GeoLocator.locate``),
    so a fallback can say why there was no location. ``probes`` are the
    client's measured RTTs by edge id (unknown ids are ignored: a client may
    hold a stale edge list); ``loads`` are current loads by edge id in the
    unit of ``EdgeNode.capacity``. Only ACTIVE edges are eligible, and with
    ``require_registered`` only those that registered their addresses.
    Raises ``ValueError`` for an unknown default region or a negative/NaN
    probe or load, ``NoEdgeAvailable`` when no edge is eligible.
    """
    if not topology.has_region(default_region):
        raise ValueError(f"default region {default_region!r} is not in the topology")
    _check_measurements("probe RTT", probes)
    _check_measurements("load", loads)

    why_unlocated = "no location"
    basis = "location"
    if isinstance(location, LocateResult):
        why_unlocated, basis = location.reason, location.reason
        location = location.location

    if location is None:
        region = topology.region(default_region)
        origin = Location(region.lat, region.lon)
        client_region = default_region
        basis = f"fallback: {why_unlocated} (default region {default_region})"
    else:
        origin = location
        client_region = nearest_region(topology, location)

    eligible = [e for e in topology.edges if e.state is EdgeState.ACTIVE and (e.registered or not require_registered)]
    if not eligible:
        which = "active and registered" if require_registered else "active"
        raise NoEdgeAvailable(f"no {which} edge in topology version {topology.version}")

    def rtt(e: EdgeNode) -> float:
        probed = probes.get(e.edge_id)
        return float(probed) if probed is not None else estimated_rtt_ms(topology, origin, e)

    def score(e: EdgeNode) -> tuple[float, float, int]:
        r = rtt(e)
        # Ties (same region, same load) go to the lower edge number: deterministic.
        return (max(r, SCORE_FLOOR_MS) * load_factor(loads.get(e.edge_id, 0.0), e.capacity), r, e.number)

    best = min(eligible, key=score)
    best_rtt = rtt(best)
    source = "client probe" if best.edge_id in probes else "distance estimate"
    reason = f"{basis}; {best.edge_id} by {source} ({best_rtt:.0f} ms)"
    unweighted = min(eligible, key=lambda e: (rtt(e), e.number))
    if unweighted.edge_id != best.edge_id:
        reason += f"; load-weighted: {unweighted.edge_id} is closer but busy"
    return IngressChoice(best, best_rtt, client_region, reason)

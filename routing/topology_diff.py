"""What a topology change changes: the declarations added, removed or altered, and the connect-time impact.

Only the declaration is compared (regions, edges with their number, region,
capacity and state, links with their RTT, loss and state); the addresses
edges registered and the version are the running service's, not a change.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

from duet.routing.connect_model import LAST_MILE_MS, predict_all_pairs, region_pairs
from duet.routing.topology import EdgeNode, EdgeState, Link, Region, Topology

__all__ = ["Change", "PairImpact", "connect_impact", "diff_topologies", "live_call_warnings"]

_EDGE_FIELDS = ("number", "region", "capacity", "state")
_LINK_FIELDS = ("rtt_ms", "loss", "up")


@dataclass(frozen=True)
class Change:
    """One declaration added, removed or changed, e.g. ``edge fra-1: state active -> draining``."""

    kind: str  # "region", "edge" or "link"
    name: str  # region name, edge id, or "a<->b"
    action: str  # "added", "removed" or "changed"
    details: tuple[str, ...] = ()  # for "changed": "state active -> draining", ...

    def __str__(self) -> str:
        if self.action == "changed":
            return f"{self.kind} {self.name}: {', '.join(self.details)}"
        return f"{self.kind} {self.name}: {self.action}" + (f" ({', '.join(self.details)})" if self.details else "")


def _show(value: object) -> str:
    if isinstance(value, EdgeState):
        return value.value
    if isinstance(value, bool):
        return "up" if value else "down"
    if isinstance(value, float):
        return f"{value:g}"
    return str(value)


def _changed_fields(old: object, new: object, names: tuple[str, ...]) -> tuple[str, ...]:
    out = []
    for name in names:
        before, after = getattr(old, name), getattr(new, name)
        if before != after:
            label = "state" if name == "up" else name
            out.append(f"{label} {_show(before)} -> {_show(after)}")
    return tuple(out)


def _region_details(r: Region) -> tuple[str, ...]:
    return (f"lat {r.lat:g}, lon {r.lon:g}",)


def _edge_details(e: EdgeNode) -> tuple[str, ...]:
    return (f"number {e.number}, region {e.region}, capacity {e.capacity}, {e.state.value}",)


def _link_details(ln: Link) -> tuple[str, ...]:
    return (f"rtt {ln.rtt_ms:g} ms, loss {ln.loss:g}, {'up' if ln.up else 'down'}",)


def diff_topologies(before: Topology, after: Topology) -> list[Change]:
    """Every declaration that differs, regions first, then edges, then links, each in file order."""
    changes: list[Change] = []
    old_regions = {r.name: r for r in before.regions}
    new_regions = {r.name: r for r in after.regions}
    for r in before.regions:
        if r.name not in new_regions:
            changes.append(Change("region", r.name, "removed"))
        elif (r.lat, r.lon) != (new_regions[r.name].lat, new_regions[r.name].lon):
            changes.append(Change("region", r.name, "changed", _changed_fields(r, new_regions[r.name], ("lat", "lon"))))
    changes += [
        Change("region", r.name, "added", _region_details(r)) for r in after.regions if r.name not in old_regions
    ]

    for e in before.edges:
        new_edge = after.find_edge(e.edge_id)
        if new_edge is None:
            changes.append(Change("edge", e.edge_id, "removed"))
        elif details := _changed_fields(e, new_edge, _EDGE_FIELDS):
            changes.append(Change("edge", e.edge_id, "changed", details))
    changes += [
        Change("edge", e.edge_id, "added", _edge_details(e)) for e in after.edges if before.find_edge(e.edge_id) is None
    ]

    for ln in before.links:
        new_link = after.link(ln.a, ln.b)
        if new_link is None:
            changes.append(Change("link", f"{ln.a}<->{ln.b}", "removed"))
        elif details := _changed_fields(ln, new_link, _LINK_FIELDS):
            changes.append(Change("link", f"{ln.a}<->{ln.b}", "changed", details))
    changes += [
        Change("link", f"{ln.a}<->{ln.b}", "added", _link_details(ln))
        for ln in after.links
        if before.link(ln.a, ln.b) is None
    ]
    return changes


def live_call_warnings(before: Topology, after: Topology) -> list[str]:
    """What a change does to calls already running, for an operator to read before applying it.

    Draining ends no call (the edge keeps its own, and transit traffic moves
    to the new route), so it is not warned about; taking an edge down or
    removing it ends the calls it carries.
    """
    warnings = []
    for e in before.edges:
        new_edge = after.find_edge(e.edge_id)
        if e.state is EdgeState.DOWN:
            continue
        if new_edge is None:
            warnings.append(f"edge {e.edge_id} is removed: calls on it end (drain it first and wait for them)")
        elif new_edge.state is EdgeState.DOWN:
            warnings.append(f"edge {e.edge_id} goes down: calls on it end (drain it first and wait for them)")
    return warnings


@dataclass(frozen=True)
class PairImpact:
    """A region pair's predicted connect time before and after a change (None: the region is not declared)."""

    region_a: str
    region_b: str
    before_ms: float | None  # math.inf: declared but cannot connect
    after_ms: float | None

    @property
    def changed(self) -> bool:
        return self.before_ms != self.after_ms

    def over(self, budget_ms: float) -> bool:
        """True when the pair's predicted time after the change exceeds the budget (or it cannot connect)."""
        return self.after_ms is not None and self.after_ms > budget_ms


def _predictions(topology: Topology, matchmaker_region: str, last_mile_ms: float) -> dict[tuple[str, str], float]:
    if not topology.has_region(matchmaker_region):
        return {pair: math.inf for pair in region_pairs(topology)}  # no control plane there: nothing connects
    return {
        (p.region_a, p.region_b): p.total_ms
        for p in predict_all_pairs(topology, matchmaker_region, last_mile_ms=last_mile_ms)
    }


def _lookup(table: dict[tuple[str, str], float], a: str, b: str) -> float | None:
    found = table.get((a, b))
    return table.get((b, a)) if found is None else found


def connect_impact(
    before: Topology, after: Topology, matchmaker_region: str, *, last_mile_ms: float = LAST_MILE_MS
) -> list[PairImpact]:
    """Predicted connect time of every region pair of either topology, before and after.

    Pairs are in the order of the new topology's regions, then pairs only the
    old one had. Raises ``ValueError`` when neither topology declares the
    matchmaker region.
    """
    if not (before.has_region(matchmaker_region) or after.has_region(matchmaker_region)):
        raise ValueError(f"matchmaker region {matchmaker_region!r} is not in the topology")
    old = _predictions(before, matchmaker_region, last_mile_ms)
    new = _predictions(after, matchmaker_region, last_mile_ms)
    out = [PairImpact(a, b, _lookup(old, a, b), _lookup(new, a, b)) for a, b in region_pairs(after)]
    seen = {(i.region_a, i.region_b) for i in out}
    out += [
        PairImpact(a, b, _lookup(old, a, b), None)
        for a, b in region_pairs(before)
        if (a, b) not in seen and (b, a) not in seen
    ]
    return out

"""Where the control plane could run: the floor of the same calls with the matchmaker in each region.

A pair's floor starts with the control one-way from the matchmaker's region
to the farther of the two edges, so the region the matchmaker runs in puts a
minimum under every figure, ``next_p95_ms`` included. The benchmark places
its calls with one control region; this recomputes the floor of the calls it
measured with every region of the topology in that place (no call is placed:
the connect model's arithmetic), so the report shows how far one control
region can go at best and whether a goal is out of reach of any of them.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from bench.connect.floor import pair_floor
from bench.connect.report import percentile
from duet.routing.topology import Topology

__all__ = ["Placement", "placement_table", "placements"]


@dataclass(frozen=True)
class Placement:
    control_region: str
    next_floor_p95_ms: float  # p95 of the floors of the measured next calls' pairs
    median_floor_ms: float  # over the measured pairs
    worst_floor_ms: float
    pairs_over_ms: int  # measured pairs whose floor exceeds ``limit_ms``


def placements(
    topology: Topology,
    candidates: Sequence[str],
    pairs: Sequence[tuple[str, str]],
    next_call_pairs: Sequence[tuple[str, str]],
    *,
    last_mile_ms: float,
    limit_ms: float,
) -> list[Placement]:
    """One row per candidate control region, lowest ``next_floor_p95_ms`` first.

    ``pairs``: the pairs measured (two different regions each); ``next_call_pairs``: the pair of every
    measured next call, repeated per call, so the percentile weighs pairs as the benchmark's does.
    """
    rows = []
    for control in candidates:
        floor = {p: pair_floor(topology, control, *p, last_mile_ms=last_mile_ms).total_ms for p in pairs}
        values = sorted(floor.values())
        rows.append(
            Placement(
                control_region=control,
                next_floor_p95_ms=percentile([floor[p] for p in next_call_pairs], 95) if next_call_pairs else 0.0,
                median_floor_ms=percentile(values, 50),
                worst_floor_ms=values[-1],
                pairs_over_ms=sum(v > limit_ms for v in values),
            )
        )
    return sorted(rows, key=lambda r: (r.next_floor_p95_ms, r.worst_floor_ms))


def placement_table(rows: Sequence[Placement], measured_with: str, limit_ms: float) -> str:
    lines = [
        f"Floor with the matchmaker in each region (measured with {measured_with}; the model's arithmetic):",
        f"{'control region':<18} {'next floor p95':>14} {'median floor':>12} {'worst floor':>11} "
        f"{'pairs > ' + format(limit_ms, 'g') + ' ms':>14}",
    ]
    for r in rows:
        mark = "  <- measured" if r.control_region == measured_with else ""
        lines.append(
            f"{r.control_region:<18} {r.next_floor_p95_ms:>14.0f} {r.median_floor_ms:>12.0f} "
            f"{r.worst_floor_ms:>11.0f} {r.pairs_over_ms:>14}{mark}"
        )
    return "\n".join(lines)

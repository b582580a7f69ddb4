"""Topology lint for CI: every region pair's predicted connect time against a budget.

``duet topology lint FILE`` and ``assert_topology_within_budget`` in a test
suite apply the same rule: load the file (a file that does not validate
fails), predict every region pair with ``connect_model``, and fail when any
pair exceeds the budget (600 ms by default) or cannot connect at all::

    # tests/test_topology.py in a deployment repository
    from duet.routing.lint import assert_topology_within_budget

    def test_topology_meets_the_connect_budget():
        assert_topology_within_budget("deploy/topology.yaml", budget_ms=600)
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from pathlib import Path

from duet.routing.connect_model import LAST_MILE_MS, ConnectPrediction, predict_all_pairs
from duet.routing.topology import Topology
from duet.routing.topology_file import load_topology_file

__all__ = ["DEFAULT_BUDGET_MS", "LintReport", "assert_topology_within_budget", "lint_topology"]

DEFAULT_BUDGET_MS = 600.0


@dataclass(frozen=True)
class LintReport:
    budget_ms: float
    matchmaker_region: str
    predictions: tuple[ConnectPrediction, ...]

    @property
    def failures(self) -> tuple[ConnectPrediction, ...]:
        """Pairs over the budget or unable to connect, worst first."""
        bad = [p for p in self.predictions if p.total_ms > self.budget_ms]
        return tuple(sorted(bad, key=lambda p: -p.total_ms))

    @property
    def ok(self) -> bool:
        return not self.failures

    @property
    def worst(self) -> ConnectPrediction | None:
        return max(self.predictions, key=lambda p: p.total_ms, default=None)

    def failure_lines(self) -> list[str]:
        """One line per failing pair, in words."""
        lines = []
        for p in self.failures:
            if p.unreachable:
                lines.append(f"{p.region_a} <-> {p.region_b}: cannot connect: {p.unreachable}")
            else:
                lines.append(
                    f"{p.region_a} <-> {p.region_b}: {p.total_ms:.0f} ms > {self.budget_ms:g} ms "
                    f"(control {p.control_ms:.0f} + backbone {p.backbone_ms:.0f} via {' > '.join(p.path)} "
                    f"+ last miles {p.access_ms:.0f} + frame {p.frame_ms:.0f} + processing {p.processing_ms:.0f})"
                )
        return lines


def lint_topology(
    topology: Topology,
    *,
    budget_ms: float = DEFAULT_BUDGET_MS,
    matchmaker_region: str | None = None,
    last_mile_ms: float = LAST_MILE_MS,
) -> LintReport:
    """Predict every region pair; ``matchmaker_region`` defaults to the topology's first region.

    Raises ``ValueError`` for a budget that is not a positive number or a
    matchmaker region the topology does not declare.
    """
    if isinstance(budget_ms, bool) or not isinstance(budget_ms, (int, float)) or not budget_ms > 0:
        raise ValueError(f"the budget must be a number of ms > 0, got {budget_ms!r}")
    if math.isnan(budget_ms):
        raise ValueError("the budget must be a number of ms > 0, got nan")
    if not topology.regions:
        raise ValueError("the topology declares no regions")
    region = matchmaker_region or topology.regions[0].name
    predictions = predict_all_pairs(topology, region, last_mile_ms=last_mile_ms)
    return LintReport(float(budget_ms), region, tuple(predictions))


def assert_topology_within_budget(
    path: str | Path,
    budget_ms: float = DEFAULT_BUDGET_MS,
    *,
    matchmaker_region: str | None = None,
    last_mile_ms: float = LAST_MILE_MS,
) -> LintReport:
    """Fail (``AssertionError`` listing every offending pair) unless the topology file meets the budget.

    A file that does not validate fails the same way, with its problems and
    their lines. Returns the report when every pair is within the budget.
    """
    try:
        topology = load_topology_file(path)
    except ValueError as exc:  # TopologyFileError: its message lists every problem with its line
        raise AssertionError(str(exc)) from None
    report = lint_topology(
        topology, budget_ms=budget_ms, matchmaker_region=matchmaker_region, last_mile_ms=last_mile_ms
    )
    if not report.ok:
        lines = "\n".join(f"  {line}" for line in report.failure_lines())
        raise AssertionError(
            f"{path}: {len(report.failures)} region pair(s) over the {report.budget_ms:g} ms connect budget "
            f"(matchmaker in {report.matchmaker_region}):\n{lines}"
        )
    return report

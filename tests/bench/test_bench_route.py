"""make bench-route, small: the summary's shape and that every figure was measured (not timing goals)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parents[2]
KEYS = {
    "edges",
    "pick_route_p50_us",
    "pick_route_p99_us",
    "naive_p99_us",
    "speedup_vs_naive",
    "recompute_ms",
    "push_to_all_edges_ms",
    "failover_ms",
}


def test_quick_run_measures_every_figure() -> None:
    run = subprocess.run(
        [sys.executable, "-m", "bench.route", "--quick"],
        cwd=REPO_ROOT,
        env=dict(os.environ, PYTHONPATH=str(REPO_ROOT)),
        capture_output=True,
        text=True,
        timeout=180,
    )
    assert run.returncode == 0, run.stderr[-3000:]
    summary = json.loads(run.stdout.strip().splitlines()[-1])
    assert set(summary) == KEYS
    assert summary["edges"] == 60
    assert all(summary[k] > 0 for k in KEYS), summary
    # A table lookup is cheaper than a graph search even on a small graph.
    assert summary["pick_route_p99_us"] < summary["naive_p99_us"]
    assert "failover: link" in run.stderr and "edges rerouted" in run.stderr

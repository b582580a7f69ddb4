"""make bench-match, tiny: real PostgreSQL, the summary's shape, every newcomer matched within the rules.

Also the pieces the bench's verdict rests on: the population's promise (each newcomer fits its target,
the waiting users fit nobody among themselves) and the rule checker catching a broken pair.
"""

from __future__ import annotations

import json
import os
import random
import subprocess
import sys
from dataclasses import replace
from pathlib import Path

import pytest

from bench.match.population import BROWSER, H264_ONLY, Profile, _PlannedHistory, make_population, plan_waiting
from bench.match.verify import violations
from duet.services.matchmaker.preferences import Preferences, Scope

REPO_ROOT = Path(__file__).resolve().parents[2]
KEYS = {"waiting", "matches_per_s", "time_to_match_p50_ms", "time_to_match_p99_ms", "naive_matches_per_s", "speedup_vs_naive"}  # fmt: skip


@pytest.mark.slow  # about a minute, most of it waiting out the pool's 30 s relaxation step, twice
def test_tiny_run_matches_every_newcomer_within_the_rules_on_postgres(database_url: str) -> None:
    run = subprocess.run(
        [sys.executable, "-m", "bench.match", "--waiting", "300", "--newcomers", "100", "--naive-newcomers", "50"],
        cwd=REPO_ROOT,
        env=dict(os.environ, PYTHONPATH=str(REPO_ROOT), DUET_DATABASE_URL=database_url),
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert run.returncode == 0, run.stdout[-3000:] + run.stderr[-3000:]
    lines = run.stdout.strip().splitlines()
    summary = json.loads(lines[-1])
    assert set(summary) == KEYS
    assert summary["waiting"] == 300
    assert summary["matches_per_s"] > 0 and summary["naive_matches_per_s"] > 0
    assert 0 < summary["time_to_match_p50_ms"] <= summary["time_to_match_p99_ms"]
    # Rounded to one decimal in the summary.
    assert summary["speedup_vs_naive"] == pytest.approx(summary["matches_per_s"] / summary["naive_matches_per_s"], abs=0.06)  # fmt: skip
    rows = {line.split()[0]: line.split() for line in lines if line.startswith(("indexed ", "naive "))}
    # search, waiting, newcomers, matched, ..., committed (10th): every newcomer matched, as many calls committed.
    assert rows["indexed"][2:4] == ["100", "100"] and rows["indexed"][9] == "100"
    assert rows["naive"][2:4] == ["50", "50"] and rows["naive"][9] == "50"
    assert "VIOLATION" not in run.stdout
    assert "call set-up at the edges" in run.stdout  # the table says what is not measured
    assert "gc policy:" in run.stderr  # the matchmaker server's collector policy, as in production


def test_the_floor_adds_up_its_parts() -> None:
    run = subprocess.run(
        [sys.executable, "-m", "bench.match.floor", "--waiting", "300", "--newcomers", "100"],
        cwd=REPO_ROOT,
        env=dict(os.environ, PYTHONPATH=str(REPO_ROOT)),
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert run.returncode == 0, run.stderr[-3000:]
    floor = json.loads(run.stdout.strip().splitlines()[-1])
    assert set(floor) == {"pool_search_us", "future_round_trip_us", "task_us", "per_match_us", "matches_per_s_at_most"}
    assert all(floor[k] > 0 for k in floor)
    parts = floor["pool_search_us"] + 2 * floor["future_round_trip_us"] + 2 * floor["task_us"]  # two writes, two tasks
    assert floor["per_match_us"] == pytest.approx(parts, abs=0.06)
    assert floor["matches_per_s_at_most"] == round(1e6 / floor["per_match_us"])


def test_each_newcomer_fits_its_target_and_the_waiting_fit_nobody_among_themselves() -> None:
    pop = make_population(3, 400, 150)
    by_id = {p.user_id: p for p in pop.waiting}
    assert len({n.target for n in pop.newcomers}) == 150
    for n in pop.newcomers:
        # Both just queued: the strictest the rules get.
        assert violations(n, 0.0, by_id[n.target], 0.0, 1.0, blocks=pop.blocks, met=pop.met) == []
    # Fully relaxed (an hour on), only hard filters: no two waiting users may meet.
    sample = random.Random(0).sample(pop.waiting, 120)
    for i, a in enumerate(sample):
        for b in sample[i + 1 :]:
            assert violations(a, 0.0, b, 0.0, 3_600_000.0, blocks=set(), met=set()), (a, b)


def test_the_checker_names_what_a_pair_breaks() -> None:
    prefs = Preferences(languages=frozenset({"en"}), interests=frozenset({"music"}), gender="female", want_genders=frozenset({"male"}), age_band="25-34")  # fmt: skip
    ana = Profile("ana", "Frankfurt", BROWSER, prefs)
    ben = Profile("ben", "London", BROWSER, replace(prefs, gender="male", want_genders=frozenset({"female"})))
    pair = frozenset({"ana", "ben"})
    assert violations(ana, 0.0, ben, 0.0, 1.0, blocks=set(), met=set()) == []

    def broken(a: Profile, b: Profile, at: float = 1.0, **history: set[frozenset[str]]) -> list[str]:
        return [v.split(":")[0] for v in violations(a, 0.0, b, 0.0, at, blocks=history.get("blocks", set()), met=history.get("met", set()))]  # fmt: skip

    assert broken(ana, ben, blocks={pair}) == ["blocks"]
    assert broken(ana, ben, met={pair}) == ["recent partners"]
    assert broken(ana, replace(ben, preferences=replace(ben.preferences, gender="female"))) == ["gender"]
    assert broken(ana, replace(ben, preferences=replace(ben.preferences, want_age_bands=frozenset({"55+"})))) == ["age"]
    assert broken(ana, replace(ben, preferences=replace(ben.preferences, languages=frozenset({"de"})))) == ["language"]
    assert broken(ana, replace(ben, video=H264_ONLY)) == ["video"]
    assert broken(ana, replace(ben, preferences=replace(ben.preferences, interests=frozenset({"chess"})))) == [
        "interests"
    ]
    # Ten seconds on, interests are only points.
    assert broken(ana, replace(ben, preferences=replace(ben.preferences, interests=frozenset({"chess"}))), at=10_001.0) == []  # fmt: skip
    far = replace(ben, region="Sydney", preferences=replace(ben.preferences, scope=Scope.NEAR))
    assert broken(ana, far) == ["scope"]
    assert broken(ana, far, at=30_001.0) == []  # "near" has widened to anywhere
    assert broken(ana, replace(ben, region="London", preferences=replace(ben.preferences, scope=Scope.NEAR))) == []


def test_planning_refuses_an_impossible_fill() -> None:
    with pytest.raises(RuntimeError, match="fit together"):
        plan_waiting(random.Random(1), 1000, _PlannedHistory(set(), set()), max_draws=50)

"""Topology lint: the library report, the pytest helper, and `duet topology lint` exit codes."""

from __future__ import annotations

from pathlib import Path

import pytest

from duet.routing.lint import assert_topology_within_budget, lint_topology
from duet.routing.topology import default_topology
from duet.routing.topology_file import dump_topology, load_topology_file, world_topology_path
from duet.services.cli.main import main


def slow_singapore(tmp_path: Path) -> Path:
    """Frankfurt, Virginia, Singapore where every way to Singapore takes 900 ms round trip."""
    t = default_topology(("Frankfurt", "Virginia", "Singapore"))
    t = t.with_link("fra-1", "sin-1", rtt_ms=900).with_link("vir-1", "sin-1", rtt_ms=950)
    path = tmp_path / "slow.yaml"
    path.write_text(dump_topology(t))
    return path


def test_the_world_topology_is_within_600_ms_from_every_shipped_region() -> None:
    t = load_topology_file(world_topology_path())
    for region in t.regions:
        report = lint_topology(t, matchmaker_region=region.name)
        assert report.ok, report.failure_lines()
        assert len(report.predictions) == 91  # 13 regions: 78 pairs + 13 with themselves
    assert assert_topology_within_budget(world_topology_path(), 600).ok


def test_the_helper_fails_with_every_pair_over_budget(tmp_path: Path) -> None:
    path = slow_singapore(tmp_path)
    with pytest.raises(AssertionError) as caught:
        assert_topology_within_budget(path, 600, matchmaker_region="Frankfurt")
    text = str(caught.value)
    assert "2 region pair(s) over the 600 ms connect budget (matchmaker in Frankfurt)" in text
    assert "Frankfurt <-> Singapore: 606 ms > 600 ms (control 78 + backbone 450 via fra-1 > sin-1" in text
    assert "Virginia <-> Singapore: " in text
    # Control messages ride the public internet (reference RTTs), not the slow backbone links.
    assert "Singapore <-> Singapore" not in text and "Frankfurt <-> Virginia" not in text
    # The same file with a matchmaker in Singapore and a looser budget passes.
    assert assert_topology_within_budget(path, 1000, matchmaker_region="Singapore").ok


def test_an_unreachable_pair_fails(tmp_path: Path) -> None:
    t = default_topology(("Frankfurt", "Virginia")).with_link("fra-1", "vir-1", up=False)
    path = tmp_path / "cut.yaml"
    path.write_text(dump_topology(t))
    with pytest.raises(AssertionError, match=r"Frankfurt <-> Virginia: cannot connect: no route"):
        assert_topology_within_budget(path)


def test_the_helper_fails_on_an_invalid_file_with_its_lines(tmp_path: Path) -> None:
    path = tmp_path / "bad.yaml"
    path.write_text("regions: [Frankfurt]\nedges:\n- {edge_id: fra-1, number: 0, region: Frankfurt}\n")
    with pytest.raises(AssertionError, match=r"line 3, column \d+: edges\[0\].number: must be an integer in 1..65535"):
        assert_topology_within_budget(path)


def test_bad_budgets_and_regions() -> None:
    t = default_topology()
    for budget in (0, -5, float("nan"), True):
        with pytest.raises(ValueError, match="budget"):
            lint_topology(t, budget_ms=budget)
    with pytest.raises(ValueError, match="matchmaker region 'Mars'"):
        lint_topology(t, matchmaker_region="Mars")


def test_cli_lint_exit_codes(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    world = str(world_topology_path())
    assert main(["topology", "lint", world]) == 0
    out = capsys.readouterr().out
    assert "within budget: 91 region pairs, matchmaker in Tokyo, budget 600 ms; worst Sydney - Johannesburg" in out

    assert main(["topology", "lint", str(slow_singapore(tmp_path)), "--matchmaker-region", "Frankfurt"]) == 1
    err = capsys.readouterr().err
    assert "duet topology lint: " in err and "2 of 6 region pairs" in err and "over budget" in err

    assert main(["topology", "lint", world, "--budget-ms", "300", "--all"]) == 1
    captured = capsys.readouterr()
    assert "Sydney - Johannesburg" in captured.out and "> 300 ms" in captured.err

    assert main(["topology", "lint", world, "--matchmaker-region", "Atlantis"]) == 1
    assert "matchmaker region 'Atlantis' is not in the topology" in capsys.readouterr().err

    assert main(["topology", "lint", str(tmp_path / "missing.yaml")]) == 1
    assert "cannot read the file" in capsys.readouterr().err

    with pytest.raises(SystemExit) as usage:
        main(["topology", "lint", world, "--budget-ms", "-3"])
    assert usage.value.code == 2
    assert "'-3' is not a number of milliseconds greater than 0" in capsys.readouterr().err


def test_cli_validate(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["topology", "validate", str(world_topology_path())]) == 0
    assert "valid: 13 regions, 13 edges, 78 links" in capsys.readouterr().out
    bad = tmp_path / "bad.yaml"
    bad.write_text("regions: [Frankfurt]\nedges:\n- {edge_id: fra-1, number: 1, region: Frankfurt, state: gone}\n")
    assert main(["topology", "validate", str(bad)]) == 1
    err = capsys.readouterr().err
    assert f"duet topology validate: {bad} is not valid:" in err
    assert "line 3, column 57: edges[0].state: must be one of active, draining, down, got 'gone'" in err

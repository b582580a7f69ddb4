"""``--metrics-port`` / ``--metrics-host``: off by default, loopback, ports checked in words."""

from __future__ import annotations

import argparse

import pytest

from duet.services.cli.serve import add_edge_arguments


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="duet edge")
    add_edge_arguments(parser)
    return parser


def test_metrics_are_off_unless_a_port_is_given_and_bind_loopback() -> None:
    args = _parser().parse_args(["--edge-id", "fra-1"])
    assert args.metrics_port is None and args.metrics_host == "127.0.0.1"
    args = _parser().parse_args(["--edge-id", "fra-1", "--metrics-port", "0"])
    assert args.metrics_port == 0


@pytest.mark.parametrize("bad", ["70000", "-1", "nine"])
def test_a_bad_metrics_port_is_refused_in_words(bad: str, capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit):
        _parser().parse_args(["--edge-id", "fra-1", "--metrics-port", bad])
    assert f"'{bad}' is not a port number (0-65535; 0 = any free port)" in capsys.readouterr().err

"""`duet call` preferences and `duet matchmaker` matching options, as parsed from the command line."""

from __future__ import annotations

import pytest

from duet.services.cli.call import preferences_from_args
from duet.services.cli.main import build_parser
from duet.services.cli.serve import matchmaker_config
from duet.services.client import MatchPreferences


def test_call_preferences_from_flags() -> None:
    args = build_parser().parse_args(
        ["call", "--language", "en", "--language", "pt,es", "--interests", "music, film", "--scope", "near"]
    )
    assert preferences_from_args(args) == MatchPreferences(
        languages=("en", "pt", "es"), interests=("music", "film"), scope="near"
    )
    assert preferences_from_args(build_parser().parse_args(["call"])) is None


def test_call_refuses_an_unknown_scope(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit):
        build_parser().parse_args(["call", "--scope", "mars"])
    assert "invalid choice: 'mars'" in capsys.readouterr().err


def test_matchmaker_options_make_its_config() -> None:
    args = build_parser().parse_args(
        [
            *("matchmaker", "--ticket-ttl", "90", "--rate-limit", "5/2", "--anywhere-after", "20"),
            *("--review-threshold", "4", "--ring-timeout", "12"),
        ]
    )
    config = matchmaker_config(args)
    assert (config.ticket_ttl_s, config.rate_limit_requests, config.rate_limit_per_s) == (90, 5, 2)
    assert (config.relax.anywhere_after_s, config.review_threshold) == (20, 4)
    assert config.ring_timeout_s == 12


@pytest.mark.parametrize(
    ("flag", "value", "words"),
    [
        ("--rate-limit", "20", "not a rate like 20/10"),
        ("--ticket-ttl", "0", "give more than 0"),
        ("--ring-timeout", "0", "give more than 0"),
    ],
)
def test_matchmaker_refuses_bad_options(capsys: pytest.CaptureFixture[str], flag: str, value: str, words: str) -> None:
    with pytest.raises(SystemExit):
        build_parser().parse_args(["matchmaker", flag, value])
    assert words in capsys.readouterr().err

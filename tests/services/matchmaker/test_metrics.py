"""The matchmaker's Prometheus families: stage histograms per region pair, waits, failures, the pool."""

from __future__ import annotations

from prometheus_client import generate_latest
from prometheus_client.parser import text_string_to_metric_families

from duet.services.matchmaker.metrics import MatchmakerMetrics
from duet.services.matchmaker.preferences import Preferences
from duet.services.matchmaker.rules.media import VideoCodecs
from duet.services.matchmaker.ticket import Ticket


def ticket(n: int, region: str, *languages: str) -> Ticket:
    return Ticket(
        ticket_id=f"t{n}",
        user_id=f"u{n}",
        session_id=f"s{n}",
        edge_id="fra-1",
        queued_at=1.7e12,
        video=VideoCodecs.of("VP8", ("VP8",)),
        region=region,
        preferences=Preferences(languages=frozenset(languages)),
    )


def samples(metrics: MatchmakerMetrics) -> dict[tuple[str, frozenset[tuple[str, str]]], float]:
    text = generate_latest(metrics.registry).decode()
    return {
        (s.name, frozenset(s.labels.items())): s.value
        for family in text_string_to_metric_families(text)
        for s in family.samples
    }


def test_stages_waits_and_failures_are_counted_per_label() -> None:
    metrics = MatchmakerMetrics(lambda: [])
    metrics.call_stage("bridged", "Frankfurt", "Virginia", 12.0)
    metrics.call_stage("bridged", "Frankfurt", "Virginia", 700.0)
    metrics.call_stage("first_frame", "Virginia", "Frankfurt", -3.0)  # clocks apart: counted as 0, not dropped
    metrics.ticket_matched("Frankfurt", 2500.0)
    metrics.call_start_failed("no route")
    got = samples(metrics)
    pair = frozenset({("stage", "bridged"), ("region_a", "Frankfurt"), ("region_b", "Virginia")})
    assert got[("duet_matchmaker_stage_seconds_count", pair)] == 2
    assert got[("duet_matchmaker_stage_seconds_sum", pair)] == 0.712
    assert got[("duet_matchmaker_stage_seconds_bucket", pair | {("le", "0.6")})] == 1  # 12 ms in, 700 ms out
    back = frozenset({("stage", "first_frame"), ("region_a", "Virginia"), ("region_b", "Frankfurt")})
    assert got[("duet_matchmaker_stage_seconds_bucket", back | {("le", "0.005")})] == 1
    assert got[("duet_matchmaker_time_to_match_seconds_sum", frozenset({("region", "Frankfurt")}))] == 2.5
    assert got[("duet_matchmaker_call_start_failures_total", frozenset({("reason", "no route")}))] == 1


def test_waiting_tickets_are_read_from_the_pool_at_each_scrape() -> None:
    waiting = [ticket(1, "Frankfurt"), ticket(2, "Frankfurt", "de", "en"), ticket(3, "Sydney", "en")]
    metrics = MatchmakerMetrics(lambda: waiting)
    got = {
        dict(labels)["region"] + "/" + dict(labels)["language"]: v
        for (name, labels), v in samples(metrics).items()
        if name == "duet_matchmaker_waiting_tickets"
    }
    assert got == {"Frankfurt/any": 1, "Frankfurt/de": 1, "Frankfurt/en": 1, "Sydney/en": 1}
    waiting.clear()
    assert not [n for (n, _) in samples(metrics) if n == "duet_matchmaker_waiting_tickets"]

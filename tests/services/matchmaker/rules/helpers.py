"""Tickets and pair contexts for the rule and pool tests."""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

from duet.services.matchmaker.fakes import FixedLatency
from duet.services.matchmaker.pair_history import InMemoryPairHistory
from duet.services.matchmaker.preferences import Preferences, Scope
from duet.services.matchmaker.rules.base import PairContext
from duet.services.matchmaker.rules.media import VideoCodecs
from duet.services.matchmaker.rules.relaxation import RelaxSchedule
from duet.services.matchmaker.ticket import Ticket

BROWSER = VideoCodecs.of("VP8", ["VP8", "H264/42e01f"])
H264_ONLY = VideoCodecs.of("H264/42e01f", ["H264/42e01f"])
# Frankfurt-London 15 ms (near), Frankfurt-Virginia 89 ms, Virginia-London 76 ms; Singapore unknown.
LATENCY = FixedLatency.of({("fra", "lon"): 15.0, ("fra", "vir"): 89.0, ("vir", "lon"): 76.0})


def prefs(
    *,
    languages: Iterable[str] = (),
    interests: Iterable[str] = (),
    gender: str = "",
    want_genders: Iterable[str] = (),
    age_band: str = "",
    want_age_bands: Iterable[str] = (),
    scope: Scope = Scope.ANYWHERE,
) -> Preferences:
    return Preferences(
        frozenset(languages),
        frozenset(interests),
        gender,
        frozenset(want_genders),
        age_band,
        frozenset(want_age_bands),
        scope,
    )


def ticket(
    n: int,
    user: str,
    *,
    region: str = "fra",
    queued_s: float | None = None,
    video: VideoCodecs = BROWSER,
    avoid: Iterable[str] = (),
    reports: int = 0,
    **preferences: Any,
) -> Ticket:
    return Ticket(
        ticket_id=f"t{n}",
        user_id=user,
        session_id=f"s{n}",
        edge_id=f"{region}-1",
        queued_at=(float(n) if queued_s is None else queued_s) * 1000,
        video=video,
        avoid=frozenset(avoid),
        region=region,
        preferences=prefs(**preferences),
        reports=reports,
    )


def context(
    now_s: float = 0.0, history: InMemoryPairHistory | None = None, relax: RelaxSchedule | None = None
) -> PairContext:
    return PairContext(
        now_ms=now_s * 1000,
        relax=relax or RelaxSchedule(interests_optional_after_s=10, anywhere_after_s=30),
        latency=LATENCY,
        history=history or InMemoryPairHistory(recent_partners=0),
        near_rtt_ms=50.0,
    )

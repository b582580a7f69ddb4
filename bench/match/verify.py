"""Every match the bench saw, checked against the rules as docs/matching.md states them.

Written apart from ``rules/`` on purpose (a bug there would otherwise check
itself). A pair is checked at the moment of the match: relaxation only
loosens, so judging a soft criterion at that moment (a few microseconds after
the pool decided) can miss a violation at the edge of a step but never
invents one.
"""

from __future__ import annotations

from dataclasses import dataclass

from bench.match.population import Profile
from duet.routing.reference import reference_rtt_ms
from duet.services.matchmaker.preferences import Scope


@dataclass(frozen=True)
class Rules:
    interests_optional_after_ms: float = 10_000.0
    anywhere_after_ms: float = 30_000.0
    near_rtt_ms: float = 80.0


def _wants(wanted: frozenset[str], value: str) -> bool:
    return not wanted or value in wanted


def violations(
    a: Profile,
    a_queued_ms: float,
    b: Profile,
    b_queued_ms: float,
    matched_ms: float,
    *,
    blocks: set[frozenset[str]],
    met: set[frozenset[str]],
    rules: Rules = Rules(),
) -> list[str]:
    """What the pair breaks, in words; empty when the pair is allowed."""
    out: list[str] = []
    pa, pb = a.preferences, b.preferences
    pair = frozenset({a.user_id, b.user_id})
    if a.user_id == b.user_id:
        out.append("a user matched with themselves")
    if a.video[0] not in b.video or b.video[0] not in a.video:
        out.append(f"video: {a.video} and {b.video} cannot decode each other")
    if pa.languages and pb.languages and not pa.languages & pb.languages:
        out.append(f"language: {sorted(pa.languages)} and {sorted(pb.languages)} share none")
    if not (_wants(pa.want_genders, pb.gender) and _wants(pb.want_genders, pa.gender)):
        out.append(f"gender: {pa.gender or '-'} wants {sorted(pa.want_genders)}, {pb.gender or '-'} wants {sorted(pb.want_genders)}")  # fmt: skip
    if not (_wants(pa.want_age_bands, pb.age_band) and _wants(pb.want_age_bands, pa.age_band)):
        out.append(f"age: {pa.age_band or '-'} wants {sorted(pa.want_age_bands)}, {pb.age_band or '-'} wants {sorted(pb.want_age_bands)}")  # fmt: skip
    near_in_force = any(
        p.scope is Scope.NEAR and matched_ms - q < rules.anywhere_after_ms
        for p, q in ((pa, a_queued_ms), (pb, b_queued_ms))
    )
    if near_in_force and a.region != b.region and reference_rtt_ms(a.region, b.region) > rules.near_rtt_ms:
        out.append(f"scope: near wanted, {a.region} - {b.region} is {reference_rtt_ms(a.region, b.region):.0f} ms")
    if pair in blocks:
        out.append("blocks: one blocked the other")
    if pair in met:
        out.append("recent partners: met recently")
    interests_required = any(
        p.interests and matched_ms - q < rules.interests_optional_after_ms
        for p, q in ((pa, a_queued_ms), (pb, b_queued_ms))
    )
    if interests_required and not pa.interests & pb.interests:
        out.append(f"interests: {sorted(pa.interests)} and {sorted(pb.interests)} share none while required")
    return out

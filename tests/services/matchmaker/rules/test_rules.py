"""Each matching rule on its own: what it allows, that it is symmetric, when it relaxes."""

from __future__ import annotations

import dataclasses
from typing import cast

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from duet.services.matchmaker.pair_history import InMemoryPairHistory
from duet.services.matchmaker.preferences import AGE_BANDS, GENDERS, Scope
from duet.services.matchmaker.rules.age import AgeRule
from duet.services.matchmaker.rules.base import (
    BindingFilter,
    BindingScorer,
    PairContext,
    PairFilter,
    PairScorer,
    filter_binder,
    scorer_binder,
)
from duet.services.matchmaker.rules.blocks import BlockRule
from duet.services.matchmaker.rules.defaults import default_filters, default_scorers
from duet.services.matchmaker.rules.distinct_users import DistinctUsersRule
from duet.services.matchmaker.rules.gender import GenderRule
from duet.services.matchmaker.rules.interests import InterestsRule, SharedInterestsScore
from duet.services.matchmaker.rules.language import LanguageRule
from duet.services.matchmaker.rules.latency import LatencyScore
from duet.services.matchmaker.rules.media import MediaRule, VideoCodecs, can_exchange_video
from duet.services.matchmaker.rules.recent import RecentPartnerRule
from duet.services.matchmaker.rules.relaxation import RelaxSchedule
from duet.services.matchmaker.rules.reports import ReportedScore
from duet.services.matchmaker.rules.scope import ScopeRule
from duet.services.matchmaker.rules.waiting import WaitedScore
from duet.services.matchmaker.ticket import Ticket
from tests.services.matchmaker.rules.helpers import BROWSER, H264_ONLY, context, ticket


def test_distinct_users() -> None:
    assert not DistinctUsersRule().allows(ticket(1, "ana"), ticket(2, "ana"), context())
    assert DistinctUsersRule().allows(ticket(1, "ana"), ticket(2, "ben"), context())


def test_media_each_decodes_what_the_other_sends() -> None:
    rule = MediaRule()
    assert not rule.allows(ticket(1, "ana", video=H264_ONLY), ticket(2, "ben", video=BROWSER), context())
    assert rule.allows(ticket(1, "ana", video=H264_ONLY), ticket(2, "ben", video=H264_ONLY), context())


def test_language_needs_a_shared_one_unless_either_gave_none() -> None:
    rule = LanguageRule()
    en, fr, en_fr, none = (
        ticket(1, "a", languages=["en"]),
        ticket(2, "b", languages=["fr"]),
        ticket(3, "c", languages=["en", "fr"]),
        ticket(4, "d"),
    )
    assert not rule.allows(en, fr, context())
    assert rule.allows(en, en_fr, context()) and rule.allows(fr, en_fr, context())
    assert rule.allows(en, none, context()) and rule.allows(none, fr, context())


def test_gender_is_both_ways_and_unstated_fails_a_wanted_list() -> None:
    rule = GenderRule()
    ana = ticket(1, "ana", gender="female", want_genders=["female"])
    ben = ticket(2, "ben", gender="male")
    cleo = ticket(3, "cleo", gender="female", want_genders=["male"])
    anon = ticket(4, "anon")
    assert not rule.allows(ana, ben, context())  # ana wants women only
    assert not rule.allows(ana, cleo, context())  # cleo wants men only
    assert rule.allows(ben, cleo, context())
    assert not rule.allows(ana, anon, context())  # unstated gender does not pass a list
    assert rule.allows(ben, anon, context())


def test_age_band_is_both_ways() -> None:
    rule = AgeRule()
    young = ticket(1, "a", age_band="18-24", want_age_bands=["18-24", "25-34"])
    older = ticket(2, "b", age_band="45-54")
    assert not rule.allows(young, older, context())
    assert rule.allows(young, ticket(3, "c", age_band="25-34", want_age_bands=["18-24"]), context())
    assert not rule.allows(young, ticket(4, "d", age_band="25-34", want_age_bands=["25-34"]), context())


def test_hard_filters_never_relax() -> None:
    late = context(now_s=10_000)
    ana = ticket(1, "ana", gender="female", want_genders=["female"], age_band="18-24", want_age_bands=["18-24"])
    assert not GenderRule().allows(ana, ticket(2, "ben", gender="male", age_band="18-24"), late)
    assert not AgeRule().allows(ana, ticket(3, "cleo", gender="female", age_band="55+"), late)
    history = InMemoryPairHistory()
    history.add_block("ana", "dara")
    assert not BlockRule().allows(ana, ticket(4, "dara"), context(now_s=10_000, history=history))


def test_scope_near_is_both_ways_and_widens_after_its_time() -> None:
    rule = ScopeRule()
    near_fra = ticket(0, "ana", region="fra", scope=Scope.NEAR)
    vir = ticket(1, "ben", region="vir")
    lon = ticket(2, "cleo", region="lon")
    sin = ticket(3, "dara", region="sin")
    assert rule.allows(near_fra, lon, context(now_s=5))  # 15 ms <= 50 ms
    assert not rule.allows(near_fra, vir, context(now_s=5)) and not rule.allows(vir, near_fra, context(now_s=5))
    assert not rule.allows(near_fra, sin, context(now_s=5))  # unknown RTT is not near
    assert rule.allows(near_fra, vir, context(now_s=30))  # waited 30 s: anywhere
    assert rule.allows(vir, sin, context(now_s=5))  # neither asked for near
    assert rule.allows(near_fra, ticket(4, "eve", region="fra"), context(now_s=5))


def test_interests_required_while_young_then_only_points() -> None:
    rule = InterestsRule()
    music = ticket(0, "ana", interests=["music"])
    film = ticket(0, "ben", interests=["film"])
    none = ticket(0, "cleo")
    assert not rule.allows(music, film, context(now_s=5))
    assert not rule.allows(music, none, context(now_s=5))
    assert rule.allows(music, ticket(0, "dara", interests=["music", "film"]), context(now_s=5))
    assert rule.allows(music, film, context(now_s=10))  # relaxed after 10 s
    assert rule.allows(none, ticket(0, "eve"), context())
    score = SharedInterestsScore(points_per_interest=10)
    assert score.score(ticket(0, "a", interests=["x", "y"]), ticket(0, "b", interests=["y", "x", "z"]), context()) == 20


def test_recent_partners_and_window_both_ways() -> None:
    rule = RecentPartnerRule()
    now = [0.0]
    history = InMemoryPairHistory(recent_partners=1, rematch_window_s=60, clock=lambda: now[0])
    history.note_met("ana", "ben")
    ctx = context(history=history)
    assert not rule.allows(ticket(1, "ana"), ticket(2, "ben"), ctx)
    assert not rule.allows(ticket(1, "ben"), ticket(2, "ana"), ctx)
    history.note_met("ana", "cleo")  # ben is no longer ana's last partner, but the window still holds
    assert not rule.allows(ticket(1, "ana"), ticket(2, "ben"), ctx)
    history.note_met("ben", "dara")
    now[0] = 61.0
    assert rule.allows(ticket(1, "ana"), ticket(2, "ben"), ctx)
    assert not rule.allows(ticket(1, "ana", avoid=["eve"]), ticket(2, "eve"), ctx)


def test_scores_prefer_near_unreported_long_waiting_partners() -> None:
    newcomer = ticket(100, "new", region="fra")
    latency = LatencyScore(points_per_ms=0.05)
    assert latency.score(ticket(1, "a", region="fra"), newcomer, context()) == 0
    assert latency.score(ticket(1, "a", region="vir"), newcomer, context()) == pytest.approx(-0.05 * 89)
    assert latency.score(ticket(1, "a", region="sin"), newcomer, context()) == pytest.approx(-0.05 * 300)
    assert ReportedScore(15).score(ticket(1, "a", reports=2), newcomer, context()) == -30
    assert WaitedScore(1).score(ticket(1, "a", queued_s=10), newcomer, context(now_s=25)) == 15


def test_relax_schedule_says_when_criteria_next_change() -> None:
    relax = RelaxSchedule(interests_optional_after_s=10, anywhere_after_s=30)
    t = ticket(0, "a", queued_s=100, interests=["x"], scope=Scope.NEAR)
    assert relax.next_change_ms(t, 100_000) == 110_000
    assert relax.next_change_ms(t, 110_000) == 130_000
    assert relax.next_change_ms(t, 130_000) is None
    assert relax.next_change_ms(ticket(0, "b"), 0) is None
    with pytest.raises(ValueError, match="anywhere_after_s"):
        RelaxSchedule(anywhere_after_s=-1)


# -- every filter is symmetric ---------------------------------------------------------

regions = st.sampled_from(["fra", "lon", "vir", "sin"])
tickets = st.builds(
    lambda n, user, region, queued, langs, interests, g, wg, a, wa, scope, video: ticket(
        n,
        user,
        region=region,
        queued_s=queued,
        video=video,
        languages=langs,
        interests=interests,
        gender=g,
        want_genders=wg,
        age_band=a,
        want_age_bands=wa,
        scope=scope,
    ),
    st.integers(0, 99),
    st.sampled_from(["u0", "u1", "u2"]),
    regions,
    st.floats(0, 60),
    st.frozensets(st.sampled_from(["en", "fr"]), max_size=2),
    st.frozensets(st.sampled_from(["music", "film"]), max_size=2),
    st.sampled_from(("", *GENDERS)),
    st.frozensets(st.sampled_from(GENDERS), max_size=2),
    st.sampled_from(("", *AGE_BANDS[:2])),
    st.frozensets(st.sampled_from(AGE_BANDS[:2]), max_size=2),
    st.sampled_from(list(Scope)),
    st.sampled_from([BROWSER, H264_ONLY]),
)


@given(tickets, tickets, st.floats(0, 100))
def test_every_filter_is_symmetric(a: Ticket, b: Ticket, now_s: float) -> None:
    history = InMemoryPairHistory(recent_partners=1)
    history.note_met("u0", "u1")
    ctx = context(now_s=now_s, history=history)
    for rule in default_filters():
        assert rule.allows(a, b, ctx) == rule.allows(b, a, ctx), rule.name


@given(st.builds(VideoCodecs.of, st.sampled_from(["VP8", "H264"]), st.frozensets(st.sampled_from(["VP8", "H264"]))))
def test_a_client_that_decodes_what_it_sends_can_talk_to_itself(v: VideoCodecs) -> None:
    assert can_exchange_video(v, v) == (v.send in v.receive)


# -- a rule bound to one newcomer answers as the rule does ------------------------------------


class Plain:
    """A rule seen only through ``allows`` and ``score``: what a new rule without ``bind`` looks like."""

    def __init__(self, rule: PairFilter | PairScorer) -> None:
        self.rule = rule
        self.name = rule.name

    def allows(self, a: Ticket, b: Ticket, ctx: PairContext) -> bool:
        return cast(PairFilter, self.rule).allows(a, b, ctx)

    def score(self, waiting: Ticket, newcomer: Ticket, ctx: PairContext) -> float:
        return cast(PairScorer, self.rule).score(waiting, newcomer, ctx)


NOW_S = 100.0
# Waits on the relaxation steps (10 s, 30 s) and just beside them, where a bound rule's thresholds could slip.
with_history = st.builds(
    lambda t, waited_s, avoid, reports: dataclasses.replace(
        t, queued_at=(NOW_S - waited_s) * 1000, avoid=avoid, reports=reports
    ),
    tickets,
    st.sampled_from([0.0, 5.0, 9.999, 10.0, 10.001, 29.999, 30.0, 30.001, 45.0]),
    st.frozensets(st.sampled_from(["u0", "u1", "u2", "u3"]), max_size=2),
    st.integers(0, 3),
)


@settings(max_examples=500)
@given(with_history, with_history)
def test_a_bound_rule_answers_as_the_rule_with_or_without_its_own_bind(newcomer: Ticket, waiting: Ticket) -> None:
    history = InMemoryPairHistory(recent_partners=1, rematch_window_s=60.0, clock=lambda: 100.0)
    history.note_met("u0", "u1")
    history.note_met("u2", "u3")
    history.add_block("u1", "u2")
    ctx = context(now_s=NOW_S, history=history)
    for rule in default_filters():
        expected = rule.allows(waiting, newcomer, ctx)
        for binder in (filter_binder(rule), filter_binder(Plain(rule))):
            check = binder(newcomer, ctx)
            assert (True if check is None else check(waiting)) == expected, rule.name
    for scorer in default_scorers():
        expected_points = scorer.score(waiting, newcomer, ctx)
        for points in (scorer_binder(scorer), scorer_binder(Plain(scorer))):
            assert points(newcomer, ctx)(waiting) == expected_points, scorer.name


def test_the_rules_that_can_be_bound_say_so() -> None:
    # The pool's fast path is taken only for these; the others are asked through allows/score.
    bound = {r.name for r in [*default_filters(), *default_scorers()] if isinstance(r, BindingFilter | BindingScorer)}
    assert bound == {
        "gender",
        "age",
        "media",
        "distinct users",
        "scope",
        "blocks",
        "recent partners",
        "interests",
        "waited",
        "shared interests",
        "latency",
        "reports",
    }
    assert not isinstance(Plain(ScopeRule()), BindingFilter)

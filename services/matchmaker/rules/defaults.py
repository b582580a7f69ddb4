"""The matchmaker's rule set: every filter (all must allow a pair) and every scorer (points add up)."""

from __future__ import annotations

from duet.services.matchmaker.rules.age import AgeRule
from duet.services.matchmaker.rules.base import PairFilter, PairScorer
from duet.services.matchmaker.rules.blocks import BlockRule
from duet.services.matchmaker.rules.distinct_users import DistinctUsersRule
from duet.services.matchmaker.rules.gender import GenderRule
from duet.services.matchmaker.rules.interests import InterestsRule, SharedInterestsScore
from duet.services.matchmaker.rules.language import LanguageRule
from duet.services.matchmaker.rules.latency import LatencyScore
from duet.services.matchmaker.rules.media import MediaRule
from duet.services.matchmaker.rules.recent import RecentPartnerRule
from duet.services.matchmaker.rules.reports import ReportedScore
from duet.services.matchmaker.rules.scope import ScopeRule
from duet.services.matchmaker.rules.waiting import WaitedScore


def default_filters() -> list[PairFilter]:
    # Cheapest and most selective first: a refused pair stops at the first filter that refuses it.
    return [
        DistinctUsersRule(),
        MediaRule(),
        LanguageRule(),
        GenderRule(),
        AgeRule(),
        ScopeRule(),
        BlockRule(),
        RecentPartnerRule(),
        InterestsRule(),
    ]


def default_scorers() -> list[PairScorer]:
    return [WaitedScore(), SharedInterestsScore(), LatencyScore(), ReportedScore()]

"""The waiting pool: tickets indexed by their hard-filter keys, paired the moment a match exists.

Event-driven: a ticket entering the pool (``offer``) is paired at once with
the best of the oldest compatible waiting tickets, so nobody waits for a
polling tick; a ticket whose criteria relax is offered again by the core's
relaxation timer.

Which pair is made: every filter of the rule set must allow it (``rules/``);
among the ``compare`` oldest compatible tickets the one with the most points
from the scorers wins (ties: the older one).

Staying fast with thousands waiting: tickets are grouped by language (one
entry per language a ticket gave, or the "any" group) and, inside a group,
by *profile* (gender, age band, their wanted lists, video codecs), each
profile's tickets oldest first. A newcomer looks only in the groups of its
languages plus "any". The ``PROFILE`` bucket filters (which never relax) are
asked once per pair of profiles, about one sample ticket: a profile they
refuse is skipped whole, and the list of profiles a newcomer's profile may
meet in a group is kept until a profile appears in or leaves that group.
The ``PLACE`` filters (region, scope, whether interests were given) are
asked once per pair of places, about a sample placed at each step of the
relaxation schedule: the youngest wait that passes bounds that place (only
tickets at least that old can pass), none passing rules it out. The pool
then walks the admissible tickets oldest first, in one merge of every list
it takes from each group: the admitted profiles' own lists (or, when they are
most of the group, the group's order), or, for a newcomer who must still
share an interest, the lists of those who gave one of its interests when
they hold fewer tickets. It asks every filter but the profile ones (and the
language rule, which the groups already are) about each until it has
``compare`` candidates, each filter and scorer bound to the newcomer once per
search (``rules/base.py``: what does not depend on the waiting ticket is
worked out once). Every verdict is cached by small integer ids of the keys,
so a newcomer mostly pays dict look-ups, not rounds of filters.
"""

from __future__ import annotations

import dataclasses
import heapq
import itertools
import math
from collections.abc import Iterable, Iterator, Sequence
from typing import Any

from sortedcontainers import SortedList

from duet.services.matchmaker.rules.base import (
    PLACE,
    PROFILE,
    BucketFilter,
    PairContext,
    PairFilter,
    PairScorer,
    filter_binder,
    scorer_binder,
)
from duet.services.matchmaker.rules.defaults import default_filters, default_scorers
from duet.services.matchmaker.rules.interests import InterestsRule
from duet.services.matchmaker.rules.language import LanguageRule
from duet.services.matchmaker.rules.media import VideoCodecs
from duet.services.matchmaker.ticket import Ticket

__all__ = ["Ticket", "WaitingPool"]

ANY_LANGUAGE = ""  # the group of tickets that gave no language
ProfileKey = tuple[str, frozenset[str], str, frozenset[str], VideoCodecs]
PlaceKey = tuple[str, str, bool]
OrderKey = tuple[float, str]  # (queued_at, ticket_id): oldest first, ties by id
# What the index lists hold: (queued_at, ticket_id, entry), one tuple per ticket shared by all its lists. The
# keys are unique, so tuples compare by them alone; a list iterates them in C (a SortedDict's items one by one
# in Python, which cost more than the merge).
Item = tuple[float, str, "_Entry"]
_CACHE_LIMIT = 200_000  # cached verdicts kept before the caches start over
_MERGE_AT_MOST = 24  # admitted profiles merged by a heap; more, and the group's own order is walked


def _profile_key(t: Ticket) -> ProfileKey:
    p = t.preferences
    return (p.gender, p.want_genders, p.age_band, p.want_age_bands, t.video)


def _place_key(t: Ticket) -> PlaceKey:
    return (t.region, t.preferences.scope, bool(t.preferences.interests))


def _order(t: Ticket) -> OrderKey:
    return (t.queued_at, t.ticket_id)


def _languages(t: Ticket) -> Iterable[str]:
    return t.preferences.languages or (ANY_LANGUAGE,)


class _Entry:
    """A waiting ticket as the index holds it: with its profile's and place's ids."""

    __slots__ = ("place", "profile", "ticket")

    def __init__(self, ticket: Ticket, profile: int, place: int) -> None:
        self.ticket = ticket
        self.profile = profile
        self.place = place


class _Group:
    """One language's tickets: oldest first, and per profile id oldest first."""

    __slots__ = ("empty", "interests", "order", "profiles", "version")

    def __init__(self) -> None:
        self.order: Any = SortedList()  # Items, oldest first
        self.profiles: dict[int, Any] = {}  # profile id -> SortedList of its Items
        self.interests: dict[str, Any] = {}  # interest -> SortedList of the Items of those who gave it
        self.version = 0  # changes when a profile appears in or leaves the group
        self.empty = 0  # profiles left empty (dropped in one sweep, so the version rarely changes)


class WaitingPool:
    """Waiting tickets, one per user, indexed for pairing."""

    def __init__(
        self,
        filters: Sequence[PairFilter] | None = None,
        scorers: Sequence[PairScorer] | None = None,
        *,
        compare: int = 16,
    ) -> None:
        if compare < 1:
            raise ValueError(f"compare must be 1 or more, got {compare}")
        self.filters = list(default_filters() if filters is None else filters)
        self.scorers = list(default_scorers() if scorers is None else scorers)
        self.compare = compare
        buckets = [f for f in self.filters if isinstance(f, BucketFilter)]
        self._profile_filters = [f for f in buckets if f.bucket_part == PROFILE]
        self._place_filters = [f for f in buckets if f.bucket_part == PLACE]
        # Asked ticket by ticket: all but the PROFILE filters (their verdict on a profile is the verdict on
        # each of its tickets), the PLACE ones first since they refuse most of what reaches this stage.
        rest = [f for f in self.filters if f not in self._profile_filters and f not in self._place_filters]
        ticket_filters = [*self._place_filters, *rest]
        # Each bound to the newcomer once per search (rules/base.py). LanguageRule is not asked: the language
        # groups a newcomer walks are its verdict (a ticket there shares a language or gave none).
        self._binders = [filter_binder(f) for f in ticket_filters if not isinstance(f, LanguageRule)]
        self._score_binders = [scorer_binder(s) for s in self.scorers]
        self._profile_binders = [filter_binder(f) for f in self._profile_filters]
        # With the interests rule in the set, a newcomer who must share an interest walks the interest lists.
        self._interests_indexed = any(isinstance(f, InterestsRule) for f in self.filters)
        self._tickets: dict[str, Ticket] = {}
        self._items: dict[str, Item] = {}  # ticket id -> its index tuple
        self._by_user: dict[str, str] = {}
        self._order: SortedList = SortedList()
        self._groups: dict[str, _Group] = {}
        # Keys as small ints, each with a ticket that has it (the sample its filters are asked about).
        self._profile_ids: dict[ProfileKey, int] = {}
        self._place_ids: dict[PlaceKey, int] = {}
        self._samples: dict[tuple[str, int], Ticket] = {}
        # Cached verdicts: newcomer profile id -> (profile ids allowed, refused); newcomer place state ->
        # place id -> the youngest wait (s) at which its tickets pass, inf if none does; (language, newcomer
        # profile id) -> (group version, admitted profile ids).
        self._profile_verdicts: dict[int, tuple[set[int], set[int]]] = {}
        self._place_ages: dict[Any, dict[int, float]] = {}
        self._verdicts = 0  # verdicts held in _profile_verdicts and _place_ages
        self._admitted: dict[tuple[str, int], tuple[int, list[int], frozenset[int]]] = {}
        self._versions = itertools.count(1)  # one sequence for every group, so a group made anew never reuses one

    def __len__(self) -> int:
        return len(self._tickets)

    def __contains__(self, ticket_id: object) -> bool:
        return ticket_id in self._tickets

    def get(self, ticket_id: str) -> Ticket | None:
        return self._tickets.get(ticket_id)

    def ticket_of(self, user_id: str) -> Ticket | None:
        tid = self._by_user.get(user_id)
        return None if tid is None else self._tickets[tid]

    def waiting(self) -> list[Ticket]:
        """Every waiting ticket, oldest first."""
        return list(self.oldest_first())

    def oldest_first(self) -> Iterator[Ticket]:
        """The waiting tickets, oldest first, one at a time (the pool must not change meanwhile)."""
        for _, tid in self._order:
            yield self._tickets[tid]

    def position(self, ticket_id: str) -> int:
        """1 + the number of waiting tickets queued before this one; 0 if it is not waiting."""
        t = self._tickets.get(ticket_id)
        return 0 if t is None else self._order.index(_order(t)) + 1

    # -- pairing ----------------------------------------------------------------

    def offer(self, ticket: Ticket, ctx: PairContext) -> tuple[Ticket, Ticket] | None:
        """Pair ``ticket`` with a waiting ticket, or queue it.

        Returns (waiting_ticket, ticket) when a pair is made; both are then out
        of the pool. A user's older ticket is replaced by the new one.
        """
        old = self._by_user.get(ticket.user_id)
        if old is not None:
            self.remove(old)
        partner = self.find_partner(ticket, ctx)
        if partner is not None:
            self.remove(partner.ticket_id)
            return partner, ticket
        self._insert(ticket)
        return None

    def reoffer(self, ticket_id: str, ctx: PairContext) -> tuple[Ticket, Ticket] | None:
        """Look again for a waiting ticket (its criteria relaxed); it keeps its place if nobody fits."""
        ticket = self._tickets.get(ticket_id)
        if ticket is None:
            return None
        self.remove(ticket_id)
        return self.offer(ticket, ctx)

    def find_partner(self, ticket: Ticket, ctx: PairContext) -> Ticket | None:
        """The waiting ticket ``ticket`` would be paired with now, or None. Changes nothing."""
        if self._verdicts + len(self._admitted) > _CACHE_LIMIT:
            self._profile_verdicts.clear()
            self._place_ages.clear()
            self._verdicts = 0
            self._admitted.clear()
        langs = ticket.preferences.languages
        groups = [*langs, ANY_LANGUAGE] if langs else list(self._groups)
        me = self._intern(self._profile_ids, "profile", _profile_key(ticket), ticket)
        # A newcomer who must share an interest meets only tickets that gave one of its interests (InterestsRule).
        strict = self._interests_indexed and ctx.relax.interests_required(ticket, ctx.now_ms)
        interests = ticket.preferences.interests
        # Every list to walk, of every group, merged into one walk: no generator between a list and the loop.
        sources: list[Any] = []
        admitted_sets: list[frozenset[int]] = []
        screened = False  # some list holds tickets of profiles the profile filters refuse
        share = False  # some list holds tickets sharing no interest with a newcomer who must share one
        for lang in groups:
            group = self._groups.get(lang)
            if group is None:
                continue
            admitted, admitted_set = self._admitted_profiles(lang, group, me, ticket, ctx)
            if not admitted:
                continue
            # Few admitted profiles: their own lists, merged (a heap of that many). Many: the group's order,
            # the other profiles' tickets skipped, which is cheaper than a heap of hundreds.
            mixed = len(admitted) > _MERGE_AT_MOST
            lists = [group.order] if mixed else [n for p in admitted if (n := group.profiles[p])]
            if strict:
                shared = [n for i in interests if (n := group.interests.get(i))]
                if not shared:
                    continue
                # Whichever holds fewer tickets: those who gave one of its interests (other profiles skipped),
                # or the admitted ones (those sharing no interest skipped).
                if sum(map(len, shared)) < sum(map(len, lists)):
                    lists, mixed = shared, True
                else:
                    share = True
            if not lists:
                continue
            sources += lists
            admitted_sets.append(admitted_set)
            screened = screened or mixed
        if not sources:
            return None
        # A ticket's profile is admitted in one group iff in any: the union screens the tickets of every list.
        screen = None
        if screened:
            screen = admitted_sets[0] if len(admitted_sets) == 1 else frozenset().union(*admitted_sets)
        checks = [check for bind in self._binders if (check := bind(ticket, ctx)) is not None]
        ages = self._place_ages_of(ticket, ctx)
        now = ctx.now_ms
        candidates: list[Ticket] = []
        compare = self.compare
        last = None
        # Order keys are unique, so the tuples compare by them alone; a ticket in several lists (languages,
        # interests) is the same tuple in each, so its copies come side by side.
        for item in sources[0] if len(sources) == 1 else heapq.merge(*sources):
            if item is last:
                continue
            last = item
            queued_at, _, e = item
            if screen is not None and e.profile not in screen:
                continue
            age_s = ages.get(e.place)
            if age_s is None:
                age_s = ages[e.place] = self._place_age(e.place, ticket, ctx)
            # The same sum as RelaxSchedule.waited; inf (no wait passes): now - inf = -inf.
            if age_s and queued_at > now - age_s * 1000:
                continue
            waiting = e.ticket
            if share and interests.isdisjoint(waiting.preferences.interests):
                continue
            for check in checks:
                if not check(waiting):
                    break
            else:
                candidates.append(waiting)
                if len(candidates) >= compare:
                    break
        if len(candidates) <= 1 or not self._score_binders:
            return candidates[0] if candidates else None  # no points to weigh: the oldest
        # The most points wins; ties: the older (the first). Each scorer over every candidate, then the sums
        # in the order the scorers come (the same additions as one sum per candidate).
        columns = [list(map(bind(ticket, ctx), candidates)) for bind in self._score_binders]
        points = list(map(sum, zip(*columns, strict=True)))
        return candidates[points.index(max(points))]

    def _place_ages_of(self, ticket: Ticket, ctx: PairContext) -> dict[int, float]:
        """The cached youngest passing waits of every place asked about so far, for newcomers in ``ticket``'s
        place state: everything about it the place filters may read, and the schedule."""
        relax = ctx.relax
        state = (_place_key(ticket), relax.interests_required(ticket, ctx.now_ms), relax.scope(ticket, ctx.now_ms), relax.steps_s(), ctx.near_rtt_ms)  # fmt: skip
        ages = self._place_ages.get(state)
        if ages is None:
            ages = self._place_ages[state] = {}
        return ages

    def _place_age(self, place: int, ticket: Ticket, ctx: PairContext) -> float:
        """The youngest wait (s) at which tickets of ``place`` pass the place filters with ``ticket``; inf if
        none does."""
        self._verdicts += 1
        age_s = self._youngest_passing_age(ticket, self._samples["place", place], ctx, ctx.relax.steps_s())
        return math.inf if age_s is None else age_s

    def _admitted_profiles(
        self, lang: str, group: _Group, me: int, ticket: Ticket, ctx: PairContext
    ) -> tuple[list[int], frozenset[int]]:
        """The profile ids of the group the profile filters allow with ``ticket``'s profile."""
        cached = self._admitted.get((lang, me))
        if cached is not None and cached[0] == group.version:
            return cached[1], cached[2]
        known = self._profile_verdicts.get(me)
        if known is None:
            known = self._profile_verdicts[me] = (set(), set())
        allowed, refused = known
        profiles = group.profiles.keys()
        unknown = profiles - allowed - refused  # set operations in C; only the profiles never asked about
        if unknown:
            # A PROFILE filter's verdict on a sample is its verdict on the profile (rules/base.py), so its
            # bound form answers for the sample as bucket_allows would.
            checks = [check for bind in self._profile_binders if (check := bind(ticket, ctx)) is not None]
            for p in unknown:
                sample = self._samples["profile", p]
                for check in checks:
                    if not check(sample):
                        refused.add(p)
                        break
                else:
                    allowed.add(p)
            self._verdicts += len(unknown)
        admitted_set = frozenset(profiles & allowed)
        admitted = list(admitted_set)
        self._admitted[lang, me] = (group.version, admitted, admitted_set)
        return admitted, admitted_set

    def _youngest_passing_age(
        self, newcomer: Ticket, sample: Ticket, ctx: PairContext, ages_s: tuple[float, ...]
    ) -> float | None:
        """The least wait (s, a step of the schedule) at which tickets placed like ``sample`` pass every
        place filter with ``newcomer``; None if none does. Relaxing only loosens, so the oldest is tried
        first: a place a newcomer cannot use fails it, found in one probe."""
        youngest = None
        for age_s in (ages_s[-1], *ages_s[:-1]):
            probe = dataclasses.replace(sample, queued_at=ctx.now_ms - age_s * 1000)
            passes = all(f.bucket_allows(newcomer, probe, ctx) for f in self._place_filters)
            if age_s == ages_s[-1]:
                if not passes:
                    return None
                youngest = age_s
            elif passes:
                return age_s
        return youngest

    def _intern(self, ids: dict[Any, int], kind: str, key: Any, ticket: Ticket) -> int:
        n = ids.get(key)
        if n is None:
            n = ids[key] = len(ids)
            self._samples[kind, n] = ticket
        return n

    # -- membership ---------------------------------------------------------------

    def _insert(self, ticket: Ticket) -> None:
        self._tickets[ticket.ticket_id] = ticket
        self._by_user[ticket.user_id] = ticket.ticket_id
        self._order.add(_order(ticket))
        entry = _Entry(
            ticket,
            self._intern(self._profile_ids, "profile", _profile_key(ticket), ticket),
            self._intern(self._place_ids, "place", _place_key(ticket), ticket),
        )
        item = self._items[ticket.ticket_id] = (ticket.queued_at, ticket.ticket_id, entry)
        for lang in _languages(ticket):
            group = self._groups.get(lang)
            if group is None:
                group = self._groups[lang] = _Group()
            group.order.add(item)
            node = group.profiles.get(entry.profile)
            if node is None:
                node = group.profiles[entry.profile] = SortedList()
                group.version = next(self._versions)
            elif not node:
                group.empty -= 1
            node.add(item)
            for interest in ticket.preferences.interests:
                listed = group.interests.get(interest)
                if listed is None:
                    listed = group.interests[interest] = SortedList()
                listed.add(item)

    def remove(self, ticket_id: str) -> Ticket | None:
        ticket = self._tickets.pop(ticket_id, None)
        if ticket is None:
            return None
        if self._by_user.get(ticket.user_id) == ticket_id:
            del self._by_user[ticket.user_id]
        self._order.remove(_order(ticket))
        item = self._items.pop(ticket_id)
        entry = item[2]
        for lang in _languages(ticket):
            group = self._groups[lang]
            group.order.remove(item)
            for interest in ticket.preferences.interests:
                listed = group.interests[interest]
                listed.remove(item)
                if not listed:
                    del group.interests[interest]
            node = group.profiles[entry.profile]
            node.remove(item)
            if node:
                continue
            if not group.order:
                del self._groups[lang]
                continue
            # An empty profile stays listed (walks skip it) until they are many, then goes in one sweep.
            group.empty += 1
            if group.empty > 64 and group.empty * 2 > len(group.profiles):
                group.profiles = {p: n for p, n in group.profiles.items() if n}
                group.empty = 0
                group.version = next(self._versions)
        return ticket

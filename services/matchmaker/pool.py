"""The waiting pool: tickets indexed by their hard-filter keys, paired the moment a match exists.

Event-driven: a ticket entering the pool (``offer``) is paired at once with
the best of the oldest compatible waiting tickets, so nobody waits for a
polling tick; a ticket whose criteria relax is offered again by the core's
relaxation timer.

Which pair is made: every filter of the rule set must allow it (``rules/``);
among the ``compare`` oldest compatible tickets the one with the most points
from the scorers wins (ties: the older one).

Staying fast with thousands waiting: tickets are grouped by language (one
entry per language a ticket gave, or the "any" group) and then in buckets of
identical fields (gender, age band and the wanted lists, region, scope, video
codecs, whether it gave interests). A newcomer looks only in the groups of
its languages plus "any". For each bucket it asks every ``BucketFilter``
about one sample ticket, placed at each step of the relaxation schedule
(just queued, then as old as each step): the youngest age that passes bounds
the bucket (only tickets at least that old can pass), and a bucket no age
passes is skipped whole. It then walks the remaining tickets oldest first,
merged across buckets, until it has ``compare`` candidates. What it still
checks one ticket at a time is what differs inside a bucket: blocks, recent
partners, which interests.
"""

from __future__ import annotations

import dataclasses
import heapq
from collections.abc import Iterable, Iterator, Sequence
from typing import Any

from sortedcontainers import SortedDict, SortedList

from duet.services.matchmaker.rules.base import BucketFilter, PairContext, PairFilter, PairScorer
from duet.services.matchmaker.rules.defaults import default_filters, default_scorers
from duet.services.matchmaker.rules.media import VideoCodecs
from duet.services.matchmaker.ticket import Ticket

__all__ = ["Ticket", "WaitingPool"]

ANY_LANGUAGE = ""  # the group of tickets that gave no language
BucketKey = tuple[str, frozenset[str], str, frozenset[str], str, str, VideoCodecs, bool]
OrderKey = tuple[float, str]  # (queued_at, ticket_id): oldest first, ties by id
_LAST_ID = "\U0010ffff"  # sorts after every ticket id


def _bucket_key(t: Ticket) -> BucketKey:
    p = t.preferences
    return (p.gender, p.want_genders, p.age_band, p.want_age_bands, t.region, p.scope, t.video, bool(p.interests))


def _order(t: Ticket) -> OrderKey:
    return (t.queued_at, t.ticket_id)


def _oldest_first(bucket: Any, queued_by: float) -> Iterator[tuple[OrderKey, Ticket]]:
    """The bucket's tickets queued at or before ``queued_by`` (epoch ms), oldest first."""
    for key in bucket.irange(maximum=(queued_by, _LAST_ID)):
        yield key, bucket[key]


def _languages(t: Ticket) -> Iterable[str]:
    return t.preferences.languages or (ANY_LANGUAGE,)


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
        self._bucket_filters = [f for f in self.filters if isinstance(f, BucketFilter)]
        self._tickets: dict[str, Ticket] = {}
        self._by_user: dict[str, str] = {}
        self._order: SortedList = SortedList()
        # language -> bucket key -> tickets oldest first
        self._index: dict[str, dict[BucketKey, SortedDict]] = {}
        self._verdicts: dict[tuple[object, BucketKey], float | None] = {}

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
        candidates: list[Ticket] = []
        seen: set[str] = set()
        for _, waiting in heapq.merge(*self._candidate_buckets(ticket, ctx), key=lambda item: item[0]):
            if waiting.ticket_id in seen:
                continue  # in several language groups
            seen.add(waiting.ticket_id)
            if all(f.allows(waiting, ticket, ctx) for f in self.filters):
                candidates.append(waiting)
                if len(candidates) >= self.compare:
                    break
        if not candidates:
            return None
        points = [sum(s.score(c, ticket, ctx) for s in self.scorers) for c in candidates]
        best = max(range(len(candidates)), key=lambda i: (points[i], -i))
        return candidates[best]

    def _candidate_buckets(self, ticket: Ticket, ctx: PairContext) -> Iterator[Iterator[tuple[OrderKey, Ticket]]]:
        langs = ticket.preferences.languages
        groups = [*langs, ANY_LANGUAGE] if langs else list(self._index)
        ages_s = ctx.relax.steps_s()
        now = ctx.now_ms
        # A bucket's verdict depends only on its key, the newcomer's own key and relaxation state, and the
        # schedule: remembered, so a newcomer pays a dict look-up per bucket, not a round of filters.
        signature = (
            _bucket_key(ticket),
            ctx.relax.interests_required(ticket, now),
            ctx.relax.scope(ticket, now),
            ages_s,
            ctx.near_rtt_ms,
        )
        if len(self._verdicts) > 200_000:
            self._verdicts.clear()
        for lang in groups:
            for key, bucket in self._index.get(lang, {}).items():
                cache_key = (signature, key)
                if cache_key in self._verdicts:
                    age_s = self._verdicts[cache_key]
                else:
                    age_s = self._youngest_passing_age(ticket, bucket.peekitem(0)[1], ctx, ages_s)
                    self._verdicts[cache_key] = age_s
                if age_s is None:
                    continue
                # Passes just queued: the whole bucket; else only its tickets at least that old.
                yield iter(bucket.items()) if age_s == 0 else _oldest_first(bucket, now - age_s * 1000)

    def _youngest_passing_age(
        self, newcomer: Ticket, sample: Ticket, ctx: PairContext, ages_s: tuple[float, ...]
    ) -> float | None:
        """The least wait (s, a step of the schedule) at which tickets like ``sample`` pass every bucket
        filter with ``newcomer``; None if none does. Relaxing only loosens, so the oldest is tried first:
        most buckets a newcomer cannot use fail a hard filter, found in one probe."""
        for age_s in (ages_s[-1], *ages_s[:-1]):
            probe = dataclasses.replace(sample, queued_at=ctx.now_ms - age_s * 1000)
            passes = self._bucket_passes(newcomer, probe, ctx)
            if age_s == ages_s[-1]:
                if not passes:
                    return None
                youngest = age_s
            elif passes:
                return age_s
        return youngest

    def _bucket_passes(self, newcomer: Ticket, probe: Ticket, ctx: PairContext) -> bool:
        return all(f.bucket_allows(newcomer, probe, ctx) for f in self._bucket_filters)

    # -- membership ---------------------------------------------------------------

    def _insert(self, ticket: Ticket) -> None:
        self._tickets[ticket.ticket_id] = ticket
        self._by_user[ticket.user_id] = ticket.ticket_id
        self._order.add(_order(ticket))
        key = _bucket_key(ticket)
        for lang in _languages(ticket):
            bucket: Any = self._index.setdefault(lang, {}).setdefault(key, SortedDict())
            bucket[_order(ticket)] = ticket

    def remove(self, ticket_id: str) -> Ticket | None:
        ticket = self._tickets.pop(ticket_id, None)
        if ticket is None:
            return None
        if self._by_user.get(ticket.user_id) == ticket_id:
            del self._by_user[ticket.user_id]
        self._order.remove(_order(ticket))
        key = _bucket_key(ticket)
        for lang in _languages(ticket):
            group = self._index[lang]
            bucket = group[key]
            del bucket[_order(ticket)]
            if not bucket:
                del group[key]
                if not group:
                    del self._index[lang]
        return ticket

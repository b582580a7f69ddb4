"""The rules' interfaces and the context they read (see the package docstring)."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Protocol, runtime_checkable

from duet.services.matchmaker.rules.relaxation import RelaxSchedule
from duet.services.matchmaker.ticket import Ticket


class LatencyEstimate(Protocol):
    """The reference RTT between two regions (ms), or None when unknown. Must be fast (no I/O)."""

    def rtt_ms(self, region_a: str, region_b: str) -> float | None: ...


class PairHistory(Protocol):
    """What two users did to each other before. Symmetric; fast (in memory)."""

    def blocked(self, user_a: str, user_b: str) -> bool:
        """Either one blocked the other."""
        ...

    def met_recently(self, user_a: str, user_b: str) -> bool:
        """The two were paired within the no-rematch window (or are among each other's last partners)."""
        ...


@dataclass(frozen=True)
class PairContext:
    now_ms: float  # the matchmaker clock, epoch ms: decides each ticket's relaxation
    relax: RelaxSchedule
    latency: LatencyEstimate
    history: PairHistory
    near_rtt_ms: float = 80.0  # "near me": same region or a reference RTT up to this


class PairFilter(Protocol):
    """May ``a`` and ``b`` be paired now? Symmetric in a and b."""

    name: str

    def allows(self, a: Ticket, b: Ticket, ctx: PairContext) -> bool: ...


@runtime_checkable
class BucketFilter(PairFilter, Protocol):
    """A filter whose answer, for a given newcomer, is the same for every ticket of one part of the pool's key.

    ``bucket_part`` names the part of the waiting ticket the answer depends on (with the newcomer
    and the context):

    - ``PROFILE``: gender, age band, their wanted lists and video codecs, never the time: such a
      filter never relaxes, and its answer about a sample is its answer about every ticket of that
      profile, so the pool does not ask it again ticket by ticket;
    - ``PLACE``: region, scope and whether interests were given, and the ticket's wait (it may relax).

    ``bucket_allows`` returning False for one ticket lets the pool skip every ticket sharing that
    part. A filter that reads anything else is not a BucketFilter: the pool asks it ticket by ticket.
    """

    bucket_part: str

    def bucket_allows(self, newcomer: Ticket, sample: Ticket, ctx: PairContext) -> bool: ...


PROFILE = "profile"
PLACE = "place"


class PairScorer(Protocol):
    """How good pairing a waiting ticket with a newcomer is; the pool adds up every scorer's points."""

    name: str

    def score(self, waiting: Ticket, newcomer: Ticket, ctx: PairContext) -> float: ...


# -- the optional fast path: a rule bound to one newcomer ------------------------------------------------
#
# The pool asks the same newcomer about a few dozen waiting tickets per search. A rule may do once, per
# newcomer, what does not depend on the waiting ticket (the newcomer's relaxation state, its sets, the
# thresholds of the schedule) by offering ``bind``; a rule without it is asked through ``allows`` or
# ``score`` as before (``filter_binder``, ``scorer_binder``). Both must give the same answers.

Check = Callable[[Ticket], bool]  # a filter's verdict on a waiting ticket, for one newcomer and context
Points = Callable[[Ticket], float]  # a scorer's points for a waiting ticket, for one newcomer and context


@runtime_checkable
class BindingFilter(PairFilter, Protocol):
    def bind(self, newcomer: Ticket, ctx: PairContext) -> Check | None:
        """``lambda waiting: self.allows(waiting, newcomer, ctx)``, cheaper; None when it allows every ticket."""
        ...


@runtime_checkable
class BindingScorer(PairScorer, Protocol):
    def bind(self, newcomer: Ticket, ctx: PairContext) -> Points:
        """``lambda waiting: self.score(waiting, newcomer, ctx)``, cheaper."""
        ...


def filter_binder(f: PairFilter) -> Callable[[Ticket, PairContext], Check | None]:
    """How to bind ``f`` to a newcomer: its own ``bind``, or its ``allows`` with the newcomer and context fixed."""
    if isinstance(f, BindingFilter):
        return f.bind
    allows = f.allows

    def bind(newcomer: Ticket, ctx: PairContext) -> Check:
        return lambda waiting: allows(waiting, newcomer, ctx)

    return bind


def scorer_binder(s: PairScorer) -> Callable[[Ticket, PairContext], Points]:
    """How to bind ``s`` to a newcomer: its own ``bind``, or its ``score`` with the newcomer and context fixed."""
    if isinstance(s, BindingScorer):
        return s.bind
    score = s.score

    def bind(newcomer: Ticket, ctx: PairContext) -> Points:
        return lambda waiting: score(waiting, newcomer, ctx)

    return bind

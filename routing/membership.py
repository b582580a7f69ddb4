"""Edge membership: which edges are alive, and which may carry transit, from heartbeats and reports.

Two rules, both undone by the edge's next heartbeat (or registration):

* **Silence: out.** An edge is watched from its first heartbeat: silent for
  longer than ``timeout_s`` (2 s) it is out (routed as if DOWN, its declared
  state untouched; announced, so the matchmaker moves its clients). Edges
  that never heartbeat (processes older than heartbeats, hand-registered test
  edges) are never timed out, so adding heartbeats broke nobody.
* **Unreachable and overdue: no transit.** When at least ``quorum`` (2) of
  its neighbours currently report their links to it unreachable *and* its
  heartbeat is overdue (none for more than ``overdue_s``: one interval plus
  0.1 s), it carries no transit at once (routed as if DRAINING: it still ends
  its own calls' paths, no path goes through it, no new clients). A call that
  transits a dead edge makes both its neighbours on the path send through it,
  probe it every 0.1 s and report it within ~0.5 s, so the call moves within
  ~0.6 s of the death instead of the silence timer's 2 s. One neighbour's
  report never counts (that neighbour may be the one in trouble); an edge
  that heartbeats on time never loses transit this way (its links failed,
  not it: the link rule decides). An edge that merely stalls longer than
  ``overdue_s`` loses transit for the rest of its stall (it forwarded nothing
  meanwhile anyway) but keeps its own calls and its links, and nobody is told
  it died.

Pure and clock-free: the caller passes ``now`` (monotonic seconds), so the
rules are tested with a fake clock and the service sweeps on its own schedule
(:meth:`Membership.next_due` says when a reported edge falls due).
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field

# Edges heartbeat every 0.5 s: 2 s is four missed beats. With a sweep every
# 0.25 s an edge is out at most 2.25 s after its last heartbeat (goal: 3 s).
HEARTBEAT_INTERVAL_S = 0.5
SILENCE_TIMEOUT_S = 2.0
SWEEP_INTERVAL_S = 0.25
# A suspected edge's heartbeat is overdue after one interval and this much more: a heartbeat's
# round trip and a busy loop's lateness fit in it; a dead edge's routes still move well within 1 s.
OVERDUE_GRACE_S = 0.1
OVERDUE_S = HEARTBEAT_INTERVAL_S + OVERDUE_GRACE_S
# How many distinct neighbours must report an edge unreachable. Two: a call that transits an edge
# makes both of its neighbours on the path send through it, so both notice its death at once.
SUSPECT_QUORUM = 2
# Reporters repeat their readings with every heartbeat (0.5 s); one not repeated for this long lapses.
REPORT_LAPSES_S = 2 * HEARTBEAT_INTERVAL_S


@dataclass(frozen=True)
class MembershipChange:
    edge_id: str
    alive: bool
    reason: str


@dataclass(frozen=True)
class TransitChange:
    """An edge stopped (or resumed) carrying transit; alive all along."""

    edge_id: str
    transit: bool
    reason: str


@dataclass
class Membership:
    """Last heartbeat per edge, neighbours' unreachable reports, the edges out and those with no transit."""

    timeout_s: float = SILENCE_TIMEOUT_S
    overdue_s: float = OVERDUE_S
    quorum: int = SUSPECT_QUORUM
    _last_beat: dict[str, float] = field(default_factory=dict)
    _silent: set[str] = field(default_factory=set)
    _no_transit: set[str] = field(default_factory=set)
    # edge -> reporter -> when it last reported its link to that edge unreachable
    _reports: dict[str, dict[str, float]] = field(default_factory=dict)

    @property
    def silent(self) -> frozenset[str]:
        return frozenset(self._silent)

    @property
    def no_transit(self) -> frozenset[str]:
        """Alive edges that carry no transit (reported unreachable while overdue)."""
        return frozenset(self._no_transit)

    def is_alive(self, edge_id: str) -> bool:
        return edge_id not in self._silent

    def carries_transit(self, edge_id: str) -> bool:
        return edge_id not in self._silent and edge_id not in self._no_transit

    def heard_within(self, edge_id: str, seconds: float, now: float) -> bool:
        """Whether ``edge_id`` heartbeated in the last ``seconds`` (True for an edge never watched)."""
        last = self._last_beat.get(edge_id)
        return last is None or now - last <= seconds

    def beat(
        self, edge_id: str, now: float, *, why: str = "heartbeat again"
    ) -> MembershipChange | TransitChange | None:
        """A heartbeat (or registration) at ``now``; the change when a silent edge came back, or
        an edge with no transit carries it again."""
        self._last_beat[edge_id] = now
        if edge_id in self._no_transit:
            self._no_transit.discard(edge_id)
            return TransitChange(edge_id, True, why)
        if edge_id in self._silent:
            self._silent.discard(edge_id)
            return MembershipChange(edge_id, True, why)
        return None

    def report_unreachable(self, edge_id: str, reporter: str, now: float) -> None:
        """``reporter``'s link to ``edge_id`` is unreachable (stands until it lapses or is withdrawn)."""
        self._reports.setdefault(edge_id, {})[reporter] = now

    def withdraw(self, edge_id: str, reporter: str | None = None) -> None:
        """``reporter`` hears ``edge_id`` again (``None``: every report about it is void, e.g. it stalled)."""
        reports = self._reports.get(edge_id)
        if reports is None:
            return
        if reporter is None:
            reports.clear()
        else:
            reports.pop(reporter, None)
        if not reports:
            del self._reports[edge_id]

    def reporters(self, edge_id: str, now: float) -> list[str]:
        """The neighbours whose unreachable reports about ``edge_id`` still stand at ``now``."""
        reports = self._reports.get(edge_id, {})
        return sorted(r for r, at in reports.items() if now - at <= REPORT_LAPSES_S)

    def next_due(self, now: float) -> float | None:
        """When the earliest edge reported by a quorum but still on time becomes overdue (None: none is)."""
        due = None
        for edge_id in self._reports:
            last = self._last_beat.get(edge_id)
            if not self.carries_transit(edge_id) or last is None or len(self.reporters(edge_id, now)) < self.quorum:
                continue
            at = last + self.overdue_s
            due = at if due is None else min(due, at)
        return due

    def sweep(self, now: float, only: Iterable[str] | None = None) -> list[MembershipChange | TransitChange]:
        """Edges now out (silent past the timeout), or now with no transit (reported and overdue).

        ``only``: judge just these edges (a heartbeat's reports), not every edge watched.
        """
        out: list[MembershipChange | TransitChange] = []
        watched = self._last_beat if only is None else {e: self._last_beat[e] for e in only if e in self._last_beat}
        for edge_id, last in watched.items():
            if edge_id in self._silent:
                continue
            silence = now - last
            if silence > self.timeout_s:
                self._silent.add(edge_id)
                self._no_transit.discard(edge_id)  # out altogether now
                out.append(MembershipChange(edge_id, False, f"no heartbeat for {silence:.1f} s"))
            elif (
                edge_id not in self._no_transit
                and silence > self.overdue_s
                and len(reporters := self.reporters(edge_id, now)) >= self.quorum
            ):
                self._no_transit.add(edge_id)
                reason = f"no heartbeat for {silence:.2f} s and unreachable from {', '.join(reporters)}"
                out.append(TransitChange(edge_id, False, reason))
        if only is None:
            for edge_id in [e for e in self._reports if not self.reporters(e, now)]:
                del self._reports[edge_id]  # every report lapsed
        return out

    def forget(self, edge_id: str) -> None:
        """The edge left the topology: stop watching it."""
        self._last_beat.pop(edge_id, None)
        self._silent.discard(edge_id)
        self._no_transit.discard(edge_id)
        self._reports.pop(edge_id, None)
        for reports in self._reports.values():
            reports.pop(edge_id, None)

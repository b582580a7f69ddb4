"""Membership: the silence timer (down within 3 s of the last heartbeat, up again on return) and
neighbours' unreachable reports about an overdue edge (a dead transit edge out within 0.6 s); fake clock."""

from __future__ import annotations

from hypothesis import given, settings
from hypothesis import strategies as st

from duet.routing.membership import (
    HEARTBEAT_INTERVAL_S,
    OVERDUE_S,
    REPORT_LAPSES_S,
    SILENCE_TIMEOUT_S,
    SWEEP_INTERVAL_S,
    Membership,
    MembershipChange,
    TransitChange,
)


def run_sweeps(m: Membership, start: float, end: float) -> list[tuple[float, str, bool]]:
    """Sweep on the service's schedule from ``start`` to ``end``; (time, edge, alive) of each change."""
    out = []
    t = start
    while t <= end:
        out += [(t, c.edge_id, c.alive) for c in m.sweep(t)]
        t += SWEEP_INTERVAL_S
    return out


def test_a_silent_edge_is_down_within_3_s_of_its_last_heartbeat_and_back_on_its_next() -> None:
    m = Membership()
    t = 0.0
    while t < 5:  # a healthy edge: heartbeats every 0.5 s, never swept out
        m.beat("fra-1", t)
        assert m.sweep(t + 0.25) == []
        t += HEARTBEAT_INTERVAL_S
    last = t - HEARTBEAT_INTERVAL_S
    reasons = [c.reason for c in m.sweep(last + SILENCE_TIMEOUT_S + 0.01)]
    assert reasons == [f"no heartbeat for {SILENCE_TIMEOUT_S:.1f} s"]
    m.beat("fra-1", last)  # back to the silent edge's last heartbeat, to time the sweep schedule
    changes = run_sweeps(m, t, t + 5)
    assert [(e, alive) for _, e, alive in changes] == [("fra-1", False)]
    went_down = changes[0][0]
    assert SILENCE_TIMEOUT_S < went_down - last <= 3.0
    assert "fra-1" in m.silent and not m.is_alive("fra-1")
    assert m.sweep(went_down + 1) == []  # announced once

    back = m.beat("fra-1", t + 6)
    assert back is not None and back.alive and back.edge_id == "fra-1"
    assert m.is_alive("fra-1") and m.silent == frozenset()
    assert m.beat("fra-1", t + 6.5) is None  # alive already: no news


def test_an_edge_that_never_heartbeats_is_never_timed_out() -> None:
    m = Membership()
    m.beat("fra-1", 0.0)
    assert [e for _, e, _ in run_sweeps(m, 0, 30)] == ["fra-1"]
    assert m.is_alive("vir-1")


def test_forget_stops_watching() -> None:
    m = Membership()
    m.beat("fra-1", 0.0)
    m.forget("fra-1")
    assert m.sweep(100.0) == []


@settings(max_examples=200, deadline=None)
@given(
    gaps=st.lists(st.floats(min_value=0.01, max_value=4.0, allow_nan=False), min_size=1, max_size=30),
)
def test_alive_exactly_while_heartbeats_come_within_the_timeout(gaps: list[float]) -> None:
    """Heartbeats at arbitrary gaps, sweeps every 0.25 s: at every sweep, the edge is out iff its
    last heartbeat is older than the timeout; never out within the timeout, always out by 3 s."""
    m = Membership()
    beats = [0.0]
    for g in gaps:
        beats.append(beats[-1] + g)
    i = 0
    t = 0.0
    last = None
    while t <= beats[-1] + 4:
        while i < len(beats) and beats[i] <= t:
            m.beat("e", beats[i])
            last = beats[i]
            i += 1
        m.sweep(t)
        assert last is not None
        silence = t - last
        if silence <= SILENCE_TIMEOUT_S:
            assert m.is_alive("e"), (t, last)
        else:
            assert not m.is_alive("e"), (t, last)
        if silence > 3.0:
            assert not m.is_alive("e")
        t += SWEEP_INTERVAL_S


# The neighbours' side, as edge/probes.py makes it: a busy link (one a call is sent through) is
# probed every 0.1 s and reported unreachable at the first tick 0.4 s after its last answer, in
# an immediate heartbeat; so a neighbour reports a dead edge 0.3-0.5 s after its death.
DETECT_MIN_S, DETECT_MAX_S = 0.3, 0.5


def label(change: MembershipChange | TransitChange) -> str:
    if isinstance(change, TransitChange):
        return "transit" if change.transit else "no transit"
    return "back" if change.alive else "out"


def simulate(
    m: Membership, events: list[tuple[float, str, str, str]], until: float
) -> list[tuple[float, str, str, str]]:
    """Run timed events the way the routing service does: ("beat", edge, ""), ("report", edge,
    reporter), ("heard", edge, reporter); a sweep after each report (as the heartbeat handler does),
    at each regular pass and when an edge falls due (``next_due``). (time, edge, label, reason) of each change."""
    changes = []
    pending = sorted(events)
    t = 0.0
    next_pass = SWEEP_INTERVAL_S
    while t <= until:
        due = m.next_due(t)
        candidates = [next_pass, until + 1]
        if pending:
            candidates.append(pending[0][0])
        if due is not None:
            candidates.append(max(due + 0.002, t))  # the service's wake-up, just past the due time
        t = min(candidates)
        if t > until:
            break
        while pending and pending[0][0] <= t:
            at, kind, edge, reporter = pending.pop(0)
            if kind == "beat":
                change = m.beat(edge, at)
                if change is not None:
                    changes.append((at, edge, label(change), change.reason))
            elif kind == "report":
                m.report_unreachable(edge, reporter, at)
            else:
                m.withdraw(edge, reporter)
        if t >= next_pass:
            next_pass += SWEEP_INTERVAL_S
        changes += [(t, c.edge_id, label(c), c.reason) for c in m.sweep(t)]
    return changes


def beats(
    edge: str, start: float, end: float, period: float = HEARTBEAT_INTERVAL_S
) -> list[tuple[float, str, str, str]]:
    out = []
    t = start
    while t < end:
        out.append((t, "beat", edge, ""))
        t += period
    return out


def reports(edge: str, reporter: str, start: float, end: float) -> list[tuple[float, str, str, str]]:
    """A neighbour's report, repeated with each of its heartbeats."""
    return [(t, "report", edge, reporter) for t, *_ in beats(edge, start, end)]


@settings(max_examples=300, deadline=None)
@given(
    phase=st.floats(min_value=0.0, max_value=HEARTBEAT_INTERVAL_S - 0.001),
    detect=st.lists(st.floats(min_value=DETECT_MIN_S, max_value=DETECT_MAX_S), min_size=2, max_size=4),
)
def test_a_dead_edge_reported_by_two_neighbours_carries_no_transit_within_0_6_s_of_its_death(
    phase: float, detect: list[float]
) -> None:
    """Its last heartbeat ``phase`` before it dies; each neighbour on a call's path reports it
    ``detect`` after. No transit once two reports stand and its heartbeat is overdue: never later
    than 0.6 s after its death (well within the 1 s a call's failover may take), never before
    overdue; out altogether when the silence timer fires."""
    m = Membership()
    last = 10.0
    death = last + phase
    events = beats("vir-1", 0.0, last + 0.01)
    for i, d in enumerate(detect):
        events += reports("vir-1", f"n-{i}", death + d, death + 5)
    changes = simulate(m, events, death + 5)
    assert [(e, what) for _, e, what, _ in changes] == [("vir-1", "no transit"), ("vir-1", "out")]
    out_at, _, _, reason = changes[0]
    assert changes[1][0] - last > SILENCE_TIMEOUT_S
    assert out_at - death <= OVERDUE_S + 0.01, (out_at - death, phase, detect)
    assert out_at - last > OVERDUE_S
    assert out_at >= death + sorted(detect)[1]  # the second report, not the first, decides
    assert "unreachable from n-" in reason


@settings(max_examples=300, deadline=None)
@given(
    phase=st.floats(min_value=0.0, max_value=HEARTBEAT_INTERVAL_S),
    late=st.floats(min_value=0.0, max_value=OVERDUE_S - HEARTBEAT_INTERVAL_S),
    detect=st.lists(st.floats(min_value=0.0, max_value=OVERDUE_S), min_size=2, max_size=4),
)
def test_a_stalled_edge_whose_heartbeat_comes_late_but_within_the_allowance_keeps_its_transit(
    phase: float, late: float, detect: list[float]
) -> None:
    """Its heartbeat comes up to 0.1 s past its interval (a stall: its neighbours all reported it
    unreachable meanwhile, at any moment); it never loses transit, nor afterwards while it heartbeats."""
    m = Membership()
    last = 10.0
    late_beat = last + HEARTBEAT_INTERVAL_S + late
    events = beats("vir-1", 0.0, last + 0.01) + beats("vir-1", late_beat, late_beat + 5)
    for i, d in enumerate(detect):
        # Reports stand until the reporter hears it again, one probe round after its late heartbeat.
        at = min(last + phase + d, late_beat)
        events += [(at, "report", "vir-1", f"n-{i}"), (late_beat + 0.1, "heard", "vir-1", f"n-{i}")]
    assert simulate(m, events, late_beat + 5) == []


@settings(max_examples=200, deadline=None)
@given(
    gaps=st.lists(st.floats(min_value=0.01, max_value=1.9), min_size=1, max_size=20),
)
def test_one_neighbours_report_alone_never_takes_an_edges_transit(gaps: list[float]) -> None:
    """One neighbour reports it unreachable all along while its heartbeats come at arbitrary gaps
    (up to 1.9 s, far overdue): it keeps its transit, and the silence timer never fires."""
    m = Membership()
    t = 0.0
    events = [(0.0, "beat", "vir-1", "")]
    for g in gaps:
        t += g
        events.append((t, "beat", "vir-1", ""))
    events += reports("vir-1", "fra-1", 0.05, t)
    assert simulate(m, events, t) == []


def test_an_edge_that_heartbeats_on_time_keeps_its_transit_whatever_its_neighbours_say() -> None:
    """Every link to it failed, every neighbour says so: the edge is alive (the links are the link rule's)."""
    m = Membership()
    events = beats("vir-1", 0.0, 10.0)
    for n in ("fra-1", "sin-1", "tyo-1"):
        events += reports("vir-1", n, 1.0, 10.0)
    assert simulate(m, events, 10.0) == []
    assert m.reporters("vir-1", 9.8) == ["fra-1", "sin-1", "tyo-1"]


def test_reports_lapse_unless_repeated_and_are_withdrawn_when_the_reporter_hears_it_again() -> None:
    m = Membership()
    m.beat("vir-1", 0.0)
    m.report_unreachable("vir-1", "fra-1", 0.1)
    m.report_unreachable("vir-1", "sin-1", 0.1)
    m.withdraw("vir-1", "sin-1")  # sin-1 hears it again: one report left
    assert m.next_due(0.2) is None and m.sweep(0.7) == []
    m.report_unreachable("vir-1", "sin-1", 0.7)
    assert m.next_due(0.7) == OVERDUE_S  # due at last heartbeat + OVERDUE_S
    # fra-1's report was never repeated: it lapses, and one report is not enough.
    assert m.sweep(0.1 + REPORT_LAPSES_S + 0.01) == [] and m.is_alive("vir-1")
    m.report_unreachable("vir-1", "fra-1", 1.2)
    [change] = m.sweep(1.2)
    assert (
        isinstance(change, TransitChange)
        and not change.transit
        and change.reason == "no heartbeat for 1.20 s and unreachable from fra-1, sin-1"
    )
    assert m.next_due(1.2) is None  # no transit already
    assert m.is_alive("vir-1") and not m.carries_transit("vir-1") and m.no_transit == {"vir-1"}
    back = m.beat("vir-1", 1.3)
    assert back == TransitChange("vir-1", True, "heartbeat again") and m.carries_transit("vir-1")
    m.withdraw("vir-1")  # it told of a stall: every report about it is void
    assert m.reporters("vir-1", 1.3) == [] and m.sweep(2.3) == []  # overdue, but nobody reports it


def test_a_sweep_of_only_some_edges_judges_just_those() -> None:
    """The routing service judges the edges a heartbeat reported at once, without a pass over all."""
    m = Membership()
    for e in ("fra-1", "vir-1", "sin-1"):
        m.beat(e, 0.0)
    m.report_unreachable("vir-1", "fra-1", 0.5)
    m.report_unreachable("vir-1", "sin-1", 0.5)
    assert [c.edge_id for c in m.sweep(3.0, only=["vir-1", "tyo-1"])] == ["vir-1"]  # tyo-1: never watched
    assert m.is_alive("fra-1") and m.is_alive("sin-1")  # silent past the timeout, but not judged yet
    assert sorted(c.edge_id for c in m.sweep(3.0)) == ["fra-1", "sin-1"]

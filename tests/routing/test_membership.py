"""The membership timer: down within 3 s of the last heartbeat, up again on return (fake clock)."""

from __future__ import annotations

from hypothesis import given, settings
from hypothesis import strategies as st

from duet.routing.membership import HEARTBEAT_INTERVAL_S, SILENCE_TIMEOUT_S, SWEEP_INTERVAL_S, Membership


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

"""The NTP-style clock offset estimate: exact with symmetric delays, never off by more than half the round trip."""

from __future__ import annotations

import math

import pytest
from hypothesis import given
from hypothesis import strategies as st

from duet.services.matchmaker.clock_sync import ClockSample, ClockSync, InvalidEcho

# Epoch ms around now, a client clock anywhere within a day of the server's, delays up to 2 s.
EPOCH = st.floats(min_value=1.6e12, max_value=1.9e12)
SKEW = st.floats(min_value=-86_400_000, max_value=86_400_000)
DELAY = st.floats(min_value=0, max_value=2000)


def exchange(t0: float, skew: float, up: float, hold: float, down: float) -> ClockSample:
    """A probe sent at server time t0, ``up`` ms to a client whose clock reads ``skew`` ms ahead,
    held ``hold`` ms there, ``down`` ms back."""
    t1 = t0 + up + skew
    t2 = t1 + hold
    t3 = t0 + up + hold + down
    return ClockSample(t0, t1, t2, t3)


@given(t0=EPOCH, skew=SKEW, one_way=DELAY, hold=DELAY)
def test_symmetric_delays_give_the_exact_offset(t0: float, skew: float, one_way: float, hold: float) -> None:
    sample = exchange(t0, skew, one_way, hold, one_way)
    # Exact up to float rounding of epoch-ms values (about 1e-3 ms here).
    assert sample.offset_ms == pytest.approx(skew, abs=1e-3)
    assert sample.round_trip_ms == pytest.approx(2 * one_way, abs=1e-3)


@given(t0=EPOCH, skew=SKEW, up=DELAY, hold=DELAY, down=DELAY)
def test_the_error_is_at_most_half_the_round_trip(t0: float, skew: float, up: float, hold: float, down: float) -> None:
    estimate = exchange(t0, skew, up, hold, down).estimate()
    assert estimate.uncertainty_ms == pytest.approx((up + down) / 2, abs=1e-3)
    assert abs(estimate.offset_ms - skew) <= estimate.uncertainty_ms + 1e-3
    # ... and exactly (up - down) / 2 off: the bound is reached when one direction takes it all.
    assert estimate.offset_ms - skew == pytest.approx((up - down) / 2, abs=1e-3)


@given(skew=SKEW, trips=st.lists(st.tuples(DELAY, DELAY, DELAY), min_size=1, max_size=8))
def test_the_sample_with_the_smallest_round_trip_is_kept(skew: float, trips: list[tuple[float, float, float]]) -> None:
    sync = ClockSync(samples_wanted=len(trips))
    t0 = 1.7e12
    for up, hold, down in trips:
        probe = sync.probe(t0)
        sample = exchange(t0, skew, up, hold, down)
        sync.answer(probe, sample.client_receive, sample.client_send, sample.server_receive)
        t0 = sample.server_receive + 10
    best = min(trips, key=lambda t: t[0] + t[2])
    offset = sync.offset
    assert offset is not None
    assert offset.uncertainty_ms == pytest.approx((best[0] + best[2]) / 2, abs=1e-3)
    assert abs(offset.offset_ms - skew) <= offset.uncertainty_ms + 1e-3
    assert sync.samples == len(trips) and not sync.wants_more


def test_probes_are_wanted_until_enough_samples_or_outstanding() -> None:
    sync = ClockSync(samples_wanted=2)
    assert sync.offset is None and sync.wants_more
    first = sync.probe(1000.0)
    second = sync.probe(1001.0)
    assert not sync.wants_more  # two on their way
    sync.answer(first, 5000.0, 5000.5, 1010.0)
    assert sync.offset is not None and not sync.wants_more
    assert first != second


@pytest.mark.parametrize(
    ("probe_id", "received", "sent", "words"),
    [
        (99, 5000.0, 5001.0, "answers no outstanding clock probe"),
        (1, math.nan, 5001.0, "client_receive must be a positive number"),
        (1, 5000.0, math.inf, "client_send must be a positive number"),
        (1, -3.0, 5001.0, "client_receive must be a positive number"),
        (1, 5002.0, 5001.0, "is before client_receive"),
    ],
)
def test_an_echo_that_cannot_be_right_is_refused_and_changes_nothing(
    probe_id: int, received: float, sent: float, words: str
) -> None:
    sync = ClockSync()
    assert sync.probe(1000.0) == 1
    with pytest.raises(InvalidEcho, match=words):
        sync.answer(probe_id, received, sent, 1010.0)
    assert sync.offset is None and sync.samples == 0
    sync.answer(1, 5000.0, 5001.0, 1010.0)  # the probe is still outstanding after a refused echo
    with pytest.raises(InvalidEcho, match="answers no outstanding"):
        sync.answer(1, 5000.0, 5001.0, 1011.0)  # ... and answered only once

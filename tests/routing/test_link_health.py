"""Link weights follow probe readings with hysteresis: no flap under noise, converge on a real change."""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from duet.routing.link_health import (
    MOVE_ROUNDS,
    UP_ROUNDS,
    LinkHysteresis,
    LinkReading,
    rtt_band_ms,
)


def ok(rtt: float, loss: float = 0.0) -> LinkReading:
    return LinkReading(rtt, loss, True)


@settings(max_examples=300, deadline=None)
@given(
    published=st.floats(min_value=0.5, max_value=400),
    noise=st.lists(st.floats(min_value=-0.999, max_value=0.999), min_size=1, max_size=200),
)
def test_noise_inside_the_band_never_moves_the_weight(published: float, noise: list[float]) -> None:
    h = LinkHysteresis(published)
    band = rtt_band_ms(published)
    for n in noise:
        assert not h.observe(ok(max(0.0, published + n * band)))
        assert h.published.rtt_ms == published and h.published.up


@settings(max_examples=300, deadline=None)
@given(
    before=st.floats(min_value=1, max_value=300),
    after=st.floats(min_value=1, max_value=300),
    noise=st.lists(st.floats(min_value=-0.3, max_value=0.3), min_size=40, max_size=60),
)
def test_a_real_change_is_followed_within_the_band(before: float, after: float, noise: list[float]) -> None:
    h = LinkHysteresis(before)
    for n in noise:  # the link now measures `after`, with noise of up to 3 % (a third of the band)
        h.observe(ok(after * (1 + n * 0.1)))
    assert abs(h.published.rtt_ms - after) <= rtt_band_ms(h.published.rtt_ms) + 0.04 * after


def test_a_change_moves_only_after_several_rounds_outside_the_band() -> None:
    h = LinkHysteresis(100.0)
    moved = [h.observe(ok(150.0)) for _ in range(MOVE_ROUNDS)]
    assert moved == [False] * (MOVE_ROUNDS - 1) + [True]
    assert h.published.rtt_ms == pytest.approx(150.0)


def test_one_spike_does_not_move_it() -> None:
    h = LinkHysteresis(100.0)
    for _ in range(5):
        h.observe(ok(100.0))
    h.observe(ok(400.0))  # one outlier pulls the average out of the band for a round or two
    for _ in range(20):
        h.observe(ok(100.0))
    assert h.published.rtt_ms == 100.0


def test_unanswered_or_heavy_loss_is_down_at_once_and_up_after_clean_rounds() -> None:
    h = LinkHysteresis(50.0)
    assert h.observe(LinkReading(0.0, 0.1, False)) and not h.published.up
    for _ in range(UP_ROUNDS - 1):
        assert not h.observe(ok(50.0)) and not h.published.up
    assert h.observe(ok(50.0)) and h.published.up
    assert h.observe(ok(50.0, loss=0.6)) and not h.published.up  # heavy loss
    h.observe(ok(50.0))
    h.observe(ok(50.0, loss=0.4))  # not clean: the count starts again
    h.observe(ok(50.0))
    h.observe(ok(50.0))
    assert not h.published.up
    h.observe(ok(50.0))
    assert h.published.up


@settings(max_examples=200, deadline=None)
@given(rounds=st.lists(st.booleans(), min_size=1, max_size=80))
def test_up_needs_clean_rounds_after_the_last_failure(rounds: list[bool]) -> None:
    h = LinkHysteresis(20.0)
    since_failure = None
    for answered in rounds:
        h.observe(ok(20.0) if answered else LinkReading(0.0, 1.0, False))
        if not answered:
            since_failure = 0
        elif since_failure is not None:
            since_failure += 1
        expected_up = since_failure is None or since_failure >= UP_ROUNDS
        assert h.published.up == expected_up


def test_declared_weights_stay_when_measurements_do_not_steer() -> None:
    h = LinkHysteresis(89.0, 0.01, measured_weights=False)
    for _ in range(20):
        h.observe(ok(0.3))
    assert (h.published.rtt_ms, h.published.loss, h.published.up) == (89.0, 0.01, True)
    h.observe(LinkReading(0.0, 1.0, False))
    assert not h.published.up


def test_loss_moves_with_its_own_band() -> None:
    h = LinkHysteresis(10.0)
    for _ in range(10):
        h.observe(ok(10.0, loss=0.01))
    assert h.published.loss == 0.0  # inside the 2-point band
    for _ in range(15):
        h.observe(ok(10.0, loss=0.2))
    assert h.published.loss == pytest.approx(0.2, abs=0.03) and h.published.up


def test_readings_are_checked() -> None:
    with pytest.raises(ValueError, match="rtt_ms"):
        LinkReading(float("nan"), 0.0, True)
    with pytest.raises(ValueError, match="loss"):
        LinkReading(1.0, 1.5, True)

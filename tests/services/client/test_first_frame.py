"""The two first-frame rules on scripted frame sequences: what a leg decodes around a partner switch.

Frames are synthetic-camera pictures, so every scripted frame says whose it is;
AnyMediaRule never looks at that, MarkerRule reads nothing else.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

import av
import numpy as np
import pytest

from duet.services.client import AnyMediaRule, FirstFrameRule, NewPartner
from duet.services.devkit.synthetic_media import FrameMarker, MarkerRule, SyntheticCamera

ME, ANA, BEN = 7, 1001, 1002
ARM, MATCHED = "arm", "matched"

Step = str | tuple[int, int]  # ARM, MATCHED, or a frame: (sender tag, frame counter)


def play(rule: FirstFrameRule, script: Sequence[Step]) -> list[tuple[tuple[int, int], NewPartner]]:
    """Feed the script to the rule; the frames it called a new partner's first, with its verdicts."""
    cameras: dict[int, SyntheticCamera] = {}
    verdicts = []
    for step in script:
        if step == ARM:
            rule.arm()
        elif step == MATCHED:
            rule.matched()
        else:
            assert isinstance(step, tuple)
            tag, counter = step
            camera = cameras.setdefault(tag, SyntheticCamera(tag))
            verdict = rule.observe(camera.make_frame(counter))
            if verdict is not None:
                verdicts.append((step, verdict))
    return verdicts


def frames(tag: int, first: int, count: int) -> list[Step]:
    return [(tag, counter) for counter in range(first, first + count)]


RULES: dict[str, Callable[[], FirstFrameRule]] = {
    "any media": AnyMediaRule,
    "marker": lambda: MarkerRule(own_tag=ME),
}


@pytest.fixture(params=sorted(RULES))
def rule(request: pytest.FixtureRequest) -> FirstFrameRule:
    return RULES[request.param]()


# --- what both rules get right -------------------------------------------------------


def test_fresh_leg_first_frame_counts_even_before_matched(rule: FirstFrameRule) -> None:
    # Media may be bridged before Matched reaches the client.
    assert [step for step, _ in play(rule, [ARM, *frames(ANA, 0, 3), MATCHED, *frames(ANA, 3, 3)])] == [(ANA, 0)]


def test_after_next_skips_the_frames_in_flight_and_the_held_frame(rule: FirstFrameRule) -> None:
    script = [
        ARM,
        *frames(ANA, 0, 10),  # the call with Ana
        ARM,  # Next goes out; Ana's video flows until the edge re-bridges the leg
        *frames(ANA, 10, 2),
        MATCHED,
        (ANA, 12),  # Ana's last frame, held by the jitter buffer until Ben's first packet
        *frames(BEN, 0, 5),
    ]
    assert [step for step, _ in play(rule, script)] == [(ANA, 0), (BEN, 0)]


def test_after_the_partner_left_skips_the_held_frame(rule: FirstFrameRule) -> None:
    # Ana left: her video stopped long ago, but her last frame is still held.
    script = [ARM, *frames(ANA, 0, 10), ARM, MATCHED, (ANA, 10), *frames(BEN, 0, 3)]
    assert [step for step, _ in play(rule, script)] == [(ANA, 0), (BEN, 0)]


def test_one_verdict_per_arming_and_none_unarmed(rule: FirstFrameRule) -> None:
    assert play(rule, frames(ANA, 0, 5)) == []  # frames between calls are only learnt from
    script = [ARM, MATCHED, (ANA, 5), *frames(BEN, 0, 5), ARM, MATCHED, (BEN, 5), *frames(ANA, 6, 5)]
    assert [step for step, _ in play(rule, script)] == [(BEN, 0), (ANA, 6)]


# --- each rule's own ---------------------------------------------------------------------


def test_any_media_rule_reads_nothing_off_the_picture() -> None:
    assert play(AnyMediaRule(), [ARM, (ANA, 0)]) == [((ANA, 0), NewPartner(marker=None))]


def test_any_media_rule_is_late_when_media_overtake_matched() -> None:
    # Documented imprecision: Ben's first frames arrive before Matched and are
    # skipped as if in flight, then his next one is skipped as if held.
    script = [*frames(ANA, 0, 3), ARM, (ANA, 3), *frames(BEN, 0, 2), MATCHED, *frames(BEN, 2, 3)]
    assert [step for step, _ in play(AnyMediaRule(), script)] == [(BEN, 3)]


def test_marker_rule_is_exact_whatever_the_timing() -> None:
    # Ben's frames overtake Matched and Ana's keep coming: the tags still tell.
    rule = MarkerRule(own_tag=ME)
    script = [ARM, *frames(ANA, 0, 3), ARM, (ANA, 3), (BEN, 0), (ANA, 4), (BEN, 1), MATCHED, *frames(BEN, 2, 3)]
    verdicts = play(rule, script)
    assert verdicts == [((ANA, 0), NewPartner(FrameMarker(ANA, 0))), ((BEN, 0), NewPartner(FrameMarker(BEN, 0)))]
    assert rule.partner_tag == BEN and rule.partner_frames == 5 and rule.last_marker == FrameMarker(BEN, 4)


def test_marker_rule_never_counts_its_own_tag_or_unreadable_frames() -> None:
    rule = MarkerRule(own_tag=ME)
    rule.arm()
    blank = av.VideoFrame.from_ndarray(np.zeros((240, 320), dtype=np.uint8), format="gray")
    assert rule.observe(blank) is None and rule.unreadable_frames == 1
    assert play(rule, [(ME, 0), (ANA, 1)]) == [((ANA, 1), NewPartner(FrameMarker(ANA, 1)))]

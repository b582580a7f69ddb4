"""A test helper: the default first-frame rule, reporting whose synthetic picture it chose."""

from __future__ import annotations

import av

from duet.services.client import AnyMediaRule, NewPartner
from duet.services.devkit.synthetic_media import read_marker


class ReadingRule:
    """AnyMediaRule as is, plus what a test knows and the rule does not: the chosen frame's marker."""

    def __init__(self) -> None:
        self.rule = AnyMediaRule()

    def arm(self) -> None:
        self.rule.arm()

    def matched(self) -> None:
        self.rule.matched()

    def observe(self, frame: av.VideoFrame) -> NewPartner | None:
        verdict = self.rule.observe(frame)
        return None if verdict is None else NewPartner(marker=read_marker(frame))

"""Which decoded video frame is the new partner's first: a small strategy.

The leg to the edge is warm and reused: after "next" (or a new match after a
previous partner) its video simply continues with another sender behind it,
so the client needs a rule to tell the new partner's first frame from the
previous partner's last ones. :class:`FirstFrameRule` is that rule;
:class:`AnyMediaRule` is the default and works for any media. Senders that
name themselves in the picture allow an exact rule (the synthetic camera's
``MarkerRule``, in ``duet.services.devkit.synthetic_media``).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Protocol

import av

__all__ = ["AnyMediaRule", "FirstFrameRule", "NewPartner"]


@dataclass(frozen=True)
class NewPartner:
    """A rule's verdict: this frame is the new partner's first."""

    # What the rule read off the frame about its sender (e.g. a FrameMarker), if anything.
    marker: object | None = None


class FirstFrameRule(Protocol):
    """Decides which decoded frame is the first of a new partner.

    The client calls, in event-loop order: :meth:`arm` just before it asks for
    a partner (FindPartner or Next), :meth:`matched` when the Matched message
    arrives, and :meth:`observe` for every decoded video frame of the leg,
    armed or not (a rule may learn from the frames between calls).
    """

    def arm(self) -> None:
        """A new partner has been asked for: look for its first frame from now on."""
        ...

    def matched(self) -> None:
        """Matched arrived: the edge has already switched the leg to the new partner."""
        ...

    def observe(self, frame: av.VideoFrame) -> NewPartner | None:
        """A NewPartner if ``frame`` is the new partner's first; at most once per :meth:`arm`."""
        ...


class AnyMediaRule:
    """The default rule, for any media: it looks at when frames come, never at the picture.

    On a leg that has never decoded video, the first frame decoded after
    arming is the partner's: nobody else has sent this leg any video.

    On a leg that was receiving video, two kinds of frame come before the new
    partner's first one, and the rule skips both:

    - the previous partner's frames still on their way when the client asked
      (after "next" its video flows until the edge re-bridges the leg). The
      matchmaker sends Matched only after that, so frames decoded before
      Matched arrives are skipped;
    - the previous partner's last frame. aiortc's jitter buffer releases a
      frame only when the first packet of the next one arrives, and the edge
      keeps the leg's sequence numbers continuous across the switch, so that
      frame is held until the new partner's first packet arrives and is then
      decoded first. The first frame decoded after Matched is skipped.

    Precision. Exact on a fresh leg. After a previous partner it is exact when
    the new partner's first packet arrives after Matched and the previous
    partner's frames other than the held one are decoded before it. On a local
    cluster (loopback, three edges, a 2-core machine) it was exact in 120 of
    120 "next" switches measured with synthetic partners, where skipping one
    frame after arming (no wait for Matched) picked a frame of the previous
    partner in 4 of 85. Otherwise:

    - late by a frame interval or more when the new partner's media overtake
      Matched (its first frames are then skipped as if in flight), e.g. a
      matchmaker much farther from the client than the partner's edge;
    - early, on a frame of the previous partner, when the decoder falls behind
      and one of that partner's frames besides the held one is decoded only
      after Matched arrived (a loaded machine);
    - one frame late when the held frame never reached the decoder (lost).

    Media that name their sender in the picture allow an exact rule instead.
    """

    def __init__(self) -> None:
        self._received_video = False
        self._armed = False
        self._awaiting_match = False  # skipping the previous partner's in-flight frames
        self._to_skip = 0  # then the previous partner's held frame

    def arm(self) -> None:
        self._armed = True
        self._awaiting_match = self._received_video
        self._to_skip = 1 if self._received_video else 0

    def matched(self) -> None:
        self._awaiting_match = False

    def observe(self, frame: av.VideoFrame) -> NewPartner | None:
        self._received_video = True
        if not self._armed or self._awaiting_match:
            return None
        if self._to_skip:
            self._to_skip -= 1
            return None
        self._armed = False
        return NewPartner()

"""Pairing rule: two people are matched only when their clients can exchange video.

An edge forwards media, it never transcodes, so each client must decode the
codec the other one sends. Each leg's edge reports what its client sends and
decodes when the leg is attached (``AttachLegResponse``). Every WebRTC browser
decodes both VP8 and H.264 (RFC 7742), so this only keeps apart a client that
offered a single codec and a partner that sends the other one.
"""

from __future__ import annotations

from collections.abc import Callable, Collection
from dataclasses import dataclass
from typing import TYPE_CHECKING

if TYPE_CHECKING:  # the ticket carries VideoCodecs, so only the type checker imports it here
    from duet.services.matchmaker.rules.base import PairContext
    from duet.services.matchmaker.ticket import Ticket


@dataclass(frozen=True)
class VideoCodecs:
    """What one leg's client sends and decodes, by the edge's codec names ("VP8", "H264/42e01f", ...)."""

    send: str
    receive: frozenset[str]

    @classmethod
    def of(cls, send: str, receive: Collection[str]) -> VideoCodecs:
        return cls(send=send, receive=frozenset(receive))


def can_exchange_video(a: VideoCodecs, b: VideoCodecs) -> bool:
    """Symmetric: each side decodes what the other sends."""
    return a.send in b.receive and b.send in a.receive


class MediaRule:
    """Hard filter, both ways: each client decodes what the other sends."""

    name = "media"
    bucket_part = "profile"  # rules.base.PROFILE (importing base here would be circular)

    def allows(self, a: Ticket, b: Ticket, ctx: PairContext) -> bool:
        return can_exchange_video(a.video, b.video)

    def bucket_allows(self, newcomer: Ticket, sample: Ticket, ctx: PairContext) -> bool:
        return can_exchange_video(newcomer.video, sample.video)  # video is part of the bucket key

    def bind(self, newcomer: Ticket, ctx: PairContext) -> Callable[[Ticket], bool]:
        mine = newcomer.video
        return lambda w: can_exchange_video(w.video, mine)

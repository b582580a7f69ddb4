"""Pairing rule: two people are matched only when their clients can exchange video.

An edge forwards media, it never transcodes, so each client must decode the
codec the other one sends. Each leg's edge reports what its client sends and
decodes when the leg is attached (``AttachLegResponse``). Every WebRTC browser
decodes both VP8 and H.264 (RFC 7742), so this only keeps apart a client that
offered a single codec and a partner that sends the other one.
"""

from __future__ import annotations

from collections.abc import Collection
from dataclasses import dataclass


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

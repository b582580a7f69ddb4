"""Counting decoder instances: the edge and the synthetic clients must never decode.

aiortc creates a decoder (``aiortc.rtcrtpreceiver.get_decoder``) the first
time a receiver's worker is fed a frame of a codec; wrapping that factory
counts every decoder either process ever makes, so ``decodes`` is measured,
not assumed.
"""

from __future__ import annotations

from typing import Any

import aiortc.rtcrtpreceiver as rtcrtpreceiver

_count = 0


def install_decode_counter() -> None:
    original = rtcrtpreceiver.get_decoder  # type: ignore[attr-defined]
    if getattr(original, "_bench_counting", False):
        return

    def counting_get_decoder(codec: Any) -> Any:
        global _count
        _count += 1
        return original(codec)

    counting_get_decoder._bench_counting = True  # type: ignore[attr-defined]
    rtcrtpreceiver.get_decoder = counting_get_decoder  # type: ignore[attr-defined]


def decoders_created() -> int:
    return _count

"""What the matchmaker core reports about calls and the pool, as a Protocol.

The core calls these at the moment each thing happens; ``metrics`` turns them
into Prometheus histograms, and :class:`NoTelemetry` drops them (tests, and a
matchmaker run without ``--metrics-port``). Times are milliseconds.
"""

from __future__ import annotations

from typing import Protocol

__all__ = ["CallTelemetry", "NoTelemetry"]


class CallTelemetry(Protocol):
    def ticket_matched(self, region: str, waited_ms: float) -> None:
        """A ticket of a client on an edge in ``region`` was paired after waiting ``waited_ms`` in the pool."""
        ...

    def call_stage(self, stage: str, region_a: str, region_b: str, since_match_ms: float) -> None:
        """A call reached ``stage`` ``since_match_ms`` after its match.

        Call-wide stages (``route_picked``, ``bridged``, ``notified``): ``region_a`` is side 0's
        region, ``region_b`` side 1's. One side's stages (``first_packet_at_edge``,
        ``first_frame``): ``region_a`` is the region of the side that received, ``region_b``
        its partner's (whose media it was).
        """
        ...

    def call_start_failed(self, reason: str) -> None:
        """A match could not become a call: ``no route`` or ``bridge failed``."""
        ...


class NoTelemetry:
    """Reports nothing."""

    def ticket_matched(self, region: str, waited_ms: float) -> None:
        pass

    def call_stage(self, stage: str, region_a: str, region_b: str, since_match_ms: float) -> None:
        pass

    def call_start_failed(self, reason: str) -> None:
        pass

"""A client's clock offset, estimated NTP-style from probes on its Session stream.

The server stamps a probe with its send time t0; the client notes when it
arrived (t1) and when it answered (t2) on its own clock; the server notes
when the answer arrived (t3). Then

    offset     = ((t1 - t0) + (t2 - t3)) / 2     (client clock minus server clock)
    round trip = (t3 - t0) - (t2 - t1)

The offset is exact when both directions take equally long, and off by at
most half the round trip whatever the split, so the sample with the smallest
round trip is the best one: :class:`ClockSync` keeps that one. Times are
epoch milliseconds. No transport here: the core sends probes and feeds echoes.
"""

from __future__ import annotations

import itertools
import math
from dataclasses import dataclass, field

from duet.services.store.records import ClockOffset

__all__ = ["ClockOffset", "ClockSample", "ClockSync", "InvalidEcho"]


class InvalidEcho(ValueError):
    """An echo that answers no outstanding probe, or whose times cannot be right."""


@dataclass(frozen=True)
class ClockSample:
    """One probe's four times (epoch ms): t0, t3 on the server's clock, t1, t2 on the client's."""

    server_send: float  # t0
    client_receive: float  # t1
    client_send: float  # t2
    server_receive: float  # t3

    @property
    def offset_ms(self) -> float:
        """Client clock minus server clock."""
        return ((self.client_receive - self.server_send) + (self.client_send - self.server_receive)) / 2

    @property
    def round_trip_ms(self) -> float:
        """Time on the network, both ways: the server's wait minus the client's time holding the probe."""
        return (self.server_receive - self.server_send) - (self.client_send - self.client_receive)

    def estimate(self) -> ClockOffset:
        return ClockOffset(offset_ms=self.offset_ms, uncertainty_ms=max(0.0, self.round_trip_ms) / 2)


@dataclass
class ClockSync:
    """One session's probes: those outstanding, and the best sample so far."""

    samples_wanted: int = 5  # probes per session, each sent when the previous one is answered
    samples: int = 0
    best: ClockSample | None = None
    _outstanding: dict[int, float] = field(default_factory=dict)  # probe id -> t0
    _ids: itertools.count[int] = field(default_factory=lambda: itertools.count(1))

    @property
    def offset(self) -> ClockOffset | None:
        """The best estimate so far; None before any probe was answered."""
        return None if self.best is None else self.best.estimate()

    @property
    def wants_more(self) -> bool:
        return self.samples + len(self._outstanding) < self.samples_wanted

    def probe(self, now_ms: float) -> int:
        """A new probe sent at ``now_ms`` (server clock): its id."""
        probe_id = next(self._ids)
        self._outstanding[probe_id] = now_ms
        return probe_id

    def answer(self, probe_id: int, client_receive: float, client_send: float, now_ms: float) -> ClockSample:
        """The echo of probe ``probe_id`` arrived at ``now_ms`` (server clock): the sample it makes.

        Raises InvalidEcho (and keeps the estimate) for an unknown or already answered probe,
        times that are not finite positive numbers, or a client that answered before it received.
        """
        for name, value in (("client_receive", client_receive), ("client_send", client_send)):
            if not math.isfinite(value) or value <= 0:
                raise InvalidEcho(f"clock_echo.{name} must be a positive number of epoch ms, got {value!r}")
        if client_send < client_receive:
            raise InvalidEcho(
                f"clock_echo.client_send ({client_send:.3f}) is before client_receive ({client_receive:.3f})"
            )
        sent = self._outstanding.pop(probe_id, None)
        if sent is None:
            raise InvalidEcho(f"clock_echo.probe_id {probe_id} answers no outstanding clock probe")
        sample = ClockSample(sent, client_receive, client_send, now_ms)
        self.samples += 1
        if self.best is None or sample.round_trip_ms < self.best.round_trip_ms:
            self.best = sample
        return sample

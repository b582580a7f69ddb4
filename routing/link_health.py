"""How a backbone link's routing weights follow its probe measurements, with hysteresis.

Edges probe their neighbours (``edge/probes.py``) and report a reading per
link with every heartbeat. Routing on raw readings would flap: a jittery RTT
moves a path's cost back and forth across a tie and every change is a
recompute and a push to every edge. The rule:

* **Smoothing.** Readings are averaged (EWMA, weight 0.3 for the newest).
* **RTT band.** The published RTT moves to the smoothed one only after both
  the smoothed value and the reading itself have been outside the band
  (more than 10 % *and* more than 2 ms away from it) on the same side for 3
  rounds in a row. Noise inside the band never moves it, nor does one spike
  (the readings after it are back inside even while the average still
  carries it); a real change moves it within a few rounds.
* **Loss** moves the same way, with a band of 2 percentage points.
* **Down fast, up slowly.** A reading with no answers (the edge heard nothing
  for 0.4 s) or loss of 50 % or more takes the link down at once; it carries
  routes again after 3 clean rounds in a row (reachable, loss under 30 %).

With ``measured_weights=False`` only the up/down rule applies and the
declared RTT and loss stay the weights (for a cluster on loopback, whose
measured RTTs say nothing about the geography it pretends to have).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

SMOOTHING = 0.3
RTT_BAND_FRACTION = 0.10
RTT_BAND_MIN_MS = 2.0
LOSS_BAND = 0.02
MOVE_ROUNDS = 3
DOWN_LOSS = 0.5
CLEAN_LOSS = 0.3
UP_ROUNDS = 3
MIN_RTT_MS = 0.01  # topology RTTs must be > 0 (positive hop costs keep tables loop-free)


@dataclass(frozen=True)
class LinkReading:
    """One round of an edge's probe measurements of one link."""

    rtt_ms: float  # smoothed RTT of the answered probes (0 when none was answered)
    loss: float  # fraction of recent probes unanswered, 0..1
    reachable: bool  # some probe was answered within the edge's down timeout

    def __post_init__(self) -> None:
        if not (math.isfinite(self.rtt_ms) and self.rtt_ms >= 0):
            raise ValueError(f"rtt_ms must be a finite number >= 0, got {self.rtt_ms!r}")
        if not (math.isfinite(self.loss) and 0 <= self.loss <= 1):
            raise ValueError(f"loss must be a fraction in [0, 1], got {self.loss!r}")


@dataclass(frozen=True)
class LinkWeights:
    """What routing uses for a link."""

    rtt_ms: float
    loss: float
    up: bool


def rtt_band_ms(published_rtt_ms: float) -> float:
    """How far the smoothed RTT may stray from the published one without moving it."""
    return max(RTT_BAND_FRACTION * published_rtt_ms, RTT_BAND_MIN_MS)


class LinkHysteresis:
    """One link's published weights, moved by readings under the rule above."""

    def __init__(self, declared_rtt_ms: float, declared_loss: float = 0.0, *, measured_weights: bool = True) -> None:
        self.declared = (declared_rtt_ms, declared_loss)
        self.measured_weights = measured_weights
        self.published = LinkWeights(declared_rtt_ms, declared_loss, True)
        self.smoothed_rtt_ms: float | None = None
        self.smoothed_loss: float | None = None
        self._rtt_out = 0  # consecutive rounds reading and smoothed RTT were outside the band, same side
        self._loss_out = 0
        self._clean = 0  # consecutive clean rounds while down

    def observe(self, reading: LinkReading) -> bool:
        """Take one reading; True when the published weights changed."""
        before = self.published
        rtt, loss, up = before.rtt_ms, before.loss, before.up
        if not reading.reachable or reading.loss >= DOWN_LOSS:
            self._clean = 0
            self._rtt_out = self._loss_out = 0
            up = False
        else:
            s_rtt = self.smoothed_rtt_ms
            s_loss = self.smoothed_loss
            s_rtt = reading.rtt_ms if s_rtt is None else s_rtt + SMOOTHING * (reading.rtt_ms - s_rtt)
            s_loss = reading.loss if s_loss is None else s_loss + SMOOTHING * (reading.loss - s_loss)
            self.smoothed_rtt_ms, self.smoothed_loss = s_rtt, s_loss
            if not up:
                self._clean = self._clean + 1 if reading.loss < CLEAN_LOSS else 0
                up = self._clean >= UP_ROUNDS
            if self.measured_weights:
                self._rtt_out = self._rtt_out + 1 if _outside(reading.rtt_ms, s_rtt, rtt, rtt_band_ms(rtt)) else 0
                if self._rtt_out >= MOVE_ROUNDS:
                    rtt, self._rtt_out = max(s_rtt, MIN_RTT_MS), 0
                self._loss_out = self._loss_out + 1 if _outside(reading.loss, s_loss, loss, LOSS_BAND) else 0
                if self._loss_out >= MOVE_ROUNDS:
                    loss, self._loss_out = min(max(s_loss, 0.0), 1.0), 0
        self.published = LinkWeights(rtt, loss, up)
        return self.published != before


def _outside(reading: float, smoothed: float, published: float, band: float) -> bool:
    """Both the reading and the average are more than ``band`` away from ``published``, on one side."""
    return (reading - published > band and smoothed - published > band) or (
        published - reading > band and published - smoothed > band
    )

"""Probing the backbone links to this edge's neighbours: RTT, loss, and whether they answer.

Every ``PROBE_INTERVAL_S`` the edge sends each neighbour a small PROBE
datagram straight to its backbone address (authenticated like media; the
probe's number rides in the bridge_id field), and the neighbour's backbone
answers at once with a PROBE_REPLY carrying the same number. From the
answers:

* ``rtt_ms``: smoothed RTT (EWMA, weight 0.2 for the newest answer);
* ``loss``: the fraction of the last ``WINDOW`` finished probes with no answer
  (a probe unanswered after ``LOST_AFTER_S`` counts as lost);
* ``reachable``: some answer arrived within ``DOWN_AFTER_S`` (a neighbour
  just added gets that long to answer first).

Pure apart from ``send``: the caller passes ``now`` and calls :meth:`tick`
on its schedule, so the rule is tested with a fake clock.
"""

from __future__ import annotations

import collections
from collections.abc import Callable
from dataclasses import dataclass, field

Address = tuple[str, int]

PROBE_INTERVAL_S = 0.1
LOST_AFTER_S = 0.5
# Unanswered this long: the link is reported unreachable (and the routing service routes
# around it at once). Four probes in a row: one lost datagram never trips it, and media
# is back on another path within 1 s (detection + heartbeat + recompute + push + the
# receiver's keyframe round trip on the new path; measured in tests/system/test_failover.py).
DOWN_AFTER_S = 0.4
WINDOW = 20  # loss over the last ~2 s of probes
RTT_SMOOTHING = 0.2
# A tick this late means this process stalled (a busy event loop), not the link: answers
# may be waiting unread in the socket, so reachability is not judged on that tick.
STALL_S = 0.25


@dataclass(frozen=True)
class Neighbour:
    edge_id: str
    number: int  # backbone edge number
    address: Address  # its backbone socket


@dataclass(frozen=True)
class LinkSample:
    peer_edge_id: str
    rtt_ms: float
    loss: float
    reachable: bool


@dataclass
class _Link:
    neighbour: Neighbour
    since: float  # when probing it began
    outstanding: dict[int, float] = field(default_factory=dict)  # probe number -> sent at
    outcomes: collections.deque[bool] = field(default_factory=lambda: collections.deque(maxlen=WINDOW))
    srtt_ms: float | None = None
    last_answer: float | None = None
    reported_reachable: bool = True

    def reachable(self, now: float) -> bool:
        last = self.last_answer if self.last_answer is not None else self.since
        return now - last < DOWN_AFTER_S


SendProbe = Callable[[Neighbour, int], None]


class LinkProber:
    """Probe bookkeeping for one edge's links (see the module doc)."""

    def __init__(self, send: SendProbe) -> None:
        self._send = send
        self._links: dict[str, _Link] = {}
        self._by_number: dict[int, _Link] = {}
        self._next = 1
        self._last_tick: float | None = None

    @property
    def neighbours(self) -> list[Neighbour]:
        return [link.neighbour for link in self._links.values()]

    def set_neighbours(self, neighbours: list[Neighbour], now: float) -> None:
        """The neighbours to probe from now on; a known one keeps its history unless its address changed."""
        links = {}
        for n in neighbours:
            old = self._links.get(n.edge_id)
            links[n.edge_id] = old if old is not None and old.neighbour == n else _Link(n, now)
        self._links = links
        self._by_number = {link.neighbour.number: link for link in links.values()}

    def tick(self, now: float) -> bool:
        """Send one probe to each neighbour and settle late ones; True when a link's reachability flipped."""
        flipped = False
        stalled = self._last_tick is not None and now - self._last_tick > STALL_S
        self._last_tick = now
        for link in self._links.values():
            if not stalled:  # after a stall, answers may still be unread: judge on the next tick
                for number, sent in list(link.outstanding.items()):
                    if now - sent > LOST_AFTER_S:
                        del link.outstanding[number]
                        link.outcomes.append(False)
                reachable = link.reachable(now)
                if reachable != link.reported_reachable:
                    link.reported_reachable = reachable
                    flipped = True
            number = self._next
            self._next += 1
            link.outstanding[number] = now
            self._send(link.neighbour, number)
        return flipped

    def on_reply(self, src_number: int, probe_number: int, now: float) -> bool:
        """A PROBE_REPLY arrived; True when it made an unreachable link reachable again."""
        link = self._by_number.get(src_number)
        if link is None:
            return False
        sent = link.outstanding.pop(probe_number, None)
        if sent is None:
            return False  # late (already counted lost) or not ours
        rtt = (now - sent) * 1000
        link.srtt_ms = rtt if link.srtt_ms is None else link.srtt_ms + RTT_SMOOTHING * (rtt - link.srtt_ms)
        link.outcomes.append(True)
        link.last_answer = now
        if not link.reported_reachable:
            link.reported_reachable = True
            return True
        return False

    def samples(self) -> list[LinkSample]:
        """Each link as the last tick judged it."""
        out = []
        for link in self._links.values():
            lost = link.outcomes.count(False)
            loss = lost / len(link.outcomes) if link.outcomes else 0.0
            out.append(LinkSample(link.neighbour.edge_id, link.srtt_ms or 0.0, loss, link.reported_reachable))
        return out

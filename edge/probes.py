"""Probing the backbone links to this edge's neighbours: RTT, loss, and whether they answer.

The edge sends each neighbour small PROBE datagrams straight to its backbone
address (authenticated like media; the probe's number rides in the bridge_id
field), and the neighbour's backbone answers at once with a PROBE_REPLY
carrying the same number. Links that carry calls are probed often, idle ones
rarely:

* a **busy** link (the next hop toward a bridged partner's edge, or one this
  edge relayed through since the last tick) every ``PROBE_INTERVAL_S``, and
  it is unreachable after ``DOWN_AFTER_S`` without an answer, so a call's
  media moves off a failed link, or off a dead transit edge (which both of
  its neighbours on the call's path report), within a second;
* an **idle** link every ``IDLE_PROBE_INTERVAL_S``, unreachable after
  ``IDLE_DOWN_AFTER_S``: its RTT and loss are still measured, at a tenth of
  the cost (13 idle edges in a full mesh otherwise spend over half a core on it).

From the answers: ``rtt_ms``, the smoothed RTT (EWMA, weight 0.2 for the
newest answer); ``loss``, the fraction of the last ``WINDOW`` finished probes
with no answer (a probe unanswered after ``LOST_AFTER_S`` counts as lost);
``reachable``, as judged at the last tick (a neighbour just added, or a link
just turned busy, gets the whole wait to answer first).

Pure apart from ``send``: the caller passes ``now`` and calls :meth:`tick`
every ``PROBE_INTERVAL_S``, so the rule is tested with a fake clock.
"""

from __future__ import annotations

import collections
from collections.abc import Callable, Set
from dataclasses import dataclass, field

Address = tuple[str, int]

PROBE_INTERVAL_S = 0.1
IDLE_PROBE_INTERVAL_S = 1.0
LOST_AFTER_S = 0.5
# Unanswered this long, a busy link is reported unreachable (and the routing service routes
# around it at once). Four probes in a row: one lost datagram never trips it, and media
# is back on another path within 1 s (detection + heartbeat + recompute + push + the
# receiver's keyframe round trip on the new path; measured in tests/system/test_failover.py).
DOWN_AFTER_S = 0.4
IDLE_DOWN_AFTER_S = 3.0
WINDOW = 5  # loss over the last 5 probes: 0.5 s of a busy link, 5 s of an idle one
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
    last_sent: float | None = None
    busy_since: float | None = None  # None: idle
    reported_reachable: bool = True

    def reachable(self, now: float) -> bool:
        heard = self.last_answer if self.last_answer is not None else self.since
        if self.busy_since is None:
            return now - heard < IDLE_DOWN_AFTER_S
        # Just turned busy: its idle-rate answers are up to an idle interval old; give it the busy wait.
        return now - max(heard, self.busy_since) < DOWN_AFTER_S


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

    def tick(self, now: float, busy: Set[str] = frozenset()) -> bool:
        """Probe the links due (``busy``: neighbour ids whose links carry calls now) and judge them.

        True when a link's reachability flipped.
        """
        flipped = False
        stalled = self._last_tick is not None and now - self._last_tick > STALL_S
        self._last_tick = now
        for link in self._links.values():
            is_busy = link.neighbour.edge_id in busy
            if is_busy and link.busy_since is None:
                link.busy_since = now
            elif not is_busy:
                link.busy_since = None
            if not stalled:  # after a stall, answers may still be unread: judge on the next tick
                for number, sent in list(link.outstanding.items()):
                    if now - sent > LOST_AFTER_S:
                        del link.outstanding[number]
                        link.outcomes.append(False)
                reachable = link.reachable(now)
                if reachable != link.reported_reachable:
                    link.reported_reachable = reachable
                    flipped = True
            interval = PROBE_INTERVAL_S if is_busy else IDLE_PROBE_INTERVAL_S
            # A little early counts as due: ticks are PROBE_INTERVAL_S apart, give or take the loop.
            if link.last_sent is None or now - link.last_sent >= interval - PROBE_INTERVAL_S / 2:
                number = self._next
                self._next += 1
                link.outstanding[number] = now
                link.last_sent = now
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

"""Live membership for the routing service: heartbeats, the silence sweep, link weights, watchers.

Glue between the Heartbeat / WatchMembership RPCs and the pure rules in
``routing.membership`` (the silence timer, and neighbours' unreachable
reports about an edge whose heartbeat is overdue) and ``routing.link_health``
(the hysteresis on probe readings). What it decides goes into
``RoutingState`` as live state, which recomputes routes only when they would
change.

Not an ops change: nothing here touches the declared topology or writes the
topology audit log (a crashed edge is not an operator's decision, and a busy
backbone would flood the log). Every change is logged at INFO/WARNING in the
service log instead, and liveness changes are announced on WatchMembership
(an edge that only lost its transit is alive: not announced).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import AsyncIterator, Callable, Mapping
from dataclasses import dataclass

from duet.routing.link_health import DOWN_LOSS, LinkHysteresis, LinkReading, LinkWeights
from duet.routing.membership import SWEEP_INTERVAL_S, Membership, MembershipChange, TransitChange
from duet.routing.topology import EdgeNode, Link
from duet.services.routing_server.state import RoutingState

logger = logging.getLogger("duet.routing.membership")

# A link reported dead is taken down only if its far end heartbeated this recently. When an
# edge stalls (a busy machine) or dies, all its neighbours report their links to it dead at
# once: that is the edge's business (the silence timer), not its links'. Taking all of them
# down would cut its calls for a moment's stall. A real link failure is reported by both
# ends, each plainly alive.
FAR_END_HEARD_S = 0.4
# A heartbeat saying its loop stalled this long or more: what its neighbours reported dead
# meanwhile was the stall, not its links.
STALL_EXCUSE_S = 0.3
# A dead-link report waiting for the far end's next heartbeat is dropped after this long
# (the far end is then silent, and the silence timer decides).
PENDING_FOR_S = 2.0


class NotRegistered(RuntimeError):
    """A heartbeat from a declared edge that has not registered its addresses."""


@dataclass(frozen=True)
class EdgeLoad:
    legs: int
    bridges: int
    cpu: float


class LiveMembership:
    """Which edges are alive and how their links measure, fed by heartbeats."""

    def __init__(
        self,
        state: RoutingState,
        *,
        measured_weights: bool = True,
        membership: Membership | None = None,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.state = state
        self.measured_weights = measured_weights
        self.membership = membership or Membership()
        self.clock = clock
        self.loads: dict[str, EdgeLoad] = {}
        self._links: dict[tuple[str, str], LinkHysteresis] = {}
        self._watchers: set[asyncio.Queue[MembershipChange]] = set()
        # Dead-link reports held until the far end's next heartbeat: link key -> (far end, reporter,
        # reading, when).
        self._pending: dict[tuple[str, str], tuple[str, str, LinkReading, float]] = {}
        # Edges that just told of a stall, and until when their neighbours' dead-link reports
        # (made before they heard its answers again) are excused.
        self._excused_until: dict[str, float] = {}
        # Set when an edge may fall due before the sweep loop's next pass (a new report about it).
        self._wake = asyncio.Event()

    def ingress_loads(self) -> Mapping[str, float]:
        """Legs per live edge, the load ``pick_ingress`` weighs against capacity."""
        return {e: float(load.legs) for e, load in self.loads.items() if self.membership.is_alive(e)}

    async def heartbeat(
        self, edge_id: str, load: EdgeLoad, readings: Mapping[str, LinkReading], *, stalled_s: float = 0.0
    ) -> tuple[EdgeNode, ...]:
        """One heartbeat; returns the neighbours the edge should probe. Raises UnknownEdge, NotRegistered."""
        declared = self.state.topology
        edge = declared.edge(edge_id)
        if not edge.registered:
            raise NotRegistered(f"edge {edge_id!r} has not registered: call RegisterEdge first")
        self.loads[edge_id] = load
        changed = False
        now = self.clock()
        change = self.membership.beat(edge_id, now)
        if change is not None:
            self._note(change)
            changed = True
        if stalled_s >= STALL_EXCUSE_S:
            logger.warning(
                "edge %s stalled for %.0f ms; dead-link reports about it are excused", edge_id, stalled_s * 1000
            )
            self._excused_until[edge_id] = now + PENDING_FOR_S / 2
            self.membership.withdraw(edge_id)  # its neighbours' reports were the stall, not its death
        # Reports held for this edge's heartbeat: its links really failed, unless it was stalled.
        for key, (far_end, reporter, reading, at) in list(self._pending.items()):
            if far_end == edge_id or now - at > PENDING_FOR_S:
                del self._pending[key]
                link = declared.link(*key)
                if far_end == edge_id and stalled_s < STALL_EXCUSE_S and link is not None:
                    changed |= self._observe(link, reporter, reading)
        reported: list[str] = []
        for peer, reading in readings.items():
            link = declared.link(edge_id, peer)
            if link is None:
                continue  # a neighbour from an older table: ignore
            dead = not reading.reachable or reading.loss >= DOWN_LOSS
            if dead and now < self._excused_until.get(peer, 0.0):
                continue  # made while the far end stalled, before its answers came again
            if dead:
                # Evidence about the far end too: with a second neighbour's report and its heartbeat
                # overdue, it carries no transit (the sweep below, or the sweep loop when it falls due).
                self.membership.report_unreachable(peer, edge_id, now)
                reported.append(peer)
            else:
                self.membership.withdraw(peer, edge_id)
            if dead and not self.membership.heard_within(peer, FAR_END_HEARD_S, now):
                # The far end is quiet too: dead link, or the far end stalled or died? Its next
                # heartbeat says (or the silence timer decides).
                self._pending[link.key] = (peer, edge_id, reading, now)
                continue
            self._pending.pop(link.key, None)
            changed |= self._observe(link, edge_id, reading)
        if reported:
            for out in self.membership.sweep(now, only=reported):
                self._note(out)
                changed = True
            if self.membership.next_due(now) is not None:
                self._wake.set()  # a reported edge falls due, maybe before the sweep loop's next pass
        if changed:
            await self._publish()
        return tuple(n for n in (declared.edge(ln.other(edge_id)) for ln in declared.links_of(edge_id)) if n.registered)

    def _observe(self, link: Link, reporter: str, reading: LinkReading) -> bool:
        """One reading into the link's hysteresis; True when its published weights changed."""
        h = self._links.get(link.key)
        if h is None or h.declared != (link.rtt_ms, link.loss):
            h = self._links[link.key] = LinkHysteresis(link.rtt_ms, link.loss, measured_weights=self.measured_weights)
        before = h.published
        if not h.observe(reading):
            return False
        logger.info(
            "link %s<->%s (reported by %s): %s -> %s", link.a, link.b, reporter, _weights(before), _weights(h.published)
        )
        return True

    async def registered(self, edge_id: str) -> None:
        """A (re-)registration: a silent edge is back."""
        if not self.membership.carries_transit(edge_id):
            change = self.membership.beat(edge_id, self.clock(), why="registered again")
            if change is not None:
                self._note(change)
                await self._publish()

    def _note(self, change: MembershipChange | TransitChange) -> None:
        if isinstance(change, TransitChange):
            # Not announced: the edge is alive and keeps its own calls (the matchmaker must not
            # end them); only paths through it move.
            log = logger.info if change.transit else logger.warning
            log(
                "edge %s %s: %s",
                change.edge_id,
                "carries transit again" if change.transit else "carries no transit",
                change.reason,
            )
            return
        if not change.alive:
            self.loads.pop(change.edge_id, None)
        self._announce(change)

    async def sweep(self) -> list[MembershipChange | TransitChange]:
        """Take edges silent past the timeout out of routing, and transit off those reported unreachable and overdue."""
        changes = self.membership.sweep(self.clock())
        for change in changes:
            self._note(change)
        if changes:
            await self._publish()
        return changes

    async def run(self) -> None:
        """The sweep, every SWEEP_INTERVAL_S and when a reported edge falls due, until cancelled.

        The server owns this task. Waking at the due time rather than the next regular pass is
        what keeps a dead transit edge's failover within 1 s (a pass can be 0.25 s away).
        """
        while True:
            self._wake.clear()
            now = self.clock()
            due = self.membership.next_due(now)
            # Just past the due time: the rule is "overdue by more than", and the clock is coarse.
            wait = SWEEP_INTERVAL_S if due is None else min(SWEEP_INTERVAL_S, max(0.0, due - now) + 0.002)
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._wake.wait(), wait)
            try:
                await self.sweep()
            except Exception:  # a failed pass must not end membership for good
                logger.exception("membership sweep failed")

    async def watch(self) -> AsyncIterator[MembershipChange]:
        """Every declared edge's liveness now, then each change."""
        queue: asyncio.Queue[MembershipChange] = asyncio.Queue()
        self._watchers.add(queue)
        try:
            # Liveness only, not registration: right after a routing-service restart no edge has
            # registered again yet, and a watcher must not take that for every edge dying.
            for e in self.state.topology.edges:
                alive = self.membership.is_alive(e.edge_id)
                yield MembershipChange(e.edge_id, alive, "alive" if alive else "silent")
            while True:
                yield await queue.get()
        finally:
            self._watchers.discard(queue)

    def _announce(self, change: MembershipChange) -> None:
        log = logger.info if change.alive else logger.warning
        log("edge %s %s: %s", change.edge_id, "is back" if change.alive else "is down", change.reason)
        for q in self._watchers:
            q.put_nowait(change)

    async def _publish(self) -> None:
        weights = {key: h.published for key, h in self._links.items()}
        await self.state.set_live(
            silent=self.membership.silent, no_transit=self.membership.no_transit, link_weights=weights
        )


def _weights(w: LinkWeights) -> str:
    return f"{'up' if w.up else 'DOWN'} {w.rtt_ms:.1f} ms loss {w.loss:.2f}"

"""The connect path shared by a match and an accepted friend call, and the end of a call.

Route, bridge both warm legs, record, tell both clients, with nothing in
series that need not be; a failed start is recorded with why, and a healthy
partner of a match goes back in the pool. A part of ``Matchmaker`` (a base
class of it), kept apart so the core's file holds sessions and the pool.
"""

from __future__ import annotations

import asyncio
import logging
import secrets
from collections.abc import Sequence
from typing import TYPE_CHECKING

from duet.services.matchmaker import ring as rings
from duet.services.matchmaker.events import CallEnded, Matched, PartnerProfile, TicketClosed
from duet.services.matchmaker.ports import Edges, MatchStore, PeerError, Route, RoutingService
from duet.services.matchmaker.ring import Ring
from duet.services.matchmaker.session_state import ActiveCall, ClientSession
from duet.services.matchmaker.telemetry import CallTelemetry
from duet.services.matchmaker.ticket import Ticket
from duet.services.store.records import CALL_KIND_FRIEND, CALL_KIND_MATCH, CallRow

logger = logging.getLogger("duet.matchmaker")

# One frame at 30 fps: the receiver's jitter buffer holds a frame until the next one starts.
FRAME_INTERVAL_MS = 33.3
# What the partner is told when a call ends, by how it ended (a blocked user is not told they were blocked).
PARTNER_REASON = {
    "next": "partner_next",
    "left": "partner_left",
    "blocked": "partner_left",
    "hung_up": "partner_hung_up",
    "matchmaker shutting down": "matchmaker shutting down",  # both sides' replica stops: the same for both
}


class CallSetup:
    """Starting and ending calls; the state it works on is the ``Matchmaker``'s."""

    store: MatchStore
    routing: RoutingService
    edges: Edges
    telemetry: CallTelemetry
    _calls: dict[str, ActiveCall]

    if TYPE_CHECKING:  # provided by the Matchmaker and its friend calls

        def now_ms(self) -> float: ...

        def _end_ring(self, ring: Ring, reason: str) -> None: ...

        async def _enqueue(self, session: ClientSession) -> None: ...

        async def _reoffer(self, session: ClientSession, ticket: Ticket) -> None: ...

    async def _connect_pair(
        self,
        a: ClientSession,
        b: ClientSession,
        *,
        queued: tuple[float, float],
        matched: float,
        kind: str,
        shared: tuple[str, ...],
        languages: tuple[frozenset[str], frozenset[str]],
        tickets: tuple[Ticket, Ticket] | tuple[()] = (),
    ) -> None:
        """The connect path, for a match and a friend call alike: route, bridge both warm legs, record, tell both.

        ``tickets`` (a match's two, a's first) are closed as "matched" in the same write as the call's
        record (a failed start's too), both or neither: when one was no longer open (matched or replaced
        by another replica), the call is not made, its session is told, and the other ticket goes back in
        the pool.
        """
        assert a.edge is not None and b.edge is not None and a.leg_id and b.leg_id
        call_id = secrets.token_hex(16)  # 32 random hex digits, as uuid4().hex, cheaper
        bridge_id = secrets.randbits(63) or 1

        # Nothing here waits for anything it does not need: an edge bridges toward its peer edge with its own
        # next-hop table, so the route (needed only for Matched and the record) is asked for while both edges
        # bridge. Each step costs a round trip to a different peer. The bridges run as tasks; this task asks
        # for the route itself (one task fewer per match).
        bridging = asyncio.gather(
            self.edges.bridge(a.edge, bridge_id, a.leg_id, 0, b.edge.edge_id),
            self.edges.bridge(b.edge, bridge_id, b.leg_id, 1, a.edge.edge_id),
            return_exceptions=True,
        )
        route_result: Route | Exception
        try:
            route_result = await self.routing.pick_route(a.edge.edge_id, b.edge.edge_id)
        except Exception as exc:
            route_result = exc
        except BaseException:
            bridging.cancel()  # cancelled: the bridges are not awaited by anyone else
            raise
        route_picked = self.now_ms()
        bridges = await bridging
        bridged = self.now_ms()
        if isinstance(route_result, Exception):
            await self._unbridge(a, b, bridge_id, bridges)
            if not isinstance(route_result, PeerError):
                stale = await self.store.close_pair([t.ticket_id for t in tickets], "matched") if tickets else []
                if stale:
                    await self._pair_fell_through(a, b, tickets, stale)
                    return
                raise route_result
            # Neither leg is at fault; both clients decide whether to look again.
            reason = f"no route between the two edges: {route_result}"
            row = _call_row(call_id, a, b, kind, [], 0.0, "ended", reason, _sides(queued, {"matched": matched}))
            stale = await self._record_start(row, tickets)
            if stale:
                await self._pair_fell_through(a, b, tickets, stale)
                return
            logger.warning("no route %s -> %s: %s", a.edge.edge_id, b.edge.edge_id, route_result)
            self.telemetry.call_start_failed("no route")
            for s in (a, b):
                s.send(CallEnded(reason=reason))
            return
        route = route_result
        failures = [(s, r) for s, r in zip((a, b), bridges, strict=True) if isinstance(r, BaseException)]
        if failures:
            details = "; ".join(f"{s.user_id}: {r if isinstance(r, PeerError) else repr(r)}" for s, r in failures)
            sides = _sides(queued, {"matched": matched, "route_picked": route_picked})
            row = _call_row(
                call_id, a, b, kind, list(route.path), route.rtt_ms, "ended", f"bridge failed: {details}", sides
            )
            stale = await self._record_start(row, tickets)
            if stale:
                await self._unbridge(a, b, bridge_id, bridges)
                await self._pair_fell_through(a, b, tickets, stale)
                return
            self.telemetry.call_start_failed("bridge failed")
            await self._abort_start(a, b, bridge_id, failures, requeue=kind == CALL_KIND_MATCH)
            return
        for stage, at in (("route_picked", route_picked), ("bridged", bridged)):
            self.telemetry.call_stage(stage, a.region, b.region, at - matched)
        stages = _sides(queued, {"matched": matched, "route_picked": route_picked, "bridged": bridged})
        call = ActiveCall(call_id, bridge_id, (a, b), route.path, route.rtt_ms, stages, kind=kind)
        # In a call from now (a ring cannot be answered meanwhile), unless the write finds the pair stale.
        self._calls[call_id] = call
        a.call = b.call = call
        row = _call_row(call_id, a, b, kind, list(route.path), route.rtt_ms, "bridged", None, stages)
        try:
            stale = await self._record_start(row, tickets)
        except Exception:
            await self._undo_start(call)  # the store failed: the ticket's client gets INTERNAL, as before
            raise
        if stale:
            await self._undo_start(call)
            await self._pair_fell_through(a, b, tickets, stale)
            return
        # In a call now: a ring either of them was part of cannot be answered.
        for s in (a, b):
            if s.ring is not None:
                self._end_ring(s.ring, rings.BUSY)
        for s in (a, b):
            if s.closed:
                # Left while we were bridging: end the call now rather than leave the partner waiting.
                await self._end_call(call, "left", ender=s)
                return
        for side, (me, partner) in enumerate(((a, b), (b, a))):
            me.send(
                Matched(
                    call_id=call_id,
                    partner_display_name=partner.display_name,
                    partner_region=partner.region,
                    route=route.path if side == 0 else tuple(reversed(route.path)),
                    route_rtt_ms=route.rtt_ms,
                    stages=dict(stages[side]),
                    partner=PartnerProfile(
                        display_name=partner.display_name,
                        region=partner.region,
                        shared_interests=shared,
                        languages=tuple(sorted(languages[1 - side])),
                    ),
                    # Until the routing service predicts it: backbone one-way plus one frame interval.
                    predicted_connect_ms=route.rtt_ms / 2 + FRAME_INTERVAL_MS,
                    friend_call=kind == CALL_KIND_FRIEND,
                )
            )
        notified = self.now_ms()
        self.telemetry.call_stage("notified", a.region, b.region, notified - matched)
        logger.info(
            "%s call %s: %s (%s) <-> %s (%s) via %s; after the match: route %.1f ms, bridged %.1f ms, notified %.1f ms",
            kind,
            call_id[:8],
            a.user_id,
            a.edge.edge_id,
            b.user_id,
            b.edge.edge_id,
            "-".join(route.path),
            route_picked - matched,
            bridged - matched,
            notified - matched,
        )

    async def _record_start(self, row: CallRow, tickets: tuple[Ticket, Ticket] | tuple[()]) -> list[str]:
        """The call's record and, for a match, its two tickets closed as matched, in one write: the
        tickets that were no longer open (then nothing was written)."""
        if not tickets:
            await self.store.create_call(row)
            return []
        return await self.store.close_pair_and_create_call([t.ticket_id for t in tickets], "matched", row)

    async def _unbridge(
        self, a: ClientSession, b: ClientSession, bridge_id: int, bridges: Sequence[float | BaseException]
    ) -> None:
        """Take down the sides that were bridged."""
        for side, (s, r) in enumerate(zip((a, b), bridges, strict=True)):
            if not isinstance(r, BaseException) and s.edge is not None:
                try:
                    await self.edges.unbridge(s.edge, bridge_id, side)
                except PeerError:
                    pass

    async def _undo_start(self, call: ActiveCall) -> None:
        """A call whose record could not be written: forgotten, and its bridges taken down (unless it was
        ended meanwhile, which took them down)."""
        self._calls.pop(call.call_id, None)
        for s in call.sessions:
            if s.call is call:
                s.call = None
        if not call.ended:
            call.ended = True
            a, b = call.sessions
            await self._unbridge(a, b, call.bridge_id, [0.0, 0.0])

    async def _pair_fell_through(
        self, a: ClientSession, b: ClientSession, tickets: tuple[Ticket, Ticket] | tuple[()], stale: list[str]
    ) -> None:
        """One ticket of a pair was no longer open: no call; the other waits on with its age."""
        logger.warning("pair not made: ticket(s) %s no longer open", ", ".join(t[:8] for t in stale))
        for s, t in zip((a, b), tickets, strict=True):
            if t.ticket_id in stale:
                s.send(
                    TicketClosed(
                        ticket_id=t.ticket_id,
                        reason="your ticket was closed elsewhere (matched or replaced by another session); "
                        "send FindPartner to look again",
                    )
                )
            else:
                await self._reoffer(s, t)

    async def _abort_start(
        self,
        a: ClientSession,
        b: ClientSession,
        bridge_id: int,
        failures: list[tuple[ClientSession, BaseException]],
        *,
        requeue: bool,
    ) -> None:
        """A leg could not be bridged: its owner is told why; a healthy partner goes back in the pool
        (``requeue``, a match) or is told the call failed (a friend call)."""
        failed = {id(s): exc for s, exc in failures}
        for side, s in enumerate((a, b)):
            exc = failed.get(id(s))
            if exc is None:
                if s.edge is not None:
                    try:
                        await self.edges.unbridge(s.edge, bridge_id, side)
                    except PeerError:
                        pass
                if s.closed:
                    continue
                if requeue:
                    await self._enqueue(s)
                else:
                    s.send(CallEnded(reason="bridge failed: your friend's leg could not be bridged"))
                continue
            details = str(exc) if isinstance(exc, PeerError) else repr(exc)
            logger.warning("bridge for %s on %s failed: %s", s.user_id, s.edge.edge_id if s.edge else "?", details)
            s.send(CallEnded(reason=f"bridge failed: {details}"))

    async def _end_call(self, call: ActiveCall, reason: str, *, ender: ClientSession) -> None:
        if call.ended:
            return
        call.ended = True
        self._calls.pop(call.call_id, None)
        for side, s in enumerate(call.sessions):
            if s.call is call:
                s.call = None
            if s.edge is not None:
                try:
                    first_packet = await self.edges.unbridge(s.edge, call.bridge_id, side)
                except PeerError as exc:
                    logger.debug("unbridge %d side %d: %s", call.bridge_id, side, exc)
                    continue
                # The partner's connect report may still be on its way: keep the edge's stage.
                if first_packet:
                    await self.store.merge_stages(call.call_id, "ab"[side], {"first_packet_at_edge": first_packet})
        await self.store.set_call_state(call.call_id, "ended", reason)
        partner = call.partner_of(ender)
        if not partner.closed:
            # The partner decides what comes next (find_partner again, or leave).
            partner.send(CallEnded(call_id=call.call_id, reason=PARTNER_REASON.get(reason, f"partner_{reason}")))
        if not ender.closed:
            ender.send(CallEnded(call_id=call.call_id, reason=reason))


def _sides(queued: tuple[float, float], stages: dict[str, float]) -> tuple[dict[str, float], dict[str, float]]:
    """Both sides' stages: each its own queued time, the rest shared."""
    return {"queued": queued[0], **stages}, {"queued": queued[1], **stages}


def _call_row(
    call_id: str,
    a: ClientSession,
    b: ClientSession,
    kind: str,
    route: list[str],
    route_rtt_ms: float,
    state: str,
    end_reason: str | None,
    stages: tuple[dict[str, float], dict[str, float]],
) -> CallRow:
    """The record of a call between the legs ``a`` and ``b`` hold now, in ``a``'s shard."""
    assert a.edge is not None and b.edge is not None and a.leg_id and b.leg_id
    return CallRow(
        call_id=call_id,
        user_a=a.user_id,
        user_b=b.user_id,
        edge_a=a.edge.edge_id,
        edge_b=b.edge.edge_id,
        leg_a=a.leg_id,
        leg_b=b.leg_id,
        route=route,
        route_rtt_ms=route_rtt_ms,
        state=state,
        end_reason=end_reason,
        stages_a=stages[0],
        stages_b=stages[1],
        kind=kind,
        shard=a.shard,
    )

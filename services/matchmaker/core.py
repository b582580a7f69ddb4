"""The matchmaker core: sessions, the pool, and the one fan-out that starts a call.

On a match it asks the routing service for the backbone path between the two
edges, tells both edges to bridge their warm legs (concurrently), records the
call with its stage timings in the store, and tells both clients. It speaks
only through the ports (``ports``), raises ``errors`` and sends ``events``:
no gRPC or protobuf here.
"""

from __future__ import annotations

import asyncio
import logging
import re
import secrets
import time
import uuid
from collections import deque
from collections.abc import Mapping
from dataclasses import dataclass, field

from duet.services.matchmaker.errors import BadRequest, Forbidden, NotFound, Unavailable, WrongState
from duet.services.matchmaker.events import (
    CallEnded,
    EdgeAssigned,
    EdgeLost,
    LegAnswered,
    Matched,
    NoEdge,
    Outbox,
    Queued,
    SessionClosed,
    SessionEvent,
)
from duet.services.matchmaker.media_rule import VideoCodecs
from duet.services.matchmaker.pool import Ticket, WaitingPool
from duet.services.matchmaker.ports import EdgeInfo, Edges, MatchStore, PeerError, PeerInvalidRequest, RoutingService
from duet.services.store.records import CallRow

logger = logging.getLogger("duet.matchmaker")

USER_ID_RE = re.compile(r"^[A-Za-z0-9_.-]{1,64}$")
# A user is not paired again with any of their last N partners (default N).
RECENT_PARTNERS = 5
# Stages a client reports about itself; the server's own (queued ... bridged) are not the client's to set.
CLIENT_STAGES = ("session_open", "edge_assigned", "leg_connected", "first_frame")


def now_ms() -> float:
    return time.time() * 1000


@dataclass(eq=False)
class ActiveCall:
    call_id: str
    bridge_id: int
    sessions: tuple[ClientSession, ClientSession]
    route: tuple[str, ...]
    route_rtt_ms: float
    stages: tuple[dict[str, float], dict[str, float]]
    reported: set[int] = field(default_factory=set)
    ended: bool = False

    def side_of(self, session: ClientSession) -> int:
        return 0 if self.sessions[0] is session else 1

    def partner_of(self, session: ClientSession) -> ClientSession:
        return self.sessions[1 - self.side_of(session)]


@dataclass(eq=False)
class ClientSession:
    session_id: str
    user_id: str
    display_name: str
    client_ip: str
    outbox: Outbox
    edge: EdgeInfo | None = None
    region: str = ""
    leg_id: str | None = None
    video: VideoCodecs | None = None  # set with the leg
    ticket: Ticket | None = None
    call: ActiveCall | None = None
    recent_partners: deque[str] = field(default_factory=lambda: deque(maxlen=RECENT_PARTNERS))
    closed: bool = False

    def send(self, event: SessionEvent) -> None:
        if not self.closed:
            self.outbox.put_nowait(event)


class Matchmaker:
    def __init__(
        self, store: MatchStore, routing: RoutingService, edges: Edges, *, recent_partners: int = RECENT_PARTNERS
    ) -> None:
        if recent_partners < 0:
            raise ValueError(f"recent_partners must be 0 or more, got {recent_partners}")
        self.recent_partners = recent_partners
        self.store = store
        self.routing = routing
        self.edges = edges
        self.pool = WaitingPool()
        self.sessions: dict[str, ClientSession] = {}
        self._by_user: dict[str, ClientSession] = {}
        self._calls: dict[str, ActiveCall] = {}
        self._pool_lock = asyncio.Lock()

    # -- session lifecycle --------------------------------------------------

    async def open_session(self, user_id: str, display_name: str, client_ip: str, outbox: Outbox) -> ClientSession:
        """Start a session for ``user_id`` (replacing an older one of theirs) and assign it an edge."""
        if not USER_ID_RE.match(user_id):
            raise BadRequest("hello.user_id must be 1-64 characters of letters, digits, '_', '.' or '-'")
        if len(display_name) > 64:
            raise BadRequest("hello.display_name is longer than 64 characters")
        old = self._by_user.get(user_id)
        if old is not None:
            logger.info("user %s opened a new session; closing the old one", user_id)
            old.send(CallEnded(reason="replaced by a newer session"))
            await self.close_session(old, "replaced")
            old.outbox.put_nowait(SessionClosed())
        session = ClientSession(
            session_id=uuid.uuid4().hex,
            user_id=user_id,
            display_name=display_name or user_id,
            client_ip=client_ip,
            outbox=outbox,
            recent_partners=deque(maxlen=self.recent_partners),
        )
        await self.store.upsert_user(session.user_id, session.display_name)
        self.sessions[session.session_id] = session
        self._by_user[session.user_id] = session
        try:
            ingress = await self.routing.pick_ingress(client_ip)
        except PeerError as exc:
            await self.close_session(session, "no ingress")
            raise Unavailable(f"no edge could be assigned: {exc}") from exc
        session.edge = ingress.edge
        session.region = ingress.edge.region
        session.send(
            EdgeAssigned(session_id=session.session_id, edge=ingress.edge, reason=ingress.reason, assigned_at=now_ms())
        )
        logger.info(
            "session %s: user %s from %s -> edge %s (%s)",
            session.session_id[:8],
            session.user_id,
            client_ip,
            ingress.edge.edge_id,
            ingress.reason,
        )
        return session

    async def attach_leg(self, session: ClientSession, offer_sdp: str) -> None:
        if session.leg_id is not None:
            raise WrongState("this session already has a leg; one offer per session")
        if session.edge is None:
            raise WrongState("the session's edge was lost; wait for EdgeAssigned before offering a leg")
        try:
            leg = await self.edges.attach_leg(session.edge, session.session_id, offer_sdp)
        except PeerError as exc:
            # The client can fix a bad offer; anything else is the edge's trouble.
            kind = BadRequest if isinstance(exc, PeerInvalidRequest) else Unavailable
            raise kind(f"edge {session.edge.edge_id} rejected the offer: {exc}") from exc
        session.leg_id = leg.leg_id
        session.video = VideoCodecs.of(leg.video_send_codec, leg.video_receive_codecs)
        session.send(LegAnswered(leg_id=leg.leg_id, answer_sdp=leg.answer_sdp))

    async def find_partner(self, session: ClientSession) -> None:
        if session.leg_id is None:
            raise WrongState("send your leg offer before find_partner")
        if session.ticket is not None or session.call is not None:
            raise WrongState("already waiting or in a call; use next to switch partners")
        await self._enqueue(session)

    async def next(self, session: ClientSession) -> None:
        """End the current call if any and look for someone new; when idle it is find_partner.

        Tolerant on purpose: both partners may press next at the same moment.
        """
        if session.leg_id is None:
            raise WrongState("send your leg offer before next")
        if session.call is not None:
            await self._end_call(session.call, "next", ender=session)
        if session.ticket is None:
            await self._enqueue(session)

    async def close_session(self, session: ClientSession, reason: str) -> None:
        """Stream gone (leave, drop, replace): end its call, cancel its ticket, release its leg."""
        if session.closed:
            return
        session.closed = True
        self.sessions.pop(session.session_id, None)
        if self._by_user.get(session.user_id) is session:
            del self._by_user[session.user_id]
        if session.call is not None:
            await self._end_call(session.call, "left", ender=session)
        if session.ticket is not None:
            async with self._pool_lock:
                self.pool.remove(session.ticket.ticket_id)
            await self.store.close_ticket(session.ticket.ticket_id, f"cancelled: {reason}")
            session.ticket = None
        if session.leg_id is not None and session.edge is not None:
            try:
                await self.edges.detach_leg(session.edge, session.leg_id)
            except PeerError as exc:
                logger.info("detach of leg %s on %s: %s", session.leg_id, session.edge.edge_id, exc)
        logger.info("session %s (%s) closed: %s", session.session_id[:8], session.user_id, reason)

    async def edge_lost(self, edge_id: str, reason: str) -> None:
        """``edge_id`` died (the routing service saw it fall silent): move its sessions to other edges.

        Each session on it gets EdgeLost; its call ends ("edge_lost", the
        partner "partner_edge_lost") and its ticket is cancelled; then it gets
        EdgeAssigned with a new edge and offers a new leg as at the start.
        """
        lost = [s for s in self.sessions.values() if s.edge is not None and s.edge.edge_id == edge_id]
        if lost:
            logger.warning("edge %s lost (%s): re-attaching %d sessions", edge_id, reason, len(lost))
        for session in lost:
            await self._reattach(session, edge_id, reason)

    async def _reattach(self, session: ClientSession, edge_id: str, reason: str) -> None:
        session.send(EdgeLost(edge_id=edge_id, reason=reason))
        # The edge is gone: nothing to unbridge or detach there.
        session.edge, session.leg_id, session.video = None, None, None
        if session.call is not None:
            await self._end_call(session.call, "edge_lost", ender=session)
        if session.ticket is not None:
            async with self._pool_lock:
                self.pool.remove(session.ticket.ticket_id)
            await self.store.close_ticket(session.ticket.ticket_id, "cancelled: edge lost")
            session.ticket = None
        try:
            ingress = await self.routing.pick_ingress(session.client_ip)
        except PeerError as exc:
            session.outbox.put_nowait(NoEdge(f"edge {edge_id} was lost and no other edge could be assigned: {exc}"))
            return
        if session.closed:
            return
        session.edge = ingress.edge
        session.region = ingress.edge.region
        session.send(
            EdgeAssigned(session_id=session.session_id, edge=ingress.edge, reason=ingress.reason, assigned_at=now_ms())
        )
        logger.info("session %s: re-attached to edge %s (%s)", session.session_id[:8], ingress.edge.edge_id, reason)

    # -- pairing ----------------------------------------------------------

    async def _enqueue(self, session: ClientSession) -> None:
        assert session.edge is not None and session.video is not None
        ticket = Ticket(
            ticket_id=uuid.uuid4().hex,
            user_id=session.user_id,
            session_id=session.session_id,
            edge_id=session.edge.edge_id,
            queued_at=now_ms(),
            video=session.video,
            avoid=frozenset(session.recent_partners),
        )
        session.ticket = ticket
        await self.store.open_ticket(
            ticket.ticket_id, ticket.user_id, ticket.session_id, ticket.edge_id, ticket.queued_at / 1000
        )
        session.send(Queued(ticket_id=ticket.ticket_id, queued_at=ticket.queued_at))
        async with self._pool_lock:
            pair = self.pool.offer(ticket)
        if pair is not None:
            await self._start_call(*pair)

    async def _start_call(self, first: Ticket, second: Ticket) -> None:
        matched = now_ms()
        a = self.sessions.get(first.session_id)
        b = self.sessions.get(second.session_id)
        if a is None or b is None or a.closed or b.closed:
            # One side left between pairing and here; the other goes back in the pool.
            for s, t in ((a, first), (b, second)):
                if s is not None and not s.closed:
                    s.ticket = None
                    await self.store.close_ticket(t.ticket_id, "partner vanished")
                    await self._enqueue(s)
            return
        for s in (a, b):
            assert s.ticket is not None
            await self.store.close_ticket(s.ticket.ticket_id, "matched")
            s.ticket = None
        assert a.edge is not None and b.edge is not None and a.leg_id and b.leg_id
        call_id = uuid.uuid4().hex
        bridge_id = secrets.randbits(63) or 1
        # Whatever goes wrong below, these two are not paired again right away.
        a.recent_partners.append(b.user_id)
        b.recent_partners.append(a.user_id)
        try:
            route = await self.routing.pick_route(a.edge.edge_id, b.edge.edge_id)
        except PeerError as exc:
            # Neither leg is at fault; both clients decide whether to look again.
            logger.warning("no route %s -> %s: %s", a.edge.edge_id, b.edge.edge_id, exc)
            for s in (a, b):
                s.send(CallEnded(reason=f"no route between the two edges: {exc}"))
            return
        route_picked = now_ms()
        results = await asyncio.gather(
            self.edges.bridge(a.edge, bridge_id, a.leg_id, 0, b.edge.edge_id),
            self.edges.bridge(b.edge, bridge_id, b.leg_id, 1, a.edge.edge_id),
            return_exceptions=True,
        )
        failures = [(s, r) for s, r in zip((a, b), results, strict=True) if isinstance(r, BaseException)]
        if failures:
            await self._abort_start(a, b, bridge_id, failures)
            return
        bridged = now_ms()
        stages = (
            {"queued": first.queued_at, "matched": matched, "route_picked": route_picked, "bridged": bridged},
            {"queued": second.queued_at, "matched": matched, "route_picked": route_picked, "bridged": bridged},
        )
        call = ActiveCall(call_id, bridge_id, (a, b), route.path, route.rtt_ms, stages)
        self._calls[call_id] = call
        a.call = b.call = call
        await self.store.create_call(
            CallRow(
                call_id=call_id,
                user_a=a.user_id,
                user_b=b.user_id,
                edge_a=a.edge.edge_id,
                edge_b=b.edge.edge_id,
                leg_a=a.leg_id,
                leg_b=b.leg_id,
                route=list(route.path),
                route_rtt_ms=route.rtt_ms,
                state="bridged",
                end_reason=None,
                stages_a=stages[0],
                stages_b=stages[1],
            )
        )
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
                )
            )
        logger.info(
            "call %s: %s (%s) <-> %s (%s) via %s, %.1f ms from match to bridged",
            call_id[:8],
            a.user_id,
            a.edge.edge_id,
            b.user_id,
            b.edge.edge_id,
            "-".join(route.path),
            bridged - matched,
        )

    async def _abort_start(
        self, a: ClientSession, b: ClientSession, bridge_id: int, failures: list[tuple[ClientSession, BaseException]]
    ) -> None:
        """A leg could not be bridged: its owner is told why, a healthy partner goes back in the pool."""
        failed = {id(s): exc for s, exc in failures}
        for side, s in enumerate((a, b)):
            exc = failed.get(id(s))
            if exc is None:
                if s.edge is not None:
                    try:
                        await self.edges.unbridge(s.edge, bridge_id, side)
                    except PeerError:
                        pass
                if not s.closed:
                    await self._enqueue(s)
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
            partner.send(CallEnded(call_id=call.call_id, reason=f"partner_{reason}"))
        if not ender.closed:
            ender.send(CallEnded(call_id=call.call_id, reason=reason))

    # -- reports ----------------------------------------------------------

    async def connect_report(
        self, session: ClientSession, call_id: str, stages: Mapping[str, float], connected: bool
    ) -> None:
        """The client's view of a call: its own stage times, and whether video arrived.

        ``stages`` may hold any stage names; only the client's own (CLIENT_STAGES) are kept.
        """
        call = self._calls.get(call_id)
        if call is None:
            row = await self.store.get_call(call_id) if call_id else None
            if row is None or session.user_id not in (row.user_a, row.user_b):
                raise NotFound(f"no call '{call_id}' for this session")
            side = 0 if row.user_a == session.user_id else 1
            edge = None
        else:
            if session not in call.sessions:
                raise Forbidden(f"call '{call_id}' is not yours")
            side = call.side_of(session)
            edge = session.edge
        merged = {k: v for k, v in stages.items() if k in CLIENT_STAGES}
        if edge is not None and call is not None:
            try:
                first_packet = await self.edges.first_packet_at_edge(edge, call.bridge_id, side)
            except PeerError:
                first_packet = 0.0
            if first_packet:
                merged["first_packet_at_edge"] = first_packet
        await self.store.merge_stages(call_id, "ab"[side], merged)
        if call is not None and connected:
            call.reported.add(side)
            if call.reported == {0, 1}:
                await self.store.set_call_state(call.call_id, "connected")

    async def get_call(self, call_id: str) -> CallRow:
        """One call's record, for anyone who knows its id."""
        if not call_id:
            raise BadRequest("call_id is required")
        row = await self.store.get_call(call_id)
        if row is None:
            raise NotFound(f"no call '{call_id}'")
        return row

    async def stop(self) -> None:
        for session in list(self.sessions.values()):
            session.send(CallEnded(reason="matchmaker shutting down"))
            await self.close_session(session, "shutdown")
            session.outbox.put_nowait(SessionClosed())

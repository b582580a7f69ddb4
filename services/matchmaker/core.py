"""The matchmaker core: sessions, the pool, safety, ticket lifetime, and the fan-out that starts a call.

On a match it asks the routing service for the backbone path between the two
edges, tells both edges to bridge their warm legs (concurrently), records the
call with its stage timings in the store, and tells both clients. Which pair
is made is the pool's business (``pool``, ``rules/``); the core feeds it
tickets, keeps the pair history (blocks, recent partners), and runs one timer
task that expires tickets and offers them again as their criteria relax. It
speaks only through the ports (``ports``), raises ``errors`` and sends
``events``: no gRPC or protobuf here.
"""

from __future__ import annotations

import asyncio
import heapq
import itertools
import logging
import secrets
import time
import uuid
from collections.abc import Callable

from duet.services.matchmaker import ring as rings
from duet.services.matchmaker.call_reports import CallReports
from duet.services.matchmaker.config import MatchConfig
from duet.services.matchmaker.display_name import checked_display_name
from duet.services.matchmaker.edge_loss import EdgeLoss
from duet.services.matchmaker.errors import (
    BadRequest,
    HeldForReview,
    Unavailable,
    WrongState,
)
from duet.services.matchmaker.events import (
    CallEnded,
    EdgeAssigned,
    HeartbeatAck,
    LegAnswered,
    Outbox,
    Queued,
    SessionClosed,
    ShardMoved,
    TicketClosed,
)
from duet.services.matchmaker.fakes.friends import InMemoryFriendStore
from duet.services.matchmaker.fakes.safety import InMemorySafetyStore
from duet.services.matchmaker.friend_calls import FriendCalls
from duet.services.matchmaker.pair_history import InMemoryPairHistory
from duet.services.matchmaker.pool import Ticket, WaitingPool
from duet.services.matchmaker.ports import (
    Edges,
    FriendStore,
    MatchStore,
    PeerError,
    PeerInvalidRequest,
    RoutingService,
    SafetyStore,
)
from duet.services.matchmaker.preferences import NO_PREFERENCES, Preferences
from duet.services.matchmaker.rate_limit import RateLimiter
from duet.services.matchmaker.reference_latency import ReferenceLatency
from duet.services.matchmaker.replicas.shards import ShardMap
from duet.services.matchmaker.replicas.ticket_restore import RestoredTicket, preferences_json
from duet.services.matchmaker.ring import Ring
from duet.services.matchmaker.rules.base import LatencyEstimate, PairContext
from duet.services.matchmaker.rules.interests import shared_interests
from duet.services.matchmaker.rules.media import VideoCodecs
from duet.services.matchmaker.safety_actions import SafetyActions
from duet.services.matchmaker.session_state import ActiveCall, ClientSession
from duet.services.matchmaker.shard_handover import ShardHandover
from duet.services.matchmaker.telemetry import CallTelemetry, NoTelemetry
from duet.services.matchmaker.user_id import USER_ID_RE
from duet.services.store.records import CALL_KIND_MATCH

logger = logging.getLogger("duet.matchmaker")

# A call ended by a clean stop of its replica: both sides are told, and it is the call's recorded end reason.
SHUTTING_DOWN = "matchmaker shutting down"
# Why a clean stop ends a session's stream (UNAVAILABLE): the client reconnects to another replica.
STOPPING_REASON = "this matchmaker replica is shutting down; reconnect (your place in the queue is kept)"


class Matchmaker(FriendCalls, CallReports, SafetyActions, ShardHandover, EdgeLoss):
    def __init__(
        self,
        store: MatchStore,
        routing: RoutingService,
        edges: Edges,
        *,
        recent_partners: int | None = None,
        config: MatchConfig | None = None,
        safety: SafetyStore | None = None,
        friends: FriendStore | None = None,
        latency: LatencyEstimate | None = None,
        clock: Callable[[], float] = time.time,
        telemetry: CallTelemetry | None = None,
        shards: ShardMap | None = None,
    ) -> None:
        """``shards``: which shard each region is in (default: one shard for the world; docs/replicas.md).
        ``recent_partners`` overrides ``config.recent_partners``; ``safety`` defaults to an
        in-memory store (blocks and reports then last as long as the process), ``friends`` likewise; ``latency``
        to the routing library's reference RTTs; ``clock`` gives epoch seconds."""
        config = config or MatchConfig()
        if recent_partners is not None:
            if recent_partners < 0:
                raise ValueError(f"recent_partners must be 0 or more, got {recent_partners}")
            config = MatchConfig(**{**config.__dict__, "recent_partners": recent_partners})
        self.config = config
        self.store = store
        self.routing = routing
        self.edges = edges
        self.safety: SafetyStore = safety if safety is not None else InMemorySafetyStore()
        self.friends: FriendStore = friends if friends is not None else InMemoryFriendStore()
        self.latency: LatencyEstimate = latency if latency is not None else ReferenceLatency()
        self.clock = clock
        self.telemetry: CallTelemetry = telemetry if telemetry is not None else NoTelemetry()
        self.history = InMemoryPairHistory(
            recent_partners=config.recent_partners, rematch_window_s=config.rematch_window_s, clock=clock
        )
        self.rate_limiter = RateLimiter(config.rate_limit_requests, config.rate_limit_per_s)
        self.pool = WaitingPool(compare=config.compare)
        self.shard_map = shards if shards is not None else ShardMap()
        # Open tickets of a shard taken over from a dead replica, waiting for their users to come back.
        self._restored: dict[str, RestoredTicket] = {}  # user id -> ticket
        # Shards whose tickets are restored here: their clients may come in (replicas; docs/replicas.md).
        self.serving_shards: set[str] = set()
        self.sessions: dict[str, ClientSession] = {}
        self._by_user: dict[str, ClientSession] = {}
        self._calls: dict[str, ActiveCall] = {}
        self._rings: dict[str, Ring] = {}
        self._reports: dict[str, int] = {}  # user -> distinct reporters (of users who opened a session)
        self._pool_lock = asyncio.Lock()
        # Ticket deadlines (expiry, relaxation): (epoch ms, seq, ticket id), soonest first.
        self._due: list[tuple[float, int, str]] = []
        self._seq = itertools.count()
        self._due_changed = asyncio.Event()
        self._timer: asyncio.Task[None] | None = None
        self._wait_ema_ms = 0.0  # moving average of queued -> matched
        self._stopping = False  # stop() began: no new sessions

    @property
    def recent_partners(self) -> int:
        return self.config.recent_partners

    def now_ms(self) -> float:
        return self.clock() * 1000

    def pair_context(self) -> PairContext:
        return PairContext(
            now_ms=self.now_ms(),
            relax=self.config.relax,
            latency=self.latency,
            history=self.history,
            near_rtt_ms=self.config.near_rtt_ms,
        )

    def held_for_review(self, user_id: str) -> bool:
        return self._reports.get(user_id, 0) >= self.config.review_threshold

    # -- the timer ------------------------------------------------------------

    def start(self) -> None:
        """Start the timer task that expires tickets and re-examines them as they relax (stop() ends it)."""
        if self._timer is None:
            self._timer = asyncio.create_task(self._run_timer(), name="matchmaker ticket timer")

    async def _run_timer(self) -> None:
        while True:
            self._due_changed.clear()
            delay = (self._due[0][0] - self.now_ms()) / 1000 if self._due else None
            if delay is None or delay > 0:
                try:
                    await asyncio.wait_for(self._due_changed.wait(), delay)
                except TimeoutError:
                    pass
                continue
            try:
                await self.run_due()
            except Exception:
                # One bad ticket must not stop expiry for everyone else.
                logger.exception("ticket timer failed")

    def _schedule(self, at_ms: float, ticket_id: str) -> None:
        if not self._due or at_ms < self._due[0][0]:
            self._due_changed.set()
        heapq.heappush(self._due, (at_ms, next(self._seq), ticket_id))

    def _schedule_ticket(self, ticket: Ticket) -> None:
        now = self.now_ms()
        self._schedule(ticket.queued_at + self.config.ticket_ttl_s * 1000, ticket.ticket_id)
        relax_at = self.config.relax.next_change_ms(ticket, now)
        if relax_at is not None:
            self._schedule(relax_at, ticket.ticket_id)

    async def run_due(self) -> None:
        """Expire the tickets past their lifetime and offer again those whose criteria just relaxed;
        end the rings nobody answered in time."""
        while self._due and self._due[0][0] <= self.now_ms():
            _, _, ticket_id = heapq.heappop(self._due)
            ring = self._rings.get(ticket_id)
            if ring is not None:
                if self.now_ms() >= ring.expires_at:
                    self._end_ring(ring, rings.NO_ANSWER)
                continue
            restored = self._restored_ticket(ticket_id)
            if restored is not None:
                if self.now_ms() >= restored.queued_at + self.config.ticket_ttl_s * 1000:
                    # Its user did not come back in time: it expires as a waiting ticket would.
                    del self._restored[restored.user_id]
                    await self.store.close_ticket(restored.ticket_id, "expired")
                continue
            ticket = self.pool.get(ticket_id)
            if ticket is None:
                continue  # matched or gone since
            session = self.sessions.get(ticket.session_id)
            if self.now_ms() >= ticket.queued_at + self.config.ticket_ttl_s * 1000:
                await self._close_ticket(
                    session,
                    ticket,
                    "expired",
                    f"expired: no partner found within {self.config.ticket_ttl_s:g} s; "
                    "send FindPartner to look again (fewer preferences find someone sooner)",
                )
                continue
            async with self._pool_lock:
                pair = self.pool.reoffer(ticket_id, self.pair_context())
            if pair is not None:
                await self._start_call(*pair)
            else:
                relax_at = self.config.relax.next_change_ms(ticket, self.now_ms())
                if relax_at is not None:
                    self._schedule(relax_at, ticket_id)
            # A burst of due tickets (many queued in the same second relax together) must not hold the
            # loop: newcomers' searches and commits run between two of these.
            await asyncio.sleep(0)

    async def _close_ticket(self, session: ClientSession | None, ticket: Ticket, outcome: str, reason: str) -> None:
        """Take a waiting ticket out of the pool without a match, and tell its client why."""
        async with self._pool_lock:
            self.pool.remove(ticket.ticket_id)
        # Let go of it before any await, so a match started meanwhile cannot take it too.
        tell = session is not None and session.ticket is ticket
        if session is not None and tell:
            session.ticket = None
        await self.store.close_ticket(ticket.ticket_id, outcome)
        if session is not None and tell:
            session.send(TicketClosed(ticket_id=ticket.ticket_id, reason=reason))

    # -- session lifecycle --------------------------------------------------

    async def open_session(
        self,
        user_id: str,
        display_name: str,
        client_ip: str,
        outbox: Outbox,
        *,
        clock_probes: bool = False,
        forwarded: bool = False,
    ) -> ClientSession:
        """Start a session for ``user_id`` (replacing an older one of theirs) and assign it an edge.

        ``clock_probes``: the client answers clock probes; it is sent them, one after another.
        ``forwarded``: its stream comes through another replica (docs/replicas.md).
        """
        if not USER_ID_RE.match(user_id):
            raise BadRequest("hello.user_id must be 1-64 characters of letters, digits, '_', '.' or '-'")
        if self._stopping:
            raise Unavailable(STOPPING_REASON)
        name = checked_display_name(display_name) if display_name else user_id
        old = self._by_user.get(user_id)
        if old is not None:
            logger.info("user %s opened a new session; closing the old one", user_id)
            old.send(CallEnded(reason="replaced by a newer session"))
            # A forwarded session's wait is kept for the new one to resume: the user may have reconnected
            # before we noticed that its stream went with the replica that forwarded it.
            await self.close_session(old, "replaced", keep_ticket=old.forwarded)
            old.outbox.put_nowait(SessionClosed())
        session = ClientSession(
            session_id=uuid.uuid4().hex,
            user_id=user_id,
            display_name=name,
            client_ip=client_ip,
            outbox=outbox,
            forwarded=forwarded,
        )
        await self.store.upsert_user(session.user_id, session.display_name)
        # Whom they met lately comes from the store too: a match made on another replica, or before a
        # restart of this one, still keeps the pair apart (docs/replicas.md).
        blocks, reports, meetings = await asyncio.gather(
            self.safety.blocks_of(user_id),
            self.safety.report_count(user_id),
            self.store.recent_meetings(
                user_id, recent=self.config.recent_partners, window_s=self.config.rematch_window_s
            ),
        )
        self.history.load_blocks(user_id, blocks)
        self.history.load_meetings(user_id, meetings)
        self._reports[user_id] = reports
        self.sessions[session.session_id] = session
        self._by_user[session.user_id] = session
        if self._stopping:  # stop() began while the store answered, and may have finished
            await self.close_session(session, "shutdown")
            raise Unavailable(STOPPING_REASON)
        try:
            ingress = await self.routing.pick_ingress(client_ip)
        except PeerError as exc:
            await self.close_session(session, "no ingress")
            raise Unavailable(f"no edge could be assigned: {exc}") from exc
        session.edge = ingress.edge
        session.region = ingress.edge.region
        session.shard = self.shard_map.shard_of(session.region)
        session.send(
            EdgeAssigned(
                session_id=session.session_id, edge=ingress.edge, reason=ingress.reason, assigned_at=self.now_ms()
            )
        )
        if clock_probes:
            # The first clock probe; each echo brings the next, until the session has enough samples.
            self._probe_clock(session)
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

    def _admit(self, session: ClientSession) -> None:
        """The checks every find/next passes before it changes anything: review hold, then the rate limit."""
        if self.held_for_review(session.user_id):
            raise HeldForReview(
                f"you cannot be matched for now: {self._reports[session.user_id]} people reported you, "
                "and your account is held until a moderator has reviewed it"
            )
        self.rate_limiter.take(session.user_id, self.clock())

    async def find_partner(self, session: ClientSession, preferences: Preferences | None = None) -> None:
        """Enter the pool with these preferences (None: the session's last ones)."""
        await self._recheck_hold(session.user_id)
        if session.leg_id is None:
            raise WrongState("send your leg offer before find_partner")
        if session.ticket is not None or session.call is not None:
            raise WrongState("already waiting or in a call; use next to switch partners")
        self._admit(session)
        if preferences is not None:
            session.preferences = preferences
        self._give_up_ringing(session)
        await self._enqueue(session)

    async def next(self, session: ClientSession, preferences: Preferences | None = None) -> None:
        """End the current call if any and look for someone new; when idle it is find_partner.

        Tolerant on purpose: both partners may press next at the same moment.
        Waiting already: nothing changes (the preferences neither).
        """
        await self._recheck_hold(session.user_id)
        if session.leg_id is None:
            raise WrongState("send your leg offer before next")
        if session.ticket is not None:
            return
        self._admit(session)
        if preferences is not None:
            session.preferences = preferences
        if session.call is not None:
            await self._end_call(session.call, "next", ender=session)
        self._give_up_ringing(session)
        if session.ticket is None and not session.closed:
            await self._enqueue(session)

    async def cancel(self, session: ClientSession) -> None:
        """Leave the pool; the session and its leg stay. Not waiting: nothing happens."""
        if session.leg_id is None:
            raise WrongState("send your leg offer before cancel")
        if session.ticket is not None:
            await self._close_ticket(session, session.ticket, "cancelled: by the client", "cancelled")

    def heartbeat(self, session: ClientSession) -> None:
        ticket = session.ticket
        session.send(
            HeartbeatAck(
                server_time=self.now_ms(),
                ticket_id=ticket.ticket_id if ticket else "",
                position=self.pool.position(ticket.ticket_id) if ticket else 0,
                estimated_wait_ms=self._wait_ema_ms if ticket else 0.0,
            )
        )

    async def close_session(self, session: ClientSession, reason: str, *, keep_ticket: bool = False) -> None:
        """Stream gone (leave, drop, replace): end its call, cancel its ticket, release its leg.

        ``keep_ticket``: the stream may have broken with the replica that forwarded it, not by the
        user's choice: the ticket stays open, apart from the pool, for the user's next session to
        resume (or it expires on the TTL), as a restored one would.
        """
        if session.closed:
            return
        session.closed = True
        self.sessions.pop(session.session_id, None)
        if self._by_user.get(session.user_id) is session:
            del self._by_user[session.user_id]
        if session.ring is not None:
            ring = session.ring
            self._end_ring(ring, rings.CALLER_LEFT if ring.caller is session else rings.FRIEND_OFFLINE)
        if session.call is not None:
            await self._end_call(session.call, "left", ender=session)
        if session.ticket is not None and keep_ticket:
            ticket = session.ticket
            async with self._pool_lock:
                self.pool.remove(ticket.ticket_id)
            session.ticket = None
            # Its expiry is already scheduled (run_due finds it among the restored ones).
            self._restored[session.user_id] = RestoredTicket(
                ticket.ticket_id, session.user_id, session.shard, session.region, ticket.queued_at, ticket.preferences
            )
        elif session.ticket is not None:
            await self._close_ticket(session, session.ticket, f"cancelled: {reason}", "cancelled")
        if session.leg_id is not None and session.edge is not None:
            try:
                await self.edges.detach_leg(session.edge, session.leg_id)
            except PeerError as exc:
                logger.info("detach of leg %s on %s: %s", session.leg_id, session.edge.edge_id, exc)
        logger.info("session %s (%s) closed: %s", session.session_id[:8], session.user_id, reason)

    # -- pairing ----------------------------------------------------------

    async def _enqueue(self, session: ClientSession) -> None:
        assert session.edge is not None and session.video is not None
        restored = self._restored.pop(session.user_id, None)
        if restored is not None and session.preferences == NO_PREFERENCES:
            session.preferences = restored.preferences  # the client did not state them again: keep the stored ones
        prefs = preferences_json(session.preferences)
        # Back after its replica died: the same ticket, keeping its place among the longest waiting.
        resumed = restored is not None and await self.store.resume_ticket(
            restored.ticket_id, session.session_id, session.edge.edge_id, session.region, prefs
        )
        ticket = Ticket(
            # 32 random hex digits, as uuid4().hex but a third of its cost (one per match on the hot path).
            ticket_id=restored.ticket_id if resumed and restored else secrets.token_hex(16),
            user_id=session.user_id,
            session_id=session.session_id,
            edge_id=session.edge.edge_id,
            queued_at=restored.queued_at if resumed and restored else self.now_ms(),
            video=session.video,
            region=session.region,
            preferences=session.preferences,
            reports=self._reports.get(session.user_id, 0),
        )
        session.ticket = ticket
        if resumed:
            logger.info(
                "user %s resumed ticket %s (waiting %.1f s)",
                session.user_id,
                ticket.ticket_id[:8],
                (self.now_ms() - ticket.queued_at) / 1000,
            )
        else:
            await self.store.open_ticket(
                ticket.ticket_id,
                ticket.user_id,
                ticket.session_id,
                ticket.edge_id,
                ticket.queued_at / 1000,
                region=session.region,
                shard=session.shard,
                preferences=prefs,
            )
        if session.ticket is not ticket or session.closed:
            # Closed while the store answered (its close may have come before the row): no open ticket is left.
            await self.store.close_ticket(ticket.ticket_id, "cancelled: session closed")
            return
        await self._offer(session, ticket)

    async def _reoffer(self, session: ClientSession, ticket: Ticket) -> None:
        """Put a ticket whose match fell through back in the pool, keeping its age."""
        if session.closed or session.ticket is not None or session.call is not None:
            return
        session.ticket = ticket
        async with self._pool_lock:
            pair = self.pool.offer(ticket, self.pair_context())
        if pair is not None:
            await self._start_call(*pair)
        else:
            self._schedule_ticket(ticket)

    async def _offer(self, session: ClientSession, ticket: Ticket) -> None:
        """Offer the session's ticket to the pool: Queued, then a match at once or a place in the pool."""
        async with self._pool_lock:
            pair = self.pool.offer(ticket, self.pair_context())
            position = 0 if pair is not None else self.pool.position(ticket.ticket_id)
        session.send(
            Queued(
                ticket_id=ticket.ticket_id,
                queued_at=ticket.queued_at,
                position=position or 1,
                estimated_wait_ms=self._wait_ema_ms,
                expires_at=ticket.queued_at + self.config.ticket_ttl_s * 1000,
            )
        )
        if pair is not None:
            await self._start_call(*pair)
        else:
            self._schedule_ticket(ticket)

    async def _start_call(self, first: Ticket, second: Ticket) -> None:
        matched = self.now_ms()
        a = self.sessions.get(first.session_id)
        b = self.sessions.get(second.session_id)
        if a is None or b is None or a.closed or b.closed or a.ticket is not first or b.ticket is not second:
            # One side left between pairing and here; the other's ticket goes back in the pool, keeping its age.
            for s, t in ((a, first), (b, second)):
                if s is not None and not s.closed and s.ticket is t:
                    async with self._pool_lock:
                        pair = self.pool.offer(t, self.pair_context())
                    if pair is not None:
                        await self._start_call(*pair)
                    else:
                        self._schedule_ticket(t)
            return
        a.ticket = b.ticket = None  # before any await: a cancel or expiry meanwhile finds nothing to close
        for s, t in ((a, first), (b, second)):
            waited = max(0.0, matched - t.queued_at)
            self._wait_ema_ms = waited if not self._wait_ema_ms else 0.8 * self._wait_ema_ms + 0.2 * waited
            self.telemetry.ticket_matched(s.region, waited)
        # Whatever goes wrong below, these two are not paired again right away.
        self.history.note_met(a.user_id, b.user_id)
        shared = tuple(sorted(shared_interests(first, second)))
        await self._connect_pair(
            a,
            b,
            queued=(first.queued_at, second.queued_at),
            matched=matched,
            kind=CALL_KIND_MATCH,
            shared=shared,
            languages=(first.preferences.languages, second.preferences.languages),
            tickets=(first, second),
        )

    async def stop(self) -> None:
        """A clean stop (Ctrl-C, SIGTERM): for the queue, as if this replica had died.

        The timer ends. Every session ends with ShardMoved (its stream ends UNAVAILABLE, telling the
        client to reconnect): a waiting ticket stays open in the store, for whichever replica serves
        the shard next to restore and its user to resume with their place; a live call ends, recorded
        as "matchmaker shutting down". Sessions opened from now on are refused.
        """
        self._stopping = True
        if self._timer is not None:
            self._timer.cancel()
            await asyncio.gather(self._timer, return_exceptions=True)
            self._timer = None
        self.serving_shards.clear()
        # Sessions may open while others close (an open_session past its check): end those too.
        while self.sessions:
            for session in list(self.sessions.values()):
                # One session's trouble (an edge or the database failing) must not keep the others open.
                try:
                    if session.call is not None:
                        await self._end_call(session.call, SHUTTING_DOWN, ender=session)
                except Exception:
                    logger.exception("ending call of session %s at shutdown failed", session.session_id[:8])
                try:
                    await self.close_session(session, "shutdown", keep_ticket=True)
                except Exception:
                    logger.exception("closing session %s at shutdown failed", session.session_id[:8])
                    self.sessions.pop(session.session_id, None)
                session.outbox.put_nowait(ShardMoved(STOPPING_REASON))
        # Their tickets (and those restored here whose users had not come back) are open in the store.
        self._restored.clear()

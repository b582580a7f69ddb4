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
import re
import secrets
import time
import uuid
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field

from duet.services.matchmaker import ring as rings
from duet.services.matchmaker.clock_sync import ClockSync, InvalidEcho
from duet.services.matchmaker.display_name import checked_display_name
from duet.services.matchmaker.errors import (
    BadRequest,
    Forbidden,
    HeldForReview,
    NotFound,
    Unavailable,
    WrongState,
)
from duet.services.matchmaker.events import (
    Blocked,
    CallEnded,
    ClockProbe,
    EdgeAssigned,
    EdgeLost,
    Friend,
    FriendAdded,
    FriendRequested,
    HeartbeatAck,
    IncomingCall,
    LegAnswered,
    Matched,
    NoEdge,
    Outbox,
    PartnerProfile,
    Queued,
    Reported,
    RingEnded,
    Ringing,
    SessionClosed,
    SessionEvent,
    TicketClosed,
)
from duet.services.matchmaker.fakes.friends import InMemoryFriendStore
from duet.services.matchmaker.fakes.safety import InMemorySafetyStore
from duet.services.matchmaker.pair_history import InMemoryPairHistory
from duet.services.matchmaker.pool import Ticket, WaitingPool
from duet.services.matchmaker.ports import (
    EdgeInfo,
    Edges,
    FriendStore,
    MatchStore,
    PeerError,
    PeerInvalidRequest,
    Route,
    RoutingService,
    SafetyStore,
)
from duet.services.matchmaker.preferences import NO_PREFERENCES, Preferences
from duet.services.matchmaker.rate_limit import RateLimiter
from duet.services.matchmaker.reference_latency import ReferenceLatency
from duet.services.matchmaker.ring import Ring
from duet.services.matchmaker.rules.base import LatencyEstimate, PairContext
from duet.services.matchmaker.rules.interests import shared_interests
from duet.services.matchmaker.rules.media import VideoCodecs
from duet.services.matchmaker.rules.relaxation import RelaxSchedule
from duet.services.matchmaker.telemetry import CallTelemetry, NoTelemetry
from duet.services.store.records import CALL_KIND_FRIEND, CALL_KIND_MATCH, CallRow, FriendRow, checked_reason

logger = logging.getLogger("duet.matchmaker")

USER_ID_RE = re.compile(r"^[A-Za-z0-9_.-]{1,64}$")
# A user is not paired again with any of their last N partners (default N).
RECENT_PARTNERS = 5
# Stages a client reports about itself; the server's own (queued ... bridged) are not the client's to set.
CLIENT_STAGES = ("session_open", "edge_assigned", "leg_connected", "first_frame")
# One frame at 30 fps: the receiver's jitter buffer holds a frame until the next one starts.
FRAME_INTERVAL_MS = 33.3
# What the partner is told when a call ends, by how it ended (a blocked user is not told they were blocked).
PARTNER_REASON = {
    "next": "partner_next",
    "left": "partner_left",
    "blocked": "partner_left",
    "hung_up": "partner_hung_up",
}
# ListCalls: the default and the largest page.
LIST_CALLS_DEFAULT = 20
LIST_CALLS_MAX = 1000


@dataclass(frozen=True)
class MatchConfig:
    """The matchmaker's tunables (``duet matchmaker --help`` names each)."""

    recent_partners: int = RECENT_PARTNERS  # never re-paired with one of their last N partners
    rematch_window_s: float = 0.0  # nor with anyone met within this many seconds (0: off)
    ticket_ttl_s: float = 120.0  # a ticket not matched by then expires
    relax: RelaxSchedule = field(default_factory=RelaxSchedule)
    near_rtt_ms: float = 80.0  # "near me": same region or a reference RTT up to this
    review_threshold: int = 3  # distinct reporters that hold a user for review
    rate_limit_requests: int = 20  # find/next per user: a burst of this many ...
    rate_limit_per_s: float = 10.0  # ... refilled over this many seconds
    compare: int = 16  # the pool scores this many of the oldest compatible candidates
    ring_timeout_s: float = 30.0  # a friend call not answered by then ends with "no answer"

    def __post_init__(self) -> None:
        if self.recent_partners < 0:
            raise ValueError(f"recent_partners must be 0 or more, got {self.recent_partners}")
        if not self.ticket_ttl_s > 0:
            raise ValueError(f"ticket_ttl_s must be more than 0 seconds, got {self.ticket_ttl_s}")
        if not self.near_rtt_ms >= 0:
            raise ValueError(f"near_rtt_ms must be 0 or more, got {self.near_rtt_ms}")
        if not self.ring_timeout_s > 0:
            raise ValueError(f"ring_timeout_s must be more than 0 seconds, got {self.ring_timeout_s}")
        if self.review_threshold < 1:
            raise ValueError(f"review_threshold must be 1 or more, got {self.review_threshold}")


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
    observed: set[int] = field(default_factory=set)  # sides whose first frame went to telemetry
    ended: bool = False
    kind: str = CALL_KIND_MATCH

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
    ring: Ring | None = None  # a friend call this session is making or being offered
    preferences: Preferences = NO_PREFERENCES  # the last ones given
    clock: ClockSync = field(default_factory=ClockSync)  # the client's clock offset, from probes on the stream
    closed: bool = False

    def send(self, event: SessionEvent) -> None:
        if not self.closed:
            self.outbox.put_nowait(event)


class Matchmaker:
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
    ) -> None:
        """``recent_partners`` overrides ``config.recent_partners``; ``safety`` defaults to an
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
        self, user_id: str, display_name: str, client_ip: str, outbox: Outbox, *, clock_probes: bool = False
    ) -> ClientSession:
        """Start a session for ``user_id`` (replacing an older one of theirs) and assign it an edge.

        ``clock_probes``: the client answers clock probes; it is sent them, one after another.
        """
        if not USER_ID_RE.match(user_id):
            raise BadRequest("hello.user_id must be 1-64 characters of letters, digits, '_', '.' or '-'")
        name = checked_display_name(display_name) if display_name else user_id
        old = self._by_user.get(user_id)
        if old is not None:
            logger.info("user %s opened a new session; closing the old one", user_id)
            old.send(CallEnded(reason="replaced by a newer session"))
            await self.close_session(old, "replaced")
            old.outbox.put_nowait(SessionClosed())
        session = ClientSession(
            session_id=uuid.uuid4().hex,
            user_id=user_id,
            display_name=name,
            client_ip=client_ip,
            outbox=outbox,
        )
        await self.store.upsert_user(session.user_id, session.display_name)
        self.history.load_blocks(user_id, await self.safety.blocks_of(user_id))
        self._reports[user_id] = await self.safety.report_count(user_id)
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

    def _probe_clock(self, session: ClientSession) -> None:
        now = self.now_ms()
        session.send(ClockProbe(probe_id=session.clock.probe(now), server_send=now))

    def clock_echo(self, session: ClientSession, probe_id: int, client_receive: float, client_send: float) -> None:
        """The client's answer to a clock probe: one more sample of its clock offset."""
        try:
            sample = session.clock.answer(probe_id, client_receive, client_send, self.now_ms())
        except InvalidEcho as exc:
            raise BadRequest(str(exc)) from None
        logger.debug(
            "session %s: clock offset %.1f ms, round trip %.1f ms",
            session.session_id[:8],
            sample.offset_ms,
            sample.round_trip_ms,
        )
        if session.clock.wants_more:
            self._probe_clock(session)

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

    # -- safety -----------------------------------------------------------

    async def _partner_in(self, session: ClientSession, call_id: str) -> tuple[str, ActiveCall | None]:
        """The other user of one of this user's calls (live or recorded), and the call if it is live."""
        if not call_id:
            raise BadRequest("call_id is required: the call (from Matched) whose partner you mean")
        call = self._calls.get(call_id)
        if call is not None and session in call.sessions:
            return call.partner_of(session).user_id, call
        row = await self.store.get_call(call_id)
        if row is None or session.user_id not in (row.user_a, row.user_b):
            raise NotFound(f"you had no call '{call_id}'")
        return (row.user_b if row.user_a == session.user_id else row.user_a), None

    async def block(self, session: ClientSession, call_id: str) -> None:
        """The partner of that call never meets this user again; a live call with them ends now."""
        partner, call = await self._partner_in(session, call_id)
        await self.safety.add_block(session.user_id, partner, call_id)
        self.history.add_block(session.user_id, partner)
        # A block ends a friendship too: neither can call the other any more.
        await self.friends.remove_friend(session.user_id, partner)
        self._end_rings_between(session.user_id, partner)
        if call is not None:
            await self._end_call(call, "blocked", ender=session)
        session.send(Blocked(call_id=call_id))
        logger.info("user %s blocked %s (call %s)", session.user_id, partner, call_id[:8])

    async def report(self, session: ClientSession, call_id: str, reason: str) -> None:
        """Record a report about the partner of that call; past the threshold they are held for review."""
        try:
            checked_reason(reason)
        except ValueError as exc:
            raise BadRequest(f"report.reason: {exc}") from None
        partner, _ = await self._partner_in(session, call_id)
        count = await self.safety.add_report(session.user_id, partner, call_id, reason)
        self._reports[partner] = count
        session.send(Reported(call_id=call_id))
        logger.info("user %s reported %s (call %s): %d reporters", session.user_id, partner, call_id[:8], count)
        held = self._by_user.get(partner)
        if self.held_for_review(partner) and held is not None and held.ticket is not None:
            await self._close_ticket(
                held,
                held.ticket,
                "cancelled: held for review",
                f"held for review: {count} people reported you; you will not be matched until a moderator "
                "has reviewed your account",
            )

    # -- friends ----------------------------------------------------------

    def _friend(self, row: FriendRow) -> Friend:
        """A stored friend with whether they are online and busy now."""
        other = self._by_user.get(row.user_id)
        return Friend(
            user_id=row.user_id,
            display_name=other.display_name if other is not None else row.display_name,
            online=other is not None,
            busy=other is not None and (other.call is not None or other.ring is not None),
            since=row.since * 1000,
        )

    async def add_friend(self, session: ClientSession, call_id: str) -> None:
        """Ask to be friends with the partner of that call; when they asked too, both are told."""
        partner, _ = await self._partner_in(session, call_id)
        if self.history.blocked(session.user_id, partner):
            raise Forbidden("you cannot add the partner of that call as a friend: one of you blocked the other")
        if await self.friends.are_friends(session.user_id, partner):
            session.send(FriendRequested(call_id=call_id, friends=True))
            return
        row = await self.friends.add_friend_request(session.user_id, partner, call_id)
        session.send(FriendRequested(call_id=call_id, friends=row is not None))
        if row is None:
            logger.info("user %s asked to be friends with %s (call %s)", session.user_id, partner, call_id[:8])
            return
        logger.info("users %s and %s are friends (call %s)", session.user_id, partner, call_id[:8])
        session.send(FriendAdded(friend=self._friend(row), call_id=call_id))
        other = self._by_user.get(partner)
        if other is not None:
            other.send(
                FriendAdded(
                    friend=self._friend(FriendRow(session.user_id, session.display_name, row.since)), call_id=call_id
                )
            )

    async def list_friends(self, user_id: str) -> list[Friend]:
        """The user's friends, online ones first, then by display name."""
        friends = [self._friend(row) for row in await self.friends.friends_of(user_id)]
        return sorted(friends, key=lambda f: (not f.online, f.display_name.casefold(), f.user_id))

    async def _check_other_user(self, user_id: str, other: str, field: str) -> None:
        if not other:
            raise BadRequest(f"{field} is required: the friend's user id (from ListFriends)")
        if not USER_ID_RE.match(other):
            raise BadRequest(f"{field} must be 1-64 characters of letters, digits, '_', '.' or '-'")
        if other == user_id:
            raise BadRequest(f"{field} is your own user id")

    async def remove_friend(self, user_id: str, other: str) -> None:
        """Unfriend: neither can call the other any more; a ring between them ends."""
        await self._check_other_user(user_id, other, "user_id")
        if not await self.friends.remove_friend(user_id, other):
            raise NotFound(f"'{other}' is not one of your friends")
        self._end_rings_between(user_id, other)
        logger.info("user %s removed friend %s", user_id, other)

    async def call_friend(self, session: ClientSession, user_id: str) -> None:
        """Ring a friend: Ringing to the caller, IncomingCall to the friend, until answered or given up."""
        if session.leg_id is None:
            raise WrongState("send your leg offer before calling a friend")
        await self._check_other_user(session.user_id, user_id, "call_friend.user_id")
        if session.ticket is not None:
            raise WrongState("you are waiting for a partner; send Cancel before calling a friend")
        if session.call is not None:
            raise WrongState("you are in a call; hang up (HangUp) before calling a friend")
        if session.ring is not None:
            raise WrongState("you are already ringing or being rung; cancel or answer that call first")
        if self.history.blocked(session.user_id, user_id):
            raise Forbidden(f"you cannot call '{user_id}': one of you blocked the other")
        if not await self.friends.are_friends(session.user_id, user_id):
            if not await self.friends.user_exists(user_id):
                raise NotFound(f"there is no user '{user_id}'")
            raise Forbidden(f"'{user_id}' is not your friend: you both need to add each other after a call first")
        friend = self._by_user.get(user_id)
        if friend is None:
            raise WrongState(f"'{user_id}' is not online; try again when they are")
        if friend.call is not None or friend.ring is not None:
            raise WrongState(f"{friend.display_name} is in another call; try again later")
        now = self.now_ms()
        ring = Ring(
            request_id=uuid.uuid4().hex,
            caller=session,
            callee=friend,
            created_at=now,
            expires_at=now + self.config.ring_timeout_s * 1000,
        )
        self._rings[ring.request_id] = ring
        session.ring = friend.ring = ring
        self._schedule(ring.expires_at, ring.request_id)
        since = next((r.since for r in await self.friends.friends_of(session.user_id) if r.user_id == user_id), 0.0)
        session.send(
            Ringing(
                request_id=ring.request_id,
                friend=self._friend(FriendRow(friend.user_id, friend.display_name, since)),
                expires_at=ring.expires_at,
            )
        )
        friend.send(
            IncomingCall(
                request_id=ring.request_id,
                caller=PartnerProfile(
                    display_name=session.display_name,
                    region=session.region,
                    languages=tuple(sorted(session.preferences.languages)),
                ),
                caller_user_id=session.user_id,
                expires_at=ring.expires_at,
            )
        )
        logger.info("user %s rings friend %s (request %s)", session.user_id, user_id, ring.request_id[:8])

    async def answer_call(self, session: ClientSession, request_id: str, accept: bool) -> None:
        """Accept (the call is connected like a match) or decline a friend's call ringing for this session."""
        if not request_id:
            raise BadRequest("answer_call.request_id is required: the request id from IncomingCall")
        ring = self._rings.get(request_id)
        if ring is None or ring.callee is not session:
            raise NotFound(f"no call '{request_id}' is ringing for you (it may have ended: see RingEnded)")
        if not accept:
            self._end_ring(ring, rings.DECLINED)
            return
        if session.leg_id is None:
            raise WrongState("send your leg offer before accepting a call")
        if session.call is not None:
            raise WrongState("you are in a call; hang up before accepting another")
        caller = ring.caller
        # Taken out before any await: a cancel, timeout or leave meanwhile finds nothing to end.
        self._rings.pop(request_id, None)
        session.ring = caller.ring = None
        if session.ticket is not None:
            await self._close_ticket(
                session, session.ticket, "cancelled: answered a friend's call", "cancelled: answered a friend's call"
            )
        if caller.closed or session.closed or caller.call is not None or session.call is not None:
            # Gone or connected elsewhere while the ticket closed: the ring ends without a call after all.
            reason = rings.CALLER_LEFT if caller.closed else rings.FRIEND_OFFLINE if session.closed else rings.BUSY
            for s in (caller, session):
                s.send(RingEnded(request_id=request_id, reason=reason))
            return
        logger.info("user %s accepted %s's call (request %s)", session.user_id, caller.user_id, request_id[:8])
        await self._connect_pair(
            caller,
            session,
            queued=(ring.created_at, ring.created_at),
            matched=self.now_ms(),
            kind=CALL_KIND_FRIEND,
            shared=(),
            languages=(caller.preferences.languages, session.preferences.languages),
        )

    async def cancel_call(self, session: ClientSession, request_id: str) -> None:
        """The caller stops ringing."""
        if not request_id:
            raise BadRequest("cancel_call.request_id is required: the request id from Ringing")
        ring = self._rings.get(request_id)
        if ring is None or ring.caller is not session:
            raise NotFound(f"you are not ringing anyone with request '{request_id}' (it may have ended)")
        self._end_ring(ring, rings.CANCELLED)

    async def hang_up(self, session: ClientSession) -> None:
        """End the live call without looking for someone new (the partner gets CallEnded "partner_hung_up")."""
        if session.call is not None:
            await self._end_call(session.call, "hung_up", ender=session)

    def _end_ring(self, ring: Ring, reason: str) -> None:
        """A ring ends without a call: both sides are told why (those still here)."""
        if self._rings.pop(ring.request_id, None) is None:
            return
        for s in (ring.caller, ring.callee):
            if s.ring is ring:
                s.ring = None
            s.send(RingEnded(request_id=ring.request_id, reason=reason))
        logger.info(
            "ring %s (%s -> %s) ended: %s", ring.request_id[:8], ring.caller.user_id, ring.callee.user_id, reason
        )

    def _end_rings_between(self, user_a: str, user_b: str) -> None:
        for ring in [r for r in self._rings.values() if r.involves(user_a, user_b)]:
            self._end_ring(ring, rings.NO_LONGER_FRIENDS)

    def _give_up_ringing(self, session: ClientSession) -> None:
        """Looking for a stranger instead: a ring this session makes is cancelled."""
        if session.ring is not None and session.ring.caller is session:
            self._end_ring(session.ring, rings.CANCELLED)

    async def close_session(self, session: ClientSession, reason: str) -> None:
        """Stream gone (leave, drop, replace): end its call, cancel its ticket, release its leg."""
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
        if session.ticket is not None:
            await self._close_ticket(session, session.ticket, f"cancelled: {reason}", "cancelled")
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
        if session.ring is not None:
            # The leg a friend call would bridge is gone: the ring ends (the caller can ring again on the new leg).
            self._end_ring(session.ring, rings.EDGE_LOST)
        if session.call is not None:
            await self._end_call(session.call, "edge_lost", ender=session)
        if session.ticket is not None:
            await self._close_ticket(session, session.ticket, "cancelled: edge lost", "edge_lost")
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
            EdgeAssigned(
                session_id=session.session_id, edge=ingress.edge, reason=ingress.reason, assigned_at=self.now_ms()
            )
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
            queued_at=self.now_ms(),
            video=session.video,
            region=session.region,
            preferences=session.preferences,
            reports=self._reports.get(session.user_id, 0),
        )
        session.ticket = ticket
        await self.store.open_ticket(
            ticket.ticket_id, ticket.user_id, ticket.session_id, ticket.edge_id, ticket.queued_at / 1000
        )
        await self._offer(session, ticket)

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
            tickets=(first.ticket_id, second.ticket_id),
        )

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
        tickets: tuple[str, ...] = (),
    ) -> None:
        """The connect path, for a match and a friend call alike: route, bridge both warm legs, record, tell both.

        ``tickets`` (a match's two) are closed as "matched" while the edges bridge.
        """
        assert a.edge is not None and b.edge is not None and a.leg_id and b.leg_id
        call_id = uuid.uuid4().hex
        bridge_id = secrets.randbits(63) or 1
        route_picked = 0.0

        async def pick_route() -> Route:
            nonlocal route_picked
            route = await self.routing.pick_route(a.edge.edge_id, b.edge.edge_id)  # type: ignore[union-attr]
            route_picked = self.now_ms()
            return route

        # Nothing here waits for anything it does not need: an edge bridges toward its peer edge with its own
        # next-hop table, so the route (needed only for Matched and the record) is asked for while both edges
        # bridge, and the tickets are closed meanwhile. Each step costs a round trip to a different peer.
        closed, route_result, *bridges = await asyncio.gather(
            asyncio.gather(*(self.store.close_ticket(t, "matched") for t in tickets)),
            pick_route(),
            self.edges.bridge(a.edge, bridge_id, a.leg_id, 0, b.edge.edge_id),
            self.edges.bridge(b.edge, bridge_id, b.leg_id, 1, a.edge.edge_id),
            return_exceptions=True,
        )
        bridged = self.now_ms()
        if isinstance(closed, BaseException) or isinstance(route_result, BaseException):
            for side, (s, r) in enumerate(zip((a, b), bridges, strict=True)):
                if not isinstance(r, BaseException) and s.edge is not None:
                    try:
                        await self.edges.unbridge(s.edge, bridge_id, side)
                    except PeerError:
                        pass
            if isinstance(closed, BaseException):
                raise closed  # the store failed: the ticket's client gets INTERNAL, as before
            if isinstance(route_result, BaseException) and not isinstance(route_result, PeerError):
                raise route_result
            # Neither leg is at fault; both clients decide whether to look again.
            logger.warning("no route %s -> %s: %s", a.edge.edge_id, b.edge.edge_id, route_result)
            self.telemetry.call_start_failed("no route")
            reason = f"no route between the two edges: {route_result}"
            await self._record_failed(call_id, a, b, kind, reason, [], 0.0, queued, {"matched": matched})
            for s in (a, b):
                s.send(CallEnded(reason=reason))
            return
        route = route_result
        failures = [(s, r) for s, r in zip((a, b), bridges, strict=True) if isinstance(r, BaseException)]
        if failures:
            self.telemetry.call_start_failed("bridge failed")
            details = "; ".join(f"{s.user_id}: {r if isinstance(r, PeerError) else repr(r)}" for s, r in failures)
            await self._record_failed(
                call_id,
                a,
                b,
                kind,
                f"bridge failed: {details}",
                list(route.path),
                route.rtt_ms,
                queued,
                {"matched": matched, "route_picked": route_picked},
            )
            await self._abort_start(a, b, bridge_id, failures, requeue=kind == CALL_KIND_MATCH)
            return
        for stage, at in (("route_picked", route_picked), ("bridged", bridged)):
            self.telemetry.call_stage(stage, a.region, b.region, at - matched)
        stages = (
            {"queued": queued[0], "matched": matched, "route_picked": route_picked, "bridged": bridged},
            {"queued": queued[1], "matched": matched, "route_picked": route_picked, "bridged": bridged},
        )
        call = ActiveCall(call_id, bridge_id, (a, b), route.path, route.rtt_ms, stages, kind=kind)
        self._calls[call_id] = call
        a.call = b.call = call
        # In a call now: a ring either of them was part of cannot be answered.
        for s in (a, b):
            if s.ring is not None:
                self._end_ring(s.ring, rings.BUSY)
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
                kind=kind,
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

    async def _record_failed(
        self,
        call_id: str,
        a: ClientSession,
        b: ClientSession,
        kind: str,
        reason: str,
        route: list[str],
        route_rtt_ms: float,
        queued: tuple[float, float],
        stages: dict[str, float],
    ) -> None:
        """A match or friend call that could not be set up is still recorded, ended, with why."""
        assert a.edge is not None and b.edge is not None and a.leg_id and b.leg_id
        await self.store.create_call(
            CallRow(
                call_id=call_id,
                user_a=a.user_id,
                user_b=b.user_id,
                edge_a=a.edge.edge_id,
                edge_b=b.edge.edge_id,
                leg_a=a.leg_id,
                leg_b=b.leg_id,
                route=route,
                route_rtt_ms=route_rtt_ms,
                state="ended",
                end_reason=reason,
                stages_a={"queued": queued[0], **stages},
                stages_b={"queued": queued[1], **stages},
                kind=kind,
            )
        )

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
        offset = session.clock.offset
        if offset is not None:
            # Onto the matchmaker's clock, so every stage of the record compares with its own.
            merged = {k: offset.to_server(v) if v else v for k, v in merged.items()}
            await self.store.set_clock(call_id, "ab"[side], offset)
        if edge is not None and call is not None:
            try:
                first_packet = await self.edges.first_packet_at_edge(edge, call.bridge_id, side)
            except PeerError:
                first_packet = 0.0
            if first_packet:
                merged["first_packet_at_edge"] = first_packet
        await self.store.merge_stages(call_id, "ab"[side], merged)
        if call is not None and connected and side not in call.observed:
            call.observed.add(side)
            me, partner = call.sessions[side], call.sessions[1 - side]
            matched = call.stages[side].get("matched", 0.0)
            for stage in ("first_packet_at_edge", "first_frame"):
                if merged.get(stage) and matched:
                    self.telemetry.call_stage(stage, me.region, partner.region, merged[stage] - matched)
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

    async def list_calls(self, limit: int, user_id: str) -> list[CallRow]:
        """Recent call records, newest first: ``limit`` 0 means the default; ``user_id`` empty means everyone's."""
        if not 0 <= limit <= LIST_CALLS_MAX:
            raise BadRequest(f"limit must be 0 (the default, {LIST_CALLS_DEFAULT}) to {LIST_CALLS_MAX}, got {limit}")
        if user_id and not USER_ID_RE.match(user_id):
            raise BadRequest("user_id must be 1-64 characters of letters, digits, '_', '.' or '-'")
        return await self.store.list_calls(limit or LIST_CALLS_DEFAULT, user_id or None)

    async def stop(self) -> None:
        if self._timer is not None:
            self._timer.cancel()
            await asyncio.gather(self._timer, return_exceptions=True)
            self._timer = None
        for session in list(self.sessions.values()):
            session.send(CallEnded(reason="matchmaker shutting down"))
            await self.close_session(session, "shutdown")
            session.outbox.put_nowait(SessionClosed())

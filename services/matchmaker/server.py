"""The matchmaker process: the Session stream, GetCall and ListCalls over ``Matchmaker``.

The one place where the core meets protobuf: client messages become core
calls, core events become ServerMessages, call records become CallRecords,
and each kind of domain error becomes its status code.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import AsyncIterator, Mapping
from dataclasses import dataclass

import grpc

from duet.services.auth.secrets import AuthSecrets
from duet.services.auth.tokens import UserClaims
from duet.services.matchmaker.config import MatchConfig
from duet.services.matchmaker.core import Matchmaker
from duet.services.matchmaker.edge_watch import watch_edges
from duet.services.matchmaker.errors import (
    BadRequest,
    Forbidden,
    HeldForReview,
    MatchmakerError,
    NotFound,
    RateLimited,
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
    PartnerProfile,
    Queued,
    Reported,
    RingEnded,
    Ringing,
    SessionClosed,
    SessionEvent,
    TicketClosed,
)
from duet.services.matchmaker.metrics import MatchmakerMetrics
from duet.services.matchmaker.moderation_server import ModerationServicer
from duet.services.matchmaker.ports import EdgeInfo, PeerError
from duet.services.matchmaker.preferences import InvalidPreferences, Preferences, Scope, checked_preferences
from duet.services.matchmaker.remote_peers import EdgeClients, RoutingClient
from duet.services.matchmaker.session_state import ClientSession
from duet.services.metrics.exposition import DEFAULT_METRICS_HOST, MetricsServer
from duet.services.rpc.auth import AuthInterceptor, current_principal
from duet.services.rpc.errors import map_errors
from duet.services.rpc.server import start_server
from duet.services.store.postgres import Store
from duet.services.store.records import CallRow, ClockOffset
from duet.v1 import common_pb2, matchmaker_pb2, matchmaker_pb2_grpc, moderation_pb2_grpc

logger = logging.getLogger("duet.matchmaker.server")

# What a client is told for each kind of refusal (keyed by Exception for map_errors).
STATUS: dict[type[Exception], grpc.StatusCode] = {
    BadRequest: grpc.StatusCode.INVALID_ARGUMENT,
    WrongState: grpc.StatusCode.FAILED_PRECONDITION,
    NotFound: grpc.StatusCode.NOT_FOUND,
    Forbidden: grpc.StatusCode.PERMISSION_DENIED,
    Unavailable: grpc.StatusCode.UNAVAILABLE,
    RateLimited: grpc.StatusCode.RESOURCE_EXHAUSTED,
    HeldForReview: grpc.StatusCode.PERMISSION_DENIED,
}

# Refusals after which the session goes on (an Error message, the stream stays open), by request:
# a person can act on them without losing their session and warm leg. Any other refusal ends the stream.
KEEPS_SESSION: dict[str, tuple[type[Exception], ...]] = {
    "find_partner": (InvalidPreferences, RateLimited, HeldForReview),
    "next": (InvalidPreferences, RateLimited, HeldForReview),
    "block": (MatchmakerError,),
    "report": (MatchmakerError,),
    "add_friend": (MatchmakerError,),
    "call_friend": (MatchmakerError,),
    "answer_call": (MatchmakerError,),
    "cancel_call": (MatchmakerError,),
    "clock_echo": (BadRequest,),
}

_SCOPES = {
    matchmaker_pb2.SCOPE_UNSPECIFIED: Scope.ANYWHERE,
    matchmaker_pb2.SCOPE_ANYWHERE: Scope.ANYWHERE,
    matchmaker_pb2.SCOPE_NEAR: Scope.NEAR,
}


@dataclass(frozen=True)
class ErrorEvent:
    """A refusal the session survives: sent as an Error message."""

    code: grpc.StatusCode
    message: str
    request: str


@dataclass(frozen=True)
class Abort:
    """End the stream with this status, after the events queued before it."""

    code: grpc.StatusCode
    details: str


def status_of(exc: MatchmakerError) -> grpc.StatusCode:
    for kind, code in STATUS.items():
        if isinstance(exc, kind):
            return code
    return grpc.StatusCode.INTERNAL


def preferences_from(message: matchmaker_pb2.Preferences, field: str) -> Preferences:
    """The protobuf preferences as checked values; InvalidPreferences names the field and the rule."""
    if message.scope not in _SCOPES:
        raise InvalidPreferences(f"{field}.scope: {message.scope} is not a known scope (SCOPE_NEAR or SCOPE_ANYWHERE)")
    return checked_preferences(
        languages=message.languages,
        interests=message.interests,
        gender=message.gender,
        want_genders=message.want_genders,
        age_band=message.age_band,
        want_age_bands=message.want_age_bands,
        scope=_SCOPES[message.scope],
        field=field,
    )


def abort_for(exc: Exception) -> Abort:
    """The status a session ends with when handling a client message raised ``exc``."""
    if isinstance(exc, WrongUser):
        return Abort(grpc.StatusCode.UNAUTHENTICATED, str(exc))
    for kind, code in STATUS.items():
        if isinstance(exc, kind):
            return Abort(code, str(exc))
    if isinstance(exc, PeerError):
        # The core handles its peers' failures; one that slips through is still theirs, not a bug here.
        return Abort(grpc.StatusCode.UNAVAILABLE, f"a backing service failed: {exc}")
    return Abort(grpc.StatusCode.INTERNAL, f"session failed unexpectedly: {exc!r}")


def peer_ip(context: grpc.aio.ServicerContext, trust_forwarded_for: bool) -> str:
    """The client's address: the proxy-supplied one when trusted, else the TCP peer."""
    if trust_forwarded_for:
        for key, value in context.invocation_metadata() or ():
            if key == "x-forwarded-for" and value:
                return str(value).split(",")[0].strip()
    peer = context.peer() or ""
    kind, _, rest = peer.partition(":")
    if kind == "ipv4":
        return rest.rpartition(":")[0]
    if kind == "ipv6":
        return rest.rpartition(":")[0].strip("[]").replace("%5B", "").replace("%5D", "")
    return "127.0.0.1"


# -- core values -> protobuf ---------------------------------------------------


def edge_ref(edge: EdgeInfo) -> common_pb2.EdgeRef:
    return common_pb2.EdgeRef(
        edge_id=edge.edge_id,
        number=edge.number,
        region=edge.region,
        control_address=edge.control_address,
        backbone_address=edge.backbone_address,
        media_host=edge.media_host,
        state=f"EDGE_STATE_{edge.state.name}",  # protobuf takes an enum value by name
    )


def stage_times(stages: Mapping[str, float]) -> common_pb2.StageTimes:
    """Stage dict (as stored) -> StageTimes; unknown keys are ignored."""
    fields = common_pb2.StageTimes.DESCRIPTOR.fields_by_name
    return common_pb2.StageTimes(**{k: float(v) for k, v in stages.items() if k in fields})


def friend_message(friend: Friend) -> matchmaker_pb2.Friend:
    return matchmaker_pb2.Friend(
        user_id=friend.user_id,
        display_name=friend.display_name,
        online=friend.online,
        busy=friend.busy,
        since=friend.since,
    )


def profile_message(profile: PartnerProfile) -> matchmaker_pb2.PartnerProfile:
    return matchmaker_pb2.PartnerProfile(
        display_name=profile.display_name,
        region=profile.region,
        shared_interests=profile.shared_interests,
        languages=profile.languages,
    )


def server_message(event: SessionEvent) -> matchmaker_pb2.ServerMessage:
    match event:
        case EdgeAssigned():
            return matchmaker_pb2.ServerMessage(
                edge_assigned=matchmaker_pb2.EdgeAssigned(
                    session_id=event.session_id,
                    edge=edge_ref(event.edge),
                    reason=event.reason,
                    edge_assigned=event.assigned_at,
                )
            )
        case LegAnswered():
            return matchmaker_pb2.ServerMessage(
                answer=matchmaker_pb2.LegAnswer(leg_id=event.leg_id, sdp=event.answer_sdp)
            )
        case Queued():
            return matchmaker_pb2.ServerMessage(
                queued=matchmaker_pb2.Queued(
                    ticket_id=event.ticket_id,
                    queued=event.queued_at,
                    position=event.position,
                    estimated_wait_ms=event.estimated_wait_ms,
                    expires=event.expires_at,
                )
            )
        case Matched():
            partner = event.partner
            return matchmaker_pb2.ServerMessage(
                matched=matchmaker_pb2.Matched(
                    call_id=event.call_id,
                    partner_display_name=event.partner_display_name,
                    partner_region=event.partner_region,
                    route=event.route,
                    route_rtt_ms=event.route_rtt_ms,
                    stages=stage_times(event.stages),
                    partner=None if partner is None else profile_message(partner),
                    predicted_connect_ms=event.predicted_connect_ms,
                    friend_call=event.friend_call,
                )
            )
        case TicketClosed():
            return matchmaker_pb2.ServerMessage(
                ticket_closed=matchmaker_pb2.TicketClosed(ticket_id=event.ticket_id, reason=event.reason)
            )
        case HeartbeatAck():
            return matchmaker_pb2.ServerMessage(
                heartbeat_ack=matchmaker_pb2.HeartbeatAck(
                    server_time=event.server_time,
                    ticket_id=event.ticket_id,
                    position=event.position,
                    estimated_wait_ms=event.estimated_wait_ms,
                )
            )
        case Blocked():
            return matchmaker_pb2.ServerMessage(blocked=matchmaker_pb2.Blocked(call_id=event.call_id))
        case Reported():
            return matchmaker_pb2.ServerMessage(reported=matchmaker_pb2.Reported(call_id=event.call_id))
        case CallEnded():
            return matchmaker_pb2.ServerMessage(
                call_ended=matchmaker_pb2.CallEnded(call_id=event.call_id, reason=event.reason)
            )
        case FriendRequested():
            return matchmaker_pb2.ServerMessage(
                friend_requested=matchmaker_pb2.FriendRequested(call_id=event.call_id, friends=event.friends)
            )
        case FriendAdded():
            return matchmaker_pb2.ServerMessage(
                friend_added=matchmaker_pb2.FriendAdded(friend=friend_message(event.friend), call_id=event.call_id)
            )
        case Ringing():
            return matchmaker_pb2.ServerMessage(
                ringing=matchmaker_pb2.Ringing(
                    request_id=event.request_id, friend=friend_message(event.friend), expires=event.expires_at
                )
            )
        case IncomingCall():
            return matchmaker_pb2.ServerMessage(
                incoming_call=matchmaker_pb2.IncomingCall(
                    request_id=event.request_id,
                    caller=profile_message(event.caller),
                    caller_user_id=event.caller_user_id,
                    expires=event.expires_at,
                )
            )
        case RingEnded():
            return matchmaker_pb2.ServerMessage(
                ring_ended=matchmaker_pb2.RingEnded(request_id=event.request_id, reason=event.reason)
            )
        case EdgeLost():
            return matchmaker_pb2.ServerMessage(
                edge_lost=matchmaker_pb2.EdgeLost(edge_id=event.edge_id, reason=event.reason)
            )
        case ClockProbe():
            return matchmaker_pb2.ServerMessage(
                clock_probe=matchmaker_pb2.ClockProbe(probe_id=event.probe_id, server_send=event.server_send)
            )


def _call_side(
    user: str, edge: str, leg: str, stages: dict[str, float], clock: ClockOffset | None
) -> matchmaker_pb2.CallSide:
    first = stages.get("first_frame", 0.0)
    return matchmaker_pb2.CallSide(
        clock_synced=clock is not None,
        clock_offset_ms=clock.offset_ms if clock else 0.0,
        clock_uncertainty_ms=clock.uncertainty_ms if clock else 0.0,
        user_id=user,
        edge_id=edge,
        leg_id=leg,
        stages=stage_times(stages),
        connect_ms=first - stages["matched"] if first and stages.get("matched") else 0.0,
        total_ms=first - stages["queued"] if first and stages.get("queued") else 0.0,
    )


def call_record(row: CallRow) -> matchmaker_pb2.CallRecord:
    return matchmaker_pb2.CallRecord(
        call_id=row.call_id,
        a=_call_side(row.user_a, row.edge_a, row.leg_a, row.stages_a, row.clock_a),
        b=_call_side(row.user_b, row.edge_b, row.leg_b, row.stages_b, row.clock_b),
        route=row.route,
        route_rtt_ms=row.route_rtt_ms,
        state=row.state,
        end_reason=row.end_reason or "",
        created_at=(row.created_at or 0.0) * 1000,
        ended_at=(row.ended_at or 0.0) * 1000,
        kind=row.kind,
        duration_ms=row.duration_ms or 0.0,
    )


# -- the service -----------------------------------------------------------------

Outgoing = SessionEvent | SessionClosed | NoEdge | Abort | ErrorEvent


@dataclass
class _Stream:
    """What the reader learns that the writer needs when the stream ends."""

    session: ClientSession | None = None
    end: str = "stream closed"


class WrongUser(Exception):
    """A Hello that names a user other than the one the stream's token is for."""


class MatchmakerServicer(matchmaker_pb2_grpc.MatchmakerServicer):
    def __init__(self, matchmaker: Matchmaker, *, trust_forwarded_for: bool = False) -> None:
        self.mm = matchmaker
        self.trust_forwarded_for = trust_forwarded_for

    async def Session(
        self, request_iterator: AsyncIterator[matchmaker_pb2.ClientMessage], context: grpc.aio.ServicerContext
    ) -> AsyncIterator[matchmaker_pb2.ServerMessage]:
        outbox: asyncio.Queue[Outgoing] = asyncio.Queue()
        stream = _Stream()
        principal = current_principal()
        if not isinstance(principal, UserClaims):  # the interceptor lets only user tokens through
            await context.abort(grpc.StatusCode.UNAUTHENTICATED, "a Session needs a user token")
        assert isinstance(principal, UserClaims)
        reader = asyncio.create_task(self._read(request_iterator, context, outbox, stream, principal.user_id))
        try:
            while True:
                item = await outbox.get()
                if isinstance(item, SessionClosed):
                    break
                elif isinstance(item, Abort):
                    await context.abort(item.code, item.details)  # raises
                elif isinstance(item, NoEdge):
                    await context.abort(grpc.StatusCode.UNAVAILABLE, item.reason)  # raises
                elif isinstance(item, ErrorEvent):
                    yield matchmaker_pb2.ServerMessage(
                        error=matchmaker_pb2.Error(code=item.code.name, message=item.message, request=item.request)
                    )
                else:
                    yield server_message(item)
        finally:
            reader.cancel()
            await asyncio.gather(reader, return_exceptions=True)
            if stream.session is not None:
                await asyncio.shield(self.mm.close_session(stream.session, stream.end))

    async def _read(
        self,
        requests: AsyncIterator[matchmaker_pb2.ClientMessage],
        context: grpc.aio.ServicerContext,
        outbox: asyncio.Queue[Outgoing],
        stream: _Stream,
        user_id: str,
    ) -> None:
        """``user_id``: whom the stream's token proved; the session is theirs whatever Hello says."""
        try:
            session = None
            async for msg in requests:
                kind = msg.WhichOneof("msg")
                if session is None:
                    if kind != "hello":
                        raise BadRequest("the first message on a Session stream must be hello")
                    if msg.hello.user_id and msg.hello.user_id != user_id:
                        raise WrongUser(f"token is for user {user_id}, not {msg.hello.user_id}")
                    session = await self.mm.open_session(
                        user_id,
                        msg.hello.display_name,
                        peer_ip(context, self.trust_forwarded_for),
                        outbox,
                        clock_probes=msg.hello.clock_probes,
                    )
                    stream.session = session
                    continue
                if kind == "leave":
                    stream.end = "leave"
                    break
                try:
                    await self._handle(session, kind, msg)
                except MatchmakerError as exc:
                    if kind is None or not isinstance(exc, KEEPS_SESSION.get(kind, ())):
                        raise
                    logger.info("session %s: %s refused: %s", session.session_id[:8], kind, exc)
                    outbox.put_nowait(ErrorEvent(status_of(exc), str(exc), kind))
            outbox.put_nowait(SessionClosed())
        except asyncio.CancelledError:
            raise
        except Exception as exc:
            abort = abort_for(exc)
            if abort.code == grpc.StatusCode.INTERNAL:
                logger.exception("session failed")
            elif isinstance(exc, PeerError):
                logger.warning("session ended by a downstream failure: %s", exc)
            else:
                logger.info("session error: %s", exc)
            outbox.put_nowait(abort)

    async def _handle(self, session: ClientSession, kind: str | None, msg: matchmaker_pb2.ClientMessage) -> None:
        """One client message after Hello (Leave is the reader's)."""
        if kind == "hello":
            raise BadRequest("hello was already sent on this stream")
        elif kind == "offer":
            await self.mm.attach_leg(session, msg.offer.sdp)
        elif kind == "find_partner":
            find = msg.find_partner
            prefs = (
                preferences_from(find.preferences, "find_partner.preferences") if find.HasField("preferences") else None
            )
            await self.mm.find_partner(session, prefs)
        elif kind == "next":
            prefs = (
                preferences_from(msg.next.preferences, "next.preferences") if msg.next.HasField("preferences") else None
            )
            await self.mm.next(session, prefs)
        elif kind == "cancel":
            await self.mm.cancel(session)
        elif kind == "heartbeat":
            self.mm.heartbeat(session)
        elif kind == "block":
            await self.mm.block(session, msg.block.call_id)
        elif kind == "report":
            await self.mm.report(session, msg.report.call_id, msg.report.reason)
        elif kind == "add_friend":
            await self.mm.add_friend(session, msg.add_friend.call_id)
        elif kind == "call_friend":
            await self.mm.call_friend(session, msg.call_friend.user_id)
        elif kind == "answer_call":
            await self.mm.answer_call(session, msg.answer_call.request_id, msg.answer_call.accept)
        elif kind == "cancel_call":
            await self.mm.cancel_call(session, msg.cancel_call.request_id)
        elif kind == "hang_up":
            await self.mm.hang_up(session)
        elif kind == "clock_echo":
            echo = msg.clock_echo
            self.mm.clock_echo(session, echo.probe_id, echo.client_receive, echo.client_send)
        elif kind == "connect_report":
            report = msg.connect_report
            # Only the stages the client set: proto3 leaves the others at 0.
            stages = {f.name: v for f, v in report.stages.ListFields()}
            await self.mm.connect_report(session, report.call_id, stages, report.connected)
        else:
            raise BadRequest("empty ClientMessage: set one of its fields")

    @map_errors(STATUS)
    async def GetCall(
        self, request: matchmaker_pb2.GetCallRequest, context: grpc.aio.ServicerContext
    ) -> matchmaker_pb2.CallRecord:
        row = await self.mm.get_call(request.call_id)
        principal = current_principal()
        # Users read only their own calls; the policy lets only users and trusted services this far.
        if principal is None or (
            isinstance(principal, UserClaims) and principal.user_id not in (row.user_a, row.user_b)
        ):
            raise Forbidden(f"call '{request.call_id}' is not one of yours")
        return call_record(row)

    @map_errors(STATUS)
    async def ListCalls(
        self, request: matchmaker_pb2.ListCallsRequest, context: grpc.aio.ServicerContext
    ) -> matchmaker_pb2.ListCallsResponse:
        rows = await self.mm.list_calls(request.limit, request.user_id)
        return matchmaker_pb2.ListCallsResponse(calls=[call_record(r) for r in rows])

    @map_errors(STATUS)
    async def ListFriends(
        self, request: matchmaker_pb2.ListFriendsRequest, context: grpc.aio.ServicerContext
    ) -> matchmaker_pb2.ListFriendsResponse:
        friends = await self.mm.list_friends(_user_of_token())
        return matchmaker_pb2.ListFriendsResponse(friends=[friend_message(f) for f in friends])

    @map_errors(STATUS)
    async def RemoveFriend(
        self, request: matchmaker_pb2.RemoveFriendRequest, context: grpc.aio.ServicerContext
    ) -> matchmaker_pb2.RemoveFriendResponse:
        await self.mm.remove_friend(_user_of_token(), request.user_id)
        return matchmaker_pb2.RemoveFriendResponse()


def _user_of_token() -> str:
    """The user a friends RPC acts for: always the token's own (the policy admits only user tokens)."""
    principal = current_principal()
    if not isinstance(principal, UserClaims):
        raise Forbidden("friends are a user's own: call with a user token")
    return principal.user_id


async def serve_matchmaker(
    routing_address: str,
    database: str,
    *,
    secrets: AuthSecrets,
    token: str,
    bind: str = "127.0.0.1:0",
    trust_forwarded_for: bool = False,
    config: MatchConfig | None = None,
    stop: asyncio.Event | None = None,
    ready: asyncio.Future[str] | None = None,
    metrics_port: int | None = None,
    metrics_host: str = DEFAULT_METRICS_HOST,
) -> None:
    """Serve until ``stop`` is set. ``secrets``: the user-token secret (clients' tokens) and the
    service-token secret (ops tokens on GetCall); ``token``: the matchmaker's own service token
    (role matchmaker), presented to the routing service and the edges. ``metrics_port`` (0 = any
    free) also serves Prometheus metrics (None: off)."""
    stop = stop or asyncio.Event()
    secrets.require_user("the matchmaker verifies its clients' tokens with it")
    secrets.require_service("the matchmaker verifies ops tokens with it")
    store = await Store.open(database)
    routing = RoutingClient(routing_address, token)
    edges = EdgeClients(token)
    metrics = MatchmakerMetrics(lambda: mm.pool.waiting())
    # The PostgreSQL Store is a MatchStore, SafetyStore and FriendStore by shape alone; mypy checks it here.
    mm = Matchmaker(store, routing, edges, config=config, safety=store, friends=store, telemetry=metrics)
    mm.start()
    servicer = MatchmakerServicer(mm, trust_forwarded_for=trust_forwarded_for)
    moderation = ModerationServicer(store, mm)

    def add_servicers(server: grpc.aio.Server) -> None:
        matchmaker_pb2_grpc.add_MatchmakerServicer_to_server(servicer, server)
        moderation_pb2_grpc.add_ModerationServicer_to_server(moderation, server)

    async with contextlib.AsyncExitStack() as extras:
        try:
            server, address = await start_server(
                bind,
                add_servicers,
                interceptors=[AuthInterceptor(secrets)],
            )
        except BaseException:
            await mm.stop()
            await store.close()
            raise
        edge_watch = asyncio.create_task(watch_edges(routing_address, token, mm), name="edge membership")
        try:
            scrape = ""
            if metrics_port is not None:
                url = await extras.enter_async_context(
                    MetricsServer(metrics.registry, host=metrics_host, port=metrics_port)
                )
                scrape = f" metrics={url}"
            logger.info("matchmaker serving on %s", address)
            print(f"matchmaker ready address={address}{scrape}", flush=True)
            if ready is not None:
                ready.set_result(address)
            await stop.wait()
        finally:
            logger.info("matchmaker shutting down")
            edge_watch.cancel()
            await asyncio.gather(edge_watch, return_exceptions=True)
            await mm.stop()
            await server.stop(grace=1.0)
            await routing.close()
            await edges.close()
            await store.close()

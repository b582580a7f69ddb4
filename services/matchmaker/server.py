"""The matchmaker process: the Session stream, GetCall and ListCalls over ``Matchmaker``.

The one place where the core meets protobuf: client messages become core
calls, core events become ServerMessages, call records become CallRecords,
and each kind of domain error becomes its status code.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncIterator
from dataclasses import dataclass

import grpc

from duet.services.auth.bearer import AUTHORIZATION, parse_bearer
from duet.services.auth.tokens import UserClaims
from duet.services.matchmaker.core import STOPPING_REASON, Matchmaker
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
    NoEdge,
    SessionClosed,
    SessionEvent,
    ShardMoved,
)
from duet.services.matchmaker.ports import PeerError
from duet.services.matchmaker.preferences import InvalidPreferences, Preferences, Scope, checked_preferences
from duet.services.matchmaker.replicas.forwarded_for import forwarded_client_ip
from duet.services.matchmaker.replicas.forwarder import OwnerStreamFailed, SessionForwarder
from duet.services.matchmaker.replicas.ownership import ShardOwner, ShardOwnership
from duet.services.matchmaker.server_messages import call_record, friend_message, server_message
from duet.services.matchmaker.session_state import ClientSession
from duet.services.rpc.auth import current_principal
from duet.services.rpc.errors import map_errors
from duet.v1 import matchmaker_pb2, matchmaker_pb2_grpc

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


# -- the service -----------------------------------------------------------------

Outgoing = SessionEvent | SessionClosed | NoEdge | ShardMoved | Abort | ErrorEvent


@dataclass
class _Stream:
    """What the reader learns that the writer needs when the stream ends."""

    session: ClientSession | None = None
    end: str = "stream closed"
    ending: bool = False  # the writer is ending the stream with a status: the reader's failure after it is no news


class WrongUser(Exception):
    """A Hello that names a user other than the one the stream's token is for."""


@dataclass(frozen=True)
class Replicas:
    """What a replica needs to serve only its own shards and forward the rest (docs/replicas.md)."""

    ownership: ShardOwnership
    forwarder: SessionForwarder


class MatchmakerServicer(matchmaker_pb2_grpc.MatchmakerServicer):
    def __init__(
        self,
        matchmaker: Matchmaker,
        *,
        trust_forwarded_for: bool = False,
        service_secret: bytes | None = None,
        replicas: Replicas | None = None,
    ) -> None:
        """``service_secret`` verifies a forwarding replica's token (without it, forwarded addresses are
        ignored); ``replicas``: serve only owned shards and forward other clients' streams to their owner."""
        self.mm = matchmaker
        self.trust_forwarded_for = trust_forwarded_for
        self.service_secret = service_secret
        self.replicas = replicas
        self._closing: set[asyncio.Task[None]] = set()  # streams' session closes still running
        # A clean stop began: new streams are refused and forwarded ones end, both telling the client to reconnect.
        self.stopping = False

    async def stop_serving(self) -> None:
        """The first step of a clean stop, as a death would be for the queue (docs/replicas.md).

        New streams are refused; every session here ends UNAVAILABLE "reconnect (your place in the
        queue is kept)" with its ticket left open in the store and its live call ended ("matchmaker
        shutting down"); streams forwarded to another replica end the same way, and their owner keeps
        their tickets. The caller then lets the shards go and stops the gRPC server.
        """
        self.stopping = True
        await self.mm.stop()
        if self.replicas is not None:
            # Closing the channels cancels the owners' streams under the forwarding handlers.
            await self.replicas.forwarder.close()

    async def _owner_elsewhere(self, client_ip: str) -> tuple[str, ShardOwner | None] | None:
        """None when this replica serves the client; else its shard and that shard's live owner (None: nobody yet)."""
        if self.replicas is None:
            return None
        shards = self.mm.shard_map
        if shards.single:
            shard = shards.shards[0]
        else:
            try:
                shard = shards.shard_of((await self.mm.routing.pick_ingress(client_ip)).edge.region)
            except PeerError:
                return None  # served here: the session itself then says that no edge can take it
        ownership = self.replicas.ownership
        if ownership.owns(shard) and shard in self.mm.serving_shards:
            return None
        if ownership.owns(shard):
            return shard, None  # just taken over: its tickets are being restored
        owner = ownership.owner_of(shard)
        if owner is not None and owner.replica_id == ownership.replica_id:
            owner = None  # our own stale record: the shard is being taken over
        return shard, owner

    async def _forward(
        self,
        shard: str,
        owner: ShardOwner,
        requests: AsyncIterator[matchmaker_pb2.ClientMessage],
        context: grpc.aio.ServicerContext,
        client_ip: str,
    ) -> AsyncIterator[matchmaker_pb2.ServerMessage]:
        assert self.replicas is not None
        token = ""
        for key, value in context.invocation_metadata() or ():
            if key == AUTHORIZATION:
                token = parse_bearer(str(value))
        try:
            async for message in self.replicas.forwarder.forward(
                owner.address, requests, user_token=token, client_ip=client_ip
            ):
                yield message
        except asyncio.CancelledError:
            task = asyncio.current_task()
            if not self.stopping or (task is not None and task.cancelling()):
                raise  # this handler itself is being cancelled
            # The clean stop closed the forwarder's channels, which cancels the owner's stream under us.
            await context.abort(grpc.StatusCode.UNAVAILABLE, STOPPING_REASON)
        except OwnerStreamFailed as exc:
            if self.stopping:  # this replica ended the owner's stream: the owner is fine, and keeps the ticket
                await context.abort(grpc.StatusCode.UNAVAILABLE, STOPPING_REASON)
            if exc.code in (grpc.StatusCode.UNAVAILABLE, grpc.StatusCode.CANCELLED, grpc.StatusCode.UNKNOWN):
                logger.info("forwarded session to %s (shard %s) failed: %s", owner.replica_id, shard, exc)
                await context.abort(
                    grpc.StatusCode.UNAVAILABLE,
                    f"the matchmaker replica serving your shard ({shard}) went away: {exc.details}; "
                    "reconnect (your place in the queue is kept)",
                )
            await context.abort(exc.code, exc.details)

    async def Session(
        self, request_iterator: AsyncIterator[matchmaker_pb2.ClientMessage], context: grpc.aio.ServicerContext
    ) -> AsyncIterator[matchmaker_pb2.ServerMessage]:
        outbox: asyncio.Queue[Outgoing] = asyncio.Queue()
        stream = _Stream()
        if self.stopping:
            await context.abort(grpc.StatusCode.UNAVAILABLE, STOPPING_REASON)
        principal = current_principal()
        if not isinstance(principal, UserClaims):  # the interceptor lets only user tokens through
            await context.abort(grpc.StatusCode.UNAUTHENTICATED, "a Session needs a user token")
        assert isinstance(principal, UserClaims)
        forwarded_ip = forwarded_client_ip(context.invocation_metadata(), self.service_secret)
        client_ip = forwarded_ip or peer_ip(context, self.trust_forwarded_for)
        # A stream a replica forwarded is served here, whatever our shards: it is never forwarded twice.
        elsewhere = None if forwarded_ip is not None else await self._owner_elsewhere(client_ip)
        if elsewhere is not None:
            shard, owner = elsewhere
            if owner is None:
                await context.abort(
                    grpc.StatusCode.UNAVAILABLE,
                    f"no matchmaker replica serves your shard ({shard}) right now: it is being taken over; "
                    "reconnect in a moment",
                )
            assert owner is not None
            async for message in self._forward(shard, owner, request_iterator, context, client_ip):
                yield message
            return
        reader = asyncio.create_task(
            self._read(
                request_iterator, context, outbox, stream, principal.user_id, client_ip, forwarded_ip is not None
            )
        )
        try:
            while True:
                item = await outbox.get()
                if isinstance(item, SessionClosed):
                    break
                elif isinstance(item, Abort):
                    await context.abort(item.code, item.details)  # raises
                elif isinstance(item, NoEdge | ShardMoved):
                    stream.ending = True
                    await context.abort(grpc.StatusCode.UNAVAILABLE, item.reason)  # raises
                elif isinstance(item, ErrorEvent):
                    yield matchmaker_pb2.ServerMessage(
                        error=matchmaker_pb2.Error(code=item.code.name, message=item.message, request=item.request)
                    )
                else:
                    yield server_message(item)
        finally:
            reader.cancel()
            # The close runs to its end even if this handler is cancelled meanwhile: a client's cancel
            # can follow its half-close, and a session left open here would stay in the pool for good.
            closing = asyncio.create_task(self._close_stream(reader, stream, forwarded=forwarded_ip is not None))
            self._closing.add(closing)
            closing.add_done_callback(self._closing.discard)
            await asyncio.shield(closing)

    async def _close_stream(self, reader: asyncio.Task[None], stream: _Stream, *, forwarded: bool) -> None:
        await asyncio.gather(reader, return_exceptions=True)
        if stream.session is not None:
            # A forwarded stream that ends without Leave may have lost its forwarding replica: keep the ticket.
            keep = forwarded and stream.end != "leave"
            await self.mm.close_session(stream.session, stream.end, keep_ticket=keep)

    async def _read(
        self,
        requests: AsyncIterator[matchmaker_pb2.ClientMessage],
        context: grpc.aio.ServicerContext,
        outbox: asyncio.Queue[Outgoing],
        stream: _Stream,
        user_id: str,
        client_ip: str,
        forwarded: bool,
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
                        client_ip,
                        outbox,
                        clock_probes=msg.hello.clock_probes,
                        forwarded=forwarded,
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
            if stream.ending:
                return  # e.g. reading a stream the writer just aborted: the client has its status already
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

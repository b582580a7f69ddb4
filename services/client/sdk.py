"""The reference Duet client and load generator.

One :class:`DuetClient` is one user. It speaks the matchmaker's bidirectional
``Session`` stream over real gRPC and holds one warm WebRTC leg to its ingress
edge (docs/architecture.md, "The connect path"):

    connect()       Hello -> EdgeAssigned; LegOffer -> LegAnswer; ICE + DTLS
                    with the edge while nobody waits (leg_connected)
    find_partner()  FindPartner -> Queued -> Matched -> first partner frame
                    decoded (first_frame) -> ConnectReport
    next()          Next on the same leg: no new PeerConnection, no ICE, no DTLS
    leave()         Leave; close the leg, the stream and the channel

The camera is a :class:`~services.client.synthetic.SyntheticCamera` whose tag
identifies this client, so "the partner's first frame" is the first decoded
frame whose marker carries a tag other than our own (and other than the
previous partner's, whose frames may still be in flight after "next").

Inside, every input is an event on one :class:`SessionInbox`: server messages
(from the stream reader task), the leg's state changes, the partner's first
decoded frame (from the video consumer task) and the end of the stream. Each
step of the protocol waits on that one inbox for what it expects, so a call
ending, the stream failing, the leg failing or a timeout all surface as a
:class:`DuetClientError` wherever the client happens to be waiting.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Coroutine, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import av
import grpc
from aiortc import RTCConfiguration, RTCPeerConnection, RTCRtpSender, RTCSessionDescription
from aiortc.mediastreams import MediaStreamError, MediaStreamTrack

from duet.edge.ice_hosts import ice_restricted_from_env
from duet.services.devkit.synthetic_media import FrameMarker, SyntheticCamera, SyntheticMicrophone, read_marker
from duet.v1 import common_pb2, matchmaker_pb2, matchmaker_pb2_grpc

__all__ = [
    "CLIENT_STAGES",
    "SERVER_STAGES",
    "STAGES",
    "CallResult",
    "DuetClient",
    "DuetClientError",
    "LegState",
    "PartnerFrame",
    "SessionInbox",
    "StreamEnded",
    "build_call_result",
    "client_report_stages",
    "event_kind",
    "merge_stages",
    "now_ms",
    "stages_from_proto",
    "stages_to_proto",
]

logger = logging.getLogger("duet.client")

# The connect-path stages, in order (docs/architecture.md).
STAGES = (
    "session_open",
    "edge_assigned",
    "leg_connected",
    "queued",
    "matched",
    "route_picked",
    "bridged",
    "first_packet_at_edge",
    "first_frame",
)
# Timed by this client on its own clock ...
CLIENT_STAGES = ("session_open", "edge_assigned", "leg_connected", "first_frame")
# ... and by the matchmaker (and edges), reported in Matched.stages.
SERVER_STAGES = ("queued", "matched", "route_picked", "bridged", "first_packet_at_edge")

# The codecs an edge leg is pinned to (edge/leg.py LEG_CODECS); offering only
# these keeps the SDP small and the negotiation unambiguous.
LEG_CODECS = {"video": "video/VP8", "audio": "audio/opus"}


def now_ms() -> float:
    """Wall clock, epoch milliseconds: the unit of every stage timestamp."""
    return time.time() * 1000


class DuetClientError(Exception):
    """The session could not do what was asked; says why (gRPC status, call end, timeout)."""

    def __init__(
        self,
        message: str,
        *,
        code: grpc.StatusCode | None = None,
        details: str | None = None,
        reason: str | None = None,
    ) -> None:
        super().__init__(message)
        self.code = code  # gRPC status, when the stream failed
        self.details = details  # gRPC status message
        self.reason = reason  # CallEnded.reason, when a call ended under us

    @classmethod
    def from_rpc(cls, exc: grpc.aio.AioRpcError, doing: str) -> DuetClientError:
        code = exc.code()
        details = exc.details() or ""
        name = code.name if code is not None else "UNKNOWN"
        return cls(f"{doing}: {name}: {details}", code=code, details=details)


# --- events on the inbox -----------------------------------------------------


@dataclass(frozen=True)
class PartnerFrame:
    """The first decoded frame of a (new) partner since the video watch was armed."""

    marker: FrameMarker
    at_ms: float  # when this client had it decoded
    frames_decoded: int  # frames the decoder produced since arming, this one included
    watch: int = 0  # which arming (find_partner/next) it answers; stale ones are dropped


@dataclass(frozen=True)
class LegState:
    """The leg's RTCPeerConnection changed connectionState."""

    state: str
    at_ms: float


@dataclass(frozen=True)
class StreamEnded:
    """The Session stream is over (server closed it, or it failed)."""

    error: DuetClientError


Event = matchmaker_pb2.ServerMessage | PartnerFrame | LegState | StreamEnded


def event_kind(event: Event) -> str:
    """ "edge_assigned", "answer", "queued", "matched", "call_ended" (the ServerMessage oneof),
    or "partner_frame", "leg_state", "stream_ended"."""
    if isinstance(event, PartnerFrame):
        return "partner_frame"
    if isinstance(event, LegState):
        return "leg_state"
    if isinstance(event, StreamEnded):
        return "stream_ended"
    return event.WhichOneof("msg") or "empty"


class SessionInbox:
    """Everything that happens to a session, in arrival order, for whoever waits on it.

    :meth:`expect` returns the next event of the wanted kinds and turns the
    rest into errors or log lines:

    - a CallEnded for a call in :attr:`finished_calls` (one we left with Next,
      or whose end we already know) is expected and skipped; any other
      CallEnded raises DuetClientError with its reason;
    - the end of the stream raises (and keeps raising for later waits);
    - the leg going "failed" or "closed" raises;
    - anything else unexpected is logged and skipped.
    """

    def __init__(self) -> None:
        self._queue: asyncio.Queue[Event] = asyncio.Queue()
        self._ended: StreamEnded | None = None
        self.finished_calls: set[str] = set()

    def put(self, event: Event) -> None:
        self._queue.put_nowait(event)

    @property
    def stream_error(self) -> DuetClientError | None:
        return self._ended.error if self._ended is not None else None

    async def expect(self, kinds: Iterable[str], *, timeout: float | None, waiting_for: str) -> Event:
        wanted = frozenset(kinds)
        loop = asyncio.get_running_loop()
        deadline = None if timeout is None else loop.time() + timeout
        while True:
            if self._queue.empty() and self._ended is not None:
                raise self._ended.error
            remaining = None if deadline is None else max(0.0, deadline - loop.time())
            try:
                event = await asyncio.wait_for(self._queue.get(), remaining)
            except TimeoutError:
                raise DuetClientError(f"timed out after {timeout:.1f} s waiting for {waiting_for}") from None
            kind = event_kind(event)
            if kind in wanted:
                return event
            if isinstance(event, StreamEnded):
                self._ended = event
                raise event.error
            if isinstance(event, LegState):
                if event.state in ("failed", "closed"):
                    raise DuetClientError(
                        f"the WebRTC leg to the edge is {event.state} (while waiting for {waiting_for})"
                    )
                continue
            if kind == "call_ended":
                ended = event.call_ended  # type: ignore[union-attr]
                if ended.call_id and ended.call_id in self.finished_calls:
                    logger.debug("call %s ended (%s), as expected", ended.call_id, ended.reason)
                    continue
                raise DuetClientError(
                    f"call {ended.call_id or '(none)'} ended while waiting for {waiting_for}: {ended.reason or 'no reason given'}",
                    reason=ended.reason,
                )
            logger.warning("ignoring %s while waiting for %s", kind, waiting_for)


# --- stage arithmetic ---------------------------------------------------------


def stages_from_proto(stages: common_pb2.StageTimes) -> dict[str, float]:
    """Every stage name -> epoch ms (0.0 = not reached)."""
    return {name: float(getattr(stages, name)) for name in STAGES}


def stages_to_proto(stages: Mapping[str, float]) -> common_pb2.StageTimes:
    return common_pb2.StageTimes(**{name: float(stages.get(name) or 0.0) for name in STAGES})


def client_report_stages(client_stages: Mapping[str, float]) -> common_pb2.StageTimes:
    """What the ConnectReport carries: only the stages this client timed itself.

    ``queued`` is left out on purpose: the matchmaker's own value is the
    authoritative one, and a client's receive time must not overwrite it.
    """
    return stages_to_proto({name: client_stages.get(name, 0.0) for name in CLIENT_STAGES})


@dataclass
class CallResult:
    """One call as seen by this client."""

    call_id: str
    partner_display_name: str
    partner_region: str
    route: list[str]
    route_rtt_ms: float
    # Every name of STAGES -> epoch ms (0.0 = not reached): this client's stages
    # plus the server's from Matched (queued is the server's, see build_call_result).
    stages: dict[str, float]
    connect_ms: float | None  # first_frame - matched
    total_ms: float | None  # first_frame - queued
    first_marker: FrameMarker | None  # what the first partner frame said
    frames_decoded: int  # frames decoded from arming (Find/Next sent) to the first partner frame, inclusive
    # What this client timed on its own clock; its "queued" is when Queued arrived.
    client_stages: dict[str, float] = field(default_factory=dict)


def merge_stages(server_stages: Mapping[str, float], client_stages: Mapping[str, float]) -> dict[str, float]:
    """All stage names: client-timed stages from the client, the rest from the server.

    ``queued`` comes from the server (Matched.stages, else Queued.queued as the
    caller passes it in server_stages) and falls back to the client's receive time.
    """
    merged = {name: 0.0 for name in STAGES}
    for name in SERVER_STAGES:
        merged[name] = float(server_stages.get(name) or 0.0)
    for name in CLIENT_STAGES:
        merged[name] = float(client_stages.get(name) or 0.0)
    if not merged["queued"]:
        merged["queued"] = float(client_stages.get("queued") or 0.0)
    return merged


def _difference(later: float, earlier: float) -> float | None:
    return later - earlier if later > 0 and earlier > 0 else None


def build_call_result(
    matched: matchmaker_pb2.Matched,
    *,
    client_stages: Mapping[str, float],
    queued_at_server: float = 0.0,
    first_frame: PartnerFrame | None,
) -> CallResult:
    """A CallResult from the Matched message, this client's stage times and the first partner frame."""
    server = stages_from_proto(matched.stages)
    if not server["queued"]:
        server["queued"] = queued_at_server
    client = dict(client_stages)
    if first_frame is not None:
        client["first_frame"] = first_frame.at_ms
    stages = merge_stages(server, client)
    return CallResult(
        call_id=matched.call_id,
        partner_display_name=matched.partner_display_name,
        partner_region=matched.partner_region,
        route=list(matched.route),
        route_rtt_ms=matched.route_rtt_ms,
        stages=stages,
        connect_ms=_difference(stages["first_frame"], stages["matched"]),
        total_ms=_difference(stages["first_frame"], stages["queued"]),
        first_marker=first_frame.marker if first_frame is not None else None,
        frames_decoded=first_frame.frames_decoded if first_frame is not None else 0,
        client_stages={name: float(v) for name, v in client.items()},
    )


# --- the client -----------------------------------------------------------------


@dataclass
class _FrameWatch:
    """Armed when the client asks for a partner: report the first frame not from these tags."""

    exclude: frozenset[int]
    frames_at_arm: int
    number: int


class DuetClient:
    """One user: a Session stream to the matchmaker and a warm WebRTC leg to its edge."""

    def __init__(
        self,
        matchmaker_address: str,
        user_id: str,
        display_name: str,
        *,
        camera_tag: int,
        client_ip: str | None = None,
        frame_timeout: float = 10.0,
        rpc_timeout: float = 10.0,
        match_timeout: float | None = 60.0,
        metadata: Sequence[tuple[str, str]] = (),
        restrict_ice: bool = True,
    ) -> None:
        """
        camera_tag: 16-bit id drawn into every frame this client sends; give
            every client a different one (the partner is told apart by it).
        client_ip: sent as ``x-forwarded-for`` metadata (a local cluster's
            matchmaker trusts it, so loopback users can seem to be anywhere).
        frame_timeout: seconds from Matched to the partner's first frame.
        rpc_timeout: seconds for each control step of connect().
        match_timeout: seconds to wait in the queue for a match (None: forever).
        metadata: more gRPC metadata for the Session call (e.g. an auth token).
        restrict_ice: gather ICE host candidates only on $DUET_ICE_HOSTS
            (default 127.0.0.1; see services.client.ice). Process-wide.
        """
        self.matchmaker_address = matchmaker_address
        self.user_id = user_id
        self.display_name = display_name
        self.camera_tag = camera_tag
        self.client_ip = client_ip
        self.frame_timeout = frame_timeout
        self.rpc_timeout = rpc_timeout
        self.match_timeout = match_timeout
        self._metadata = tuple(metadata) + ((("x-forwarded-for", client_ip),) if client_ip else ())
        self._restrict_ice = restrict_ice

        # Learned from the server.
        self.session_id: str = ""
        self.edge: common_pb2.EdgeRef | None = None
        self.edge_reason: str = ""
        self.leg_id: str = ""
        self.call_id: str | None = None  # the current (last matched) call
        # What the server's messages say we are doing (kept by the reader task):
        # waiting in the pool, and which call is live (None once it ended).
        self._queued = False
        self._live_call: str | None = None
        self.stages: dict[str, float] = {}  # client-timed stages of the session so far

        self._camera = SyntheticCamera(camera_tag)
        self._microphone = SyntheticMicrophone()
        self._inbox = SessionInbox()
        self._channel: grpc.aio.Channel | None = None
        self._call: grpc.aio.StreamStreamCall | None = None
        self._pc: RTCPeerConnection | None = None
        self._tasks: set[asyncio.Task[Any]] = set()
        self._lock = asyncio.Lock()
        self._connected = False
        self._closed = False

        # Video statistics, updated by the consumer task.
        self._watch: _FrameWatch | None = None
        self._watches = 0
        self.frames_decoded = 0  # every frame the video decoder produced
        self.unreadable_frames = 0  # frames without a valid marker (e.g. before a keyframe)
        self.partner_tag: int | None = None  # camera tag of the current partner
        self.partner_frames = 0  # frames decoded from the current partner
        self.last_marker: FrameMarker | None = None

    # -- lifecycle ---------------------------------------------------------------

    async def __aenter__(self) -> DuetClient:
        await self.connect()
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        await self.leave()

    async def connect(self) -> None:
        """Open the Session, get an edge, and bring the leg up (ICE + DTLS done)."""
        async with self._lock:
            if self._connected or self._closed:
                raise RuntimeError("connect() may be called once per DuetClient")
            try:
                await self._connect()
            except BaseException:
                await self._shutdown(send_leave=False)
                raise

    async def _connect(self) -> None:
        if self._restrict_ice:
            ice_restricted_from_env()
        self._channel = grpc.aio.insecure_channel(self.matchmaker_address)
        stub = matchmaker_pb2_grpc.MatchmakerStub(self._channel)

        self.stages["session_open"] = now_ms()
        self._call = stub.Session(metadata=self._metadata or None)
        self._spawn(self._read_server_messages(self._call), "session reader")
        await self._send(
            matchmaker_pb2.ClientMessage(
                hello=matchmaker_pb2.Hello(
                    user_id=self.user_id, display_name=self.display_name, session_open=self.stages["session_open"]
                )
            ),
            "Hello",
        )
        event = await self._inbox.expect(("edge_assigned",), timeout=self.rpc_timeout, waiting_for="EdgeAssigned")
        self.stages["edge_assigned"] = now_ms()
        assigned = event.edge_assigned  # type: ignore[union-attr]
        self.session_id = assigned.session_id
        self.edge = assigned.edge
        self.edge_reason = assigned.reason
        logger.info(
            "%s: session %s, edge %s (%s)", self.user_id, self.session_id, assigned.edge.edge_id, assigned.reason
        )

        # No STUN/TURN: edges are reached on their host candidates.
        self._pc = pc = RTCPeerConnection(RTCConfiguration(iceServers=[]))
        for track in (self._camera, self._microphone):
            transceiver = pc.addTransceiver(track, direction="sendrecv")
            codecs = RTCRtpSender.getCapabilities(track.kind).codecs
            transceiver.setCodecPreferences([c for c in codecs if c.mimeType == LEG_CODECS[track.kind]])
        pc.on("track", self._on_track)
        pc.on("connectionstatechange", self._on_connection_state)

        # aiortc gathers all candidates in setLocalDescription and puts them in the SDP.
        await pc.setLocalDescription(await pc.createOffer())
        await self._send(
            matchmaker_pb2.ClientMessage(offer=matchmaker_pb2.LegOffer(sdp=pc.localDescription.sdp)), "LegOffer"
        )
        event = await self._inbox.expect(("answer",), timeout=self.rpc_timeout, waiting_for="LegAnswer")
        answer = event.answer  # type: ignore[union-attr]
        self.leg_id = answer.leg_id
        try:
            await pc.setRemoteDescription(RTCSessionDescription(sdp=answer.sdp, type="answer"))
        except Exception as exc:  # aiortc raises ValueError / InvalidStateError / OperationError
            raise DuetClientError(f"the edge's SDP answer for leg {answer.leg_id} was rejected: {exc}") from exc

        loop = asyncio.get_running_loop()
        deadline = loop.time() + self.rpc_timeout
        while True:
            event = await self._inbox.expect(
                ("leg_state",), timeout=max(0.0, deadline - loop.time()), waiting_for="the leg to connect (ICE + DTLS)"
            )
            assert isinstance(event, LegState)
            if event.state == "connected":
                self.stages["leg_connected"] = event.at_ms
                break
            if event.state in ("failed", "closed"):
                raise DuetClientError(f"the WebRTC leg {self.leg_id} to edge {self.edge.edge_id} {event.state}")
        self._connected = True
        logger.info(
            "%s: leg %s connected in %.0f ms after session open",
            self.user_id,
            self.leg_id,
            self.stages["leg_connected"] - self.stages["session_open"],
        )

    async def find_partner(self) -> CallResult:
        """Enter the pool; return once the partner's first frame is decoded."""
        async with self._lock:
            self._check_ready()
            return await self._find_partner_unlocked()

    async def _find_partner_unlocked(self) -> CallResult:
        return await self._look_for_partner(
            matchmaker_pb2.ClientMessage(
                find_partner=matchmaker_pb2.FindPartner(leg_connected=self.stages["leg_connected"])
            ),
            "FindPartner",
        )

    async def next(self) -> CallResult:
        """End the current call (if any) and find a new partner on the same warm leg.

        When the partner already ended the call (or there is none and we are not
        queued), this enters the pool with FindPartner instead: the matchmaker
        only takes Next from a session that is in a call or in the pool.
        """
        async with self._lock:
            self._check_ready()
            if self._live_call is None and not self._queued:
                return await self._find_partner_unlocked()
            return await self._look_for_partner(matchmaker_pb2.ClientMessage(next=matchmaker_pb2.Next()), "Next")

    @property
    def in_call(self) -> bool:
        """Matched and the call not yet ended (as far as the server has told us)."""
        return self._live_call is not None

    async def wait_call_ended(self, timeout: float | None = None) -> str:
        """Wait until the current call ends (partner pressed next or left); returns the reason."""
        async with self._lock:
            self._check_ready()
            call_id = self._live_call
            if call_id is None:
                return "not in a call"
            while True:
                event = await self._inbox.expect(
                    ("call_ended",), timeout=timeout, waiting_for=f"the end of call {call_id}"
                )
                ended = event.call_ended  # type: ignore[union-attr]
                if ended.call_id == call_id:
                    self._inbox.finished_calls.add(call_id)
                    return ended.reason

    async def leave(self) -> None:
        """Say Leave, then close the leg, the stream and the channel. Safe to call twice."""
        await self._shutdown(send_leave=True)

    # -- one call ------------------------------------------------------------------

    def _check_ready(self) -> None:
        if self._closed:
            raise DuetClientError("the client has left")
        if not self._connected:
            raise RuntimeError("call connect() first")

    async def _look_for_partner(self, request: matchmaker_pb2.ClientMessage, what: str) -> CallResult:
        try:
            return await self._find(request, what)
        finally:
            self._watch = None  # fired, or given up on

    async def _find(self, request: matchmaker_pb2.ClientMessage, what: str) -> CallResult:
        if self.call_id:
            # Its end (our Next, or the partner leaving) is no error from here on.
            self._inbox.finished_calls.add(self.call_id)
        # Not a new partner: ourselves, the last partner, and whoever we decoded
        # last (the last partner's frames can still be in flight, and aiortc's
        # jitter buffer releases its last frame only when the next stream's
        # first packet arrives).
        exclude = {self.camera_tag} | {
            tag for tag in (self.partner_tag, self.last_marker.tag if self.last_marker else None) if tag is not None
        }
        # Armed before asking: media may be bridged before Matched reaches us.
        self._watches += 1
        watch = self._watch = _FrameWatch(
            exclude=frozenset(exclude), frames_at_arm=self.frames_decoded, number=self._watches
        )
        client_stages = {name: self.stages[name] for name in ("session_open", "edge_assigned", "leg_connected")}
        queued_at_server = 0.0
        early_frame: PartnerFrame | None = None

        await self._send(request, what)
        while True:
            event = await self._inbox.expect(
                ("queued", "matched", "partner_frame"), timeout=self.match_timeout, waiting_for="a match"
            )
            if isinstance(event, PartnerFrame):
                if event.watch == watch.number:
                    early_frame = event
                continue
            assert isinstance(event, matchmaker_pb2.ServerMessage)
            if event.WhichOneof("msg") == "queued":
                client_stages["queued"] = now_ms()
                queued_at_server = event.queued.queued
                logger.debug("%s: queued, ticket %s", self.user_id, event.queued.ticket_id)
                continue
            matched = event.matched
            break

        self.call_id = matched.call_id
        logger.info(
            "%s: matched with %s (%s) in call %s, route %s",
            self.user_id,
            matched.partner_display_name,
            matched.partner_region,
            matched.call_id,
            "->".join(matched.route),
        )
        first_frame = early_frame
        loop = asyncio.get_running_loop()
        deadline = loop.time() + self.frame_timeout
        while first_frame is None:
            try:
                event = await self._inbox.expect(
                    ("partner_frame",),
                    timeout=max(0.0, deadline - loop.time()),
                    waiting_for=f"the first frame of {matched.partner_display_name or 'the partner'} (call {matched.call_id})",
                )
            except DuetClientError as exc:
                if exc.code is None and exc.reason is None and self._inbox.stream_error is None:
                    try:
                        await self._report(matched.call_id, client_stages, connected=False)
                    except DuetClientError as report_exc:
                        logger.debug("%s: give-up report not sent: %s", self.user_id, report_exc)
                raise
            assert isinstance(event, PartnerFrame)
            if event.watch == watch.number:
                first_frame = event

        client_stages["first_frame"] = first_frame.at_ms
        result = build_call_result(
            matched, client_stages=client_stages, queued_at_server=queued_at_server, first_frame=first_frame
        )
        await self._report(matched.call_id, client_stages, connected=True)
        logger.info(
            "%s: first frame of call %s: connect %.0f ms, total %.0f ms",
            self.user_id,
            matched.call_id,
            result.connect_ms if result.connect_ms is not None else float("nan"),
            result.total_ms if result.total_ms is not None else float("nan"),
        )
        return result

    async def _report(self, call_id: str, client_stages: Mapping[str, float], *, connected: bool) -> None:
        await self._send(
            matchmaker_pb2.ClientMessage(
                connect_report=matchmaker_pb2.ConnectReport(
                    call_id=call_id, stages=client_report_stages(client_stages), connected=connected
                )
            ),
            "ConnectReport",
        )

    # -- the stream ----------------------------------------------------------------

    async def _send(self, message: matchmaker_pb2.ClientMessage, what: str) -> None:
        call = self._call
        if call is None:
            raise DuetClientError(f"cannot send {what}: no Session stream")
        try:
            await call.write(message)
        except grpc.aio.AioRpcError as exc:
            raise DuetClientError.from_rpc(exc, f"sending {what} failed") from exc
        except asyncio.InvalidStateError as exc:
            # The stream is already over; report how it ended.
            code = await call.code()
            details = await call.details()
            raise DuetClientError(
                f"cannot send {what}: the Session stream is over: {code.name}: {details}", code=code, details=details
            ) from exc

    async def _read_server_messages(self, call: grpc.aio.StreamStreamCall) -> None:
        try:
            async for message in call:
                kind = message.WhichOneof("msg")
                self._track_server_state(message)
                if kind == "call_ended":
                    logger.info(
                        "%s: call %s ended: %s",
                        self.user_id,
                        message.call_ended.call_id or "(none)",
                        message.call_ended.reason,
                    )
                self._inbox.put(message)
            error = DuetClientError("the matchmaker closed the Session stream", code=grpc.StatusCode.OK, details="")
        except grpc.aio.AioRpcError as exc:
            error = DuetClientError.from_rpc(exc, "the Session stream failed")
            if not self._closed:
                logger.warning("%s: %s", self.user_id, error)
        except Exception as exc:  # e.g. a message that does not parse: still end the waits
            logger.exception("%s: reading the Session stream failed", self.user_id)
            error = DuetClientError(f"reading the Session stream failed: {exc!r}")
        self._inbox.put(StreamEnded(error))

    def _track_server_state(self, message: matchmaker_pb2.ServerMessage) -> None:
        kind = message.WhichOneof("msg")
        if kind == "queued":
            self._queued = True
        elif kind == "matched":
            self._queued = False
            self._live_call = message.matched.call_id
        elif kind == "call_ended":
            ended = message.call_ended.call_id
            if not ended:
                self._queued = False  # a ticket (or a call being set up) was given up
            elif ended == self._live_call:
                self._live_call = None

    # -- media ---------------------------------------------------------------------

    def _on_connection_state(self) -> None:
        state = self._pc.connectionState if self._pc is not None else "closed"
        logger.debug("%s: leg state %s", self.user_id, state)
        self._inbox.put(LegState(state=state, at_ms=now_ms()))

    def _on_track(self, track: MediaStreamTrack) -> None:
        if track.kind == "video":
            self._spawn(self._consume_video(track), "video consumer")
        else:
            # aiortc decodes and queues every frame it receives; drain them.
            self._spawn(self._drain(track), f"{track.kind} drain")

    async def _consume_video(self, track: MediaStreamTrack) -> None:
        # Runs for the life of the leg: aiortc queues every decoded frame, unbounded.
        while True:
            try:
                frame = await track.recv()
            except MediaStreamError:
                return
            at = now_ms()
            self.frames_decoded += 1
            if not isinstance(frame, av.VideoFrame):
                continue
            try:
                marker = read_marker(frame)
            except Exception:  # never stop draining over one odd frame
                logger.exception("%s: unreadable video frame", self.user_id)
                marker = None
            if marker is None:
                self.unreadable_frames += 1
                continue
            self.last_marker = marker
            watch = self._watch
            if watch is not None and marker.tag not in watch.exclude:
                self._watch = None
                self.partner_tag = marker.tag
                self.partner_frames = 0
                self._inbox.put(
                    PartnerFrame(
                        marker=marker,
                        at_ms=at,
                        frames_decoded=self.frames_decoded - watch.frames_at_arm,
                        watch=watch.number,
                    )
                )
            if marker.tag == self.partner_tag:
                self.partner_frames += 1

    @staticmethod
    async def _drain(track: MediaStreamTrack) -> None:
        while True:
            try:
                await track.recv()
            except MediaStreamError:
                return

    # -- ownership -----------------------------------------------------------------

    def _spawn(self, coro: Coroutine[Any, Any, None], name: str) -> None:
        task = asyncio.create_task(coro, name=f"duet-client {self.user_id} {name}")
        self._tasks.add(task)
        task.add_done_callback(self._task_done)

    def _task_done(self, task: asyncio.Task[Any]) -> None:
        self._tasks.discard(task)
        if not task.cancelled() and task.exception() is not None:
            logger.error("%s: %s crashed", self.user_id, task.get_name(), exc_info=task.exception())

    async def _shutdown(self, *, send_leave: bool) -> None:
        if self._closed:
            return
        self._closed = True
        self._connected = False
        self._watch = None
        # Wake anything still waiting on the session (find_partner/next in another task).
        self._inbox.put(StreamEnded(DuetClientError("the client left the session")))
        call = self._call
        if call is not None and not call.done():
            if send_leave:
                try:
                    await asyncio.wait_for(call.write(matchmaker_pb2.ClientMessage(leave=matchmaker_pb2.Leave())), 2.0)
                    await asyncio.wait_for(call.done_writing(), 2.0)
                    # Let the server end the stream itself (it sees Leave, not a cancellation).
                    await asyncio.wait_for(call.code(), 2.0)
                except Exception as exc:  # the stream may already be failing; leaving must not
                    logger.debug("%s: leave: %r", self.user_id, exc)
            if not call.done():
                call.cancel()
        tasks = list(self._tasks)
        for task in tasks:
            task.cancel()
        if tasks:
            await asyncio.gather(*tasks, return_exceptions=True)
        self._camera.stop()
        self._microphone.stop()
        if self._pc is not None:
            await self._pc.close()
        if self._channel is not None:
            await self._channel.close()
        logger.info("%s: left", self.user_id)

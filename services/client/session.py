"""The session: one user's Session stream to the matchmaker and warm WebRTC leg to its edge.

One :class:`DuetClient` is one user. It speaks the matchmaker's bidirectional
``Session`` stream over real gRPC and holds one warm WebRTC leg to its ingress
edge (docs/architecture.md, "The connect path"):

    connect()       Hello -> EdgeAssigned; LegOffer -> LegAnswer; ICE + DTLS
                    with the edge while nobody waits (leg_connected)
    find_partner()  FindPartner (with the user's preferences) -> Queued -> Matched
                    -> first partner frame decoded (first_frame) -> ConnectReport
    next()          Next on the same leg: no new PeerConnection, no ICE, no DTLS
    block(), report()  about the partner of the current (or last) call
    add_friend()    ask to be friends with the partner of the current (or last) call
    friends()       the friends list (ListFriends); remove_friend() unfriends
    call_friend()   CallFriend -> Ringing -> Matched (accepted) -> first frame, or RingEnded
    wait_incoming_call(), answer()  the friend's side: IncomingCall, then AnswerCall
    hang_up()       end the call, keep the session and the warm leg
    leave()         Leave; close the leg, the stream and the channel

The media are the caller's: any aiortc video and audio track (a file through
``aiortc.contrib.media.MediaPlayer``, a webcam, a track of their own), each
optional. Which decoded frame is "the partner's first" is decided by a
:class:`~duet.services.client.first_frame.FirstFrameRule`.

Every input is an event on one :class:`~duet.services.client.inbox.SessionInbox`;
each step of the protocol waits on it for what it expects.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable, Coroutine, Mapping, Sequence
from typing import Any

import av
import grpc
from aiortc import RTCPeerConnection
from aiortc.mediastreams import MediaStreamTrack

from duet.edge.ice_hosts import ice_restricted_from_env
from duet.services.auth.bearer import bearer_metadata
from duet.services.auth.sources import StaticToken, TokenSource
from duet.services.client.first_frame import AnyMediaRule, FirstFrameRule
from duet.services.client.friend_calls import FriendCalls
from duet.services.client.inbox import (
    DuetClientError,
    LegState,
    PartnerFrame,
    SessionInbox,
    StreamEnded,
    event_kind,
)
from duet.services.client.media import MediaLeg
from duet.services.client.preferences import MatchPreferences
from duet.services.client.reattach import EdgeReattach
from duet.services.client.safety import SafetyRequests
from duet.services.client.stages import CallResult, build_call_result, client_report_stages, now_ms
from duet.services.rpc.call_status import final_status
from duet.v1 import common_pb2, matchmaker_pb2, matchmaker_pb2_grpc

__all__ = ["DuetClient"]

logger = logging.getLogger("duet.client")


class DuetClient(EdgeReattach, SafetyRequests, FriendCalls):
    """One user: a Session stream to the matchmaker and a warm WebRTC leg to its edge."""

    def __init__(
        self,
        matchmaker_address: str,
        user_id: str,
        display_name: str,
        *,
        video: MediaStreamTrack | None = None,
        audio: MediaStreamTrack | None = None,
        first_frame_rule: FirstFrameRule | None = None,
        client_ip: str | None = None,
        frame_timeout: float = 10.0,
        rpc_timeout: float = 10.0,
        match_timeout: float | None = 60.0,
        token: str | TokenSource | None = None,
        metadata: Sequence[tuple[str, str]] = (),
        restrict_ice: bool = True,
        video_codecs: Sequence[str] = ("VP8", "H264"),
        preferences: MatchPreferences | None = None,
        clock: Callable[[], float] = now_ms,
    ) -> None:
        """
        video, audio: what this user sends, any aiortc tracks of that kind (e.g.
            ``MediaPlayer(path).video``); None sends nothing of that kind but
            still receives the partner's. leave() (or a failed connect()) stops them.
        first_frame_rule: tells the partner's first decoded frame apart from the
            previous partner's last ones; default :class:`AnyMediaRule`, for
            any media. Give each client its own rule object (it keeps state).
        client_ip: sent as ``x-forwarded-for`` metadata (a local cluster's
            matchmaker trusts it, so loopback users can seem to be anywhere).
        frame_timeout: seconds from Matched to the partner's first frame.
        rpc_timeout: seconds for each control step of connect().
        match_timeout: seconds to wait in the queue for a match (None: forever).
        token: the user's token (docs/client-guide.md, "Authentication"), or a
            token source (``async () -> str``, asked once per connect(), e.g.
            ``duet.services.auth.sources.DevUserTokens``). The matchmaker refuses
            a Session without one (UNAUTHENTICATED); the session is the token's
            user's, and ``user_id`` must be that user.
        metadata: more gRPC metadata for the Session call.
        restrict_ice: gather ICE host candidates only on $DUET_ICE_HOSTS
            (default 127.0.0.1; see duet.edge.ice_hosts). Process-wide.
        video_codecs: the video codecs to offer, of "VP8" and "H264". The
            client sends the first one the edge prefers (VP8 when offered)
            and is matched only with partners that can exchange video with it.
        preferences: who the user is and whom they want to meet, sent with
            every FindPartner and Next (None: no preferences, anyone).
        clock: this client's wall clock, epoch ms (default the system's):
            every client stage is taken with it, and it answers the
            matchmaker's clock probes, so the matchmaker can move the
            stages onto its own clock (docs/client-guide.md, "Clock sync").
        """
        self.matchmaker_address = matchmaker_address
        self.user_id = user_id
        self.display_name = display_name
        self.client_ip = client_ip
        self.frame_timeout = frame_timeout
        self.rpc_timeout = rpc_timeout
        self.match_timeout = match_timeout
        self.preferences = preferences
        self._metadata = tuple(metadata) + ((("x-forwarded-for", client_ip),) if client_ip else ())
        self._token: TokenSource | None = StaticToken(token) if isinstance(token, str) else token
        self._restrict_ice = restrict_ice
        self.clock = clock
        self.clock_probes_answered = 0

        # Learned from the server.
        self.session_id: str = ""
        self.edge: common_pb2.EdgeRef | None = None
        self.edge_reason: str = ""
        self.leg_id: str = ""
        self.call_id: str | None = None  # the current (last matched) call
        self.last_match: matchmaker_pb2.Matched | None = None  # its Matched: the partner's profile, ...
        # What the server's messages say we are doing (kept by the reader task):
        # waiting in the pool, and which call is live (None once it ended).
        self._queued = False
        self._live_call: str | None = None
        self.stages: dict[str, float] = {}  # client-timed stages of the session so far
        # Friends: calls ringing for us (IncomingCall, kept apart from the protocol's waits), new
        # friends (FriendAdded), the ring we are making, and why rings for us ended (RingEnded).
        self._incoming: asyncio.Queue[matchmaker_pb2.IncomingCall] = asyncio.Queue()
        self._new_friends: asyncio.Queue[matchmaker_pb2.FriendAdded] = asyncio.Queue()
        self._my_ring: str = ""
        self.ended_rings: dict[str, str] = {}  # request id -> RingEnded.reason, for calls rung to us

        self._inbox = SessionInbox()
        self.first_frame_rule = first_frame_rule if first_frame_rule is not None else AnyMediaRule()
        self._media = MediaLeg(
            video=video,
            audio=audio,
            first_frame_rule=self.first_frame_rule,
            inbox=self._inbox,
            name=user_id,
            video_codecs=video_codecs,
            clock=clock,
        )
        self._channel: grpc.aio.Channel | None = None
        self._call: grpc.aio.StreamStreamCall | None = None
        self._tasks: set[asyncio.Task[Any]] = set()
        self._lock = asyncio.Lock()
        # One write at a time on the stream: clock echoes are written by the reader task.
        self._write_lock = asyncio.Lock()
        self._connected = False
        self._closed = False
        self._lost_edge: str | None = None
        self.reattached = 0  # legs moved to another edge after EdgeLost

    @property
    def peer_connection(self) -> RTCPeerConnection | None:
        """The leg's RTCPeerConnection (e.g. for getStats()); None before connect()."""
        return self._media.peer_connection

    @property
    def frames_decoded(self) -> int:
        """Every video frame the leg's decoder produced so far."""
        return self._media.frames_decoded

    @property
    def audio_frames_decoded(self) -> int:
        """Every audio frame (20 ms of Opus) the leg's decoder produced so far, from any partner."""
        return self._media.audio_frames_decoded

    def recent_audio(self) -> list[av.AudioFrame]:
        """The leg's last decoded audio, oldest first: up to half a second (25 frames of 20 ms).

        A copy, taken now; the frames are aiortc's (48 kHz, s16). Empty before
        any audio arrived; just after Next it may still hold the previous partner's. For a level or pitch check, e.g.
        ``duet.services.devkit.fake_capture.dominant_frequency_hz``.
        """
        return list(self._media.recent_audio)

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

        metadata = self._metadata
        if self._token is not None:
            metadata += bearer_metadata(await self._token())
        self.stages["session_open"] = self.clock()
        self._call = stub.Session(metadata=metadata or None)
        self._spawn(self._read_server_messages(self._call), "session reader")
        await self._send(
            matchmaker_pb2.ClientMessage(
                hello=matchmaker_pb2.Hello(
                    user_id=self.user_id,
                    display_name=self.display_name,
                    session_open=self.stages["session_open"],
                    clock_probes=True,
                )
            ),
            "Hello",
        )
        await self._open_leg()
        self._connected = True
        logger.info(
            "%s: leg %s connected in %.0f ms after session open",
            self.user_id,
            self.leg_id,
            self.stages["leg_connected"] - self.stages["session_open"],
        )

    async def _open_leg(self) -> None:
        """EdgeAssigned, then LegOffer -> LegAnswer -> ICE + DTLS with that edge."""
        while True:  # after an edge loss its EdgeLost may still be queued: the EdgeAssigned follows it
            event = await self._inbox.expect(
                ("edge_assigned", "edge_lost"), timeout=self.rpc_timeout, waiting_for="EdgeAssigned"
            )
            if event_kind(event) == "edge_assigned":
                break
        self.stages["edge_assigned"] = self.clock()
        assigned = event.edge_assigned  # type: ignore[union-attr]
        self.session_id = assigned.session_id
        self.edge = assigned.edge
        self.edge_reason = assigned.reason
        logger.info(
            "%s: session %s, edge %s (%s)", self.user_id, self.session_id, assigned.edge.edge_id, assigned.reason
        )

        offer = await self._media.create_offer()
        await self._send(matchmaker_pb2.ClientMessage(offer=matchmaker_pb2.LegOffer(sdp=offer)), "LegOffer")
        event = await self._inbox.expect(("answer",), timeout=self.rpc_timeout, waiting_for="LegAnswer")
        answer = event.answer  # type: ignore[union-attr]
        self.leg_id = answer.leg_id
        await self._media.accept_answer(answer.sdp, answer.leg_id)

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

    async def find_partner(self) -> CallResult:
        """Enter the pool; return once the partner's first frame is decoded."""
        async with self._lock:
            self._check_ready()
            return await self._find_partner_unlocked()

    async def _find_partner_unlocked(self) -> CallResult:
        await self._reattach_unlocked()
        return await self._look_for_partner(
            matchmaker_pb2.ClientMessage(
                find_partner=matchmaker_pb2.FindPartner(
                    leg_connected=self.stages["leg_connected"],
                    preferences=self.preferences.to_proto() if self.preferences else None,
                )
            ),
            "FindPartner",
        )

    async def next(self) -> CallResult:
        """End the current call (if any) and find a new partner on the same warm leg.

        When the partner already ended the call (or there is none and we are not
        queued), this enters the pool with FindPartner instead. The matchmaker
        would take Next there too (it then acts as FindPartner); sending
        FindPartner keeps the SDK's log of what it asked for exact.
        """
        async with self._lock:
            self._check_ready()
            if (self._live_call is None and not self._queued) or self._lost_edge is not None:
                return await self._find_partner_unlocked()
            prefs = self.preferences.to_proto() if self.preferences else None
            return await self._look_for_partner(
                matchmaker_pb2.ClientMessage(next=matchmaker_pb2.Next(preferences=prefs)), "Next"
            )

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
                    ("call_ended", "edge_lost"), timeout=timeout, waiting_for=f"the end of call {call_id}"
                )
                if event.WhichOneof("msg") == "edge_lost":  # type: ignore[union-attr]
                    return "edge_lost"
                ended = event.call_ended  # type: ignore[union-attr]
                if ended.call_id == call_id:
                    self._inbox.finished_calls.add(call_id)
                    return ended.reason

    async def hang_up(self) -> None:
        """End the live call (the partner gets CallEnded "partner_hung_up"); keep the session and leg."""
        async with self._lock:
            self._check_ready()
            call_id = self._live_call
            if call_id is None:
                return
            self._inbox.finished_calls.add(call_id)
            await self._send(matchmaker_pb2.ClientMessage(hang_up=matchmaker_pb2.HangUp()), "HangUp")

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
            self._media.unwatch()  # fired, or given up on

    async def _find(self, request: matchmaker_pb2.ClientMessage, what: str) -> CallResult:
        if self.call_id:
            # Its end (our Next, or the partner leaving) is no error from here on.
            self._inbox.finished_calls.add(self.call_id)
        # Armed before asking: media may be bridged before Matched reaches us.
        watch = self._media.watch()
        client_stages = {name: self.stages[name] for name in ("session_open", "edge_assigned", "leg_connected")}
        queued_at_server = 0.0
        early_frame: PartnerFrame | None = None

        await self._send(request, what)
        while True:
            event = await self._inbox.expect(
                ("queued", "matched", "partner_frame", "ringing", "ring_ended"),
                timeout=self.match_timeout,
                waiting_for="a match" if what != "CallFriend" else "the friend to answer",
            )
            if isinstance(event, PartnerFrame):
                if event.watch == watch:
                    early_frame = event
                continue
            assert isinstance(event, matchmaker_pb2.ServerMessage)
            kind = event.WhichOneof("msg")
            if kind == "ringing":
                logger.info("%s: ringing %s", self.user_id, event.ringing.friend.display_name)
                continue
            if kind == "ring_ended":
                reason = event.ring_ended.reason
                raise DuetClientError(f"the call to your friend ended without a call: {reason}", reason=reason)
            if kind == "queued":
                client_stages["queued"] = self.clock()
                queued_at_server = event.queued.queued
                logger.debug("%s: queued, ticket %s", self.user_id, event.queued.ticket_id)
                continue
            matched = event.matched
            break

        self.call_id = matched.call_id
        self.last_match = matched
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
            if event.watch == watch:
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
            async with self._write_lock:
                await call.write(message)
        except grpc.aio.AioRpcError as exc:
            # A stream the server ended at once (a refused token) fails the write with a placeholder status.
            code, details = await final_status(call, exc.code(), exc.details() or "")
            raise DuetClientError(f"sending {what} failed: {code.name}: {details}", code=code, details=details) from exc
        except asyncio.InvalidStateError as exc:
            # The stream is already over; report how it ended.
            code, details = await final_status(call, await call.code(), await call.details() or "")
            raise DuetClientError(
                f"cannot send {what}: the Session stream is over: {code.name}: {details}", code=code, details=details
            ) from exc

    async def _read_server_messages(self, call: grpc.aio.StreamStreamCall) -> None:
        try:
            async for message in call:
                kind = message.WhichOneof("msg")
                if kind == "clock_probe":
                    await self._answer_clock_probe(call, message.clock_probe)
                    continue
                self._track_server_state(message)
                if self._route_friend_event(message):
                    continue
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
            code, details = await final_status(call, exc.code(), exc.details() or "")
            error = DuetClientError(f"the Session stream failed: {code.name}: {details}", code=code, details=details)
            if not self._closed:
                logger.warning("%s: %s", self.user_id, error)
        except Exception as exc:  # e.g. a message that does not parse: still end the waits
            logger.exception("%s: reading the Session stream failed", self.user_id)
            error = DuetClientError(f"reading the Session stream failed: {exc!r}")
        self._inbox.put(StreamEnded(error))

    async def _write_leave(self, call: grpc.aio.StreamStreamCall) -> None:
        async with self._write_lock:
            await call.write(matchmaker_pb2.ClientMessage(leave=matchmaker_pb2.Leave()))

    async def _answer_clock_probe(self, call: grpc.aio.StreamStreamCall, probe: matchmaker_pb2.ClockProbe) -> None:
        """Answer at once, with the probe's arrival and the answer's departure on this client's clock."""
        received = self.clock()
        async with self._write_lock:
            echo = matchmaker_pb2.ClockEcho(probe_id=probe.probe_id, client_receive=received, client_send=self.clock())
            try:
                await call.write(matchmaker_pb2.ClientMessage(clock_echo=echo))
            except (grpc.aio.AioRpcError, asyncio.InvalidStateError) as exc:
                logger.debug("%s: clock echo not sent: %r", self.user_id, exc)  # the stream is ending
                return
        self.clock_probes_answered += 1

    def _track_server_state(self, message: matchmaker_pb2.ServerMessage) -> None:
        kind = message.WhichOneof("msg")
        if kind == "queued":
            self._queued = True
        elif kind == "matched":
            self._queued = False
            self._live_call = message.matched.call_id
            # Told here, as it arrives: the first-frame rule orders it against decoded frames.
            self._media.matched()
        elif kind == "edge_lost":
            self._lost_edge = message.edge_lost.edge_id
            self._queued = False  # the ticket is cancelled
            if self._live_call is not None:  # its CallEnded ("edge_lost") follows: expected now
                self._inbox.finished_calls.add(self._live_call)
                self._live_call = None
            logger.warning(
                "%s: edge %s lost (%s); re-attaching", self.user_id, message.edge_lost.edge_id, message.edge_lost.reason
            )
        elif kind == "ticket_closed":
            self._queued = False
        elif kind == "call_ended":
            ended = message.call_ended.call_id
            if not ended:
                self._queued = False  # a ticket (or a call being set up) was given up
            elif ended == self._live_call:
                self._live_call = None

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
        self._media.unwatch()
        # Wake anything still waiting on the session (find_partner/next in another task).
        self._inbox.put(StreamEnded(DuetClientError("the client left the session")))
        call = self._call
        if call is not None and not call.done():
            if send_leave:
                try:
                    await asyncio.wait_for(self._write_leave(call), 2.0)
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
        await self._media.close()
        if self._channel is not None:
            await self._channel.close()
        logger.info("%s: left", self.user_id)

"""The Session stream from the client's side: writing messages, reading the server's, answering clock probes.

A part of ``DuetClient`` (a base class of it). The reader task puts every
server message the protocol waits for on the session's inbox, answers clock
probes at once (they never reach the inbox), and keeps what the server says
the client is doing (queued, in which call, on a lost edge).
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable
from typing import TYPE_CHECKING

import grpc

from duet.services.client.inbox import DuetClientError, SessionInbox, StreamEnded
from duet.services.client.media import MediaLeg
from duet.services.rpc.call_status import final_status
from duet.v1 import matchmaker_pb2

logger = logging.getLogger("duet.client")


class SessionStream:
    """Sending and reading the Session stream; the stream, inbox and state are the ``DuetClient``'s."""

    user_id: str
    clock: Callable[[], float]
    clock_probes_answered: int
    _call: grpc.aio.StreamStreamCall | None
    _write_lock: asyncio.Lock
    _inbox: SessionInbox
    _media: MediaLeg
    _closed: bool
    _queued: bool
    _live_call: str | None
    _lost_edge: str | None

    if TYPE_CHECKING:  # provided by the friend calls

        def _route_friend_event(self, message: matchmaker_pb2.ServerMessage) -> bool: ...

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
        except Exception as exc:
            # gRPC's core failed the write itself (e.g. the connection was reset under it): the stream is over.
            try:
                code = await asyncio.wait_for(call.code(), 3.0)
                details = await call.details() or ""
            except TimeoutError:
                call.cancel()
                code, details = grpc.StatusCode.UNAVAILABLE, f"the stream broke: {exc!r}"
            raise DuetClientError(f"sending {what} failed: {code.name}: {details}", code=code, details=details) from exc

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

"""Everything that happens to a session, as events on one inbox.

Server messages (from the stream reader task), the leg's state changes and the
partner's first decoded frame (from the media side) and the end of the stream
are all :data:`Event` values on one :class:`SessionInbox`. Each step of the
protocol waits on that one inbox for what it expects, so a call ending, the
stream failing, the leg failing or a timeout all surface as a
:class:`DuetClientError` wherever the client happens to be waiting.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Iterable
from dataclasses import dataclass

import grpc

from duet.v1 import matchmaker_pb2

__all__ = [
    "DuetClientError",
    "Event",
    "LegState",
    "PartnerFrame",
    "SessionInbox",
    "StreamEnded",
    "event_kind",
]

logger = logging.getLogger("duet.client")

# DuetClientError.reason when the leg closed or failed under a wait.
LEG_ENDED = "leg_ended"


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


@dataclass(frozen=True)
class PartnerFrame:
    """The first decoded frame of a (new) partner since the video watch was armed."""

    # What the first-frame rule read off the frame about its sender (a FrameMarker
    # for synthetic-camera partners); None for rules that read nothing.
    marker: object | None
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
    - TicketClosed (cancelled, expired, held for review) and Error (a refused
      request; the session goes on) raise DuetClientError, with the reason or
      the status name and message;
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

    def mark_ended(self, event: StreamEnded) -> None:
        """The stream is over (its end was taken with ``expect``): later waits raise its error."""
        self._ended = event

    def reopen(self) -> None:
        """A new stream replaces the ended one: forget its end and whatever it left unread."""
        self._ended = None
        while not self._queue.empty():
            self._queue.get_nowait()

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
                        f"the WebRTC leg to the edge is {event.state} (while waiting for {waiting_for})",
                        reason=LEG_ENDED,
                    )
                continue
            if kind == "edge_lost":
                lost = event.edge_lost  # type: ignore[union-attr]
                raise DuetClientError(
                    f"edge {lost.edge_id} was lost ({lost.reason}) while waiting for {waiting_for}; "
                    "find_partner() or reattach() moves the leg to another edge",
                    reason="edge_lost",
                )
            if kind == "call_ended":
                ended = event.call_ended  # type: ignore[union-attr]
                if ended.call_id and ended.call_id in self.finished_calls:
                    logger.debug("call %s ended (%s), as expected", ended.call_id, ended.reason)
                    continue
                raise DuetClientError(
                    f"call {ended.call_id or '(none)'} ended while waiting for {waiting_for}: {ended.reason or 'no reason given'}",
                    reason=ended.reason,
                )
            if kind == "ticket_closed":
                closed = event.ticket_closed  # type: ignore[union-attr]
                if closed.reason == "edge_lost":
                    continue  # follows EdgeLost, which said all there is to say
                raise DuetClientError(
                    f"the wait ended while waiting for {waiting_for}: {closed.reason}", reason=closed.reason
                )
            if kind == "error":
                error = event.error  # type: ignore[union-attr]
                code = grpc.StatusCode.__members__.get(error.code)
                raise DuetClientError(
                    f"{error.request or 'the request'} was refused ({error.code}): {error.message}",
                    code=code,
                    details=error.message,
                )
            if kind == "heartbeat_ack":
                continue
            logger.warning("ignoring %s while waiting for %s", kind, waiting_for)

"""Reconnecting a client whose matchmaker went away: which address next, how long to wait, and when.

A matchmaker replica that dies, or gives up the shard a client is in, ends the
client's Session stream UNAVAILABLE. The SDK then opens a new session (a new
stream and a new leg) on the next matchmaker address it was given, backing off
between tries, and asks for a partner again: the replica now serving the
shard resumes the open ticket with its original place in the queue
(docs/replicas.md).
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING

import grpc

from duet.services.client.inbox import DuetClientError, SessionInbox, StreamEnded
from duet.services.client.media import MediaLeg

__all__ = ["MatchmakerReconnect", "ReconnectPolicy", "is_reconnectable", "matchmaker_addresses", "worth_another_try"]

logger = logging.getLogger("duet.client")

# A new session refused for these would be refused again: the request or the token is at fault.
REFUSALS = frozenset(
    {
        grpc.StatusCode.UNAUTHENTICATED,
        grpc.StatusCode.PERMISSION_DENIED,
        grpc.StatusCode.INVALID_ARGUMENT,
        grpc.StatusCode.FAILED_PRECONDITION,
    }
)


def matchmaker_addresses(value: str | Sequence[str]) -> tuple[str, ...]:
    """``"a:1,b:2"`` or ``["a:1", "b:2"]`` -> ("a:1", "b:2"); ValueError when none is given."""
    parts = value.split(",") if isinstance(value, str) else [p for v in value for p in v.split(",")]
    addresses = tuple(dict.fromkeys(p.strip() for p in parts if p.strip()))
    if not addresses:
        raise ValueError("no matchmaker address given (HOST:PORT, or several separated by commas)")
    return addresses


@dataclass(frozen=True)
class ReconnectPolicy:
    """Up to ``attempts`` new sessions in a row, waiting ``first_delay_s``, doubling up to ``max_delay_s``."""

    attempts: int = 10
    first_delay_s: float = 0.2
    max_delay_s: float = 2.0

    def __post_init__(self) -> None:
        if self.attempts < 1 or not 0 <= self.first_delay_s <= self.max_delay_s:
            raise ValueError(
                f"a reconnect policy needs attempts >= 1 and 0 <= first_delay_s <= max_delay_s, got {self}"
            )

    def delays(self) -> Iterator[float]:
        """The wait before each attempt: none before the first (another replica may be up already)."""
        delay = self.first_delay_s
        for attempt in range(self.attempts):
            yield 0.0 if attempt == 0 else delay
            if attempt:
                delay = min(self.max_delay_s, delay * 2)


def is_reconnectable(error: DuetClientError) -> bool:
    """The stream ended because the matchmaker (or its shard) went away, not because of the request."""
    return bool(error.code == grpc.StatusCode.UNAVAILABLE)


def worth_another_try(error: DuetClientError) -> bool:
    """A new session that could not be opened: try the next address unless it was refused as such.

    Dialling a dead replica can fail with gRPC's own placeholder (INTERNAL) when the
    connection is refused before its status arrives: that is worth another try too.
    """
    return error.code not in REFUSALS


class MatchmakerReconnect:
    """A new session after the matchmaker went away: a part of ``DuetClient`` (a base class of it),
    whose stream, leg and inbox these methods replace."""

    user_id: str
    leg_id: str
    matchmaker_address: str
    matchmaker_addresses: tuple[str, ...]
    reconnect_policy: ReconnectPolicy | None
    reconnects: int
    _call: grpc.aio.StreamStreamCall | None
    _channel: grpc.aio.Channel | None
    _tasks: set[asyncio.Task[object]]
    _media: MediaLeg
    _inbox: SessionInbox
    _closed: bool
    _connected: bool
    _queued: bool
    _live_call: str | None
    _lost_edge: str | None

    if TYPE_CHECKING:  # provided by DuetClient

        async def _connect(self) -> None: ...

    async def _reconnect_unlocked(self, cause: DuetClientError, policy: ReconnectPolicy | None = None) -> None:
        """A new session (stream and leg) on the next matchmaker address, with backoff (``policy``, default
        the client's); raises the last error."""
        policy = policy or self.reconnect_policy
        assert policy is not None
        logger.warning("%s: %s; reconnecting", self.user_id, cause)
        last = cause
        for delay in policy.delays():
            if delay:
                await asyncio.sleep(delay)
            await self._drop_stream()
            i = self.matchmaker_addresses.index(self.matchmaker_address)
            self.matchmaker_address = self.matchmaker_addresses[(i + 1) % len(self.matchmaker_addresses)]
            try:
                await self._connect()
            except DuetClientError as exc:
                last = exc
                logger.info("%s: reconnect to %s failed: %s", self.user_id, self.matchmaker_address, exc)
                if not worth_another_try(exc):
                    raise
                continue
            self.reconnects += 1
            logger.info("%s: reconnected to %s (leg %s)", self.user_id, self.matchmaker_address, self.leg_id)
            return
        raise last

    async def _drop_stream(self) -> None:
        """Let go of the ended stream, its reader, the channel and the leg; keep the media tracks."""
        call, self._call = self._call, None
        if call is not None and not call.done():
            call.cancel()
        tasks = list(self._tasks)
        for task in tasks:
            task.cancel()
        if tasks:
            await asyncio.gather(*tasks, return_exceptions=True)
        channel, self._channel = self._channel, None
        if channel is not None:
            await channel.close()
        await self._media.reset()
        self.leg_id = ""
        self._lost_edge = None
        self._queued = False
        self._live_call = None
        self._connected = False
        self._inbox.reopen()

    def _may_reconnect(self, exc: DuetClientError, what: str, *, ended: bool = True) -> bool:
        """Waiting in the pool (FindPartner, Next) and the stream ended UNAVAILABLE (``ended``: the reader
        has seen its end already): try a new session."""
        return (
            self.reconnect_policy is not None
            and what in ("FindPartner", "Next")
            and not self._closed
            and (self._inbox.stream_error is not None or not ended)
            and is_reconnectable(exc)
        )

    async def _stream_end_after(self, leg_error: DuetClientError, wait_s: float = 2.0) -> DuetClientError:
        """The stream's end if it comes within ``wait_s`` after the leg ended, else ``leg_error``."""
        try:
            event = await self._inbox.expect(("stream_ended",), timeout=wait_s, waiting_for="the stream's end")
        except DuetClientError as exc:
            return exc if self._inbox.stream_error is not None else leg_error
        assert isinstance(event, StreamEnded)
        self._inbox.mark_ended(event)
        return event.error

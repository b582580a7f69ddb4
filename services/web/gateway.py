"""One browser WebSocket = one ``Matchmaker.Session`` gRPC stream.

The browser speaks the Session protocol itself: each WebSocket text frame is
one ``ClientMessage`` (browser to matchmaker) or ``ServerMessage`` (back) in
protobuf's canonical JSON mapping, so nothing is translated but the encoding.
When the gRPC stream ends the browser gets one last frame,
``{"closed": {"code": "<gRPC status name>", "message": "..."}}``, and the
WebSocket closes; when the WebSocket closes, the gRPC stream is cancelled
(the matchmaker then ends the session's call and detaches its leg).

The gateway may know several matchmaker replicas. A stream that ends
UNAVAILABLE or CANCELLED before the matchmaker's first message (the replica
is down, stopping, or its shard is being taken over; a stopping replica can
drop a stream it just took as CANCELLED) is opened again on the next
replica, and what the browser had sent is sent again: the browser sees one
session. Once the session is open, an UNAVAILABLE reaches the browser, whose
next session goes through the same choice.

This module is the only place that knows protobuf JSON and gRPC statuses;
the aiohttp routes (``duet.services.web.app``) only hand it WebSockets.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import grpc
from aiohttp import WSMsgType, web
from google.protobuf import json_format

from duet.services.auth.bearer import bearer_metadata
from duet.services.rpc.call_status import final_status, is_placeholder
from duet.services.web.replica_channels import ReplicaChannels
from duet.v1 import matchmaker_pb2

__all__ = ["Closed", "ProtocolError", "SessionGateway", "parse_client_message", "server_message_json"]

# GetCall's (and the friends RPCs') statuses as HTTP statuses, for the page's look-ups.
HTTP_STATUS = {
    grpc.StatusCode.INVALID_ARGUMENT: 400,
    grpc.StatusCode.UNAUTHENTICATED: 401,
    grpc.StatusCode.PERMISSION_DENIED: 403,
    grpc.StatusCode.NOT_FOUND: 404,
    grpc.StatusCode.UNAVAILABLE: 503,
    grpc.StatusCode.DEADLINE_EXCEEDED: 504,
}

logger = logging.getLogger("duet.web")

# Seconds to wait for the matchmaker's final status once the browser's side has finished.
STATUS_WAIT_S = 5.0
# Opening a session: every replica in turn, then again after each of these pauses (a takeover takes
# about one ownership poll, half a second; docs/replicas.md).
REOPEN_PAUSES_S = (0.25, 0.5, 1.0)


class ProtocolError(ValueError):
    """A frame from the browser that is not one ClientMessage in protobuf JSON."""


@dataclass(frozen=True)
class Closed:
    """The last frame a browser gets: how its Session ended."""

    code: str  # a gRPC status name, e.g. "OK", "UNAVAILABLE"
    message: str = ""

    def to_json(self) -> str:
        return json.dumps({"closed": {"code": self.code, "message": self.message}})


def parse_client_message(text: str) -> matchmaker_pb2.ClientMessage:
    """One WebSocket text frame -> ClientMessage; ``ProtocolError`` says what is wrong with it."""
    try:
        return json_format.Parse(text, matchmaker_pb2.ClientMessage())
    except (json_format.ParseError, ValueError, TypeError, AttributeError) as exc:
        shown = text if len(text) <= 80 else text[:77] + "..."
        raise ProtocolError(
            f"not a ClientMessage in protobuf JSON ({exc}); got {shown!r}. "
            'Send one message per text frame, e.g. {"hello": {"userId": "ana"}}'
        ) from None


def server_message_json(message: matchmaker_pb2.ServerMessage) -> str:
    """ServerMessage -> its canonical JSON (lowerCamelCase names, default values left out)."""
    return json_format.MessageToJson(message, indent=None)


_BROWSER_GONE = "browser gone"  # the WebSocket closed: nobody to tell
# Before a session is open, these end a stream because of the replica, not the request: another may serve it.
# CANCELLED is never a matchmaker's answer; the gateway cancels only streams it has finished with, so it
# means the replica dropped the stream (a stopping replica did, once, under load).
_REPLICA_WENT_AWAY = frozenset({grpc.StatusCode.UNAVAILABLE, grpc.StatusCode.CANCELLED})
_STREAM_OVER = "stream over"  # a write found the gRPC stream finished: its status tells why


class _Upstream:
    """A browser's Session stream to the matchmaker, opened again on another replica until it is open.

    Open means the matchmaker has sent its first message. Until then every message the browser sends
    is kept, to be sent again on the next replica's stream. One lock orders the browser's writes and a
    re-open, so each message reaches the stream in use exactly once and in order.
    """

    def __init__(self, channels: ReplicaChannels, metadata: tuple[tuple[str, str], ...]) -> None:
        self.channels = channels
        self.metadata = metadata
        # Each replica, the preferred first, then each again after a pause.
        self._plan = [(a, 0.0) for a in channels.order()]
        for pause in REOPEN_PAUSES_S:
            self._plan += [(a, pause if i == 0 else 0.0) for i, a in enumerate(channels.order())]
        self._lock = asyncio.Lock()
        self._sent: list[matchmaker_pb2.ClientMessage] = []
        self.open = False
        self.tried: list[str] = []
        self.address = ""
        self.call: Any = None
        self._dial()

    def _dial(self) -> None:
        self.address, _ = self._plan.pop(0)
        self.tried.append(self.address)
        self.call = self.channels.stub(self.address).Session(metadata=self.metadata)

    async def write(self, message: matchmaker_pb2.ClientMessage) -> bool:
        """Send one browser message; False once the open stream is over (its status then tells why)."""
        async with self._lock:
            if not self.open:
                self._sent.append(message)
            try:
                await self.call.write(message)
            except (grpc.aio.AioRpcError, asyncio.InvalidStateError):
                return not self.open  # not open yet: the reader re-opens it and sends this again
            return True

    def opened(self) -> None:
        if not self.open:
            self.open = True
            self._sent.clear()
            self.channels.worked(self.address)

    async def reopen(self, why: str) -> bool:
        """The stream ended UNAVAILABLE (or with gRPC's placeholder status) before it was open: open it
        on the next replica, sending again what the browser sent; False when every try is spent."""
        if self.open or not self._plan:
            return False
        async with self._lock:
            pause = self._plan[0][1]
            if pause:
                await asyncio.sleep(pause)
            logger.info("matchmaker %s: %s; opening the session on %s", self.address, why, self._plan[0][0])
            self.call.cancel()
            self._dial()
            for message in self._sent:
                try:
                    await self.call.write(message)
                except (grpc.aio.AioRpcError, asyncio.InvalidStateError):
                    break  # the reader sees this stream's status too
            return True

    def cancel(self) -> None:
        self.call.cancel()  # no-op when the stream is over already; else the matchmaker sees CANCELLED


class SessionGateway:
    """Relays WebSockets to the matchmaker replicas, one shared gRPC channel to each."""

    def __init__(self, matchmakers: str | Sequence[str]) -> None:
        """``matchmakers``: the replicas' addresses, ``"a:1,b:2"`` or a list; ValueError when none is given."""
        self._replicas = ReplicaChannels(matchmakers)
        self.matchmakers = self._replicas.addresses
        self._streams: set[_Upstream] = set()  # kept until a later relay finds them done

    @property
    def open_streams(self) -> int:
        """Session streams to the matchmaker that are still open (not finished, not cancelled)."""
        return sum(1 for up in self._streams if not up.call.done())

    async def close(self) -> None:
        await self._replicas.close()

    async def get_call(self, call_id: str, token: str) -> tuple[int, str]:
        """``Matchmaker.GetCall`` with the browser's token, as (HTTP status, JSON body): the
        CallRecord, or {"error": {code, message}}."""
        try:
            record = await self._any_replica("GetCall", matchmaker_pb2.GetCallRequest(call_id=call_id), token)
        except _Failed as failed:
            return failed.http()
        return 200, json_format.MessageToJson(record, indent=None)

    async def list_friends(self, token: str) -> tuple[int, str]:
        """``Matchmaker.ListFriends`` with the browser's token, as (HTTP status, JSON body)."""
        return await self._unary("ListFriends", matchmaker_pb2.ListFriendsRequest(), token)

    async def remove_friend(self, user_id: str, token: str) -> tuple[int, str]:
        """``Matchmaker.RemoveFriend`` with the browser's token, as (HTTP status, JSON body)."""
        return await self._unary("RemoveFriend", matchmaker_pb2.RemoveFriendRequest(user_id=user_id), token)

    async def _unary(self, method: str, request: Any, token: str) -> tuple[int, str]:
        try:
            response = await self._any_replica(method, request, token)
        except _Failed as failed:
            return failed.http()
        return 200, json_format.MessageToJson(response, indent=None, always_print_fields_with_no_presence=True)

    async def _any_replica(self, method: str, request: Any, token: str) -> Any:
        """``method`` on the first replica that is reachable (each reads the same database);
        ``_Failed`` with the last answer when none answers."""
        tried: list[str] = []
        for address in self._replicas.order():
            tried.append(address)
            try:
                response = await getattr(self._replicas.stub(address), method)(
                    request, timeout=5.0, metadata=_auth(token)
                )
            except grpc.aio.AioRpcError as exc:
                if exc.code() == grpc.StatusCode.UNAVAILABLE and len(tried) < len(self.matchmakers):
                    continue
                raise _Failed(exc.code(), self._status(exc.code(), exc.details() or "", address, tried)) from None
            self._replicas.worked(address)
            return response
        raise AssertionError("no matchmaker address")  # the constructor refuses none

    async def relay(
        self, ws: web.WebSocketResponse, *, client_address: str, token: str, stopping: asyncio.Event
    ) -> Closed | None:
        """Carry one Session between ``ws`` and the matchmaker until either side ends it.

        ``token``: the browser's user token, presented as the stream's metadata.
        Sends the final ``closed`` frame (and closes ``ws``) and returns it;
        None when the browser went away first. ``stopping`` set: the gateway is
        shutting down, and the browser is told so.
        """
        upstream = _Upstream(self._replicas, (("x-forwarded-for", client_address), *_auth(token)))
        self._streams = {u for u in self._streams if not u.call.done()}
        self._streams.add(upstream)
        up = asyncio.create_task(self._browser_to_matchmaker(ws, upstream), name="ws->grpc")
        down = asyncio.create_task(self._matchmaker_to_browser(ws, upstream), name="grpc->ws")
        stop = asyncio.create_task(stopping.wait(), name="gateway stopping")
        closed: Closed | None = None
        try:
            done, _ = await asyncio.wait({up, down, stop}, return_when=asyncio.FIRST_COMPLETED)
            if down in done:
                closed = down.result()
            elif up in done:
                result = up.result()
                if isinstance(result, Closed):
                    closed = result
                elif result == _STREAM_OVER:
                    try:
                        closed = await asyncio.wait_for(asyncio.shield(down), STATUS_WAIT_S)
                    except TimeoutError:
                        closed = Closed("UNKNOWN", "the matchmaker did not say how the session ended")
            else:
                closed = Closed("UNAVAILABLE", "the web gateway is shutting down; reload the page in a moment")
        finally:
            for task in (up, down, stop):
                task.cancel()
            upstream.cancel()
            await asyncio.gather(up, down, stop, return_exceptions=True)
        if closed is not None and not ws.closed:
            with contextlib.suppress(ConnectionError, RuntimeError):  # the browser left meanwhile
                await ws.send_str(closed.to_json())
        await ws.close()
        return closed

    async def _browser_to_matchmaker(self, ws: web.WebSocketResponse, upstream: _Upstream) -> Closed | str:
        async for frame in ws:
            if frame.type == WSMsgType.TEXT:
                try:
                    message = parse_client_message(frame.data)
                except ProtocolError as exc:
                    return Closed("INVALID_ARGUMENT", str(exc))
                # Awaits until gRPC takes it: the matchmaker's pace holds back the browser's reads.
                if not await upstream.write(message):
                    return _STREAM_OVER
            elif frame.type == WSMsgType.BINARY:
                return Closed(
                    "INVALID_ARGUMENT",
                    "binary frames are not part of the protocol: send each ClientMessage as JSON text",
                )
            elif frame.type == WSMsgType.ERROR:
                break
        return _BROWSER_GONE

    async def _matchmaker_to_browser(self, ws: web.WebSocketResponse, upstream: _Upstream) -> Closed | None:
        while True:
            call = upstream.call
            try:
                message = await call.read()
            except grpc.aio.AioRpcError as exc:
                # A stream the matchmaker ended at once (a refused token) may show a placeholder status first.
                code, details = await final_status(call, exc.code(), exc.details() or "")
            else:
                if message is grpc.aio.EOF:
                    code, details = await final_status(call, await call.code(), await call.details() or "")
                else:
                    code = None
            if code is not None:
                # Before the stream is open, the placeholder is retried as an unavailable replica is:
                # whatever the server refused (a token) it refuses again, this time in its own words.
                retry = code in _REPLICA_WENT_AWAY or is_placeholder(code, details)
                if retry and await upstream.reopen(f"{code.name}: {details}"):
                    continue
                return self._status(code, details, upstream.address, upstream.tried)
            upstream.opened()
            try:
                # Awaits the socket's drain: a slow browser holds back reading the stream.
                await ws.send_str(server_message_json(message))
            except (ConnectionError, RuntimeError):  # the browser left
                return None

    def _status(self, code: grpc.StatusCode, details: str, address: str, tried: Sequence[str]) -> Closed:
        """The gRPC status from ``address`` (the last of ``tried``) as the browser's closed frame,
        in words a person can act on."""
        if code == grpc.StatusCode.UNAVAILABLE and not self._replicas.reachable(address):
            # Not the matchmaker's own UNAVAILABLE (e.g. no edge): the channel never got (or lost) a connection.
            if len(self.matchmakers) == 1:
                where = f"the matchmaker at {address} is not reachable"
            else:
                where = f"no matchmaker replica could be reached (tried {', '.join(dict.fromkeys(tried))})"
            return Closed("UNAVAILABLE", f"{where}; try again later ({details})")
        if is_placeholder(code, details):
            return Closed(
                code.name,
                "the matchmaker ended the session and its reason was lost on the way (gRPC reported only "
                f"'{details}'); reload the page to try again",
            )
        if code == grpc.StatusCode.CANCELLED:
            return Closed(
                code.name,
                f"the matchmaker at {address} dropped the session (it may be restarting; gRPC said '{details}'); "
                "try again in a moment",
            )
        if code == grpc.StatusCode.UNAUTHENTICATED:
            return Closed(
                code.name, f"Duet did not accept this page's sign-in ({details}); reload the page to sign in again"
            )
        return Closed(code.name, details)


class _Failed(Exception):
    """A unary call no replica answered well: its status, and the words for the page."""

    def __init__(self, code: grpc.StatusCode, closed: Closed) -> None:
        super().__init__(closed.message)
        self.code = code
        self.closed = closed

    def http(self) -> tuple[int, str]:
        body = json.dumps({"error": {"code": self.closed.code, "message": self.closed.message}})
        return HTTP_STATUS.get(self.code, 500), body


def _auth(token: str) -> tuple[tuple[str, str], ...]:
    # No token: none sent, and the matchmaker says what is missing.
    return bearer_metadata(token) if token else ()

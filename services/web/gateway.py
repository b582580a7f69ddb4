"""One browser WebSocket = one ``Matchmaker.Session`` gRPC stream.

The browser speaks the Session protocol itself: each WebSocket text frame is
one ``ClientMessage`` (browser to matchmaker) or ``ServerMessage`` (back) in
protobuf's canonical JSON mapping, so nothing is translated but the encoding.
When the gRPC stream ends the browser gets one last frame,
``{"closed": {"code": "<gRPC status name>", "message": "..."}}``, and the
WebSocket closes; when the WebSocket closes, the gRPC stream is cancelled
(the matchmaker then ends the session's call and detaches its leg).

This module is the only place that knows protobuf JSON and gRPC statuses;
the aiohttp routes (``duet.services.web.app``) only hand it WebSockets.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
from dataclasses import dataclass
from typing import Any

import grpc
from aiohttp import WSMsgType, web
from google.protobuf import json_format

from duet.services.auth.bearer import bearer_metadata
from duet.services.rpc.call_status import final_status
from duet.v1 import matchmaker_pb2, matchmaker_pb2_grpc

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
_STREAM_OVER = "stream over"  # a write found the gRPC stream finished: its status tells why


class SessionGateway:
    """Relays WebSockets to the matchmaker over one shared gRPC channel."""

    def __init__(self, matchmaker: str) -> None:
        self.matchmaker = matchmaker
        self._channel = grpc.aio.insecure_channel(matchmaker)
        self._stub = matchmaker_pb2_grpc.MatchmakerStub(self._channel)
        self._streams: set[Any] = set()  # Session calls, kept until a later relay finds them done

    @property
    def open_streams(self) -> int:
        """Session streams to the matchmaker that are still open (not finished, not cancelled)."""
        return sum(1 for call in self._streams if not call.done())

    async def close(self) -> None:
        await self._channel.close()

    async def get_call(self, call_id: str, token: str) -> tuple[int, str]:
        """``Matchmaker.GetCall`` with the browser's token, as (HTTP status, JSON body): the
        CallRecord, or {"error": {code, message}}."""
        try:
            record = await self._stub.GetCall(
                matchmaker_pb2.GetCallRequest(call_id=call_id), timeout=5.0, metadata=_auth(token)
            )
        except grpc.aio.AioRpcError as exc:
            closed = self._status(exc.code(), exc.details() or "")
            body = json.dumps({"error": {"code": closed.code, "message": closed.message}})
            return HTTP_STATUS.get(exc.code(), 500), body
        return 200, json_format.MessageToJson(record, indent=None)

    async def list_friends(self, token: str) -> tuple[int, str]:
        """``Matchmaker.ListFriends`` with the browser's token, as (HTTP status, JSON body)."""
        return await self._unary(self._stub.ListFriends, matchmaker_pb2.ListFriendsRequest(), token)

    async def remove_friend(self, user_id: str, token: str) -> tuple[int, str]:
        """``Matchmaker.RemoveFriend`` with the browser's token, as (HTTP status, JSON body)."""
        return await self._unary(self._stub.RemoveFriend, matchmaker_pb2.RemoveFriendRequest(user_id=user_id), token)

    async def _unary(self, method: Any, request: Any, token: str) -> tuple[int, str]:
        try:
            response = await method(request, timeout=5.0, metadata=_auth(token))
        except grpc.aio.AioRpcError as exc:
            closed = self._status(exc.code(), exc.details() or "")
            body = json.dumps({"error": {"code": closed.code, "message": closed.message}})
            return HTTP_STATUS.get(exc.code(), 500), body
        return 200, json_format.MessageToJson(response, indent=None, always_print_fields_with_no_presence=True)

    async def relay(
        self, ws: web.WebSocketResponse, *, client_address: str, token: str, stopping: asyncio.Event
    ) -> Closed | None:
        """Carry one Session between ``ws`` and the matchmaker until either side ends it.

        ``token``: the browser's user token, presented as the stream's metadata.
        Sends the final ``closed`` frame (and closes ``ws``) and returns it;
        None when the browser went away first. ``stopping`` set: the gateway is
        shutting down, and the browser is told so.
        """
        call = self._stub.Session(metadata=(("x-forwarded-for", client_address), *_auth(token)))
        self._streams = {c for c in self._streams if not c.done()}
        self._streams.add(call)
        up = asyncio.create_task(self._browser_to_matchmaker(ws, call), name="ws->grpc")
        down = asyncio.create_task(self._matchmaker_to_browser(ws, call), name="grpc->ws")
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
            call.cancel()  # no-op when the stream is over already; else the matchmaker sees CANCELLED
            await asyncio.gather(up, down, stop, return_exceptions=True)
        if closed is not None and not ws.closed:
            with contextlib.suppress(ConnectionError, RuntimeError):  # the browser left meanwhile
                await ws.send_str(closed.to_json())
        await ws.close()
        return closed

    async def _browser_to_matchmaker(self, ws: web.WebSocketResponse, call: Any) -> Closed | str:
        async for frame in ws:
            if frame.type == WSMsgType.TEXT:
                try:
                    message = parse_client_message(frame.data)
                except ProtocolError as exc:
                    return Closed("INVALID_ARGUMENT", str(exc))
                try:
                    # Awaits until gRPC takes it: the matchmaker's pace holds back the browser's reads.
                    await call.write(message)
                except (grpc.aio.AioRpcError, asyncio.InvalidStateError):
                    return _STREAM_OVER
            elif frame.type == WSMsgType.BINARY:
                return Closed(
                    "INVALID_ARGUMENT",
                    "binary frames are not part of the protocol: send each ClientMessage as JSON text",
                )
            elif frame.type == WSMsgType.ERROR:
                break
        return _BROWSER_GONE

    async def _matchmaker_to_browser(self, ws: web.WebSocketResponse, call: Any) -> Closed | None:
        while True:
            try:
                message = await call.read()
            except grpc.aio.AioRpcError as exc:
                # A stream the matchmaker ended at once (a refused token) may show a placeholder status first.
                return self._status(*await final_status(call, exc.code(), exc.details() or ""))
            if message is grpc.aio.EOF:
                return self._status(*await final_status(call, await call.code(), await call.details() or ""))
            try:
                # Awaits the socket's drain: a slow browser holds back reading the stream.
                await ws.send_str(server_message_json(message))
            except (ConnectionError, RuntimeError):  # the browser left
                return None

    def _status(self, code: grpc.StatusCode, details: str) -> Closed:
        """The gRPC status as the browser's closed frame, in words a person can act on."""
        if code == grpc.StatusCode.UNAVAILABLE and self._channel.get_state() != grpc.ChannelConnectivity.READY:
            # Not the matchmaker's own UNAVAILABLE (e.g. no edge): the channel never got (or lost) a connection.
            return Closed(
                "UNAVAILABLE", f"the matchmaker at {self.matchmaker} is not reachable; try again later ({details})"
            )
        if code == grpc.StatusCode.UNAUTHENTICATED:
            return Closed(
                code.name, f"Duet did not accept this page's sign-in ({details}); reload the page to sign in again"
            )
        return Closed(code.name, details)


def _auth(token: str) -> tuple[tuple[str, str], ...]:
    # No token: none sent, and the matchmaker says what is missing.
    return bearer_metadata(token) if token else ()

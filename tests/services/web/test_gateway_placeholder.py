"""gRPC's placeholder status ("Internal error from Core", what a client sees when its write fails as the
server ends the stream) before a session is open: the gateway opens the stream again and shows the
server's own reason, never the placeholder. A stand-in matchmaker over real gRPC ends its first
stream with exactly that status, then refuses like the real one. A stream a stopping replica dropped as
CANCELLED before the session opened is opened again the same way."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator

import aiohttp
import grpc
import pytest

from duet.services.rpc.server import start_server
from duet.services.web.app import WebServer
from duet.v1 import common_pb2, matchmaker_pb2, matchmaker_pb2_grpc
from tests.services.web.test_gateway import expect_closed, hello, receive, ws_url


class EndsStreams(matchmaker_pb2_grpc.MatchmakerServicer):
    """Ends each Session with the next of ``endings``; an empty list: sends one message, then waits."""

    def __init__(self, endings: list[tuple[grpc.StatusCode, str]]) -> None:
        self.endings = endings
        self.streams = 0

    async def Session(self, request_iterator, context):  # type: ignore[no-untyped-def]
        self.streams += 1
        if self.endings:
            code, details = self.endings.pop(0)
            await context.abort(code, details)
        yield matchmaker_pb2.ServerMessage(
            edge_assigned=matchmaker_pb2.EdgeAssigned(session_id="s1", edge=common_pb2.EdgeRef(edge_id="fra-1"))
        )
        async for _ in request_iterator:
            pass


@pytest.fixture
async def http() -> AsyncIterator[aiohttp.ClientSession]:
    async with aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=30)) as session:
        yield session


async def serve(servicer: EndsStreams) -> tuple[grpc.aio.Server, str]:
    return await start_server(
        "127.0.0.1:0", lambda s: matchmaker_pb2_grpc.add_MatchmakerServicer_to_server(servicer, s)
    )


PLACEHOLDER = (grpc.StatusCode.INTERNAL, "Internal error from Core")


async def test_the_placeholder_before_the_session_opens_is_retried_and_the_real_refusal_shown(
    http: aiohttp.ClientSession,
) -> None:
    servicer = EndsStreams([PLACEHOLDER, (grpc.StatusCode.UNAUTHENTICATED, "token expired at 12:00")])
    server, address = await serve(servicer)
    try:
        async with WebServer(address, listen="127.0.0.1:0") as url, http.ws_connect(ws_url(url, token="t")) as ws:
            await ws.send_str(hello("ana"))
            message = await expect_closed(ws, "UNAUTHENTICATED", "token expired at 12:00", "sign")
        assert "Internal error from Core" not in message
        assert servicer.streams == 2
    finally:
        await server.stop(None)


async def test_a_stream_dropped_as_cancelled_before_the_session_opens_is_opened_again(
    http: aiohttp.ClientSession,
) -> None:
    servicer = EndsStreams([(grpc.StatusCode.CANCELLED, "CANCELLED")])
    server, address = await serve(servicer)
    try:
        async with WebServer(address, listen="127.0.0.1:0") as url, http.ws_connect(ws_url(url, token="t")) as ws:
            await ws.send_str(hello("ana"))
            assert "edgeAssigned" in await receive(ws)
        assert servicer.streams == 2
    finally:
        await server.stop(None)


class DropsOpenStreams(matchmaker_pb2_grpc.MatchmakerServicer):
    """Opens each Session, then drops it as CANCELLED."""

    async def Session(self, request_iterator, context):  # type: ignore[no-untyped-def]
        yield matchmaker_pb2.ServerMessage(
            edge_assigned=matchmaker_pb2.EdgeAssigned(session_id="s1", edge=common_pb2.EdgeRef(edge_id="fra-1"))
        )
        await context.abort(grpc.StatusCode.CANCELLED, "CANCELLED")


async def test_an_open_session_dropped_as_cancelled_is_explained_in_words(http: aiohttp.ClientSession) -> None:
    server, address = await start_server(
        "127.0.0.1:0", lambda s: matchmaker_pb2_grpc.add_MatchmakerServicer_to_server(DropsOpenStreams(), s)
    )
    try:
        async with WebServer(address, listen="127.0.0.1:0") as url, http.ws_connect(ws_url(url, token="t")) as ws:
            await ws.send_str(hello("ana"))
            assert "edgeAssigned" in await receive(ws)
            await expect_closed(ws, "CANCELLED", "dropped the session", "try again")
    finally:
        await server.stop(None)


async def test_a_session_already_open_is_not_opened_again(http: aiohttp.ClientSession) -> None:
    servicer = EndsStreams([])
    server, address = await serve(servicer)
    try:
        async with WebServer(address, listen="127.0.0.1:0") as url, http.ws_connect(ws_url(url, token="t")) as ws:
            await ws.send_str(hello("ana"))
            assert "edgeAssigned" in await receive(ws)
            await server.stop(None)  # the open session's stream ends: the browser is told, not re-routed
            closed = await receive(ws)
        assert set(closed) == {"closed"} and closed["closed"]["code"] == "UNAVAILABLE", json.dumps(closed)
        assert servicer.streams == 1
    finally:
        await server.stop(None)

"""The gateway in front of several matchmaker replicas: a session that finds one unavailable (down,
stopping, or its shard being taken over) opens on the next, and the browser sees one session. Two
in-process replicas over real gRPC and the package's fakes (``test_forwarding``'s pair: the first owns
the shard, the second forwards to it), a dead address, and aiohttp WebSocket clients."""

from __future__ import annotations

import asyncio
import json
import socket
from collections.abc import AsyncIterator

import aiohttp
import pytest

from duet.services.auth.tokens import mint_user_token
from duet.services.web.app import WebServer
from tests.services.matchmaker.grpc_harness import USER_SECRET
from tests.services.matchmaker.replicas.test_forwarding import Replica, pair
from tests.services.web.test_gateway import expect_closed, hello, receive, ws_url

__all__ = ["pair"]  # the fixture


@pytest.fixture
async def http() -> AsyncIterator[aiohttp.ClientSession]:
    async with aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=20)) as session:
        yield session


def dead_address() -> str:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return f"127.0.0.1:{s.getsockname()[1]}"


def token(user: str) -> str:
    return mint_user_token(USER_SECRET, user)


async def open_session(http: aiohttp.ClientSession, url: str, user: str) -> aiohttp.ClientWebSocketResponse:
    ws = await http.ws_connect(ws_url(url, token=token(user)))
    await ws.send_str(hello(user))
    return ws


async def test_a_dead_replica_is_passed_over(pair: tuple[Replica, Replica], http: aiohttp.ClientSession) -> None:
    owner, _ = pair
    async with WebServer([dead_address(), owner.address], listen="127.0.0.1:0") as url:
        for user in ("ana", "ben"):  # the second goes straight to the replica that worked
            ws = await open_session(http, url, user)
            assert "edgeAssigned" in await receive(ws)
            await ws.send_str(json.dumps({"leave": {}}))
            await expect_closed(ws, "OK")
            await ws.close()


async def test_a_stopping_replica_is_passed_over_and_the_session_opens_on_the_other(
    pair: tuple[Replica, Replica], http: aiohttp.ClientSession
) -> None:
    owner, other = pair
    await other.servicer.stop_serving()  # the forwarding replica stops; its server still answers
    async with WebServer([other.address, owner.address], listen="127.0.0.1:0") as url:
        ws = await open_session(http, url, "ana")
        assert "edgeAssigned" in await receive(ws)
        assert [s.user_id for s in owner.mm.sessions.values()] == ["ana"]
        await ws.close()


async def test_an_open_session_whose_replica_stops_is_told_to_reconnect(
    pair: tuple[Replica, Replica], http: aiohttp.ClientSession
) -> None:
    owner, other = pair
    async with WebServer([owner.address, other.address], listen="127.0.0.1:0") as url:
        ws = await open_session(http, url, "ana")
        assert "edgeAssigned" in await receive(ws)
        await owner.servicer.stop_serving()
        # Once open, the stream is the browser's: it is told, and its next session chooses again.
        await expect_closed(ws, "UNAVAILABLE", "shutting down", "reconnect")
        await ws.close()


async def test_no_replica_reachable_is_said_in_words(http: aiohttp.ClientSession) -> None:
    first, second = dead_address(), dead_address()
    async with WebServer(f"{first},{second}", listen="127.0.0.1:0") as url:
        ws = await open_session(http, url, "ana")
        message = await asyncio.wait_for(expect_closed(ws, "UNAVAILABLE", "no matchmaker replica could be reached"), 15)
        assert f"tried {first}, {second}" in message
        await ws.close()


async def test_a_call_record_is_read_from_a_replica_that_answers(
    pair: tuple[Replica, Replica], http: aiohttp.ClientSession
) -> None:
    owner, _ = pair
    async with WebServer([dead_address(), owner.address], listen="127.0.0.1:0") as url:
        async with http.get(url + "calls/nope", headers={"Authorization": f"Bearer {token('ana')}"}) as response:
            body = await response.json()
        # The live replica's own answer (no such call), not the dead one's "unreachable".
        assert response.status == 404 and body["error"]["code"] == "NOT_FOUND", body

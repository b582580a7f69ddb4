"""The gateway between a real matchmaker (the local cluster) and aiohttp WebSocket clients."""

from __future__ import annotations

import asyncio
import json
import socket
import time
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import aiohttp
import pytest
import pytest_asyncio

from duet.services.auth.tokens import verify_user_token
from duet.services.devkit.local_cluster import DEFAULT_REGIONS, ClusterInfo, LocalCluster
from duet.services.rpc.server import CannotListen
from duet.services.web.app import GUEST_TOKEN_TTL_S, WebServer
from duet.services.web.demo_regions import DemoRegions

pytestmark = [pytest.mark.slow, pytest.mark.asyncio(loop_scope="module")]


@pytest_asyncio.fixture(scope="module", loop_scope="module")
async def cluster(database_url: str, tmp_path_factory: pytest.TempPathFactory) -> AsyncIterator[ClusterInfo]:
    state = tmp_path_factory.mktemp("cluster-web")
    async with LocalCluster(state_dir=Path(state), database=database_url) as info:
        yield info


@pytest_asyncio.fixture(scope="module", loop_scope="module")
async def web_url(cluster: ClusterInfo) -> AsyncIterator[str]:
    async with WebServer(
        cluster.matchmaker,
        listen="127.0.0.1:0",
        demo_regions=DemoRegions(DEFAULT_REGIONS),
        guest_token_secret=cluster.secrets.user,
    ) as url:
        yield url


@pytest_asyncio.fixture(loop_scope="module")
async def http() -> AsyncIterator[aiohttp.ClientSession]:
    async with aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=20)) as session:
        yield session


def ws_url(web_url: str, query: str = "", *, token: str = "") -> str:
    """The /session WebSocket's URL; ``token`` goes where a browser puts it (the query)."""
    if token:
        query = f"{query}&token={token}" if query else f"?token={token}"
    return web_url.replace("http://", "ws://") + "session" + query


async def receive(ws: aiohttp.ClientWebSocketResponse) -> dict[str, Any]:
    frame = await asyncio.wait_for(ws.receive(), 10)
    assert frame.type == aiohttp.WSMsgType.TEXT, frame
    data: dict[str, Any] = json.loads(frame.data)
    return data


async def expect_closed(ws: aiohttp.ClientWebSocketResponse, code: str, *words: str) -> str:
    """The last frame is a closed frame with ``code`` and these words; then the socket closes."""
    data = await receive(ws)
    assert set(data) == {"closed"}, data
    assert data["closed"]["code"] == code, data
    for word in words:
        assert word in data["closed"]["message"], data
    end = await asyncio.wait_for(ws.receive(), 10)
    assert end.type in (aiohttp.WSMsgType.CLOSE, aiohttp.WSMsgType.CLOSED), end
    message: str = data["closed"]["message"]
    return message


def hello(user_id: str) -> str:
    return json.dumps({"hello": {"userId": user_id, "displayName": user_id}})


async def test_hello_over_the_websocket_gets_edge_assigned(
    cluster: ClusterInfo, web_url: str, http: aiohttp.ClientSession
) -> None:
    async with http.ws_connect(ws_url(web_url, token=cluster.user_token("ws-ana"))) as ws:
        await ws.send_str(hello("ws-ana"))
        assigned = (await receive(ws))["edgeAssigned"]
        # the browser's loopback address cannot be located: the routing service's default region
        assert assigned["edge"]["edgeId"] == "fra-1"
        assert assigned["sessionId"]
        assert assigned["edgeAssigned"] > 0
        await ws.send_str(json.dumps({"leave": {}}))
        await expect_closed(ws, "OK")


async def test_clock_probes_and_echoes_cross_the_gateway_as_json(
    cluster: ClusterInfo, web_url: str, http: aiohttp.ClientSession
) -> None:
    async with http.ws_connect(ws_url(web_url, token=cluster.user_token("ws-clock"))) as ws:
        await ws.send_str(json.dumps({"hello": {"userId": "ws-clock", "clockProbes": True}}))
        assert "edgeAssigned" in await receive(ws)
        for expected_id in ("1", "2"):  # the next probe follows each echo
            probe = (await receive(ws))["clockProbe"]
            assert probe["probeId"] == expected_id and probe["serverSend"] > 0  # uint64 is a string in JSON
            now = time.time() * 1000
            await ws.send_str(
                json.dumps({"clockEcho": {"probeId": probe["probeId"], "clientReceive": now, "clientSend": now}})
            )
        assert (await receive(ws))["clockProbe"]["probeId"] == "3"  # left unanswered
        # An echo that answers nothing is refused in words; the session goes on.
        await ws.send_str(json.dumps({"clockEcho": {"probeId": "99", "clientReceive": 1.0, "clientSend": 1.0}}))
        error = (await receive(ws))["error"]
        assert error["code"] == "INVALID_ARGUMENT" and "answers no outstanding clock probe" in error["message"]
        assert error["request"] == "clock_echo"
        await ws.send_str(json.dumps({"leave": {}}))
        await expect_closed(ws, "OK")


@pytest.mark.parametrize(("region", "edge"), [("sin", "sin-1"), ("Virginia", "vir-1")])
async def test_a_demo_region_puts_the_browser_on_that_regions_edge(
    cluster: ClusterInfo, web_url: str, http: aiohttp.ClientSession, region: str, edge: str
) -> None:
    async with http.ws_connect(ws_url(web_url, f"?region={region}", token=cluster.user_token(f"ws-{region}"))) as ws:
        await ws.send_str(hello(f"ws-{region}"))
        assigned = (await receive(ws))["edgeAssigned"]
        assert assigned["edge"]["edgeId"] == edge
        assert "geoip" in assigned["reason"]


async def test_an_unknown_region_is_refused_in_words(web_url: str, http: aiohttp.ClientSession) -> None:
    async with http.ws_connect(ws_url(web_url, "?region=mars")) as ws:
        await expect_closed(ws, "INVALID_ARGUMENT", "unknown region 'mars'", "fra (Frankfurt)")


async def test_malformed_json_ends_the_session_with_a_clear_message(
    cluster: ClusterInfo, web_url: str, http: aiohttp.ClientSession
) -> None:
    async with http.ws_connect(ws_url(web_url, token=cluster.user_token("ws-bad-json"))) as ws:
        await ws.send_str(hello("ws-bad-json"))
        assert "edgeAssigned" in await receive(ws)
        await ws.send_str("{this is not json")
        await expect_closed(ws, "INVALID_ARGUMENT", "not a ClientMessage in protobuf JSON", "{this is not json")


async def test_a_binary_frame_is_refused(web_url: str, http: aiohttp.ClientSession) -> None:  # no token needed
    async with http.ws_connect(ws_url(web_url)) as ws:
        await ws.send_bytes(b"\x0a\x02\x0a\x00")
        await expect_closed(ws, "INVALID_ARGUMENT", "binary frames are not part of the protocol")


async def test_the_matchmakers_own_status_reaches_the_browser(
    cluster: ClusterInfo, web_url: str, http: aiohttp.ClientSession
) -> None:
    async with http.ws_connect(ws_url(web_url, token=cluster.user_token("ws-first"))) as ws:
        await ws.send_str(json.dumps({"leave": {}}))  # the first message must be Hello
        await expect_closed(ws, "INVALID_ARGUMENT", "first message on a Session stream must be hello")


async def test_a_missing_or_refused_token_is_a_sign_in_problem_in_words(
    cluster: ClusterInfo, web_url: str, http: aiohttp.ClientSession
) -> None:
    async with http.ws_connect(ws_url(web_url)) as ws:
        await ws.send_str(hello("ws-no-token"))
        await expect_closed(ws, "UNAUTHENTICATED", "did not accept this page's sign-in", "no token", "reload the page")
    async with http.ws_connect(ws_url(web_url, token=cluster.user_token("ws-mallory"))) as ws:
        await ws.send_str(hello("ws-ana"))
        await expect_closed(ws, "UNAUTHENTICATED", "token is for user ws-mallory, not ws-ana")
    # A non-browser client may use the Authorization header instead of the query.
    headers = {"Authorization": f"Bearer {cluster.user_token('ws-header')}"}
    async with http.ws_connect(ws_url(web_url), headers=headers) as ws:
        await ws.send_str(hello("ws-header"))
        assert "edgeAssigned" in await receive(ws)


async def test_closing_the_websocket_cancels_the_session_stream(
    cluster: ClusterInfo, http: aiohttp.ClientSession
) -> None:
    web = WebServer(cluster.matchmaker, listen="127.0.0.1:0")
    async with web as url:
        assert web.gateway is not None
        async with http.ws_connect(ws_url(url, token=cluster.user_token("ws-closer"))) as ws:
            await ws.send_str(hello("ws-closer"))
            assert "edgeAssigned" in await receive(ws)
            assert web.gateway.open_streams == 1
        for _ in range(100):
            if web.gateway.open_streams == 0:
                break
            await asyncio.sleep(0.02)
        assert web.gateway.open_streams == 0


async def test_the_page_its_config_and_call_records_are_served(
    cluster: ClusterInfo, web_url: str, http: aiohttp.ClientSession
) -> None:
    async with http.get(web_url) as response:
        assert response.status == 200
        assert "Talk to someone" in await response.text()
    async with http.get(web_url + "app.js") as response:
        assert response.status == 200
        assert "javascript" in response.content_type
        assert "window.duetState" in await response.text()
    async with http.get(web_url + "config.json") as response:
        assert await response.json() == {
            "demoRegions": [
                {"code": "fra", "name": "Frankfurt"},
                {"code": "vir", "name": "Virginia"},
                {"code": "sin", "name": "Singapore"},
            ],
            "guestTokens": True,
        }
    async with http.get(web_url + "..%2Fgateway.py") as response:
        assert response.status == 404
    async with http.get(web_url + "calls/no-such-call") as response:
        assert response.status == 401
        error = (await response.json())["error"]
        assert error["code"] == "UNAUTHENTICATED" and "no token" in error["message"]
    ana = {"Authorization": f"Bearer {cluster.user_token('ws-ana')}"}
    async with http.get(web_url + "calls/no-such-call", headers=ana) as response:
        assert response.status == 404
        assert (await response.json())["error"]["code"] == "NOT_FOUND"


async def test_guest_sign_in_mints_a_fresh_short_lived_user_token(
    cluster: ClusterInfo, web_url: str, http: aiohttp.ClientSession
) -> None:
    async with http.post(web_url + "token") as response:
        assert response.status == 200 and response.headers["Cache-Control"] == "no-store"
        first = await response.json()
    async with http.post(web_url + "token") as response:
        second = await response.json()
    assert first["userId"].startswith("web-") and first["userId"] != second["userId"]
    claims = verify_user_token(cluster.secrets.user, first["token"])  # type: ignore[arg-type]
    assert claims.user_id == first["userId"] and claims.expires_at == first["expiresAt"]
    assert claims.expires_at - claims.issued_at == GUEST_TOKEN_TTL_S
    async with http.ws_connect(ws_url(web_url, token=first["token"])) as ws:
        await ws.send_str(json.dumps({"hello": {"displayName": "Guest"}}))  # the user id comes from the token
        assert "edgeAssigned" in await receive(ws)


async def test_a_gateway_without_guest_sign_in_signs_nobody_in(
    cluster: ClusterInfo, http: aiohttp.ClientSession
) -> None:
    async with WebServer(cluster.matchmaker, listen="127.0.0.1:0") as url:
        async with http.post(url + "token") as response:
            assert response.status == 404 and "signs in no guests" in await response.text()
        async with http.get(url + "config.json") as response:
            assert (await response.json())["guestTokens"] is False


async def test_open_sessions_are_told_when_the_gateway_stops(cluster: ClusterInfo, http: aiohttp.ClientSession) -> None:
    async with WebServer(cluster.matchmaker, listen="127.0.0.1:0") as url:
        ws = await http.ws_connect(ws_url(url, token=cluster.user_token("ws-stopping")))
        await ws.send_str(hello("ws-stopping"))
        assert "edgeAssigned" in await receive(ws)
        closing = asyncio.create_task(expect_closed(ws, "UNAVAILABLE", "shutting down"))
    await closing
    await ws.close()


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
        return port


async def test_a_matchmaker_that_is_down_is_named_in_words(http: aiohttp.ClientSession) -> None:
    dead = f"127.0.0.1:{free_port()}"
    async with WebServer(dead, listen="127.0.0.1:0") as url, http.ws_connect(ws_url(url)) as ws:
        await ws.send_str(hello("ws-nobody-home"))
        await expect_closed(ws, "UNAVAILABLE", f"the matchmaker at {dead} is not reachable")


async def test_a_taken_port_is_refused_in_words() -> None:
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        with pytest.raises(CannotListen, match=f"cannot serve the web client on 127.0.0.1:{port}: the port is taken"):
            async with WebServer("127.0.0.1:1", listen=f"127.0.0.1:{port}"):
                pass

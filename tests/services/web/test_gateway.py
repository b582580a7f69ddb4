"""The gateway between a real matchmaker (the local cluster) and aiohttp WebSocket clients."""

from __future__ import annotations

import asyncio
import json
import socket
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import aiohttp
import pytest
import pytest_asyncio

from duet.services.devkit.local_cluster import DEFAULT_REGIONS, ClusterInfo, LocalCluster
from duet.services.rpc.server import CannotListen
from duet.services.web.app import WebServer
from duet.services.web.demo_regions import DemoRegions

pytestmark = [pytest.mark.slow, pytest.mark.asyncio(loop_scope="module")]


@pytest_asyncio.fixture(scope="module", loop_scope="module")
async def cluster(database_url: str, tmp_path_factory: pytest.TempPathFactory) -> AsyncIterator[ClusterInfo]:
    state = tmp_path_factory.mktemp("cluster-web")
    async with LocalCluster(state_dir=Path(state), database=database_url) as info:
        yield info


@pytest_asyncio.fixture(scope="module", loop_scope="module")
async def web_url(cluster: ClusterInfo) -> AsyncIterator[str]:
    async with WebServer(cluster.matchmaker, listen="127.0.0.1:0", demo_regions=DemoRegions(DEFAULT_REGIONS)) as url:
        yield url


@pytest_asyncio.fixture(loop_scope="module")
async def http() -> AsyncIterator[aiohttp.ClientSession]:
    async with aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=20)) as session:
        yield session


def ws_url(web_url: str, query: str = "") -> str:
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


async def test_hello_over_the_websocket_gets_edge_assigned(web_url: str, http: aiohttp.ClientSession) -> None:
    async with http.ws_connect(ws_url(web_url)) as ws:
        await ws.send_str(hello("ws-ana"))
        assigned = (await receive(ws))["edgeAssigned"]
        # the browser's loopback address cannot be located: the routing service's default region
        assert assigned["edge"]["edgeId"] == "fra-1"
        assert assigned["sessionId"]
        assert assigned["edgeAssigned"] > 0
        await ws.send_str(json.dumps({"leave": {}}))
        await expect_closed(ws, "OK")


@pytest.mark.parametrize(("region", "edge"), [("sin", "sin-1"), ("Virginia", "vir-1")])
async def test_a_demo_region_puts_the_browser_on_that_regions_edge(
    web_url: str, http: aiohttp.ClientSession, region: str, edge: str
) -> None:
    async with http.ws_connect(ws_url(web_url, f"?region={region}")) as ws:
        await ws.send_str(hello(f"ws-{region}"))
        assigned = (await receive(ws))["edgeAssigned"]
        assert assigned["edge"]["edgeId"] == edge
        assert "geoip" in assigned["reason"]


async def test_an_unknown_region_is_refused_in_words(web_url: str, http: aiohttp.ClientSession) -> None:
    async with http.ws_connect(ws_url(web_url, "?region=mars")) as ws:
        await expect_closed(ws, "INVALID_ARGUMENT", "unknown region 'mars'", "fra (Frankfurt)")


async def test_malformed_json_ends_the_session_with_a_clear_message(web_url: str, http: aiohttp.ClientSession) -> None:
    async with http.ws_connect(ws_url(web_url)) as ws:
        await ws.send_str(hello("ws-bad-json"))
        assert "edgeAssigned" in await receive(ws)
        await ws.send_str("{this is not json")
        await expect_closed(ws, "INVALID_ARGUMENT", "not a ClientMessage in protobuf JSON", "{this is not json")


async def test_a_binary_frame_is_refused(web_url: str, http: aiohttp.ClientSession) -> None:
    async with http.ws_connect(ws_url(web_url)) as ws:
        await ws.send_bytes(b"\x0a\x02\x0a\x00")
        await expect_closed(ws, "INVALID_ARGUMENT", "binary frames are not part of the protocol")


async def test_the_matchmakers_own_status_reaches_the_browser(web_url: str, http: aiohttp.ClientSession) -> None:
    async with http.ws_connect(ws_url(web_url)) as ws:
        await ws.send_str(json.dumps({"leave": {}}))  # the first message must be Hello
        await expect_closed(ws, "INVALID_ARGUMENT", "first message on a Session stream must be hello")
    async with http.ws_connect(ws_url(web_url)) as ws:
        await ws.send_str(json.dumps({"hello": {"userId": "no spaces allowed"}}))
        await expect_closed(ws, "INVALID_ARGUMENT", "user_id")


async def test_closing_the_websocket_cancels_the_session_stream(
    cluster: ClusterInfo, http: aiohttp.ClientSession
) -> None:
    web = WebServer(cluster.matchmaker, listen="127.0.0.1:0")
    async with web as url:
        assert web.gateway is not None
        async with http.ws_connect(ws_url(url)) as ws:
            await ws.send_str(hello("ws-closer"))
            assert "edgeAssigned" in await receive(ws)
            assert web.gateway.open_streams == 1
        for _ in range(100):
            if web.gateway.open_streams == 0:
                break
            await asyncio.sleep(0.02)
        assert web.gateway.open_streams == 0


async def test_the_page_its_config_and_call_records_are_served(web_url: str, http: aiohttp.ClientSession) -> None:
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
            ]
        }
    async with http.get(web_url + "..%2Fgateway.py") as response:
        assert response.status == 404
    async with http.get(web_url + "calls/no-such-call") as response:
        assert response.status == 404
        assert (await response.json())["error"]["code"] == "NOT_FOUND"


async def test_open_sessions_are_told_when_the_gateway_stops(cluster: ClusterInfo, http: aiohttp.ClientSession) -> None:
    async with WebServer(cluster.matchmaker, listen="127.0.0.1:0") as url:
        ws = await http.ws_connect(ws_url(url))
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

"""The web client when its edge dies: it re-attaches to another edge and talks again.

A cluster of its own (an edge is killed), the web gateway, one browser on
vir-1 and an SDK client on fra-1.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator
from pathlib import Path

import pytest
import pytest_asyncio

from duet.services.client import DuetClient
from duet.services.devkit.demo_geo import DEMO_CLIENT_IPS
from duet.services.devkit.local_cluster import DEFAULT_REGIONS, LocalCluster
from duet.services.devkit.synthetic_media import SyntheticCamera, SyntheticMicrophone
from duet.services.web.app import WebServer
from duet.services.web.demo_regions import DemoRegions
from tests.browser.conftest import OpenPage
from tests.browser.test_web_client import wait_calls, wait_state

pytestmark = [pytest.mark.browser, pytest.mark.slow, pytest.mark.asyncio(loop_scope="module")]


@pytest_asyncio.fixture(loop_scope="module")
async def cluster_and_page_url(database_url: str, tmp_path: Path) -> AsyncIterator[tuple[LocalCluster, str]]:
    cluster = LocalCluster(state_dir=tmp_path / "state", database=database_url, avoid_recent=0)
    async with (
        cluster as info,
        WebServer(
            info.matchmaker,
            listen="127.0.0.1:0",
            demo_regions=DemoRegions(DEFAULT_REGIONS),
            guest_token_secret=info.secrets.user,
        ) as url,
    ):
        yield cluster, url


async def test_the_web_client_re_attaches_when_its_edge_is_killed(
    cluster_and_page_url: tuple[LocalCluster, str], open_page: OpenPage
) -> None:
    cluster, url = cluster_and_page_url
    info = cluster.info
    assert info is not None
    ben = DuetClient(
        info.matchmaker,
        "el-ben",
        "Ben",
        video=SyntheticCamera(5151),
        audio=SyntheticMicrophone(),
        client_ip=DEMO_CLIENT_IPS["Frankfurt"],
        token=info.user_tokens("el-ben"),
    )
    page = await open_page(url)
    try:
        await ben.connect()
        waiting = asyncio.create_task(ben.find_partner())
        await page.select_option("#region", "vir")
        await page.fill("#name", "Ana")
        await page.click("#talk")
        first = await wait_calls(page, 1)
        await waiting
        assert first["route"] == ["vir-1", "fra-1"] and first["connected"]
        assert (await page.evaluate("duetState.edge"))["edgeId"] == "vir-1"

        edge = next(c for c in cluster.children if c.name == "edge-vir-1")
        ended = asyncio.create_task(ben.wait_call_ended(timeout=8))
        killed = time.monotonic()
        edge.proc.kill()
        await page.wait_for_function("duetState.edgesLost.includes('vir-1')", timeout=5000)
        lost_after = time.monotonic() - killed
        assert await ended == "partner_edge_lost"
        # The page is on another edge with a new leg, back in the pool; Ben looks again and they meet.
        await wait_state(page, "waiting", timeout_s=10)
        new_edge = (await page.evaluate("duetState.edge"))["edgeId"]
        assert new_edge in ("fra-1", "sin-1")
        result = await ben.find_partner()
        second = await wait_calls(page, 2)
        assert second["connected"] and second["callId"] == result.call_id
        assert second["route"][0] == new_edge
        assert second["stages"]["leg_connected"] > first["stages"]["leg_connected"]  # a new leg
        assert (await page.evaluate("duetState.error")) == ""
        print(f"edge killed -> the page told: {lost_after * 1000:.0f} ms; re-attached to {new_edge}")
    finally:
        await ben.leave()

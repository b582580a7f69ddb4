"""Browser tests: Debian's chromium (never a downloaded browser) driven by Playwright.

``tests/browser/chromium.py`` holds the flags and the launcher. The
fixtures give a local cluster with the web gateway in front of its
matchmaker (and a greeter bot waiting in the pool), and ``open_page``, which
opens the web client in a browser of its own, so a test can run several
clients with their own fake camera files.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass
from pathlib import Path

import pytest
import pytest_asyncio
from playwright.async_api import Page

from duet.services.devkit.greeter import Greeter
from duet.services.devkit.local_cluster import DEFAULT_REGIONS, ClusterInfo, LocalCluster
from duet.services.web.app import WebServer
from duet.services.web.demo_regions import DemoRegions
from tests.browser.chromium import chromium_args, launch_chromium


@dataclass
class WebCluster:
    info: ClusterInfo
    url: str  # the web client, e.g. http://127.0.0.1:PORT/
    greeter: Greeter


@pytest_asyncio.fixture(scope="module", loop_scope="module")
async def web_cluster(database_url: str, tmp_path_factory: pytest.TempPathFactory) -> AsyncIterator[WebCluster]:
    """The local cluster, the web gateway (demo regions on) and a greeter bot in the pool."""
    state = tmp_path_factory.mktemp("web-cluster")
    async with (
        LocalCluster(state_dir=Path(state), database=database_url) as info,
        WebServer(
            info.matchmaker,
            listen="127.0.0.1:0",
            demo_regions=DemoRegions(DEFAULT_REGIONS),
            guest_token_secret=info.secrets.user,
        ) as url,
    ):
        greeter = Greeter.for_cluster(info, DEFAULT_REGIONS)
        task = asyncio.create_task(greeter.run(), name="greeter bot")
        try:
            yield WebCluster(info, url, greeter)
        finally:
            task.cancel()
            await asyncio.gather(task, return_exceptions=True)


OpenPage = Callable[..., Awaitable[Page]]


@pytest_asyncio.fixture(loop_scope="module")
async def open_page() -> AsyncIterator[OpenPage]:
    """``await open_page(url, video=None, audio=None, fake_ui=True)``: the page in a chromium of its own."""
    async with contextlib.AsyncExitStack() as stack:

        async def open_one(
            url: str, *, video: Path | None = None, audio: Path | None = None, fake_ui: bool = True
        ) -> Page:
            chromium = await stack.enter_async_context(launch_chromium(chromium_args(video, audio, fake_ui)))
            page = await chromium.browser.new_page()
            await page.goto(url)
            return page

        yield open_one

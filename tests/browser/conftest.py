"""Browser tests: Debian's chromium (never a downloaded browser) driven by Playwright.

``chromium_args`` are the flags known to work here as root, headless, with
fake media devices; ``launch_chromium`` starts one browser with them. The
fixtures give a local cluster with the web gateway in front of its
matchmaker (and a greeter bot waiting in the pool), and ``open_page``, which
opens the web client in a browser of its own, so a test can run several
clients with their own fake camera files.
"""

from __future__ import annotations

import asyncio
import contextlib
import shutil
import tempfile
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass
from pathlib import Path

import pytest
import pytest_asyncio
from playwright.async_api import BrowserContext, Page, async_playwright

from duet.services.devkit.greeter import Greeter
from duet.services.devkit.local_cluster import DEFAULT_REGIONS, ClusterInfo, LocalCluster
from duet.services.web.app import WebServer
from duet.services.web.demo_regions import DemoRegions

CHROMIUM = Path("/usr/bin/chromium")
HAVE_CHROMIUM = CHROMIUM.exists()


def chromium_args(video: Path | None = None, audio: Path | None = None, fake_ui: bool = True) -> list[str]:
    """Chromium's flags: headless as root, fake camera and microphone, ICE with loopback-only edges.

    video/audio: a .y4m / .wav file the fake devices play instead of their test pattern and beep.
    fake_ui: accept the camera permission prompt; False leaves it unanswered, i.e. denied in headless.
    """
    args = [
        "--headless",
        "--no-sandbox",  # root
        "--disable-gpu",
        "--disable-quic",
        "--no-first-run",
        "--disable-background-networking",
        "--disable-component-update",
        "--disable-sync",
        "--use-fake-device-for-media-stream",
        # The edges gather ICE candidates on 127.0.0.1 only, which Chromium skips by default ...
        "--allow-loopback-in-peer-connection",
        # ... and its own host candidates must be addresses, not mDNS names the edge cannot resolve.
        "--disable-features=WebRtcHideLocalIpsWithMdns",
    ]
    if fake_ui:
        args.append("--use-fake-ui-for-media-stream")
    if video is not None:
        args.append(f"--use-file-for-fake-video-capture={video}")
    if audio is not None:
        args.append(f"--use-file-for-fake-audio-capture={audio}")
    return args


@contextlib.asynccontextmanager
async def launch_chromium(args: list[str]) -> AsyncIterator[BrowserContext]:
    """One headless chromium with ``args`` and a fresh profile (its only context), closed on exit."""
    if not HAVE_CHROMIUM:
        pytest.fail(f"{CHROMIUM} is missing: `make test` installs Debian's chromium (make browser)")
    profile = tempfile.mkdtemp(prefix="duet-chromium-")
    try:
        async with async_playwright() as pw:
            # A persistent context is the way to give chromium a user-data dir of its own.
            context = await pw.chromium.launch_persistent_context(
                profile, executable_path=str(CHROMIUM), args=args, headless=True
            )
            try:
                yield context
            finally:
                await context.close()
    finally:
        shutil.rmtree(profile, ignore_errors=True)


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
        WebServer(info.matchmaker, listen="127.0.0.1:0", demo_regions=DemoRegions(DEFAULT_REGIONS)) as url,
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
            context = await stack.enter_async_context(launch_chromium(chromium_args(video, audio, fake_ui)))
            page = context.pages[0] if context.pages else await context.new_page()
            await page.goto(url)
            return page

        yield open_one

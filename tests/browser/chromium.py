"""Launching Debian's Chromium for browser tests: its flags, one async context manager, and
reading the picture a page's ``<video>`` shows (:func:`video_snapshot`).

Playwright drives the browser, but never with a browser of its own
(``playwright install`` downloads one, and this project installs Chromium
from Debian instead: ``make test`` does it). Playwright's ``launch`` gives
every browser a fresh temporary profile and removes it on close.
"""

from __future__ import annotations

import base64
import contextlib
import os
import time
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import av
import numpy as np
from playwright.async_api import Browser, Page, async_playwright

CHROMIUM = Path("/usr/bin/chromium")  # Debian's; $DUET_CHROMIUM names another

# Known to work here, as root, in a sandbox without a GPU or a network: no sandbox
# (root), no QUIC and no background fetches, sync or component updates (nothing to reach).
BASE_ARGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]

# WebRTC on one machine: loopback candidates allowed and named by address, not hidden
# behind mDNS names (nothing here resolves them).
WEBRTC_ARGS = [
    "--allow-loopback-in-peer-connection",
    "--disable-features=WebRtcHideLocalIpsWithMdns",
]

# A page needs a secure context for getUserMedia; about:blank is not one, http://localhost is.
# browser_page() serves it from Playwright's request interception: no server, no socket.
PAGE_URL = "http://localhost/"
BLANK_PAGE = "<!doctype html><meta charset=utf-8><title>duet test page</title>"


def chromium_args(video: Path | None = None, audio: Path | None = None, fake_ui: bool = True) -> list[str]:
    """Chromium's command line: the base flags, WebRTC on loopback, and a fake camera and microphone.

    The fake devices play ``video`` (y4m) and ``audio`` (wav) in a loop when
    given, Chromium's own test pattern and beep otherwise. ``fake_ui`` grants
    camera and microphone without a permission prompt.
    """
    args = [*BASE_ARGS, *WEBRTC_ARGS, "--use-fake-device-for-media-stream"]
    if fake_ui:
        args.append("--use-fake-ui-for-media-stream")
    if video is not None:
        args.append(f"--use-file-for-fake-video-capture={video}")
    if audio is not None:
        args.append(f"--use-file-for-fake-audio-capture={audio}")
    return args


def require_chromium() -> Path:
    """The Chromium executable; fails (never skips) with what to do when it is missing."""
    chromium = Path(os.environ.get("DUET_CHROMIUM") or CHROMIUM)
    if not (chromium.is_file() and os.access(chromium, os.X_OK)):
        raise AssertionError(
            f"Chromium not found at {chromium}: the browser tests need Debian's Chromium. "
            "`make test` installs it (apt-get install chromium, as root); otherwise install it "
            "yourself, or set DUET_CHROMIUM to a Chromium executable."
        )
    return chromium


@dataclass(frozen=True)
class LaunchedChromium:
    browser: Browser
    launch_s: float  # from asking Playwright to a browser ready for pages


@contextlib.asynccontextmanager
async def launch_chromium(args: list[str]) -> AsyncIterator[LaunchedChromium]:
    """A headless Chromium with these command-line flags (see :func:`chromium_args`), closed on exit."""
    executable = require_chromium()
    async with async_playwright() as playwright:
        started = time.monotonic()
        browser = await playwright.chromium.launch(executable_path=str(executable), args=args, headless=True)
        try:
            yield LaunchedChromium(browser, time.monotonic() - started)
        finally:
            await browser.close()


async def blank_page(browser: Browser, html: str = BLANK_PAGE) -> Page:
    """A new page showing ``html`` at :data:`PAGE_URL` (a secure context), served without a server."""
    page = await browser.new_page()
    await page.route(PAGE_URL, lambda route: route.fulfill(body=html, content_type="text/html"))
    await page.goto(PAGE_URL)
    return page


# The picture a <video> element shows now, as RGBA, base64: drawn into a canvas at the
# video's own size (no scaling, so a marker reads back exactly). Waits for a first frame.
SNAPSHOT_JS = """
async (selector) => {
  const video = document.querySelector(selector);
  if (!(video instanceof HTMLVideoElement)) throw new Error(`no <video> element matches ${selector}`);
  while (video.videoWidth === 0 || video.readyState < 2) await new Promise((r) => setTimeout(r, 20));
  const canvas = document.createElement('canvas');
  canvas.width = video.videoWidth;
  canvas.height = video.videoHeight;
  const ctx = canvas.getContext('2d');
  ctx.drawImage(video, 0, 0);
  const rgba = ctx.getImageData(0, 0, canvas.width, canvas.height).data;
  let bin = '';
  for (let i = 0; i < rgba.length; i += 0x8000) bin += String.fromCharCode(...rgba.subarray(i, i + 0x8000));
  return {width: canvas.width, height: canvas.height, rgba: btoa(bin)};
}
"""


async def video_snapshot(page: Page, selector: str) -> av.VideoFrame:
    """The picture the ``<video>`` matching ``selector`` shows now, as a yuv420p frame.

    Waits (in the page) until the element has a frame; bound it with
    ``asyncio.wait_for``. ``duet.services.devkit.synthetic_media.read_marker``
    reads the sender's tag off it.
    """
    shot: dict[str, Any] = await page.evaluate(SNAPSHOT_JS, selector)
    rgba = np.frombuffer(base64.b64decode(shot["rgba"]), dtype=np.uint8).reshape(shot["height"], shot["width"], 4)
    return av.VideoFrame.from_ndarray(np.ascontiguousarray(rgba[:, :, :3]), format="rgb24").reformat(format="yuv420p")

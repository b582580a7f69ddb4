"""The web client in Chromium against the local cluster: calls, next, leave and the errors a person sees."""

from __future__ import annotations

import json
import socket
from collections.abc import AsyncIterator
from typing import Any

import grpc
import pytest
from playwright.async_api import Page

from duet.services.client import STAGES, DuetClient, MatchPreferences
from duet.services.devkit.synthetic_media import SyntheticCamera, SyntheticMicrophone
from duet.services.rpc.server import start_server
from duet.services.web.app import WebServer
from duet.v1 import matchmaker_pb2_grpc
from tests.browser.conftest import OpenPage, WebCluster

pytestmark = [pytest.mark.browser, pytest.mark.slow, pytest.mark.asyncio(loop_scope="module")]


async def wait_state(page: Page, *states: str, timeout_s: float = 20.0) -> dict[str, Any]:
    """Wait until window.duetState.state is one of ``states``; returns the state, error and last breakdown."""
    await page.wait_for_function(
        "states => states.includes(window.duetState.state)", arg=list(states), timeout=timeout_s * 1000
    )
    snapshot: dict[str, Any] = await page.evaluate(
        "({state: duetState.state, error: duetState.error, callId: duetState.callId, partner: duetState.partner,"
        " breakdown: duetState.lastBreakdown, calls: duetState.breakdowns.length})"
    )
    return snapshot


async def wait_calls(page: Page, count: int, timeout_s: float = 20.0) -> dict[str, Any]:
    """Wait until the page has shown ``count`` breakdowns; returns the last."""
    await page.wait_for_function("n => window.duetState.breakdowns.length >= n", arg=count, timeout=timeout_s * 1000)
    breakdown: dict[str, Any] = await page.evaluate("duetState.lastBreakdown")
    return breakdown


async def shown_breakdown(page: Page) -> dict[str, list[str]]:
    """The breakdown table as the person sees it: stage -> its cells."""
    rows = await page.eval_on_selector_all(
        "#breakdown tbody tr", "rows => rows.map(r => [...r.cells].map(c => c.textContent))"
    )
    return {row[0]: row[1:] for row in rows}


def check_breakdown(breakdown: dict[str, Any], shown: dict[str, list[str]]) -> None:
    assert breakdown["connected"] is True
    assert list(shown) == list(STAGES)  # the CLI's stages, in its order
    stages = breakdown["stages"]
    for name in STAGES:
        if name == "first_packet_at_edge":
            continue  # read back from the call record a moment later
        assert stages[name] > 0, (name, stages)
        assert shown[name][0] != "–", (name, shown)
        float(shown[name][0])  # a number of ms
    assert stages["session_open"] <= stages["edge_assigned"] <= stages["leg_connected"]
    assert stages["queued"] <= stages["matched"] <= stages["route_picked"] <= stages["bridged"]
    assert breakdown["connectMs"] == pytest.approx(stages["first_frame"] - stages["matched"])
    assert 0 < breakdown["connectMs"] < 2000


async def media(page: Page) -> dict[str, Any]:
    stats: dict[str, Any] = await page.evaluate("duetState.mediaStats()")
    return stats


async def test_calls_next_and_leave_in_the_browser(web_cluster: WebCluster, open_page: OpenPage) -> None:
    ana = await open_page(web_cluster.url)
    ben = await open_page(web_cluster.url)
    assert await ana.is_visible("#region")  # the gateway offers demo regions
    await ana.select_option("#region", "fra")
    await ana.fill("#name", "Ana")
    await ben.select_option("#region", "sin")
    await ben.fill("#name", "Ben")

    # Ana meets the greeter bot, who waits in the pool.
    await ana.click("#talk")
    first = await wait_calls(ana, 1)
    assert first["partner"] == "greeter bot"
    assert first["route"][0] == "fra-1"
    await ana.wait_for_function("window.duetState.state === 'in_call'")
    check_breakdown(first, await shown_breakdown(ana))
    assert "connect_ms (first_frame - matched) = " in await ana.inner_text("#breakdown-summary")
    assert "greeter bot" in await ana.inner_text("#partner")
    await ana.wait_for_function(
        "duetState.lastBreakdown.stages.first_packet_at_edge > 0"
    )  # the edge's stage, from the record
    stats = await media(ana)
    assert stats["video"]["framesDecoded"] > 0
    assert stats["audio"]["totalSamplesReceived"] > 0

    # Ben waits (the bot is busy); Ana's Next pairs her with Ben, browser to browser across the backbone.
    await ben.click("#talk")
    await wait_state(ben, "waiting")
    await ana.click("#next")
    second = await wait_calls(ana, 2)
    ben_call = await wait_calls(ben, 1)
    assert second["callId"] != first["callId"]
    assert second["callId"] == ben_call["callId"]
    assert (second["partner"], second["region"]) == ("Ben", "Singapore")
    assert (ben_call["partner"], ben_call["region"]) == ("Ana", "Frankfurt")
    assert second["route"] == ["fra-1", "sin-1"]
    check_breakdown(second, await shown_breakdown(ana))
    check_breakdown(ben_call, await shown_breakdown(ben))
    # Each browser answered the matchmaker's clock probes: its record side carries the offset.
    for page in (ana, ben):
        await page.wait_for_function("duetState.lastBreakdown.clock !== undefined")
        clock = await page.evaluate("duetState.lastBreakdown.clock")
        assert clock["synced"] is True and 0 <= clock["uncertaintyMs"] < 100
        assert abs(clock["offsetMs"]) < 1000  # one machine (a page clock may drift a little from the system's)
    # Ana's leg was warm: no new session or leg for the second call.
    assert second["stages"]["leg_connected"] == first["stages"]["leg_connected"]
    assert second["stages"]["first_frame"] > second["stages"]["matched"] > first["stages"]["first_frame"]
    decoded = (await media(ana))["video"]["framesDecoded"]
    await ana.wait_for_function("n => duetState.mediaStats().then(s => s.video.framesDecoded > n)", arg=decoded + 10)
    assert (await ana.eval_on_selector_all("#history li", "items => items.length")) == 2
    print(
        "connect_ms: browser<->greeter",
        round(first["connectMs"], 1),
        "browser<->browser",
        round(second["connectMs"], 1),
        round(ben_call["connectMs"], 1),
    )

    # Ana leaves: back to idle; Ben is told and, looking again at once, meets the bot.
    await ana.click("#leave")
    left = await wait_state(ana, "idle")
    assert left["error"] == ""
    assert await ana.is_enabled("#talk") and not await ana.is_enabled("#next")
    ben_next = await wait_calls(ben, 2)
    assert ben_next["partner"] == "greeter bot"
    assert ben_next["connected"] is True


async def test_the_pages_preferences_reach_the_matchmaker(web_cluster: WebCluster, open_page: OpenPage) -> None:
    page = await open_page(web_cluster.url)
    await page.fill("#name", "Pia")
    await page.fill("#languages", "PT")
    await page.fill("#interests", "music, film")
    await page.click("#talk")
    # While young, a wait with interests meets only people who share one: not the greeter bot (none).
    await wait_state(page, "waiting")
    # The page's camera draws no marker: the SDK's default first-frame rule (any media) fits.
    sol = DuetClient(
        web_cluster.info.matchmaker,
        "web-pref-sol",
        "Sol",
        video=SyntheticCamera(6161),
        audio=SyntheticMicrophone(),
        preferences=MatchPreferences(languages=("pt",), interests=("music", "chess")),
        token=web_cluster.info.user_tokens("web-pref-sol"),
    )
    try:
        await sol.connect()
        result = await sol.find_partner()
        assert sol.last_match is not None
        profile = sol.last_match.partner
        assert (result.partner_display_name, list(profile.languages)) == ("Pia", ["pt"])
        assert list(profile.shared_interests) == ["music"]
        shown = await wait_calls(page, 1)
        assert shown["partner"] == "Sol"
    finally:
        await sol.leave()


async def test_a_denied_camera_is_explained(web_cluster: WebCluster, open_page: OpenPage) -> None:
    page = await open_page(web_cluster.url, fake_ui=False)  # nobody accepts the prompt: denied
    await page.click("#talk")
    snapshot = await wait_state(page, "error")
    assert "Camera and microphone access was denied" in snapshot["error"]
    assert "denied" in await page.inner_text("#error")
    assert await page.is_visible("#error")
    assert await page.is_enabled("#talk")


# Signs guests in for gateways in front of matchmakers that never check (dead ones, fakes).
SOME_SECRET = b"g" * 32


async def test_a_sign_in_the_matchmaker_refuses_is_explained(web_cluster: WebCluster, open_page: OpenPage) -> None:
    # A gateway whose guest tokens are signed with another deployment's secret.
    async with WebServer(web_cluster.info.matchmaker, listen="127.0.0.1:0", guest_token_secret=SOME_SECRET) as url:
        page = await open_page(url)
        await page.click("#talk")
        snapshot = await wait_state(page, "error")
    assert snapshot["error"].startswith("Duet did not accept your sign-in: "), snapshot["error"]
    assert "signature does not match" in snapshot["error"] and "reload the page" in snapshot["error"]
    assert "did not accept your sign-in" in await page.inner_text("#error")


async def test_a_gateway_that_signs_in_no_guests_says_so(web_cluster: WebCluster, open_page: OpenPage) -> None:
    async with WebServer(web_cluster.info.matchmaker, listen="127.0.0.1:0") as url:
        page = await open_page(url)
        await page.click("#talk")
        snapshot = await wait_state(page, "error")
    assert (
        snapshot["error"] == "This Duet server signs in no guests: sign in through the app's own login to get a token."
    )


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
        return port


async def test_a_matchmaker_that_is_down_is_explained(open_page: OpenPage) -> None:
    dead = f"127.0.0.1:{free_port()}"
    async with WebServer(dead, listen="127.0.0.1:0", guest_token_secret=SOME_SECRET) as url:
        page = await open_page(url)
        assert not await page.is_visible("#region")  # no demo regions here
        await page.click("#talk")
        snapshot = await wait_state(page, "error")
    assert f"The matchmaker at {dead} is not reachable" in snapshot["error"]
    assert "not reachable" in await page.inner_text("#error")


async def test_a_gateway_that_is_gone_is_explained(web_cluster: WebCluster, open_page: OpenPage) -> None:
    async with WebServer(web_cluster.info.matchmaker, listen="127.0.0.1:0") as url:
        page = await open_page(url)
    await page.click("#talk")  # the page is loaded, its server is not there any more
    snapshot = await wait_state(page, "error")
    assert "is not reachable" in snapshot["error"], json.dumps(snapshot)


NO_EDGE = "no edge could be assigned: the routing service has no edge available"


class NoEdgeMatchmaker(matchmaker_pb2_grpc.MatchmakerServicer):
    """A matchmaker whose routing service has no edge: Hello gets UNAVAILABLE, as matchmaker.proto says."""

    async def Session(self, request_iterator: AsyncIterator[Any], context: grpc.aio.ServicerContext) -> None:
        async for _ in request_iterator:
            await context.abort(grpc.StatusCode.UNAVAILABLE, NO_EDGE)


async def test_no_edge_is_explained(open_page: OpenPage) -> None:
    server, address = await start_server(
        "127.0.0.1:0", lambda s: matchmaker_pb2_grpc.add_MatchmakerServicer_to_server(NoEdgeMatchmaker(), s)
    )
    try:
        async with WebServer(address, listen="127.0.0.1:0", guest_token_secret=SOME_SECRET) as url:
            page = await open_page(url)
            await page.click("#talk")
            snapshot = await wait_state(page, "error")
    finally:
        await server.stop(None)
    assert snapshot["error"] == f"Could not start a session: N{NO_EDGE[1:]}."
    assert "No edge could be assigned" in await page.inner_text("#error")

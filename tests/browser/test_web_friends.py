"""Friends in the web client (Chromium, the local cluster behind the gateway): two pages become
friends after a call, see each other online, and one calls the other, who accepts; a declined
call is explained."""

from __future__ import annotations

from typing import Any

import pytest
from playwright.async_api import Page

from tests.browser.conftest import OpenPage, WebCluster
from tests.browser.test_web_client import wait_calls, wait_state

pytestmark = [pytest.mark.browser, pytest.mark.slow, pytest.mark.asyncio(loop_scope="module")]


async def state(page: Page) -> dict[str, Any]:
    snapshot: dict[str, Any] = await page.evaluate(
        "({friends: duetState.friends, incoming: duetState.incoming, ringing: duetState.ringing,"
        " notice: duetState.friendNotice, friendCall: duetState.friendCall, error: duetState.error})"
    )
    return snapshot


async def test_friends_made_after_a_call_call_each_other(web_cluster: WebCluster, open_page: OpenPage) -> None:
    ana = await open_page(web_cluster.url)
    ben = await open_page(web_cluster.url)
    await ana.select_option("#region", "fra")
    await ana.fill("#name", "Ana")
    await ben.select_option("#region", "sin")
    await ben.fill("#name", "Ben")
    assert await ana.is_visible("#friends-empty")

    # Ana meets the greeter bot, then Ben with Next.
    await ana.click("#talk")
    await wait_calls(ana, 1)
    await ben.click("#talk")
    await wait_state(ben, "waiting")
    await ana.click("#next")
    with_ben = await wait_calls(ana, 2)
    assert with_ben["partner"] == "Ben"
    await wait_calls(ben, 1)

    await ana.click("#add-friend")
    await ana.wait_for_function("duetState.friendNotice.startsWith('Friend request sent to Ben')")
    assert (await state(ana))["friends"] == []
    await ben.click("#add-friend")
    for page, other in ((ana, "Ben"), (ben, "Ana")):
        await page.wait_for_function("n => duetState.friendNotice === `You and ${n} are friends now.`", arg=other)
        await page.wait_for_function("duetState.friends.length === 1 && duetState.friends[0].online")
        assert other in await page.inner_text("#friends")

    # Ben moves on (to the bot, whom he has not met); Ana, who met both, waits in the pool.
    await ben.click("#next")
    await wait_state(ana, "waiting")
    await ben.wait_for_function("duetState.friends.length === 1 && !duetState.friends[0].busy", timeout=15000)
    call_ana = ben.locator("#friends li", has_text="Ana").locator("button.call-friend")
    await call_ana.click()  # leaves the pool or the call first, then rings
    await ana.wait_for_function("duetState.incoming !== null")
    assert "Ben is calling you" in await ana.inner_text("#incoming")
    assert (await state(ben))["ringing"]["name"] == "Ana"
    ben_calls = len(await ben.evaluate("duetState.breakdowns"))
    await ana.click("#accept")
    on_ana = await wait_calls(ana, 3)
    on_ben = await wait_calls(ben, ben_calls + 1)
    assert on_ana["callId"] == on_ben["callId"] and on_ben["partner"] == "Ana"
    assert on_ana["connected"] and on_ben["connected"]
    assert (await state(ana))["friendCall"] and (await state(ben))["friendCall"]
    assert on_ben["route"] == ["sin-1", "fra-1"]
    assert (await state(ana))["error"] == ""

    # A declined call: Ana says no; Ben reads why.
    await call_ana.click()  # hangs up the friend call first, then rings
    await ana.wait_for_function("duetState.incoming !== null")
    await ana.click("#decline")
    await ben.wait_for_function("duetState.friendNotice === 'Ana declined your call.'")
    assert (await state(ben))["ringing"] is None and await ben.is_hidden("#ringing")
    assert (await state(ana))["incoming"] is None and await ana.is_hidden("#incoming")

    # Unfriend: the list empties on both sides.
    await ben.locator("#friends li", has_text="Ana").get_by_role("button", name="Unfriend").click()
    await ben.wait_for_function("duetState.friendNotice === 'Ana is no longer your friend.'")
    await ben.wait_for_function("duetState.friends.length === 0")
    await ana.wait_for_function("duetState.friends.length === 0", timeout=10000)
    assert await ana.is_visible("#friends-empty")

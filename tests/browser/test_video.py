"""The video area: a poster that says what is going on when there is no stream, and
an honest message when the stream cannot be played."""

from __future__ import annotations

from typing import Any

import httpx

from tests.browser.conftest import PageErrors
from tests.browser.helpers import PHONE, skip_without_browser
from tests.support import LiveServer

skip_without_browser()

from playwright.async_api import expect  # noqa: E402


async def test_poster_without_stream_and_unplayable_stream(server: LiveServer,
                                                           http: httpx.AsyncClient, browser: Any,
                                                           page_errors: PageErrors) -> None:
    plain = (await http.post("/api/rooms", json={"title": "No video show"})).json()
    broken_url = f"{server.base}/static/no-such-stream.m3u8"  # loopback: a 404
    broken = (await http.post("/api/rooms", json={"title": "Broken video show",
                                                  "stream_url": broken_url})).json()
    ctx = await browser.new_context(viewport=PHONE)
    page = page_errors.watch(await ctx.new_page(), "viewer")

    await page.goto(f"{server.base}/r/{plain['room']['room_id']}")
    await expect(page.locator("#poster")).to_be_visible()
    await expect(page.locator("#poster-title")).to_have_text("No video show")
    await expect(page.locator("#poster-text")).to_contain_text("has not started a video stream")
    await expect(page.locator("#video")).to_be_hidden()

    await page.goto(f"{server.base}/r/{broken['room']['room_id']}")
    await expect(page.locator("#conn")).to_have_attribute("data-state", "live")
    assert await page.locator("#video").get_attribute("src") == broken_url
    await expect(page.locator("#poster-text")).to_contain_text("could not be played")
    await expect(page.locator("#poster")).to_be_visible()
    await ctx.close()
    assert page_errors.errors == []

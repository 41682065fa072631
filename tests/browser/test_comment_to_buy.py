"""Comment-to-buy in the pages, in Chromium against a real server: the host
switches it on for a product from the console with the panel's keyword; the
viewer's card says what to comment; a comment of the keyword opens the viewer's
checkout on the hold it bought, and the room's chat says who bought."""

from __future__ import annotations

import re
from typing import Any

import httpx

from tests.browser.conftest import PageErrors
from tests.browser.helpers import DESKTOP, console_room, skip_without_browser
from tests.support import LiveServer

skip_without_browser()

from playwright.async_api import expect  # noqa: E402


async def test_a_comment_of_the_keyword_buys_from_the_page(
        server: LiveServer, http: httpx.AsyncClient, browser: Any,
        page_errors: PageErrors) -> None:
    console, host = await console_room(browser, server.base, http, "Comment show",
                                       page_errors.watch)
    room_id = host.room_id
    product = await host.product(stock=3, price=2500, title="Vinyl Record")
    pid = product["product_id"]
    await host.call("POST", "/pins", {"product_id": pid}, expect=200)
    row = console.locator(f'tr[data-product-id="{pid}"]')

    await console.locator("#claim-keyword").fill("MINE")
    await console.get_by_role("button", name="Switch on comment-to-buy for Vinyl Record").click()
    await expect(row).to_have_attribute("data-claim", "MINE")
    await expect(console.locator("#cat-result")).to_have_text(re.compile("comment MINE buy",
                                                                         re.IGNORECASE))

    viewer_ctx = await browser.new_context(viewport=DESKTOP)
    page = page_errors.watch(await viewer_ctx.new_page(), "viewer")
    await page.goto(f"{server.base}/r/{room_id}?nickname=Zoe")
    await expect(page.locator("#conn")).to_have_attribute("data-state", "live")
    card = page.locator(f'.pcard[data-product-id="{pid}"]')
    await expect(card.locator(".claim-hint")).to_have_text("Comment MINE to buy (MINE 2 for two)")

    await page.locator("#chat-input").fill("mine 2")
    await page.locator("#chat-input").press("Enter")
    await expect(page.locator("#checkout")).to_be_visible()
    await expect(page.locator("#checkout-item")).to_contain_text("Vinyl Record")
    await expect(page.locator(".msg.claimed").last).to_contain_text("2 \u00d7 Vinyl Record")
    state = await host.call("GET", f"/products/{pid}", expect=200)
    assert state["stock"]["held"] == 2

    # Switched off from the console: the hint goes, the keyword is only chat again.
    await console.get_by_role("button", name="Stop comment-to-buy (MINE) for Vinyl "
                                             "Record").click()
    await expect(row).to_have_attribute("data-claim", "")
    await expect(card.locator(".claim-hint")).to_be_hidden()
    assert page_errors.errors == []

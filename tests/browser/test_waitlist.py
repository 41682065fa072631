"""The waitlist in the pages, in Chromium against a real server: a sold-out card
offers "Join waitlist"; joining shows the place in line and a way out; the count
waiting reaches the console; a unit given back goes to the page waiting, which
opens its checkout with the offered hold and its timer."""

from __future__ import annotations

import re
from typing import Any

import httpx

from tests.browser.conftest import PageErrors
from tests.browser.helpers import DESKTOP, skip_without_browser
from tests.support import LiveServer, create_room, join

skip_without_browser()

from playwright.async_api import expect  # noqa: E402


async def test_a_sold_out_card_joins_the_line_and_gets_the_unit_given_back(
        server: LiveServer, http: httpx.AsyncClient, browser: Any,
        page_errors: PageErrors) -> None:
    host = await create_room(http, "Waitlist show")
    product = await host.product(stock=1, price=4900, title="Aurora Desk Lamp")
    pid = product["product_id"]
    await host.call("POST", "/pins", {"product_id": pid}, expect=200)
    buyer = await join(server, host.room_id)
    held = (await buyer.request("buy", product_id=pid))["hold"]

    ctx = await browser.new_context(viewport=DESKTOP)
    page = page_errors.watch(await ctx.new_page(), "viewer")
    await page.goto(f"{server.base}/r/{host.room_id}")
    await expect(page.locator("#conn")).to_have_attribute("data-state", "live")
    card = page.locator(f'.pcard[data-product-id="{pid}"]')
    button = card.locator(".buy-btn")
    await expect(button).to_have_text("Join waitlist")
    await expect(button).to_be_enabled()
    await expect(card).to_have_attribute("data-action", "wait")

    await button.click()
    await expect(button).to_have_text("Waiting · #1 in line")
    await expect(button).to_be_disabled()
    leave = card.get_by_role("button", name="Leave the waitlist for Aurora Desk Lamp")
    await expect(leave).to_be_visible()
    await expect(card.locator(".waiting")).to_have_text("1 waiting")

    # Leaving and joining again: the place is the server's answer each time.
    await leave.click()
    await expect(button).to_have_text("Join waitlist")
    await button.click()
    await expect(button).to_have_text("Waiting · #1 in line")

    released = await buyer.request("release", hold_id=held["id"])
    assert released["type"] == "hold_released"
    # The unit went to this page: its checkout opens on the offered hold.
    await expect(page.locator("#checkout")).to_be_visible()
    await expect(page.locator("#checkout-item")).to_contain_text("49")
    await expect(leave).to_be_hidden()
    card_state = await host.call("GET", f"/products/{pid}", expect=200)
    assert card_state["stock"]["held"] == 1 and card_state["waiting"] == 0
    await page.get_by_role("button", name=re.compile("Place order")).click()
    await expect(page.locator("#order-done")).to_be_visible()
    orders = await host.call("GET", "/orders", expect=200)
    assert [o["product_id"] for o in orders["orders"]] == [pid]
    assert (await host.audit())["ok"]
    await buyer.close()
    assert page_errors.errors == []

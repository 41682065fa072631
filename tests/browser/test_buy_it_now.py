"""Buy-it-now in the pages, in Chromium against a real server: the host pins a
product from the console, which opens it for sale at its list price; the viewer's
card offers it at that price with the listing's limit, and a click takes a hold
at that price; the console's switch closes it and the card says so without a
reload; a flash sale then takes over the card at the sale's price."""

from __future__ import annotations

import re
from typing import Any

import httpx

from tests.browser.conftest import PageErrors
from tests.browser.helpers import DESKTOP, console_room, skip_without_browser
from tests.support import LiveServer

skip_without_browser()

from playwright.async_api import expect  # noqa: E402


async def test_the_console_opens_and_closes_a_product_for_sale_at_its_list_price(
        server: LiveServer, http: httpx.AsyncClient, browser: Any,
        page_errors: PageErrors) -> None:
    console, host = await console_room(browser, server.base, http, "Buy-it-now show",
                                       page_errors.watch)
    room_id = host.room_id
    product = await host.product(stock=4, price=4900, title="Aurora Desk Lamp")
    pid = product["product_id"]
    row = console.locator(f'tr[data-product-id="{pid}"]')
    await expect(row).to_have_attribute("data-listing", "closed")

    viewer_ctx = await browser.new_context(viewport=DESKTOP)
    viewer = page_errors.watch(await viewer_ctx.new_page(), "viewer")
    await viewer.goto(f"{server.base}/r/{room_id}")
    await expect(viewer.locator("#conn")).to_have_attribute("data-state", "live")

    # Pinning from the console opens the product for sale.
    await console.get_by_role("button", name="Pin Aurora Desk Lamp").click()
    await expect(row).to_have_attribute("data-listing", "open")
    await expect(row.locator(".listing-state")).to_have_text("buy-now on · max 5")
    card = viewer.locator(f'.pcard[data-product-id="{pid}"]')
    buy = card.locator(".buy-btn")
    await expect(card).to_have_attribute("data-offer", "listing")
    await expect(buy).to_have_text(re.compile(r"^Buy now · .*49"))
    await expect(buy).to_be_enabled()
    await expect(card.locator(".badge")).to_have_text("Buy it now")
    await expect(card.locator(".when")).to_have_text("max 5 per buyer")
    # The quantity offers up to what is left (4), under the limit of 5.
    await expect(card.locator("select.qty option")).to_have_count(4)

    await buy.click()
    await expect(viewer.locator("#checkout")).to_be_visible()
    await expect(viewer.locator("#checkout-item")).to_contain_text("49")
    await expect(card).to_have_attribute("data-held", "1")
    state = await host.call("GET", f"/products/{pid}", expect=200)
    assert state["listing"]["held"] == 1 and state["stock"]["held"] == 1
    await viewer.locator("#checkout-close").click()

    # Closed from the console: the card says so at once, the hold stays.
    await console.get_by_role("button", name="Close Aurora Desk Lamp for sale at its list "
                                             "price").click()
    await expect(row).to_have_attribute("data-listing", "closed")
    await expect(card).to_have_attribute("data-offer", "none")
    await expect(buy).to_have_text("Not on sale")
    await expect(buy).to_be_disabled()
    state = await host.call("GET", f"/products/{pid}", expect=200)
    assert state["listing"]["held"] == 1

    # A flash sale takes the card over at its own price.
    await host.sale(pid, units=2, limit=1, price=2900)
    await expect(card).to_have_attribute("data-offer", "sale")
    await expect(buy).to_have_text("Buy now")
    await expect(card.locator(".price-now")).to_have_text(re.compile(r"29"))
    assert page_errors.errors == []

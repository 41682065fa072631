"""Accessibility basics of both pages, in a busy room (sales running and scheduled,
a coupon drop, a giveaway, chat): every control has an accessible name in
Chromium's accessibility tree, every control is reached with the Tab key and shows
a visible focus ring, and all visible text has a contrast ratio of at least 4.5:1
against what is behind it."""

from __future__ import annotations

import re
from typing import Any

import httpx

from tests.browser.conftest import PageErrors
from tests.browser.helpers import (
    DESKTOP,
    PHONE,
    contrast_failures,
    shoot,
    skip_without_browser,
    tab_walk,
    unnamed_controls,
)
from tests.support import Host, LiveServer, create_room, join

skip_without_browser()

from playwright.async_api import Page, expect  # noqa: E402


async def busy_room(server: LiveServer, http: httpx.AsyncClient) -> Host:
    host = await create_room(http, "Accessibility check show")
    lamp = await host.product(stock=12, price=4900, title="Aurora Desk Lamp",
                              description="Warm dimmable light with a USB-C cable.")
    buds = await host.product(stock=6, price=12900, title="Noise-cancelling Earbuds")
    mug = await host.product(stock=20, price=1800, title="Ceramic Mug")
    for p in (lamp, buds, mug):
        await host.call("POST", "/pins", {"product_id": p["product_id"]}, expect=200)
    await host.sale(lamp["product_id"], units=10, limit=2, price=2900)
    await host.sale(buds["product_id"], units=4, limit=1, price=9900, starts_in_s=300)
    await host.call("POST", "/coupons", {"title": "Welcome gift", "kind": "amount", "value": 500,
                                         "count": 20}, expect=201)
    await host.call("POST", "/lotteries", {"prize": "Signed vinyl", "winners": 1,
                                           "entry": "button", "duration_s": 600}, expect=201)
    await host.call("POST", "/announcements", {"text": "Lamp deal is live!"}, expect=201)
    return host


async def say(server: LiveServer, room_id: str, nickname: str, text: str) -> None:
    chatter = await join(server, room_id, nickname=nickname)
    await chatter.next_event("snapshot")
    await chatter.send({"type": "chat", "text": text})
    await chatter.next_event("chat")
    await chatter.close()


async def check_page(page: Page, name: str) -> None:
    missing = await unnamed_controls(page)
    assert missing == [], f"{name}: controls without an accessible name: {missing}"

    controls, stops = await tab_walk(page, max_steps=200)
    assert len(controls) >= 8, f"{name}: expected a page full of controls, found {controls}"
    reached = {s["index"] for s in stops if s["index"] is not None}
    unreached = [c for c in controls if c["index"] not in reached]
    assert unreached == [], f"{name}: not reachable with Tab: {unreached}"
    no_ring = [s for s in stops if not s["focusVisible"]]
    assert no_ring == [], f"{name}: focus is not visible on {no_ring}"

    checked, failures = await contrast_failures(page)
    assert checked >= 20, f"{name}: only {checked} text runs checked"
    assert failures == [], f"{name}: text below 4.5:1 contrast: {failures}"


async def test_viewer_page_accessibility(server: LiveServer, http: httpx.AsyncClient,
                                         browser: Any, page_errors: PageErrors) -> None:
    host = await busy_room(server, http)
    for viewport, label in ((PHONE, "phone"), (DESKTOP, "desktop")):
        ctx = await browser.new_context(viewport=viewport)
        page = page_errors.watch(await ctx.new_page(), f"viewer {label}")
        await page.goto(f"{server.base}/r/{host.room_id}")
        await expect(page.locator("#conn")).to_have_attribute("data-state", "live")
        await expect(page.locator(".pcard")).to_have_count(3)
        await expect(page.locator(".promo.coupon")).to_have_count(1)
        await expect(page.locator(".promo.lottery")).to_have_count(1)
        await say(server, host.room_id, "Mia", "Does the lamp come in white?")
        await expect(page.locator("#chat-list .msg .nick").first).to_have_text("Mia")
        await page.locator("#chat-input").fill("Hello from the keyboard test")
        await page.locator("#chat-input").press("Enter")
        await expect(page.locator("#chat-list .msg").last).to_have_text(re.compile("keyboard test"))
        await shoot(page, f"a11y-viewer-{label}", full_page=True)
        await check_page(page, f"viewer ({label})")

        # The checkout dialog too: it opens on a hold and is fully labelled.
        await page.locator(".pcard").first.locator(".buy-btn").click()
        await expect(page.locator("#checkout")).to_be_visible()
        assert await unnamed_controls(page) == []
        _, failures = await contrast_failures(page)
        assert failures == [], failures
        await page.keyboard.press("Escape")
        await expect(page.locator("#checkout")).to_be_hidden()
        await page.locator("#cartbar-open").focus()
        await page.keyboard.press("Enter")
        await expect(page.locator("#checkout")).to_be_visible()
        await page.locator("#release-btn").click()
        await expect(page.locator("#cartbar")).to_be_hidden()
        await ctx.close()
    assert page_errors.errors == []


async def test_room_picker_accessibility(server: LiveServer, http: httpx.AsyncClient,
                                         browser: Any, page_errors: PageErrors) -> None:
    for title in ("Morning market", "Late night deals"):
        await create_room(http, title)
    ctx = await browser.new_context(viewport=PHONE)
    page = page_errors.watch(await ctx.new_page(), "picker")
    await page.goto(server.base + "/")
    await expect(page.locator("#room-list .room-link")).to_have_count(2)
    await expect(page.locator("#room-list")).to_contain_text("Late night deals")
    assert await unnamed_controls(page) == []
    _, failures = await contrast_failures(page)
    assert failures == [], failures
    await page.locator("#room-list .room-link", has_text="Morning market").click()
    await expect(page.locator("#room-title")).to_have_text("Morning market")
    await expect(page.locator("#conn")).to_have_attribute("data-state", "live")
    await ctx.close()
    assert page_errors.errors == []


async def test_host_console_accessibility(server: LiveServer, http: httpx.AsyncClient,
                                          browser: Any, page_errors: PageErrors) -> None:
    host = await busy_room(server, http)
    ctx = await browser.new_context(viewport=DESKTOP)
    page = page_errors.watch(await ctx.new_page(), "host")
    await page.goto(server.base + "/host")
    # The setup screen first.
    await expect(page.locator("#setup")).to_be_visible()
    assert await unnamed_controls(page) == []
    _, failures = await contrast_failures(page)
    assert failures == [], failures
    # A wrong key is refused with the server's message.
    await page.get_by_label("Room id").fill(host.room_id)
    await page.get_by_label("Host key", exact=True).fill("not-the-key")
    await page.get_by_role("button", name="Open room").click()
    await expect(page.locator("#open-result")).to_have_text(re.compile("wrong host key"))
    await page.get_by_label("Host key", exact=True).fill(host.key)
    await page.get_by_role("button", name="Open room").click()
    await expect(page.locator("#console")).to_be_visible()
    await expect(page.locator("#product-rows tr")).to_have_count(3)
    await expect(page.locator("#conn")).to_have_attribute("data-state", "live")
    await say(server, host.room_id, "Mia", "Does the lamp come in white?")
    await expect(page.locator("#mod-chat .mod-msg").first).to_contain_text("lamp come in white")
    # The console watches the room but is not counted as a viewer.
    await expect(page.locator("#st-viewers")).to_have_text("0")
    await shoot(page, "a11y-host-desktop", full_page=True)
    await check_page(page, "host console")

    # Editing a product (stock included) through the console.
    await page.get_by_role("button", name="Edit Ceramic Mug").click()
    await expect(page.locator("#pf-title")).to_be_focused()
    await page.locator("#pf-stock").fill("25")
    await page.locator("#pf-price").fill("19.50")
    await page.get_by_role("button", name="Save changes").click()
    await expect(page.locator("#product-result")).to_have_text(re.compile("Saved"))
    mug_row = page.locator("#product-rows tr", has_text="Ceramic Mug")
    await expect(mug_row).to_contain_text("$19.50")
    await expect(mug_row).to_have_attribute("data-left", "25")

    # Stopping the running sale.
    lamp_row = page.locator("#product-rows tr", has_text="Aurora Desk Lamp")
    await expect(lamp_row).to_have_attribute("data-sale-state", "open")
    await page.get_by_role("button", name="Stop the sale of Aurora Desk Lamp").click()
    await page.locator("#confirm-dlg").get_by_role("button", name="Stop sale").click()
    # (Stop is in the live column's "On now", and says what it did there.)
    await expect(page.locator("#now-result")).to_have_text(re.compile("Stopped the sale"))
    await expect(lamp_row).to_have_attribute("data-sale-state", "stopped")
    # A fourth pin is refused, in the server's words.
    await page.get_by_role("button", name="Unpin Ceramic Mug").click()
    await expect(page.locator("#cat-result")).to_have_text(re.compile("Unpinned"))
    await page.locator("#pf-title").fill("Linen Tote")
    await page.locator("#pf-price").fill("12")
    await page.get_by_role("button", name="Add product").click()
    await expect(page.locator("#product-rows tr")).to_have_count(4)
    await page.get_by_role("button", name="Pin Ceramic Mug").click()
    await page.get_by_role("button", name="Pin Linen Tote").click()
    await expect(page.locator("#cat-result")).to_have_text(re.compile("at most 3 products"))
    await expect(page.locator("#cat-result")).to_have_attribute("data-outcome", "error")
    await ctx.close()
    assert page_errors.errors == []

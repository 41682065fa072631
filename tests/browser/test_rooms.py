"""Room lifecycle in the pages (Chromium): the landing page lists live and
upcoming shows a page at a time, and the host's "End show" (after its
confirmation) ends the show for a watching viewer, whose buy buttons go."""

from __future__ import annotations

from typing import Any

import httpx

from server.core.domain import now_ms
from tests.browser.conftest import PageErrors
from tests.browser.helpers import DESKTOP, PHONE, skip_without_browser
from tests.support import LiveServer, create_room
from tests.test_images import png, upload

skip_without_browser()

from playwright.async_api import expect  # noqa: E402


async def test_landing_page_pages_live_and_upcoming_shows(
        server: LiveServer, http: httpx.AsyncClient, browser: Any,
        page_errors: PageErrors) -> None:
    for i in range(22):
        await create_room(http, f"Show {i}")
    r = await http.post("/api/rooms", json={"title": "Tomorrow's drop",
                                            "starts_at": now_ms() + 86_400_000})
    assert r.status_code == 201
    ended = await create_room(http, "Already over")
    await ended.call("POST", "/end", expect=200)
    ctx = await browser.new_context(viewport=PHONE)
    page = page_errors.watch(await ctx.new_page(), "picker")
    await page.goto(server.base + "/")
    links = page.locator("#room-list .room-link")
    await expect(links).to_have_count(20)
    # Newest first: the upcoming show was made after the 22 live ones.
    await expect(links.first).to_contain_text("Tomorrow's drop")
    await expect(links.first).to_contain_text("Upcoming")
    await page.get_by_role("button", name="More shows").click()
    await expect(links).to_have_count(23)
    await expect(page.locator("#room-more")).to_be_hidden()
    await expect(page.locator("#room-list")).not_to_contain_text("Already over")
    await ctx.close()
    assert page_errors.errors == []


async def test_the_picker_shows_each_shows_picture(
        server: LiveServer, http: httpx.AsyncClient, browser: Any,
        page_errors: PageErrors) -> None:
    """A show's picture is its first pinned product's image; a show without one
    shows its initials on a colour, and so does one whose image does not load."""
    await create_room(http, "Plain show")
    pictured = await create_room(http, "Pictured show")
    broken = await create_room(http, "Broken picture")
    r = await upload(http, pictured.room_id, pictured.key, png(64, 64))
    assert r.status_code == 201, r.text
    image = r.json()["image_url"]
    missing = f"/images/{broken.room_id}/" + "0" * 64 + ".png"
    for host, url in ((pictured, image), (broken, missing)):
        product = await host.product(title="Lamp", image_url=url)
        await host.call("POST", "/pins", {"product_id": product["product_id"]}, expect=200)
    ctx = await browser.new_context(viewport=PHONE)
    page = page_errors.watch(await ctx.new_page(), "picker")
    await page.goto(server.base + "/")
    item = page.locator("#room-list li")
    shown = item.filter(has_text="Pictured show").locator("img.room-thumb")
    await expect(shown).to_have_attribute("src", image)
    await page.wait_for_function(
        "(src) => [...document.querySelectorAll('img.room-thumb')]"
        ".some((i) => i.getAttribute('src') === src && i.complete && i.naturalWidth === 64)",
        arg=image)
    await expect(item.filter(has_text="Plain show").locator(".room-tile")).to_have_text("PS")
    await expect(item.filter(has_text="Broken picture").locator(".room-tile")).to_have_text("BP")
    # Decorative: the links are named by their titles.
    await expect(page.get_by_role("link", name="Pictured show")).to_have_count(1)
    await ctx.close()
    assert page_errors.errors == []


async def test_end_show_button_ends_the_show_for_viewers(
        server: LiveServer, http: httpx.AsyncClient, browser: Any,
        page_errors: PageErrors) -> None:
    room = await create_room(http, "Ending soon")
    product = await room.product(stock=5)
    await room.call("POST", "/pins", {"product_id": product["product_id"]}, expect=200)
    await room.sale(product["product_id"], units=5, limit=2)
    viewer_ctx = await browser.new_context(viewport=PHONE)
    viewer = page_errors.watch(await viewer_ctx.new_page(), "viewer")
    await viewer.goto(f"{server.base}/r/{room.room_id}")
    await expect(viewer.locator("#conn")).to_have_attribute("data-state", "live")
    buy = viewer.locator(f'[data-product-id="{product["product_id"]}"] button.buy-btn').first
    await expect(buy).to_be_enabled()
    await expect(viewer.locator("#ended")).to_be_hidden()

    ctx = await browser.new_context(viewport=DESKTOP)
    host = page_errors.watch(await ctx.new_page(), "host")
    await host.goto(f"{server.base}/host")
    await host.locator("#open-room").fill(room.room_id)
    await host.locator("#open-key").fill(room.key)
    await host.locator("#open-form button[type=submit]").click()
    await expect(host.locator("#console")).to_be_visible()
    await expect(host.locator("#room-state")).to_have_text("Live")
    # Cancelling the confirmation changes nothing.
    await host.get_by_role("button", name="End show").click()
    await expect(host.locator("#end-dlg")).to_be_visible()
    await host.get_by_role("button", name="Keep the show running").click()
    await expect(host.locator("#end-dlg")).to_be_hidden()
    assert (await http.get(f"/api/rooms/{room.room_id}")).json()["room"]["state"] == "live"
    await host.locator("#end-show").click()
    await host.locator("#end-confirm").click()
    await expect(host.locator("#room-state")).to_have_text("Ended")
    await expect(host.locator("#end-show")).to_be_hidden()
    await expect(viewer.locator("#ended")).to_be_visible()
    await expect(viewer.locator("#ended")).to_contain_text("This show has ended")
    await expect(buy).to_be_disabled()
    await expect(buy).to_have_text("Show ended")
    assert (await http.get(f"/api/rooms/{room.room_id}")).json()["room"]["state"] == "ended"
    await ctx.close()
    await viewer_ctx.close()
    assert page_errors.errors == []

"""The pages render the server's rules instead of keeping copies (Chromium): the
pin limit, the quantity cap, the likes per frame, the longest slow mode and the
text lengths come from the room state's `limits`, and a sale's state moves only
when the server says so (its `sale_open` / `sale_closed` events), never by the
page's own clock."""

from __future__ import annotations

import json
import re
from collections.abc import AsyncIterator, Awaitable, Callable
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.browser.conftest import PageErrors
from tests.browser.helpers import DESKTOP, PHONE, skip_without_browser
from tests.support import LiveServer, create_room, eventually, make_settings

skip_without_browser()

from playwright.async_api import WebSocketRoute, expect  # noqa: E402


@pytest.fixture
async def strict(redis_url: str, data_dir: Path) -> AsyncIterator[LiveServer]:
    """A server whose limits that are settings all differ from the defaults (3 pins,
    10 per buy, 200-character chat, 32-character names, 50 likes per frame)."""
    settings = make_settings(redis_url, data_dir,
                             sale={"max_pins": 2, "max_quantity_per_buy": 3},
                             chat={"max_length": 50, "nickname_max_length": 20,
                                   "max_likes_per_frame": 7})
    live = await LiveServer(settings).start()
    try:
        yield live
    finally:
        await live.stop()


async def test_pin_limit_and_other_limits_come_from_the_server(
        strict: LiveServer, browser: Any, page_errors: PageErrors) -> None:
    async with httpx.AsyncClient(base_url=strict.base, timeout=30) as http:
        room = await create_room(http, "Two pins only")
        products = [await room.product(stock=20, title=title)
                    for title in ("Alpha Lamp", "Beta Mug", "Gamma Tote")]
        ctx = await browser.new_context(viewport=DESKTOP)
        host = page_errors.watch(await ctx.new_page(), "host")
        await host.goto(f"{strict.base}/host")
        await host.locator("#open-room").fill(room.room_id)
        await host.locator("#open-key").fill(room.key)
        await host.locator("#open-form button[type=submit]").click()
        await expect(host.locator("#console")).to_be_visible()
        await expect(host.locator("#product-rows tr")).to_have_count(3)
        await expect(host.locator("#pin-count")).to_have_text("0 of 2 pinned")

        await host.get_by_role("button", name="Pin Alpha Lamp").click()
        await expect(host.locator("#pin-count")).to_have_text("1 of 2 pinned")
        await host.get_by_role("button", name="Pin Beta Mug").click()
        await expect(host.locator("#pin-count")).to_have_text("2 of 2 pinned")
        await expect(host.locator("#pin-count")).to_have_attribute("data-full", "true")
        # A third pin is refused by the server, in its words, with its limit.
        await host.get_by_role("button", name="Pin Gamma Tote").click()
        await expect(host.locator("#cat-result")).to_have_attribute("data-outcome", "error")
        await expect(host.locator("#cat-result")).to_have_text(re.compile(r"at most 2 products"))
        await expect(host.locator("#cat-result")).to_have_text(re.compile(r"pin_limit"))
        await expect(host.locator("#pin-count")).to_have_text("2 of 2 pinned")
        await expect(host.get_by_role("button", name="Pin Gamma Tote")).to_be_visible()
        state = (await http.get(f"/api/rooms/{room.room_id}")).json()
        assert state["pins"] == [products[0]["product_id"], products[1]["product_id"]]
        limits = state["limits"]
        assert limits["max_pins"] == 2
        assert limits["max_likes_per_frame"] == 7

        # The console's inputs are sized by the room state's limits (the text
        # lengths and the longest slow mode are server constants, so compared with
        # what the room state says), and the served page carries no copy of them.
        sized = {"#announce-text": ("maxlength", "announcement_max_length"),
                 "#lf-prize": ("maxlength", "prize_max_length"),
                 "#lf-keyword": ("maxlength", "keyword_max_length"),
                 "#pf-title": ("maxlength", "title_max_length"),
                 "#pf-desc": ("maxlength", "description_max_length"),
                 "#cf-title": ("maxlength", "title_max_length"),
                 "#pol-slow-custom": ("max", "max_slow_mode_s")}
        html = (await http.get("/host")).text
        for selector, (attribute, name) in sized.items():
            assert isinstance(limits[name], int) and limits[name] > 0, name
            await expect(host.locator(selector)).to_have_attribute(attribute, str(limits[name]))
            tag = re.search(rf'<input id="{selector[1:]}"[^>]*>', html)
            assert tag is not None and f" {attribute}=" not in tag.group(0), tag

        # The viewer shows the two pins, caps the quantity at the server's
        # max_quantity_per_buy (the sale's per-buyer limit is higher) and sizes
        # its text inputs by the server's lengths.
        await room.sale(products[0]["product_id"], units=10, limit=5)
        vctx = await browser.new_context(viewport=PHONE)
        viewer = page_errors.watch(await vctx.new_page(), "viewer")
        sent_likes: list[int] = []

        def on_frame(payload: str | bytes) -> None:
            frame = json.loads(payload)
            if frame.get("type") == "like":
                sent_likes.append(frame["count"])

        viewer.on("websocket", lambda ws: ws.on("framesent", on_frame))
        await viewer.goto(f"{strict.base}/r/{room.room_id}")
        await expect(viewer.locator("#conn")).to_have_attribute("data-state", "live")
        await expect(viewer.locator(".pcard")).to_have_count(2)
        card = viewer.locator(f'.pcard[data-product-id="{products[0]["product_id"]}"]')
        await expect(card).to_have_attribute("data-sale-state", "open")
        await expect(card.locator("select.qty option")).to_have_count(3)
        await expect(viewer.locator("#chat-input")).to_have_attribute("maxlength", "50")
        await expect(viewer.locator("#rename-input")).to_have_attribute("maxlength", "20")

        # Twenty taps at once go out as frames of at most the server's 7 likes (a
        # frame over it would be refused), and all twenty are counted.
        await viewer.evaluate("""() => {
            const like = document.querySelector("#like-btn");
            for (let i = 0; i < 20; i++) like.click();
        }""")

        async def counted() -> bool:
            got = (await http.get(f"/api/rooms/{room.room_id}")).json()
            return bool(got["likes"] == 20)
        await eventually(counted)
        assert sent_likes == [7, 7, 6]
        await vctx.close()
        await ctx.close()
    assert page_errors.errors == []


async def test_sale_state_moves_only_on_the_servers_events(
        server: LiveServer, http: httpx.AsyncClient, browser: Any,
        page_errors: PageErrors) -> None:
    room = await create_room(http, "Held events")
    product = await room.product(stock=5, title="Delta Clock")
    pid = product["product_id"]
    # Pinned for show only: the card's button follows the flash sale alone.
    await room.call("POST", "/pins", {"product_id": pid, "open_for_sale": False}, expect=200)

    ctx = await browser.new_context(viewport=PHONE)
    page = page_errors.watch(await ctx.new_page(), "viewer")
    # Every frame from the server, from the first one of type hold["type"] on, is
    # held back (in order, so no sequence gap shows) until the test releases it.
    hold: dict[str, Any] = {"type": None, "held": [], "ws": None}

    def route(ws: WebSocketRoute) -> None:
        upstream = ws.connect_to_server()
        hold["ws"] = ws

        def from_server(message: str | bytes) -> None:
            if not hold["held"] and json.loads(message).get("type") != hold["type"]:
                ws.send(message)
            else:
                hold["held"].append(message)

        ws.on_message(lambda message: upstream.send(message))
        upstream.on_message(from_server)

    def release(then_hold: str | None) -> None:
        held, hold["held"], hold["type"] = hold["held"], [], then_hold
        for message in held:
            hold["ws"].send(message)

    def held(kind: str) -> Callable[[], Awaitable[bool]]:
        async def check() -> bool:
            return bool(hold["held"]) and json.loads(hold["held"][0])["type"] == kind
        return check

    await page.route_web_socket(re.compile(r"/ws/"), route)
    await page.goto(f"{server.base}/r/{room.room_id}")
    await expect(page.locator("#conn")).to_have_attribute("data-state", "live")
    card = page.locator(f'.pcard[data-product-id="{pid}"]')
    buy = card.locator(".buy-btn")

    hold["type"] = "sale_open"
    sale = await room.sale(pid, units=5, limit=1, starts_in_s=2, duration_s=3)
    await expect(card).to_have_attribute("data-sale-state", "scheduled")
    # Well past starts_at by the page's own (server-corrected) clock, the page
    # still says what the server last said: scheduled.
    await eventually(held("sale_open"))
    await page.wait_for_function(
        f"() => window.livesell.serverNow() > {sale['starts_at'] + 800}", timeout=30_000)
    await expect(card).to_have_attribute("data-sale-state", "scheduled")
    await expect(buy).to_be_disabled()
    await expect(buy).to_have_text("Starts in 0:00")
    release(then_hold="sale_closed")
    await expect(card).to_have_attribute("data-sale-state", "open")
    await expect(buy).to_be_enabled()

    # The same at the end: the server's sale_closed, not ends_at, ends the sale.
    await eventually(held("sale_closed"))
    await page.wait_for_function(
        f"() => window.livesell.serverNow() > {sale['ends_at'] + 800}", timeout=30_000)
    await expect(card).to_have_attribute("data-sale-state", "open")
    await expect(buy).to_be_enabled()
    release(then_hold=None)
    await expect(card).to_have_attribute("data-sale-state", "ended")
    await expect(buy).to_have_text("Sale ended")
    await expect(buy).to_be_disabled()
    await ctx.close()
    assert page_errors.errors == []


async def test_a_countdown_is_redrawn_the_moment_the_clock_estimate_moves(
        server: LiveServer, http: httpx.AsyncClient, browser: Any,
        page_errors: PageErrors) -> None:
    """A better sample of server time (a pong with a shorter round trip) moves the
    page's estimate; a countdown drawn with the old estimate must not wait for its
    next scheduled flip, or two viewers show different seconds for up to a second."""
    room = await create_room(http, "Clock redraw")
    pid = (await room.product(stock=5, title="Clock Lamp"))["product_id"]
    # Pinned for show only: the card's button follows the flash sale alone.
    await room.call("POST", "/pins", {"product_id": pid, "open_for_sale": False}, expect=200)
    await room.sale(pid, units=5, limit=1, starts_in_s=600, duration_s=60)
    ctx = await browser.new_context(viewport=PHONE)
    page = page_errors.watch(await ctx.new_page(), "viewer")
    await page.goto(f"{server.base}/r/{room.room_id}")
    await expect(page.locator("#conn")).to_have_attribute("data-state", "live")
    buy = page.locator(f'.pcard[data-product-id="{pid}"] .buy-btn')
    await expect(buy).to_have_text(re.compile(r"Starts in (10:00|9:\d\d)"))
    # A pong as the connection handles it, whose server time is 5 minutes later and
    # whose round trip is exactly 0 ms (Date.now() held still while the page handles
    # it): no sample is better, and of equal ones the page keeps the newest. The text
    # is read in the same script, so no timer of the page can have run in between.
    before, after = await page.evaluate(f"""() => {{
        const live = window.livesell.live;
        const btn = document.querySelector('.pcard[data-product-id="{pid}"] .buy-btn');
        const before = btn.textContent;
        const realNow = Date.now; const t = realNow(); Date.now = () => t;
        try {{
            live._onPong({{ type: "pong", t, server_time: live.serverNow() + 300000 }});
        }} finally {{ Date.now = realNow; }}
        return [before, btn.textContent];
    }}""")

    def seconds(text: str) -> int:
        minutes, secs = re.fullmatch(r"Starts in (\d+):(\d\d)", text).groups()  # type: ignore[union-attr]
        return int(minutes) * 60 + int(secs)

    assert 295 <= seconds(before) - seconds(after) <= 305, (before, after)
    await ctx.close()
    assert page_errors.errors == []

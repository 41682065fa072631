"""The room policy and identities in the pages (issue 11, "Identities that mean
something" and slow mode), in Chromium against a real server: the host console
sets `require_verified` and slow mode and a viewer page follows without a reload;
slow mode holds a second message back with a countdown and keeps its text; a
shop-signed JWT handed over in the URL fragment makes the viewer verified (and
leaves the address bar), so it can buy in a room that sells to shop customers
only; a refused sign-in is shown and not retried; a network over its limit of new
guests is told when the page will retry; a per-address limit refusal reads
plainly on the product card. No CSP violation on any page."""

from __future__ import annotations

import re
import time
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import httpx
import jwt
import pytest

from tests.browser.conftest import PageErrors
from tests.browser.helpers import DESKTOP, open_tool, skip_without_browser
from tests.support import Host, LiveServer, create_room, make_settings

skip_without_browser()

from playwright.async_api import BrowserContext, Page, expect  # noqa: E402

from tests.browser.test_security import WATCH_VIOLATIONS, Violations  # noqa: E402

SHOP_KEY = "s" * 48  # auth.shop_key needs at least 32 bytes
WRONG_KEY = "w" * 48


def shop_token(sub: str, name: str, key: str = SHOP_KEY, ttl_s: int = 600) -> str:
    """What the shop's own site signs for its signed-in customer (docs/security.md)."""
    now = int(time.time())
    return jwt.encode({"sub": sub, "name": name, "iat": now, "exp": now + ttl_s}, key,
                      algorithm="HS256")


@pytest.fixture
async def shop_server(redis_url: str, data_dir: Path) -> AsyncIterator[LiveServer]:
    live = await LiveServer(make_settings(redis_url, data_dir,
                                          auth={"shop_key": SHOP_KEY})).start()
    try:
        yield live
    finally:
        await live.stop()


async def selling_room(http: httpx.AsyncClient, title: str) -> tuple[Host, str]:
    """A room with one pinned product whose flash sale is open."""
    host = await create_room(http, title)
    product = await host.product(stock=5, price=4900, title="Aurora Desk Lamp")
    product_id = product["product_id"]
    await host.call("POST", "/pins", {"product_id": product_id}, expect=200)
    await host.sale(product_id, units=5, limit=2, price=2900)
    return host, product_id


async def watched_context(browser: Any) -> BrowserContext:
    ctx: BrowserContext = await browser.new_context(viewport=DESKTOP)
    await ctx.add_init_script(WATCH_VIOLATIONS)
    return ctx


async def test_host_policy_reaches_a_viewer_without_reload(
        server: LiveServer, http: httpx.AsyncClient, browser: Any,
        page_errors: PageErrors) -> None:
    seen = Violations()
    host_ctx = await watched_context(browser)
    console = seen.watch(page_errors.watch(await host_ctx.new_page(), "host"))
    await console.goto(server.base + "/host")
    await console.get_by_label("Show title").fill("Policy show")
    await console.get_by_role("button", name="Create room").click()
    await expect(console.locator("#conn")).to_have_attribute("data-state", "live")
    room_id = (await console.locator("#room-id").text_content() or "").strip()
    host_key = await console.evaluate(
        "(id) => JSON.parse(localStorage.getItem('livesell.host.rooms'))[id].host_key", room_id)
    host = Host(http, room_id, host_key)
    product = await host.product(stock=5, price=4900, title="Aurora Desk Lamp")
    await host.call("POST", "/pins", {"product_id": product["product_id"]}, expect=200)
    await host.sale(product["product_id"], units=5, limit=2, price=2900)

    await open_tool(console, "Settings")
    form = console.locator("#policy-form")
    verified_box = console.get_by_label("Only signed-in shop customers can buy")
    await expect(verified_box).not_to_be_checked()
    await expect(form).to_have_attribute("data-slow-mode-s", "0")

    viewer_ctx = await watched_context(browser)
    viewer = seen.watch(page_errors.watch(await viewer_ctx.new_page(), "viewer"))
    await viewer.goto(f"{server.base}/r/{room_id}")
    await expect(viewer.locator("#conn")).to_have_attribute("data-state", "live")
    buy = viewer.locator(f'.pcard[data-product-id="{product["product_id"]}"] .buy-btn')
    await expect(buy).to_have_text("Buy now")
    await expect(buy).to_be_enabled()
    await expect(viewer.locator("#slow-mode")).to_be_hidden()
    await expect(viewer.locator("#me-verified")).to_be_hidden()

    # Shop customers only: the guest's button says so, disabled, before any click.
    await verified_box.check()
    await expect(console.locator("#policy-result")).to_have_attribute("data-outcome", "ok")
    await expect(form).to_have_attribute("data-require-verified", "true")
    await expect(buy).to_have_text("Sign in on the shop to buy")
    await expect(buy).to_be_disabled()

    # Slow mode from the preset list.
    await console.get_by_label("Slow mode", exact=True).select_option("10")
    await expect(form).to_have_attribute("data-slow-mode-s", "10")
    await expect(viewer.locator("#slow-mode")).to_have_text("Slow mode: one message every 10 s")
    await expect(viewer.locator("#slow-mode")).to_be_visible()

    # Another console (here: a plain HTTP call) changes one field; this console follows
    # and keeps the field it did not touch.
    policy = await host.call("PATCH", "/policy", {"slow_mode_s": 45}, expect=200)
    assert policy == {"require_verified": True, "limit_per_ip": False, "slow_mode_s": 45}
    await expect(form).to_have_attribute("data-slow-mode-s", "45")
    await expect(console.get_by_label("Slow mode", exact=True)).to_have_value("custom")
    await expect(console.get_by_label("Seconds", exact=True)).to_have_value("45")
    await expect(verified_box).to_be_checked()
    await expect(viewer.locator("#slow-mode")).to_have_text("Slow mode: one message every 45 s")

    # A value the server refuses is shown inline in its words; nothing changes.
    await console.get_by_label("Seconds", exact=True).fill("5000")
    await console.get_by_role("button", name="Set", exact=True).click()
    result = console.locator("#policy-result")
    await expect(result).to_have_attribute("data-outcome", "error")
    await expect(result).to_have_text(re.compile(r"slow_mode_s.*\(bad_request\)"))
    await expect(form).to_have_attribute("data-slow-mode-s", "45")
    assert (await http.get(f"/api/rooms/{room_id}")).json()["policy"]["slow_mode_s"] == 45

    # The per-address limit toggles on its own.
    await console.get_by_label("Per-buyer limit also per network address").check()
    await expect(form).to_have_attribute("data-limit-per-ip", "true")
    await expect(form).to_have_attribute("data-require-verified", "true")

    # Both off again: the guest can buy and chat freely, still without a reload.
    await verified_box.uncheck()
    await console.get_by_label("Slow mode", exact=True).select_option("0")
    await expect(form).to_have_attribute("data-slow-mode-s", "0")
    await expect(buy).to_have_text("Buy now")
    await expect(buy).to_be_enabled()
    await expect(viewer.locator("#slow-mode")).to_be_hidden()
    assert (await http.get(f"/api/rooms/{room_id}")).json()["policy"] == {
        "require_verified": False, "limit_per_ip": True, "slow_mode_s": 0}

    for page in (console, viewer):
        assert await seen.of(page) == [], page.url
    assert page_errors.errors == []
    await host_ctx.close()
    await viewer_ctx.close()


async def test_slow_mode_refusal_counts_down_and_keeps_the_text(
        server: LiveServer, http: httpx.AsyncClient, browser: Any,
        page_errors: PageErrors) -> None:
    host, _ = await selling_room(http, "Slow show")
    await host.call("PATCH", "/policy", {"slow_mode_s": 30}, expect=200)
    seen = Violations()
    # Two tabs of one viewer (one browser profile, one identity token): the server's
    # slow mode is per viewer, and the second tab does not know what the first sent.
    ctx = await watched_context(browser)
    first = seen.watch(page_errors.watch(await ctx.new_page(), "tab 1"))
    await first.goto(f"{server.base}/r/{host.room_id}")
    await expect(first.locator("#conn")).to_have_attribute("data-state", "live")
    second = seen.watch(page_errors.watch(await ctx.new_page(), "tab 2"))
    await second.goto(f"{server.base}/r/{host.room_id}")
    await expect(second.locator("#conn")).to_have_attribute("data-state", "live")
    me = await first.evaluate("() => window.livesell.viewer.viewer_id")
    assert me == await second.evaluate("() => window.livesell.viewer.viewer_id")
    for page in (first, second):
        await expect(page.locator("#slow-mode")).to_have_text("Slow mode: one message every 30 s")

    await first.locator("#chat-input").fill("first message")
    await first.locator("#chat-input").press("Enter")
    await expect(second.locator("#chat-list .msg", has_text="first message")).to_have_count(1)
    # The tab that sent counts down on its button.
    send_first = first.locator("#chat-send")
    await expect(send_first).to_have_text(re.compile(r"^Wait ([1-9]|[12]\d|30) s$"))
    await expect(send_first).to_be_disabled()

    # The other tab's message is refused by the server: a countdown, and the text stays.
    await second.locator("#chat-input").fill("second message")
    await second.locator("#chat-input").press("Enter")
    wait_line = second.locator("#chat-wait")
    await expect(wait_line).to_have_text(re.compile(r"^Slow mode: wait \d+ s\."))
    await expect(second.locator("#chat-input")).to_have_value("second message")
    send_second = second.locator("#chat-send")
    await expect(send_second).to_be_disabled()
    shown = await send_second.text_content() or ""
    m = re.fullmatch(r"Wait (\d+) s", shown)
    assert m and 1 <= int(m.group(1)) <= 30, shown
    # A better sample of the server clock moves the page's estimate of server time back
    # by 1.5 s. The waits the pages started themselves do not grow for it: the
    # countdowns never count up ("Wait 31 s" for a 30 s wait). The pong comes back in
    # the millisecond its ping left (Date.now() held still while the page handles it),
    # a round trip of exactly 0 ms: no sample is better, and of equal ones the page
    # keeps the newest, so the page adopts it whatever its real pings measured (on
    # loopback they often measure 0 ms too).
    for page, before in ((second, shown), (first, await send_first.text_content() or "")):
        was = re.fullmatch(r"Wait (\d+) s", before)
        assert was, before
        now = await page.evaluate(
            "() => { const live = window.livesell.live; const before = live.offset;"
            " const realNow = Date.now; const t = realNow(); Date.now = () => t;"
            " try { live._onPong({ type: 'pong', t, server_time: live.serverNow() - 1500 }); }"
            " finally { Date.now = realNow; }"
            " return [before - live.offset, live.offsetRtt,"
            " document.querySelector('#chat-send').textContent]; }")
        assert now[0] >= 1400 and now[1] == 0, now
        after = re.fullmatch(r"Wait (\d+) s", now[2])
        assert after and 1 <= int(after.group(1)) <= min(30, int(was.group(1))), (before, now)
    m = re.fullmatch(r"Wait (\d+) s", await send_second.text_content() or "")
    assert m and 1 <= int(m.group(1)) <= 30, m
    shown = m.group(0)
    # It counts down (a displayed second flips within a little over a second).
    await expect(send_second).not_to_have_text(shown, timeout=10_000)
    later = re.fullmatch(r"Wait (\d+) s", await send_second.text_content() or "")
    assert later and int(later.group(1)) < int(m.group(1)), (shown, later)
    await expect(first.locator("#chat-list .msg", has_text="second message")).to_have_count(0)

    # The host turns slow mode off: the kept text can go at once.
    await host.call("PATCH", "/policy", {"slow_mode_s": 0}, expect=200)
    await expect(second.locator("#slow-mode")).to_be_hidden()
    await expect(send_second).to_have_text("Send")
    await expect(wait_line).to_be_hidden()
    await send_second.click()
    await expect(first.locator("#chat-list .msg", has_text="second message")).to_have_count(1)
    await expect(second.locator("#chat-input")).to_have_value("")

    for page in (first, second):
        assert await seen.of(page) == [], page.url
    assert page_errors.errors == []
    await ctx.close()


async def test_shop_sign_in_in_the_fragment_makes_the_viewer_verified(
        shop_server: LiveServer, browser: Any, page_errors: PageErrors) -> None:
    seen = Violations()
    async with httpx.AsyncClient(base_url=shop_server.base, timeout=30) as http:
        host, product_id = await selling_room(http, "Members' drop")
        await host.call("PATCH", "/policy", {"require_verified": True}, expect=200)
        room_url = f"{shop_server.base}/r/{host.room_id}"
        card = f'.pcard[data-product-id="{product_id}"]'

        # A guest watches but is told to sign in on the shop.
        guest_ctx = await watched_context(browser)
        guest = seen.watch(page_errors.watch(await guest_ctx.new_page(), "guest"))
        await guest.goto(room_url)
        await expect(guest.locator("#conn")).to_have_attribute("data-state", "live")
        await expect(guest.locator(f"{card} .buy-btn")).to_have_text("Sign in on the shop to buy")
        await expect(guest.locator(f"{card} .buy-btn")).to_be_disabled()

        # The shop links its signed-in customer to the show with its JWT in the fragment.
        token = shop_token("cust-42", "Ada")
        ctx = await watched_context(browser)
        page = seen.watch(page_errors.watch(await ctx.new_page(), "customer"))
        sockets: list[str] = []
        page.on("websocket", lambda ws: sockets.append(ws.url))
        await page.goto(f"{room_url}#shop_token={token}")
        await expect(page.locator("#conn")).to_have_attribute("data-state", "live")
        assert page.url == room_url, page.url
        assert "shop_token" not in await page.evaluate("() => location.href")
        welcome = await page.evaluate("() => window.livesell.viewer")
        assert welcome == {"viewer_id": "shop_cust-42", "nickname": "Ada", "verified": True}
        await expect(page.locator("#me-name")).to_have_text("Ada")
        await expect(page.locator("#me-verified")).to_be_visible()
        await expect(page.locator("#me-verified")).to_have_text(re.compile("verified"))
        await expect(page.locator("#rename-btn")).to_be_hidden()
        # The JWT was exchanged for a livesell token, kept where the guest token is kept;
        # neither the JWT nor the token is in any URL the page opened.
        stored = await page.evaluate("() => JSON.parse(localStorage.getItem('livesell.token'))")
        assert isinstance(stored, str) and stored != token and stored.count(".") == 1
        assert sockets and all(token not in u and stored not in u for u in sockets), sockets
        assert await page.evaluate("() => window.livesell.live.ws.protocol") == "livesell.v1"

        # The verified customer buys in the members-only room.
        buy = page.locator(f"{card} .buy-btn")
        await expect(buy).to_have_text("Buy now")
        await buy.click()
        await expect(page.locator("#checkout")).to_be_visible()
        await page.locator("#pay-btn").click()
        await expect(page.locator("#order-done")).to_be_visible()
        orders = await host.call("GET", "/orders", expect=200)
        assert [o["buyer_id"] for o in orders["orders"]] == ["shop_cust-42"]

        # A reload keeps the verified identity (the stored livesell token).
        await page.reload()
        await expect(page.locator("#conn")).to_have_attribute("data-state", "live")
        await expect(page.locator("#me-verified")).to_be_visible()

        for p in (guest, page):
            assert await seen.of(p) == [], p.url
        await guest_ctx.close()
        await ctx.close()
    assert page_errors.errors == []


async def test_a_refused_sign_in_is_shown_and_not_retried(
        shop_server: LiveServer, browser: Any, page_errors: PageErrors) -> None:
    seen = Violations()
    async with httpx.AsyncClient(base_url=shop_server.base, timeout=30) as http:
        host, product_id = await selling_room(http, "Members' drop")
        await host.call("PATCH", "/policy", {"require_verified": True}, expect=200)
    room_url = f"{shop_server.base}/r/{host.room_id}"

    # Handed over in the fragment but signed with another key: the exchange is refused,
    # the page says so and carries on as a guest.
    ctx = await watched_context(browser)
    page = seen.watch(page_errors.watch(await ctx.new_page(), "forged hand-off"))
    await page.goto(f"{room_url}#shop_token={shop_token('cust-7', 'Eve', key=WRONG_KEY)}")
    await expect(page.locator("#conn")).to_have_attribute("data-state", "live")
    assert "shop_token" not in await page.evaluate("() => location.href")
    notice = page.locator("#conn-notice")
    await expect(notice).to_contain_text(
        "The shop sign-in was refused (the sign-in was not signed by this shop)")
    await expect(page.locator("#me-verified")).to_be_hidden()
    await expect(page.locator(f'.pcard[data-product-id="{product_id}"] .buy-btn')).to_have_text(
        "Sign in on the shop to buy")
    await ctx.close()

    # An expired shop token offered on the WebSocket itself (a page that kept one):
    # close 4001, shown, and the page does not reconnect with it.
    ctx = await watched_context(browser)
    expired = shop_token("cust-8", "Bob", ttl_s=-3600)
    await ctx.add_init_script(
        f"localStorage.getItem('livesell.token') || localStorage.setItem('livesell.token', "
        f"JSON.stringify({expired!r}))")
    page = seen.watch(page_errors.watch(await ctx.new_page(), "expired"))
    sockets: list[str] = []
    page.on("websocket", lambda ws: sockets.append(ws.url))
    await page.goto(room_url)
    await expect(page.locator("#conn")).to_have_attribute("data-state", "refused")
    await expect(page.locator("#conn-notice")).to_contain_text(
        "The shop sign-in was refused (the sign-in has expired)")
    guest_button = page.get_by_role("button", name="Watch as a guest")
    await expect(guest_button).to_be_visible()
    assert await page.evaluate("() => localStorage.getItem('livesell.token')") is None
    # Longer than the first reconnect backoff (at most 0.5 s): no second attempt.
    await page.wait_for_timeout(1500)
    assert len(sockets) == 1, sockets
    await expect(page.locator("#conn")).to_have_attribute("data-state", "refused")
    # The viewer chooses to carry on as a guest.
    await guest_button.click()
    await expect(page.locator("#conn")).to_have_attribute("data-state", "live")
    assert len(sockets) == 2, sockets
    await expect(page.locator("#conn-notice")).to_be_hidden()
    verified = await page.evaluate("() => window.livesell.viewer.verified")
    assert verified is False
    assert await seen.of(page) == [], page.url
    await ctx.close()
    assert page_errors.errors == []


async def test_too_many_new_visitors_waits_and_says_when(
        redis_url: str, data_dir: Path, browser: Any, page_errors: PageErrors) -> None:
    live = await LiveServer(make_settings(redis_url, data_dir,
                                          auth={"guest_mints_per_ip_per_min": 1})).start()
    try:
        async with httpx.AsyncClient(base_url=live.base, timeout=30) as http:
            host = await create_room(http, "Crowded network")
        room_url = f"{live.base}/r/{host.room_id}"
        first_ctx = await browser.new_context(viewport=DESKTOP)
        first: Page = page_errors.watch(await first_ctx.new_page(), "first")
        await first.goto(room_url)  # the one new guest this address may mint this minute
        await expect(first.locator("#conn")).to_have_attribute("data-state", "live")

        ctx = await browser.new_context(viewport=DESKTOP)
        page: Page = page_errors.watch(await ctx.new_page(), "second")
        await page.goto(room_url)
        await expect(page.locator("#conn")).to_have_attribute("data-state", "throttled")
        notice = page.locator("#conn-notice-text")
        await expect(notice).to_have_text(re.compile(
            r"^Too many new visitors from your network; retrying in \d+ s\.$"))
        shown = int(re.findall(r"\d+", await notice.text_content() or "")[0])
        assert 1 <= shown <= 61, shown
        # The retry is scheduled for when the server said, not the usual backoff.
        retry_in = await page.evaluate("() => window.livesell.live.retryAt - Date.now()")
        assert retry_in > 5_000, retry_in
        await first_ctx.close()
        await ctx.close()
    finally:
        await live.stop()
    assert page_errors.errors == []


async def test_refusals_of_the_policy_read_plainly_on_the_card(
        server: LiveServer, http: httpx.AsyncClient, browser: Any,
        page_errors: PageErrors) -> None:
    host = await create_room(http, "One per household")
    product = await host.product(stock=5, price=4900, title="Aurora Desk Lamp")
    product_id = product["product_id"]
    await host.call("POST", "/pins", {"product_id": product_id}, expect=200)
    await host.sale(product_id, units=5, limit=1, price=2900)
    await host.call("PATCH", "/policy", {"limit_per_ip": True}, expect=200)
    card = f'.pcard[data-product-id="{product_id}"]'
    pages = []
    contexts = []
    for name in ("guest A", "guest B"):  # two identities, one address (127.0.0.1)
        ctx = await browser.new_context(viewport=DESKTOP)
        contexts.append(ctx)
        page = page_errors.watch(await ctx.new_page(), name)
        await page.goto(f"{server.base}/r/{host.room_id}")
        await expect(page.locator("#conn")).to_have_attribute("data-state", "live")
        await expect(page.locator(f"{card} .buy-btn")).to_have_text("Buy now")
        pages.append(page)
    a, b = pages
    assert (await a.evaluate("() => window.livesell.viewer.viewer_id")
            != await b.evaluate("() => window.livesell.viewer.viewer_id"))
    await a.locator(f"{card} .buy-btn").click()
    await expect(a.locator("#checkout")).to_be_visible()
    await b.locator(f"{card} .buy-btn").click()
    await expect(b.locator(f"{card} .card-msg")).to_have_text(
        "Buyers on your network have already reached this sale's per-buyer limit.")
    await expect(b.locator("#checkout")).to_be_hidden()
    for ctx in contexts:
        await ctx.close()
    assert page_errors.errors == []

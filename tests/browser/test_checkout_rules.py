"""The viewer's checkout never leads a buyer into a refusal the page could see
coming, in Chromium against a real server, Redis and SQLite.

The coupon choice applies the server's rules (begin_checkout.lua; docs/protocol.md
section 9 "Coupons at checkout"): a coupon in another currency than the hold's, or
whose minimum spend the hold's subtotal does not reach, or that expired or was
used, is shown disabled with why and never preselected; the best one that applies
(the largest discount, the one expiring soonest on a tie) is, and its discount is
shown before "Place order". A coupon that stops applying while the sheet is open is
not sent. A refusal the page could not foresee (the coupon used from elsewhere)
says why. A checkout asked for while the connection is down is not sent blind:
back online, the page checks the hold and the coupon again against what the server
says and asks the buyer again if anything changed, or sends it if nothing did."""

from __future__ import annotations

import re
import time
from pathlib import Path
from typing import Any

import httpx

from tests.browser.conftest import PageErrors
from tests.browser.helpers import (
    DESKTOP,
    Network,
    contrast_failures,
    shoot,
    skip_without_browser,
    unnamed_controls,
)
from tests.support import Host, LiveServer, create_room, eventually, join, pay, server_with

skip_without_browser()

from playwright.async_api import Page, expect  # noqa: E402

PHONE_SMALL = {"width": 360, "height": 740}
PRICE = 4000  # $40.00 a unit


async def viewer(browser: Any, url: str, watch: Any,
                 viewport: dict[str, int] = DESKTOP) -> tuple[Page, Network]:
    """A viewer page whose WebSocket goes through a Network switch, once live."""
    ctx = await browser.new_context(viewport=viewport)
    page: Page = watch(await ctx.new_page(), f"viewer {viewport['width']}")
    net = Network()
    await page.route_web_socket(re.compile(r"/ws/"), net.route)
    await page.goto(url)
    await expect(page.locator("#conn")).to_have_attribute("data-state", "live")
    return page, net


async def lamp_on_sale(host: Host) -> dict[str, Any]:
    lamp = await host.product(stock=20, price=PRICE, title="Aurora Desk Lamp")
    await host.call("POST", "/pins", {"product_id": lamp["product_id"]}, expect=200)
    sale = await host.sale(lamp["product_id"], units=10, limit=5, price=PRICE)
    return {**lamp, "sale_id": sale["sale_id"]}


async def claim(host: Host, page: Page, title: str, value: int, kind: str = "amount",
                **terms: Any) -> dict[str, Any]:
    """The host drops a coupon; the viewer claims it from its card."""
    coupon: dict[str, Any] = await host.call("POST", "/coupons", {
        "title": title, "kind": kind, "value": value, "count": 10, **terms}, expect=201)
    card = page.locator(f'.promo.coupon[data-coupon-id="{coupon["coupon_id"]}"]')
    await card.get_by_role("button", name=re.compile("^Claim")).click()
    await expect(card.get_by_role("button")).to_have_text("Claimed ✓")
    return coupon


async def buy(page: Page, product_id: str, quantity: int = 1) -> None:
    card = page.locator(f'.pcard[data-product-id="{product_id}"]')
    await expect(card.locator(".buy-btn")).to_be_enabled()
    if quantity != 1:
        await card.locator("select.qty").select_option(str(quantity))
    await card.locator(".buy-btn").click()
    await expect(page.locator("#checkout")).to_be_visible()
    await expect(page.locator("#hold-timer")).to_contain_text("Held for you for")


def option(page: Page, coupon: dict[str, Any]) -> Any:
    return page.locator(f'#coupon-select option[value="{coupon["coupon_id"]}"]')


async def orders(host: Host) -> list[dict[str, Any]]:
    result: list[dict[str, Any]] = (await host.call("GET", "/orders", expect=200))["orders"]
    return result


async def kept_checkout(page: Page, room_id: str) -> Any:
    return await page.evaluate(
        "(room) => JSON.parse(localStorage.getItem('livesell.checkout.offline.' + room))",
        room_id)


async def test_only_applicable_coupons_are_offered_and_the_best_is_preselected(
        server: LiveServer, http: httpx.AsyncClient, browser: Any,
        page_errors: PageErrors) -> None:
    for viewport in (PHONE_SMALL, DESKTOP):
        host = await create_room(http, f"Coupon rules show {viewport['width']}")
        lamp = await lamp_on_sale(host)
        pid = lamp["product_id"]
        page, _ = await viewer(browser, f"{server.base}/r/{host.room_id}", page_errors.watch,
                               viewport)
        # Each drop outlives the one before, so the newest is on top of the column.
        early = await claim(host, page, "Five off early", 500, expires_in_s=3000)
        euro = await claim(host, page, "Euro gift", 900, currency="EUR", expires_in_s=3100)
        big = await claim(host, page, "Big spender", 1500, min_spend=10_000, expires_in_s=3200)
        tenth = await claim(host, page, "Ten percent", 10, kind="percent", expires_in_s=3300)
        late = await claim(host, page, "Five off late", 500, expires_in_s=3400)

        # One lamp: $40.00.
        await buy(page, pid)
        select = page.locator("#coupon-select")
        # The largest discount is $5.00, twice: the one expiring sooner is chosen.
        await expect(select).to_have_value(early["coupon_id"])
        await expect(page.locator("#sum-discount")).to_have_text("\u2212$5.00")
        await expect(page.locator("#sum-total")).to_have_text("$35.00")
        await expect(page.locator("#pay-btn")).to_have_text("Place order · $35.00")
        # Another currency, and a minimum spend not reached: disabled, with why.
        await expect(option(page, euro)).to_be_disabled()
        await expect(option(page, euro)).to_have_attribute("data-reason", "coupon_currency")
        await expect(option(page, euro)).to_have_text(
            "Euro gift (€9.00 off) · not applicable: only for orders in EUR; this one is in USD")
        await expect(option(page, big)).to_be_disabled()
        await expect(option(page, big)).to_have_attribute("data-reason", "coupon_min_spend")
        await expect(option(page, big)).to_have_text(
            "Big spender ($15.00 off orders over $100.00) · not applicable: spend $60.00 more "
            "to use it (minimum $100.00)")
        for usable in (early, tenth, late):
            await expect(option(page, usable)).to_be_enabled()
        notes = page.locator("#coupon-notes li")
        await expect(notes).to_have_text([
            "Big spender — spend $60.00 more to use it (minimum $100.00)",
            "Euro gift — only for orders in EUR; this one is in USD"])
        await expect(select).to_have_attribute("aria-describedby", "coupon-notes")
        # Picking another coupon shows its discount before "Place order".
        await select.select_option(tenth["coupon_id"])
        await expect(page.locator("#sum-discount")).to_have_text("\u2212$4.00")
        await expect(page.locator("#pay-btn")).to_have_text("Place order · $36.00")
        await select.select_option(early["coupon_id"])
        await expect(page.locator("#pay-btn")).to_have_text("Place order · $35.00")
        if viewport is PHONE_SMALL:
            width = await page.evaluate("() => document.documentElement.scrollWidth")
            assert width <= PHONE_SMALL["width"], width
            assert await page.evaluate(
                "() => { const d = document.querySelector('#checkout');"
                " return d.scrollWidth <= d.clientWidth; }")
            assert await unnamed_controls(page) == []
            _, failures = await contrast_failures(page)
            assert failures == [], failures
        await shoot(page, f"checkout-coupon-rules-{viewport['width']}")

        await page.locator("#pay-btn").click()
        await expect(page.locator("#order-done")).to_be_visible()
        await expect(page.locator("#order-text")).to_contain_text("paid $35.00 (saved $5.00)")
        placed = await orders(host)
        assert [(o["total"], o["discount"], o["coupon_id"]) for o in placed] == [
            (3500, 500, early["coupon_id"])], placed
        await page.locator("#checkout-close").click()

        # Three lamps: $120.00. The minimum spend is reached, and the used coupon is
        # shown used.
        await buy(page, pid, quantity=3)
        await expect(select).to_have_value(big["coupon_id"])
        await expect(page.locator("#sum-discount")).to_have_text("\u2212$15.00")
        await expect(option(page, big)).to_be_enabled()
        await expect(option(page, early)).to_be_disabled()
        await expect(option(page, early)).to_have_attribute("data-reason", "coupon_used")
        await expect(option(page, early)).to_contain_text("not applicable: already used")
        await expect(option(page, euro)).to_be_disabled()
        await page.get_by_role("button", name="Place order · $105.00").click()
        await expect(page.locator("#order-text")).to_contain_text("paid $105.00 (saved $15.00)")
        placed = await orders(host)
        assert sorted((o["total"], o["discount"], o["coupon_id"]) for o in placed) == sorted([
            (3500, 500, early["coupon_id"]), (10_500, 1500, big["coupon_id"])]), placed
        await page.context.close()
    assert page_errors.errors == []


async def test_a_coupon_that_stops_applying_is_not_sent(
        server: LiveServer, http: httpx.AsyncClient, browser: Any,
        page_errors: PageErrors) -> None:
    host = await create_room(http, "Expiring coupon show")
    lamp = await lamp_on_sale(host)
    page, net = await viewer(browser, f"{server.base}/r/{host.room_id}", page_errors.watch)
    steady = await claim(host, page, "Steady 3", 300, expires_in_s=3600)
    quick = await claim(host, page, "Quick 8", 800, expires_in_s=12)
    await buy(page, lamp["product_id"])
    select = page.locator("#coupon-select")
    await expect(select).to_have_value(quick["coupon_id"])
    await expect(page.locator("#pay-btn")).to_have_text("Place order · $32.00")

    # The sheet stays open while the coupon expires (by the server's clock).
    await expect(option(page, quick)).to_have_attribute("data-reason", "coupon_expired",
                                                        timeout=30_000)
    assert time.time() * 1000 >= quick["expires_at"] - 1000
    await expect(option(page, quick)).to_be_disabled()
    await expect(select).to_have_value(steady["coupon_id"])
    msg = page.locator("#checkout-msg")
    await expect(msg).to_have_text(
        "“Quick 8” has expired. It no longer applies: “Steady 3” is applied instead. Check "
        "the total before you place the order.")
    await expect(msg).to_have_class(re.compile(r"\bwarn\b"))
    await page.get_by_role("button", name="Place order · $37.00").click()
    await expect(page.locator("#order-text")).to_contain_text("paid $37.00 (saved $3.00)")
    assert [c.get("coupon_id") for c in net.checkouts()] == [steady["coupon_id"]], net.sent
    placed = await orders(host)
    assert [(o["total"], o["coupon_id"]) for o in placed] == [(3700, steady["coupon_id"])]
    assert page_errors.errors == []


async def test_a_coupon_refusal_says_why_and_the_next_best_is_offered(
        server: LiveServer, http: httpx.AsyncClient, browser: Any,
        page_errors: PageErrors) -> None:
    host = await create_room(http, "Used elsewhere show")
    lamp = await lamp_on_sale(host)
    page, net = await viewer(browser, f"{server.base}/r/{host.room_id}", page_errors.watch)
    two = await claim(host, page, "Gift 2", 200)
    six = await claim(host, page, "Gift 6", 600)
    # The same viewer spends the $6 coupon elsewhere (another device, same identity):
    # this page cannot know.
    token = await page.evaluate("() => JSON.parse(localStorage.getItem('livesell.token'))")
    elsewhere = await join(server, host.room_id, token=token)
    try:
        spent = await pay(elsewhere, lamp["product_id"], six["coupon_id"])
    finally:
        await elsewhere.close()
    assert spent["coupon_id"] == six["coupon_id"]

    await buy(page, lamp["product_id"])
    await expect(page.locator("#coupon-select")).to_have_value(six["coupon_id"])
    await page.get_by_role("button", name="Place order · $34.00").click()
    msg = page.locator("#checkout-msg")
    await expect(msg).to_have_text(
        "Coupon not applied: “Gift 6” is already used on another order. Your item is still "
        "held: check the new total and place the order again.")
    await expect(msg).to_have_class(re.compile(r"\berror\b"))
    # The refused coupon is not offered again; the next best is chosen.
    await expect(option(page, six)).to_be_disabled()
    await expect(option(page, six)).to_have_attribute("data-reason", "coupon_used")
    await expect(page.locator("#coupon-select")).to_have_value(two["coupon_id"])
    await page.get_by_role("button", name="Place order · $38.00").click()
    await expect(page.locator("#order-text")).to_contain_text("paid $38.00 (saved $2.00)")
    assert [c.get("coupon_id") for c in net.checkouts()] == [six["coupon_id"],
                                                             two["coupon_id"]]
    mine = [o for o in await orders(host) if o["order_id"] != spent["order_id"]]
    assert [(o["total"], o["coupon_id"]) for o in mine] == [(3800, two["coupon_id"])], mine
    assert page_errors.errors == []


async def queue_checkout_offline(page: Page, net: Network) -> None:
    """Cut the network and press "Place order": the checkout waits, unsent."""
    await net.go_offline()
    await expect(page.locator("#conn")).not_to_have_attribute("data-state", "live")
    await page.locator("#pay-btn").click()
    await expect(page.locator("#pay-btn")).to_have_text("Waiting for connection…")
    await expect(page.locator("#pay-btn")).to_be_disabled()
    await expect(page.locator("#checkout-msg")).to_contain_text("You're offline")
    assert net.checkouts() == []


async def test_a_checkout_queued_offline_is_not_sent_when_the_hold_was_voided(
        server: LiveServer, http: httpx.AsyncClient, browser: Any,
        page_errors: PageErrors) -> None:
    host = await create_room(http, "Offline stop show")
    lamp = await lamp_on_sale(host)
    page, net = await viewer(browser, f"{server.base}/r/{host.room_id}", page_errors.watch)
    await claim(host, page, "Gift 5", 500)
    await buy(page, lamp["product_id"])
    await expect(page.locator("#pay-btn")).to_have_text("Place order · $35.00")
    await queue_checkout_offline(page, net)
    kept = await kept_checkout(page, host.room_id)
    assert kept and kept["frame"]["hold_id"], kept

    # Meanwhile the host stops the sale: the hold is voided.
    await host.call("POST", f"/sales/{lamp['sale_id']}/stop", expect=200)
    await net.go_online()
    await expect(page.locator("#conn")).to_have_attribute("data-state", "live")
    msg = page.locator("#checkout-msg")
    await expect(msg).to_have_text(
        "Your order wasn't sent: The host stopped this sale, so your reservation was "
        "cancelled and the item went back to stock.")
    await expect(page.locator("#checkout")).to_be_visible()
    await expect(page.locator("#pay-btn")).to_have_text("Hold ended")
    await expect(page.locator("#pay-btn")).to_be_disabled()
    # It asked for a fresh state, and the checkout never left.
    assert {"type": "resync"} in net.sent, net.sent
    assert net.checkouts() == [], net.sent
    assert await kept_checkout(page, host.room_id) is None
    assert await page.evaluate(
        "() => [...window.livesell.live.pending.values()].filter((f) => f.type === 'checkout')"
        ".length") == 0
    assert await orders(host) == []
    assert page_errors.errors == []


async def test_a_checkout_queued_offline_is_asked_again_when_its_coupon_expired(
        server: LiveServer, http: httpx.AsyncClient, browser: Any,
        page_errors: PageErrors) -> None:
    host = await create_room(http, "Offline coupon show")
    lamp = await lamp_on_sale(host)
    page, net = await viewer(browser, f"{server.base}/r/{host.room_id}", page_errors.watch,
                             PHONE_SMALL)
    steady = await claim(host, page, "Steady 3", 300, expires_in_s=3600)
    quick = await claim(host, page, "Quick 8", 800, expires_in_s=12)
    await buy(page, lamp["product_id"])
    await expect(page.locator("#coupon-select")).to_have_value(quick["coupon_id"])
    await queue_checkout_offline(page, net)

    # The coupon expires while the page is offline (the server's clock decides).
    async def expired() -> bool:
        return time.time() * 1000 >= int(quick["expires_at"])

    await eventually(expired, timeout=30)
    msg = page.locator("#checkout-msg")
    await expect(msg).to_have_text(
        "Your order wasn't sent: “Quick 8” has expired. Your item is still held: check the "
        "new total and place the order again.", timeout=10_000)
    await net.go_online()
    await expect(page.locator("#conn")).to_have_attribute("data-state", "live")
    # Asked again, with the new state: the best coupon that still applies.
    await expect(page.locator("#checkout")).to_be_visible()
    await expect(option(page, quick)).to_have_attribute("data-reason", "coupon_expired")
    await expect(page.locator("#coupon-select")).to_have_value(steady["coupon_id"])
    await expect(page.locator("#sum-discount")).to_have_text("\u2212$3.00")
    pay_btn = page.get_by_role("button", name="Place order · $37.00")
    await expect(pay_btn).to_be_enabled()
    assert net.checkouts() == [], net.sent
    assert await orders(host) == []
    await shoot(page, "checkout-asked-again-360")
    width = await page.evaluate("() => document.documentElement.scrollWidth")
    assert width <= PHONE_SMALL["width"], width

    await pay_btn.click()
    await expect(page.locator("#order-text")).to_contain_text("paid $37.00 (saved $3.00)")
    placed = await orders(host)
    assert [(o["total"], o["coupon_id"]) for o in placed] == [(3700, steady["coupon_id"])]
    assert [c.get("coupon_id") for c in net.checkouts()] == [steady["coupon_id"]]
    assert page_errors.errors == []


async def test_a_checkout_queued_offline_is_not_sent_when_the_hold_expired(
        redis_url: str, data_dir: Path, browser: Any, page_errors: PageErrors) -> None:
    async with server_with(redis_url, data_dir, sale={"hold_seconds": 8}) as (live, http):
        host = await create_room(http, "Offline expiry show")
        lamp = await lamp_on_sale(host)
        page, net = await viewer(browser, f"{live.base}/r/{host.room_id}", page_errors.watch)
        await buy(page, lamp["product_id"])
        await queue_checkout_offline(page, net)
        await expect(page.locator("#checkout-msg")).to_have_text(
            "Your order wasn't sent: Your hold expired, so the item went back to stock.",
            timeout=20_000)
        await net.go_online()
        await expect(page.locator("#conn")).to_have_attribute("data-state", "live")
        await expect(page.locator("#pay-btn")).to_have_text("Hold ended")
        await expect(page.locator("#checkout")).to_be_visible()
        # Back online, nothing is sent, and the server agrees the hold is over.
        assert net.checkouts() == [], net.sent
        assert await orders(host) == []

        async def back_in_stock() -> bool:
            card = await host.call("GET", f"/products/{lamp['product_id']}", expect=200)
            return bool(card["stock"]["held"] == 0)

        await eventually(back_in_stock)
        # Closed before its server stops, so the page does not watch it go.
        await page.context.close()
    assert page_errors.errors == []


async def test_a_checkout_queued_offline_is_sent_when_nothing_changed(
        server: LiveServer, http: httpx.AsyncClient, browser: Any,
        page_errors: PageErrors) -> None:
    host = await create_room(http, "Offline unchanged show")
    lamp = await lamp_on_sale(host)
    page, net = await viewer(browser, f"{server.base}/r/{host.room_id}", page_errors.watch,
                             PHONE_SMALL)
    gift = await claim(host, page, "Gift 5", 500)
    await buy(page, lamp["product_id"])
    await expect(page.locator("#pay-btn")).to_have_text("Place order · $35.00")
    await queue_checkout_offline(page, net)
    kept = await kept_checkout(page, host.room_id)
    assert kept["coupon_id"] == gift["coupon_id"], kept
    # The show goes on meanwhile: the page resumes past this when it comes back.
    await host.call("POST", "/announcements", {"text": "Still here!"}, expect=201)
    await net.go_online()
    await expect(page.locator("#order-done")).to_be_visible()
    await expect(page.locator("#order-text")).to_contain_text("paid $35.00 (saved $5.00)")
    await expect(page.locator("#announce-text")).to_have_text("Still here!")
    # Sent once, as it was asked (the same request id and coupon), after the page had
    # asked where everything stands.
    sent = net.checkouts()
    assert sent == [kept["frame"]], (sent, kept)
    assert net.sent.index({"type": "resync"}) < net.sent.index(kept["frame"]), net.sent
    # And not before the server had said it: the snapshot that answers the resync came
    # in between (the page waits for it, not only asks).
    asked = net.log.index(("page", {"type": "resync"}))
    went = net.log.index(("page", kept["frame"]))
    between = [frame.get("type") for side, frame in net.log[asked:went] if side == "server"]
    assert "snapshot" in between, between
    placed = await orders(host)
    assert [(o["total"], o["discount"], o["coupon_id"]) for o in placed] == [
        (3500, 500, gift["coupon_id"])], placed
    assert await kept_checkout(page, host.room_id) is None
    assert page_errors.errors == []


async def test_a_kept_checkout_read_back_is_rebuilt_from_what_was_checked(
        server: LiveServer, http: httpx.AsyncClient, browser: Any,
        page_errors: PageErrors) -> None:
    """A checkout kept while offline survives a reload in localStorage. Read back, it
    is sent only as built from the hold and coupon that were checked, never as the
    stored frame is; a record whose frame is not the checkout of that hold and coupon
    is dropped unsent."""
    host = await create_room(http, "Kept checkout show")
    lamp = await lamp_on_sale(host)
    page, net = await viewer(browser, f"{server.base}/r/{host.room_id}", page_errors.watch)
    gift = await claim(host, page, "Gift 5", 500)
    await buy(page, lamp["product_id"])
    await expect(page.locator("#pay-btn")).to_have_text("Place order · $35.00")
    key = f"livesell.checkout.offline.{host.room_id}"
    store = "([key, record]) => localStorage.setItem(key, JSON.stringify(record))"

    async def reload_online() -> None:
        """Back online by a reload: the page reads the kept checkout from storage."""
        net.online = True
        await page.reload()
        await expect(page.locator("#conn")).to_have_attribute("data-state", "live")
        await page.wait_for_function("() => window.livesell.live.stats.snapshots >= 1")

    # Edited while it waits: its frame is for another hold than the one checked.
    await queue_checkout_offline(page, net)
    kept = await kept_checkout(page, host.room_id)
    assert kept["hold_id"] == kept["frame"]["hold_id"], kept
    await page.evaluate(store, [key, {**kept, "frame": {**kept["frame"], "hold_id": "h_other"}}])
    await reload_online()
    await page.locator("#cartbar-open").click()
    await expect(page.locator("#pay-btn")).to_have_text("Place order · $35.00")
    await expect(page.locator("#pay-btn")).to_be_enabled()
    await page.evaluate("() => new Promise((r) => setTimeout(r, 500))")
    assert net.checkouts() == [], net.sent
    assert await kept_checkout(page, host.room_id) is None
    assert await orders(host) == []

    # A field the page never writes (and a quantity the hold does not have) is not sent:
    # only the type, request id, hold and coupon that were checked go out.
    await queue_checkout_offline(page, net)
    kept = await kept_checkout(page, host.room_id)
    assert kept["coupon_id"] == gift["coupon_id"], kept
    await page.evaluate(store, [key, {**kept, "frame": {**kept["frame"], "quantity": 3,
                                                        "note": "added"}}])
    await reload_online()
    await expect(page.locator("#order-text")).to_contain_text("paid $35.00 (saved $5.00)")
    assert net.checkouts() == [{"type": "checkout", "request_id": kept["frame"]["request_id"],
                                "hold_id": kept["hold_id"], "coupon_id": gift["coupon_id"]}]
    placed = await orders(host)
    assert [(o["quantity"], o["coupon_id"]) for o in placed] == [(1, gift["coupon_id"])], placed
    await page.context.close()
    assert page_errors.errors == []

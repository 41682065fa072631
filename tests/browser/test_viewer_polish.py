"""The viewer page on a phone (360 x 740) and a desktop (1280 x 800), in Chromium
against a real server, Redis and SQLite: the defects found by trying it on a phone.

- Toasts are in live regions (polite, errors assertive), clear of the cart bar and
  the buy and giveaway buttons, above the checkout dialog while it is open, and they
  expire.
- The host's announcement and a giveaway's result show over the video and go a
  bounded time after the server's timestamp on them (the page's clock is moved).
- A giveaway's winner is named after a reload, never shown as a viewer id.
- "Buy now" says "Limit reached: N per buyer" once this viewer holds and bought the
  offer's limit, and comes back when units are given back.
- A banner says what still works while the connection is down, and goes once live.
- A cancelled order's coupon can be used again (a refund does not give it back).
- The room picker lists live and upcoming shows only, titles on two lines at most.
- The video has no native controls (no seek bar on a live stream): play/pause, mute
  and full screen of its own."""

from __future__ import annotations

import contextlib
import io
import re
import threading
import wave
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import httpx
import pytest

from server.core.domain import now_ms
from tests.browser.conftest import PageErrors
from tests.browser.helpers import DESKTOP, Network, forward, shoot, skip_without_browser
from tests.support import Host, LiveServer, create_room, eventually, join

skip_without_browser()

from playwright.async_api import Locator, Page, expect  # noqa: E402

PHONE_SMALL = {"width": 360, "height": 740}
VIEWPORTS = pytest.mark.parametrize("viewport", [PHONE_SMALL, DESKTOP], ids=["360", "1280"])


# ---------------------------------------------------------------------- helpers

async def open_viewer(browser: Any, url: str, page_errors: PageErrors, name: str,
                      viewport: dict[str, int], *, fake_clock: bool = False,
                      route: Any = None) -> Page:
    """A viewer page in a context of its own, once its connection is live. With
    `fake_clock`, the page's timers run on a clock the test moves (the server's is
    real); with `route`, its WebSocket goes through that handler."""
    ctx = await browser.new_context(viewport=viewport, has_touch=viewport is PHONE_SMALL)
    page: Page = page_errors.watch(await ctx.new_page(), name)
    if fake_clock:
        await page.clock.install()
    if route is not None:
        await page.route_web_socket(re.compile(r"/ws/"), route)
    await page.goto(url)
    await expect(page.locator("#conn")).to_have_attribute("data-state", "live")
    return page


Box = dict[str, float]


def overlaps(a: Box, b: Box) -> bool:
    return (a["x"] < b["x"] + b["width"] and b["x"] < a["x"] + a["width"]
            and a["y"] < b["y"] + b["height"] and b["y"] < a["y"] + a["height"])


# The boxes of the elements a selector matches that are on screen now.
BOXES_JS = """(sel) => [...document.querySelectorAll(sel)]
  .filter((el) => el.checkVisibility({ visibilityProperty: true }))
  .map((el) => { const r = el.getBoundingClientRect();
                 return { x: r.x, y: r.y, width: r.width, height: r.height,
                          what: (el.id ? '#' + el.id : el.className) + ' ' +
                                (el.textContent || '').trim().slice(0, 40) }; })
  .filter((r) => r.width > 0 && r.height > 0 && r.y < innerHeight && r.y + r.height > 0)"""

# What a toast must never cover: the cart bar, the buy buttons, the giveaway and
# coupon buttons ("You're in", "Claim").
CONTROLS = "#cartbar, #cartbar-open, .buy-btn, .promo .btn"


async def assert_clear(page: Page, toast: Locator, controls: str = CONTROLS) -> None:
    rect = await toast.bounding_box()
    assert rect is not None
    box: Box = {"x": rect["x"], "y": rect["y"], "width": rect["width"], "height": rect["height"]}
    covered = [c for c in await page.evaluate(BOXES_JS, controls) if overlaps(box, c)]
    assert covered == [], f"the toast {box} covers {covered}"
    # Taps go through a toast, whatever is under it.
    assert await toast.evaluate("(el) => getComputedStyle(el).pointerEvents") == "none"


async def region(toast: Locator) -> dict[str, str | None]:
    got: dict[str, str | None] = await toast.evaluate(
        "(el) => ({ role: el.parentElement.getAttribute('role'), "
        "live: el.parentElement.getAttribute('aria-live') })")
    return got


async def shop(host: Host, *, limit: int = 5, stock: int = 10) -> dict[str, Any]:
    """A pinned lamp on a flash sale (at $29.00, `limit` per buyer)."""
    lamp = await host.product(stock=stock, price=4000, title="Aurora Desk Lamp")
    await host.call("POST", "/pins", {"product_id": lamp["product_id"]}, expect=200)
    sale = await host.sale(lamp["product_id"], units=stock, limit=limit, price=2900)
    return {**lamp, "sale_id": sale["sale_id"]}


async def pay(page: Page) -> None:
    """Place the order of the hold in the open checkout, then close the sheet."""
    await page.locator("#pay-btn").click()
    await expect(page.locator("#order-done")).to_be_visible()
    await page.locator("#checkout-close").click()
    await expect(page.locator("#checkout")).to_be_hidden()


async def buy(page: Page, card: Locator) -> None:
    await expect(card.locator(".buy-btn")).to_be_enabled()
    await card.locator(".buy-btn").click()
    await expect(page.locator("#checkout")).to_be_visible()
    await expect(page.locator("#hold-timer")).to_contain_text("Held for you for")


# ---------------------------------------------------------------------- toasts

@VIEWPORTS
async def test_toasts_are_live_regions_clear_of_the_controls_and_above_the_checkout(
        server: LiveServer, http: httpx.AsyncClient, browser: Any, page_errors: PageErrors,
        viewport: dict[str, int]) -> None:
    host = await create_room(http, "Toast show")
    lamp = await shop(host)
    mug = await host.product(stock=10, price=1500, title="Ceramic Mug")
    await host.call("POST", "/pins", {"product_id": mug["product_id"]}, expect=200)
    await host.call("POST", "/lotteries", {"prize": "Signed vinyl", "winners": 1,
                                           "entry": "button", "duration_s": 600}, expect=201)
    page = await open_viewer(browser, f"{server.base}/r/{host.room_id}", page_errors,
                             f"toasts {viewport['width']}", viewport)
    card = page.locator(f'.pcard[data-product-id="{lamp["product_id"]}"]')
    await buy(page, card)

    # While the checkout is open, a toast is in the dialog's own live region: in the
    # top layer with it (above it, and read out), clear of its buttons.
    await host.call("POST", "/coupons", {"title": "Welcome gift", "kind": "amount",
                                         "value": 500, "count": 20}, expect=201)
    dialog = page.locator("#checkout")
    in_dialog = dialog.locator(".toast", has_text="Coupon drop: Welcome gift")
    await expect(in_dialog).to_be_visible()
    assert await region(in_dialog) == {"role": "status", "live": "polite"}
    assert await in_dialog.evaluate("(el) => el.closest('dialog').matches(':modal')")
    await assert_clear(page, in_dialog, "#pay-btn, #release-btn, #coupon-select")
    await shoot(page, f"polish-toast-checkout-{viewport['width']}")
    await page.locator("#checkout-close").click()
    await expect(dialog).to_be_hidden()
    await expect(page.locator("#cartbar")).to_be_visible()

    # The giveaway entered: its button says "You're in".
    lottery = page.locator('.promo.lottery[data-state="open"]')
    await lottery.get_by_role("button", name=re.compile("Enter the giveaway")).click()
    await expect(lottery.get_by_role("button")).to_have_text("You're in ✓")

    # On the page, with the cart bar up: clear of it and of every button on screen.
    await page.evaluate("() => window.scrollTo(0, 0)")
    await host.call("POST", "/coupons", {"title": "Night owl", "kind": "percent",
                                         "value": 10, "count": 20}, expect=201)
    toast = page.locator("#toasts .toast", has_text="Coupon drop: Night owl")
    await expect(toast).to_be_visible()
    assert await region(toast) == {"role": "status", "live": "polite"}
    await assert_clear(page, toast)
    await shoot(page, f"polish-toast-page-{viewport['width']}")

    # An error goes in the assertive region, as clear.
    await page.get_by_role("button", name="Change name").click()
    await page.locator("#rename-input").fill("Renamed Rita")
    await page.get_by_role("button", name="Save name").click()
    error = page.locator("#toasts .toast.error")
    await expect(error).to_have_text("Finish or release your hold before changing your name.")
    assert await region(error) == {"role": "alert", "live": "assertive"}
    await page.evaluate("() => window.scrollTo(0, 0)")
    await assert_clear(page, error)

    # They expire.
    await expect(page.locator(".toast")).to_have_count(0, timeout=20_000)
    await page.context.close()
    assert page_errors.errors == []


# ---------------------------------------------------------------------- banners

async def inside_video(page: Page, banner: Locator) -> bool:
    box = await banner.bounding_box()
    stage = await page.locator(".video-box").bounding_box()
    assert box is not None and stage is not None
    return (stage["x"] <= box["x"] and box["x"] + box["width"] <= stage["x"] + stage["width"]
            and stage["y"] <= box["y"] and box["y"] + box["height"] <= stage["y"] + stage["height"])


async def test_announcement_and_winner_banners_go_after_their_time(
        server: LiveServer, http: httpx.AsyncClient, browser: Any,
        page_errors: PageErrors) -> None:
    """Each banner goes a bounded time after the server's timestamp on it. The page's
    clock is moved; its estimate of the server clock may or may not catch up after a
    jump (the ping with the shortest round trip wins), so each "gone" comes from one
    jump longer than the banner's time, each "still up" from less than it."""
    host = await create_room(http, "Banner show")
    page = await open_viewer(browser, f"{server.base}/r/{host.room_id}", page_errors,
                             "banners", PHONE_SMALL, fake_clock=True)
    lottery = await host.call("POST", "/lotteries", {"prize": "Signed cap", "winners": 1,
                                                     "entry": "button", "duration_s": 600},
                              expect=201)
    card = page.locator('.promo.lottery[data-state="open"]')
    await card.get_by_role("button", name=re.compile("Enter the giveaway")).click()
    await expect(card.get_by_role("button")).to_have_text("You're in ✓")

    await host.call("POST", "/announcements", {"text": "Giveaway draws in 15 seconds!"},
                    expect=201)
    await host.call("POST", f"/lotteries/{lottery['lottery_id']}/draw", expect=200)
    announce = page.locator("#announce")
    banner = page.locator("#winner-banner")
    await expect(page.locator("#announce-text")).to_have_text("Giveaway draws in 15 seconds!")
    await expect(announce).to_be_visible()
    assert await announce.get_attribute("role") == "status"
    # "You won!" over the video, not below the products.
    await expect(banner).to_contain_text("You won! Signed cap is yours.")
    await page.evaluate("() => window.scrollTo(0, 0)")
    assert await inside_video(page, announce)
    assert await inside_video(page, banner)
    await shoot(page, "polish-banners-360")

    # A few seconds on, both are up.
    await forward(page, "00:05")
    await expect(announce).to_be_visible()
    await expect(banner).to_be_visible()
    # Half a minute on, the announcement is gone (the chat keeps it); the result stays.
    await forward(page, "00:31")
    await expect(announce).to_be_hidden()
    await expect(page.locator("#chat-list .msg.system", has_text="draws in 15 seconds")
                 ).to_have_count(1)
    await expect(banner).to_be_visible()
    # A minute on, the result is gone from the video; the giveaway's card keeps it.
    await forward(page, "01:01")
    await expect(banner).to_be_hidden()
    await expect(page.locator('.promo.lottery[data-state="drawn"]')).to_contain_text(
        "You won: Signed cap")
    await page.context.close()
    assert page_errors.errors == []


@VIEWPORTS
async def test_the_winner_is_named_after_a_reload(
        server: LiveServer, http: httpx.AsyncClient, browser: Any, page_errors: PageErrors,
        viewport: dict[str, int]) -> None:
    host = await create_room(http, "Winner show")
    lottery = await host.call("POST", "/lotteries", {"prize": "Signed vinyl", "winners": 1,
                                                     "entry": "button", "duration_s": 600},
                              expect=201)
    url = f"{server.base}/r/{host.room_id}"
    page = await open_viewer(browser, url, page_errors, "watcher", viewport)
    mia = await join(server, host.room_id, nickname="Mia")
    try:
        await mia.next_event("snapshot")
        await mia.send({"type": "chat", "text": "Hi from Mia"})
        said = await mia.next_event("chat")
        await expect(page.locator("#chat-list .msg", has_text="Hi from Mia")).to_have_count(1)
        entered = await mia.request("enter_lottery", lottery_id=lottery["lottery_id"])
        assert entered["type"] == "lottery_entered", entered

        await host.call("POST", f"/lotteries/{lottery['lottery_id']}/draw", expect=200)
        banner = page.locator("#winner-banner")
        await expect(banner).to_contain_text("Giveaway drawn: Signed vinyl — winner: Mia")
        await page.evaluate("() => window.scrollTo(0, 0)")
        assert await inside_video(page, banner)

        # Mia's line is deleted: the snapshot no longer names her. The page kept the
        # name the server sent when the draw came, so a reload still says who won.
        await host.call("POST", "/moderation/delete", {"message_id": said["message_id"]},
                        expect=200)
        await expect(page.locator("#chat-list .msg", has_text="Hi from Mia")).to_have_count(0)
        await page.reload()
        await expect(page.locator("#conn")).to_have_attribute("data-state", "live")
        await expect(banner).to_contain_text("winner: Mia")
        assert "v_" not in (await banner.text_content() or "")
        drawn = page.locator('.promo.lottery[data-state="drawn"]')
        await expect(drawn).to_contain_text("Winner: Mia")

        # A late joiner that never saw her named: "a viewer", never a viewer id ...
        late = await open_viewer(browser, url, page_errors, "late joiner", viewport)
        late_banner = late.locator("#winner-banner")
        await expect(late_banner).to_contain_text("winner: a viewer")
        assert mia.viewer_id not in (await late.locator("body").text_content() or "")
        # ... until the server sends her name with her next message.
        await mia.send({"type": "chat", "text": "I won!"})
        await expect(late_banner).to_contain_text("winner: Mia")
        await expect(late.locator('.promo.lottery[data-state="drawn"]')).to_contain_text(
            "Winner: Mia")
        await late.context.close()
    finally:
        await mia.close()
    await page.context.close()
    assert page_errors.errors == []


# ---------------------------------------------------------------------- per-buyer limit

async def test_buy_now_is_disabled_with_the_reason_at_the_per_buyer_limit(
        server: LiveServer, http: httpx.AsyncClient, browser: Any,
        page_errors: PageErrors) -> None:
    host = await create_room(http, "Limit show")
    lamp = await shop(host, limit=2)
    url = f"{server.base}/r/{host.room_id}"
    page = await open_viewer(browser, url, page_errors, "buyer", PHONE_SMALL)
    card = page.locator(f'.pcard[data-product-id="{lamp["product_id"]}"]')
    button = card.locator(".buy-btn")

    await buy(page, card)
    await pay(page)
    await expect(card.locator(".when")).to_contain_text("max 2 per buyer · you have 1")
    await expect(button).to_be_enabled()
    await expect(button).to_have_text("Buy now")

    # A hold counts too: one bought and one held is the limit.
    await buy(page, card)
    await page.locator("#checkout-close").click()
    await expect(button).to_be_disabled()
    await expect(button).to_have_text("Limit reached: 2 per buyer")
    await expect(card).to_have_attribute("data-action", "limit")
    await shoot(page, "polish-limit-360")

    # Released, the unit is no longer this viewer's: Buy now is back.
    await page.locator("#cartbar-open").click()
    await page.locator("#release-btn").click()
    await expect(page.locator("#cartbar")).to_be_hidden()
    await expect(button).to_be_enabled()

    await buy(page, card)
    await pay(page)
    await expect(button).to_have_text("Limit reached: 2 per buyer")
    await expect(button).to_be_disabled()
    await expect(card.locator(".when")).to_contain_text("you have 2")

    # The page remembers what the server answered across a reload.
    await page.reload()
    await expect(page.locator("#conn")).to_have_attribute("data-state", "live")
    await expect(button).to_have_text("Limit reached: 2 per buyer")
    await expect(button).to_be_disabled()

    # The server agrees: this viewer has two orders of the sale.
    orders = (await host.call("GET", "/orders", expect=200))["orders"]
    mine = await page.evaluate("() => window.livesell.viewer.viewer_id")
    placed = [o for o in orders if o["buyer_id"] == mine and o["sale_id"] == lamp["sale_id"]]
    assert len(placed) == 2, orders

    # The host cancels one: its unit is given back to this viewer's limit.
    await host.call("POST", f"/orders/{placed[0]['order_id']}/cancel",
                    {"reason": "Damaged in the warehouse"}, expect=200)
    await expect(page.locator("#toasts .toast", has_text="cancelled your order")).to_be_visible()
    await expect(button).to_be_enabled()
    await expect(button).to_have_text("Buy now")
    await expect(card.locator(".when")).to_contain_text("you have 1")
    await page.context.close()
    assert page_errors.errors == []


async def same_viewer_elsewhere(browser: Any, url: str, page: Page, page_errors: PageErrors,
                                name: str) -> Page:
    """The viewer of `page` on another device: a browser profile of its own (its own
    localStorage) signed in with the same identity token."""
    token = await page.evaluate("() => localStorage.getItem('livesell.token')")
    other = await open_viewer(browser, url, page_errors, name, DESKTOP)
    await other.evaluate("(t) => localStorage.setItem('livesell.token', t)", token)
    await other.reload()
    await expect(other.locator("#conn")).to_have_attribute("data-state", "live")
    me = await page.evaluate("() => window.livesell.viewer.viewer_id")
    assert await other.evaluate("() => window.livesell.viewer.viewer_id") == me
    return other


async def test_an_order_known_only_by_its_hold_stops_counting_when_cancelled(
        server: LiveServer, http: httpx.AsyncClient, browser: Any,
        page_errors: PageErrors) -> None:
    """A hold checked out from another device: this page learns it only from the
    `checked_out` refusal of its own release, and counts its units as bought by the
    hold's id. The host's cancellation names the hold too: they stop counting."""
    host = await create_room(http, "Two devices show")
    lamp = await shop(host, limit=1)
    url = f"{server.base}/r/{host.room_id}"
    page = await open_viewer(browser, url, page_errors, "phone", PHONE_SMALL)
    card = page.locator(f'.pcard[data-product-id="{lamp["product_id"]}"]')
    button = card.locator(".buy-btn")
    await buy(page, card)
    hold_id = await page.evaluate("() => window.livesell.state.hold.id")

    # The same viewer on a laptop checks the phone's hold out.
    laptop = await same_viewer_elsewhere(browser, url, page, page_errors, "laptop")
    await laptop.evaluate(
        "(hold) => window.livesell.live.request({ type: 'checkout', hold_id: hold })", hold_id)

    async def placed() -> list[dict[str, Any]]:
        found = [o for o in (await host.call("GET", "/orders", expect=200))["orders"]
                 if o["hold_id"] == hold_id]
        return found

    [order] = await eventually(placed)
    # The phone lets the hold go: refused, the hold is an order it never saw placed.
    # (Its own Place order would be answered with that order, as a repeat is.)
    await page.locator("#release-btn").click()
    await expect(page.locator("#checkout-msg")).to_have_text(
        "This reservation is already checked out.")
    await page.locator("#checkout-close").click()
    await expect(button).to_have_text("Limit reached: 1 per buyer")
    await expect(button).to_be_disabled()
    bought = await page.evaluate(
        "([room, viewer]) => JSON.parse(localStorage.getItem(`livesell.bought.${room}.${viewer}`))",
        [host.room_id, order["buyer_id"]])
    assert list(bought["orders"]) == [f"h:{hold_id}"], bought

    await host.call("POST", f"/orders/{order['order_id']}/cancel", {"reason": "Mistake"},
                    expect=200)
    await expect(page.locator("#toasts .toast", has_text="cancelled your order")).to_be_visible()
    await expect(button).to_have_text("Buy now")
    await expect(button).to_be_enabled()
    bought = await page.evaluate(
        "([room, viewer]) => JSON.parse(localStorage.getItem(`livesell.bought.${room}.${viewer}`))",
        [host.room_id, order["buyer_id"]])
    assert bought["orders"] == {}, bought
    await laptop.context.close()
    await page.context.close()
    assert page_errors.errors == []


async def test_stored_counts_are_checked_as_they_are_read(
        server: LiveServer, http: httpx.AsyncClient, browser: Any,
        page_errors: PageErrors) -> None:
    """The per-buyer record in localStorage is read back with its quantities as
    numbers and without the entries this page would never write."""
    host = await create_room(http, "Stored counts show")
    lamp = await shop(host, limit=2)
    page = await open_viewer(browser, f"{server.base}/r/{host.room_id}", page_errors,
                             "stored", DESKTOP)
    card = page.locator(f'.pcard[data-product-id="{lamp["product_id"]}"]')
    button = card.locator(".buy-btn")
    await buy(page, card)
    await pay(page)
    await expect(card.locator(".when")).to_contain_text("you have 1")
    me = await page.evaluate("() => window.livesell.viewer.viewer_id")
    key = f"livesell.bought.{host.room_id}.{me}"
    sale, pid = lamp["sale_id"], lamp["product_id"]
    later = now_ms() + 600_000
    await page.evaluate("""([key, sale, pid, later]) => {
      const book = JSON.parse(localStorage.getItem(key));
      for (const order of Object.values(book.orders)) order.quantity = String(order.quantity);
      Object.assign(book.orders, {
        bad_words: { sale_id: sale, product_id: pid, quantity: "lots" },
        bad_sale: { sale_id: 42, product_id: pid, quantity: 1 },
        bad_none: { sale_id: sale, product_id: pid, quantity: 0 },
        bad_list: [sale, pid, 1],
      });
      Object.assign(book.holds, {
        h_words: { sale_id: sale, product_id: pid, quantity: 1, expires_at: "tomorrow" },
        h_text: { sale_id: sale, product_id: pid, quantity: 1, expires_at: String(later) },
        h_null: null,
      });
      localStorage.setItem(key, JSON.stringify(book));
    }""", [key, sale, pid, later])
    await page.reload()
    await expect(page.locator("#conn")).to_have_attribute("data-state", "live")
    # 1, not the text "1" added on ("01") nor the entries left out.
    await expect(card.locator(".when")).to_have_text(re.compile(r"· you have 1$"))
    await expect(button).to_have_text("Buy now")
    await expect(button).to_be_enabled()
    # The next change writes the record back clean, its quantities numbers.
    await buy(page, card)
    await pay(page)
    await expect(button).to_have_text("Limit reached: 2 per buyer")
    book = await page.evaluate("(key) => JSON.parse(localStorage.getItem(key))", key)
    assert book["holds"] == {}, book
    assert sorted(o["quantity"] for o in book["orders"].values()) == [1, 1], book
    assert not any(k.startswith("bad_") for k in book["orders"]), book
    await page.context.close()
    assert page_errors.errors == []


# ---------------------------------------------------------------------- outage

@VIEWPORTS
async def test_an_outage_banner_says_what_still_works_until_the_page_is_live(
        server: LiveServer, http: httpx.AsyncClient, browser: Any, page_errors: PageErrors,
        viewport: dict[str, int]) -> None:
    host = await create_room(http, "Outage show")
    await shop(host)
    net = Network()
    page = await open_viewer(browser, f"{server.base}/r/{host.room_id}", page_errors,
                             "outage", viewport, route=net.route)
    outage = page.locator("#outage")
    await expect(outage).to_be_hidden()

    await net.go_offline()
    await expect(page.locator("#conn")).to_have_attribute("data-state", "reconnecting")
    await expect(outage).to_be_visible()
    await expect(outage).to_contain_text("Connection lost")
    await expect(outage).to_contain_text("You can keep watching the video.")
    await expect(outage).to_contain_text("Buying, bids and chat wait until you're back online.")
    await expect(page.locator("#conn-sr")).to_contain_text("keep watching the video")
    await shoot(page, f"polish-outage-{viewport['width']}")
    # A banner, not only the pill: as wide as the top bar, and it stays in view.
    box = await outage.bounding_box()
    assert box is not None and box["width"] >= viewport["width"] - 1, box
    await page.evaluate("() => window.scrollTo(0, document.body.scrollHeight)")
    box = await outage.bounding_box()
    assert box is not None and 0 <= box["y"] < 160, box

    await net.go_online()
    await expect(page.locator("#conn")).to_have_attribute("data-state", "live", timeout=30_000)
    await expect(outage).to_be_hidden()
    await page.context.close()
    assert page_errors.errors == []


# ---------------------------------------------------------------------- coupons back

async def test_a_cancelled_orders_coupon_can_be_used_again_but_not_a_refunded_ones(
        server: LiveServer, http: httpx.AsyncClient, browser: Any,
        page_errors: PageErrors) -> None:
    host = await create_room(http, "Coupon show")
    lamp = await shop(host, limit=5)
    coupon = await host.call("POST", "/coupons", {"title": "Five off", "kind": "amount",
                                                  "value": 500, "count": 10}, expect=201)
    page = await open_viewer(browser, f"{server.base}/r/{host.room_id}", page_errors,
                             "coupon buyer", DESKTOP)
    coupon_card = page.locator(f'.promo.coupon[data-coupon-id="{coupon["coupon_id"]}"]')
    await coupon_card.get_by_role("button", name=re.compile("^Claim")).click()
    await expect(coupon_card.get_by_role("button")).to_have_text("Claimed ✓")
    card = page.locator(f'.pcard[data-product-id="{lamp["product_id"]}"]')
    option = page.locator(f'#coupon-select option[value="{coupon["coupon_id"]}"]')
    select = page.locator("#coupon-select")

    await buy(page, card)
    await expect(select).to_have_value(coupon["coupon_id"])
    await page.locator("#pay-btn").click()
    await expect(page.locator("#order-text")).to_contain_text("saved $5.00")
    await page.locator("#checkout-close").click()
    await expect(coupon_card.get_by_role("button")).to_have_text("Used")

    # Used: the next hold's sheet shows it disabled, with why.
    await buy(page, card)
    await expect(option).to_be_disabled()
    await expect(option).to_have_attribute("data-reason", "coupon_used")

    # The host cancels the order that used it: the server gives the coupon back, and
    # so does the page, at once, to the sheet that is open.
    first = [o for o in (await host.call("GET", "/orders", expect=200))["orders"]
             if o["coupon_id"] == coupon["coupon_id"]]
    assert len(first) == 1, first
    await host.call("POST", f"/orders/{first[0]['order_id']}/cancel",
                    {"reason": "Out of stock at the warehouse"}, expect=200)
    await expect(option).to_be_enabled()
    await expect(select).to_have_value(coupon["coupon_id"])
    await expect(page.locator("#sum-discount")).to_have_text("\u2212$5.00")
    toast = page.locator("#checkout .toast", has_text="cancelled your order")
    await expect(toast).to_contain_text("Out of stock at the warehouse")
    await expect(toast).to_contain_text("Your coupon “Five off” can be used again.")
    await expect(coupon_card.get_by_role("button")).to_have_text("Claimed ✓")
    stored = await page.evaluate(
        "([room, viewer]) => JSON.parse(localStorage.getItem(`livesell.used.${room}.${viewer}`))",
        [host.room_id, await page.evaluate("() => window.livesell.viewer.viewer_id")])
    assert coupon["coupon_id"] not in stored

    # And the server takes it: the new order has the discount.
    await page.locator("#pay-btn").click()
    await expect(page.locator("#order-text")).to_contain_text("saved $5.00")
    await page.locator("#checkout-close").click()
    second = [o for o in (await host.call("GET", "/orders", expect=200))["orders"]
              if o["coupon_id"] == coupon["coupon_id"] and o["status"] == "placed"]
    assert len(second) == 1 and second[0]["discount"] == 500, second

    # A refund of every unit gives money back, not the coupon (docs/protocol.md §21).
    await host.call("POST", f"/orders/{second[0]['order_id']}/refund",
                    {"request_id": "refund-all"}, expect=200)
    await expect(page.locator("#toasts .toast", has_text="refunded $24.00")).to_be_visible()
    await expect(coupon_card.get_by_role("button")).to_have_text("Used")
    await buy(page, card)
    await expect(option).to_be_disabled()
    await page.context.close()
    assert page_errors.errors == []


async def test_a_coupon_refused_as_used_is_offered_again_once_its_order_is_cancelled(
        server: LiveServer, http: httpx.AsyncClient, browser: Any,
        page_errors: PageErrors) -> None:
    """Two tabs of one viewer: the second uses the coupon; the first, not knowing,
    is refused `coupon_used` and stops offering it. The host cancels the order that
    used it: the server gives the coupon back, and the first tab offers it again."""
    host = await create_room(http, "Two tabs coupon show")
    lamp = await shop(host, limit=5)
    coupon = await host.call("POST", "/coupons", {"title": "Five off", "kind": "amount",
                                                  "value": 500, "count": 10}, expect=201)
    url = f"{server.base}/r/{host.room_id}"
    first = await open_viewer(browser, url, page_errors, "first tab", DESKTOP)
    coupon_card = first.locator(f'.promo.coupon[data-coupon-id="{coupon["coupon_id"]}"]')
    await coupon_card.get_by_role("button", name=re.compile("^Claim")).click()
    await expect(coupon_card.get_by_role("button")).to_have_text("Claimed ✓")
    second = page_errors.watch(await first.context.new_page(), "second tab")
    await second.goto(url)
    await expect(second.locator("#conn")).to_have_attribute("data-state", "live")
    product = f'.pcard[data-product-id="{lamp["product_id"]}"]'
    option = f'#coupon-select option[value="{coupon["coupon_id"]}"]'

    # The second tab buys with the coupon.
    await buy(second, second.locator(product))
    await expect(second.locator("#coupon-select")).to_have_value(coupon["coupon_id"])
    await second.locator("#pay-btn").click()
    await expect(second.locator("#order-text")).to_contain_text("saved $5.00")

    # The first tab still offers it; the server refuses it, and the tab stops offering it.
    await buy(first, first.locator(product))
    select = first.locator("#coupon-select")
    await expect(select).to_have_value(coupon["coupon_id"])
    await first.locator("#pay-btn").click()
    await expect(first.locator("#checkout-msg")).to_contain_text("Coupon not applied")
    await expect(first.locator(option)).to_be_disabled()
    await expect(first.locator(option)).to_have_attribute("data-reason", "coupon_used")
    await expect(select).to_have_value("")

    # The host cancels the second tab's order: the coupon is this viewer's again.
    [used] = [o for o in (await host.call("GET", "/orders", expect=200))["orders"]
              if o["coupon_id"] == coupon["coupon_id"]]
    await host.call("POST", f"/orders/{used['order_id']}/cancel", {"reason": "Restock"},
                    expect=200)
    toast = first.locator("#checkout .toast", has_text="cancelled your order")
    await expect(toast).to_contain_text("Your coupon “Five off” can be used again.")
    await expect(first.locator(option)).to_be_enabled()
    await expect(select).to_have_value(coupon["coupon_id"])
    await expect(first.locator("#sum-discount")).to_have_text("\u2212$5.00")
    await first.locator("#pay-btn").click()
    await expect(first.locator("#order-text")).to_contain_text("saved $5.00")
    placed = [o for o in (await host.call("GET", "/orders", expect=200))["orders"]
              if o["coupon_id"] == coupon["coupon_id"] and o["status"] == "placed"]
    assert len(placed) == 1 and placed[0]["order_id"] != used["order_id"], placed
    await first.context.close()
    assert page_errors.errors == []


# ---------------------------------------------------------------------- room picker

async def test_the_picker_lists_live_and_upcoming_shows_with_titles_on_two_lines(
        server: LiveServer, http: httpx.AsyncClient, browser: Any,
        page_errors: PageErrors) -> None:
    long_title = ("Friday night sneaker drop with limited editions, signed boxes and a "
                  "giveaway for everyone who watches to the end")
    assert len(long_title) <= 120
    await create_room(http, long_title)
    starts_at = now_ms() + 3 * 3_600_000
    r = await http.post("/api/rooms", json={"title": "Tomorrow's vinyl market",
                                            "starts_at": starts_at})
    assert r.status_code == 201, r.text
    ended = await create_room(http, "Already over")
    await ended.call("POST", "/end", expect=200)

    ctx = await browser.new_context(viewport=PHONE_SMALL, has_touch=True)
    page = page_errors.watch(await ctx.new_page(), "picker")
    await page.goto(server.base + "/")
    links = page.locator("#room-list .room-link")
    await expect(links).to_have_count(2)
    await expect(page.locator("#room-list")).not_to_contain_text("Already over")

    upcoming = links.filter(has_text="Tomorrow's vinyl market")
    await expect(upcoming).to_have_attribute("data-state", "scheduled")
    await expect(upcoming.locator(".badge")).to_have_text("Upcoming")
    await expect(upcoming.locator(".room-when")).to_contain_text("Starts ")
    await expect(upcoming.locator(".room-when")).to_contain_text("in 3 h")
    iso = await upcoming.locator("time").get_attribute("datetime")
    assert iso is not None
    shown = await page.evaluate("(iso) => Date.parse(iso)", iso)
    assert shown == starts_at

    live = links.filter(has_text="Friday night sneaker drop")
    await expect(live).to_have_attribute("data-state", "live")
    await expect(live.locator(".badge")).to_have_text("Live")
    # The whole title is the link's text; on screen it takes two lines at most.
    await expect(live).to_contain_text(long_title)
    name = live.locator(".room-name")
    lines = await name.evaluate("""(el) => {
        const cs = getComputedStyle(el);
        return { height: el.getBoundingClientRect().height, line: parseFloat(cs.lineHeight),
                 clamped: el.scrollHeight > el.clientHeight + 1 }; }""")
    assert lines["height"] <= 2 * lines["line"] + 1, lines
    assert lines["clamped"], lines
    await shoot(page, "polish-picker-360")
    await ctx.close()
    assert page_errors.errors == []


# ---------------------------------------------------------------------- video

def tone_wav(seconds: float = 2.0, rate: int = 8000) -> bytes:
    """A short silent PCM WAV: a stream Chromium plays in a <video> element."""
    out = io.BytesIO()
    with wave.open(out, "wb") as w:
        w.setnchannels(1)
        w.setsampwidth(2)
        w.setframerate(rate)
        w.writeframes(b"\x00\x00" * int(seconds * rate))
    return out.getvalue()


@contextlib.contextmanager
def media_server(body: bytes, content_type: str) -> Iterator[str]:
    """A real HTTP server (another origin, as a stream's CDN is) serving one file."""

    class Handler(BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            self.send_response(200)
            self.send_header("Content-Type", content_type)
            self.send_header("Content-Length", str(len(body)))
            self.send_header("Access-Control-Allow-Origin", "*")
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, format: str, *args: Any) -> None:
            pass

    httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    thread = threading.Thread(target=httpd.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{httpd.server_address[1]}/live.wav"
    finally:
        httpd.shutdown()
        httpd.server_close()


async def test_the_live_video_has_its_own_controls_and_no_seek_bar(
        server: LiveServer, http: httpx.AsyncClient, browser: Any,
        page_errors: PageErrors) -> None:
    # Long enough to outlast the checks below: a live stream does not loop.
    with media_server(tone_wav(120.0), "audio/wav") as stream_url:
        r = await http.post("/api/rooms", json={"title": "Video show", "stream_url": stream_url})
        assert r.status_code == 201, r.text
        room_id = r.json()["room"]["room_id"]
        page = await open_viewer(browser, f"{server.base}/r/{room_id}", page_errors, "video",
                                 PHONE_SMALL)
        video = page.locator("#video")
        await expect(video).to_be_visible()
        # Playing (muted, as browsers let a page start it): the poster goes.
        await page.wait_for_function("() => !document.querySelector('#video').paused")
        await expect(page.locator("#poster")).to_be_hidden()
        assert await video.evaluate("(v) => v.controls || v.hasAttribute('controls')") is False
        controls = page.locator("#video-controls")
        await expect(controls).to_be_visible()
        await expect(controls.get_by_role("button")).to_have_count(3)
        await shoot(page, "polish-video-360")

        await controls.get_by_role("button", name="Pause the stream").click()
        await expect(controls.get_by_role("button", name="Play the stream")).to_be_visible()
        assert await video.evaluate("(v) => v.paused") is True
        await controls.get_by_role("button", name="Play the stream").click()
        await expect(controls.get_by_role("button", name="Pause the stream")).to_be_visible()

        await controls.get_by_role("button", name="Unmute").click()
        await expect(controls.get_by_role("button", name="Mute")).to_be_visible()
        assert await video.evaluate("(v) => v.muted") is False

        await controls.get_by_role("button", name="Full screen").click()
        await expect(controls.get_by_role("button", name="Exit full screen")).to_be_visible()
        assert await page.evaluate(
            "() => document.fullscreenElement && document.fullscreenElement.className") \
            == "video-box has-video"
        await controls.get_by_role("button", name="Exit full screen").click()
        await expect(controls.get_by_role("button", name="Full screen")).to_be_visible()
        await page.context.close()

    # A stream that ends is not played again from its start: the poster says it stopped.
    with media_server(tone_wav(0.5), "audio/wav") as stream_url:
        r = await http.post("/api/rooms", json={"title": "Short show", "stream_url": stream_url})
        assert r.status_code == 201, r.text
        page = await open_viewer(browser, f"{server.base}/r/{r.json()['room']['room_id']}",
                                 page_errors, "short video", PHONE_SMALL)
        assert await page.locator("#video").evaluate("(v) => v.loop") is False
        await expect(page.locator("#poster-text")).to_have_text(
            "The stream has stopped. Shopping and chat still work.", timeout=15_000)
        await expect(page.locator("#poster")).to_be_visible()
        assert await page.locator("#video").evaluate("(v) => v.ended") is True
        await page.context.close()

    # Without a stream: the poster, and no controls to show.
    plain = await create_room(http, "No video show")
    page = await open_viewer(browser, f"{server.base}/r/{plain.room_id}", page_errors,
                             "no video", PHONE_SMALL)
    await expect(page.locator("#poster")).to_be_visible()
    await expect(page.locator("#video-controls")).to_be_hidden()
    await page.context.close()
    assert page_errors.errors == []



async def test_the_hosts_edit_of_title_and_stream_reaches_an_open_page(
        server: LiveServer, http: httpx.AsyncClient, browser: Any,
        page_errors: PageErrors) -> None:
    """`room_updated`: the title and the stream change on a page already open, with
    no reload; an emptied stream stops the video and shows the poster."""
    host = await create_room(http, "Before the edit")
    page = await open_viewer(browser, f"{server.base}/r/{host.room_id}", page_errors,
                             "edited", DESKTOP)
    await expect(page.locator("#room-title")).to_have_text("Before the edit")
    stream = f"{server.base}/static/no-such-stream.mp4"
    await host.call("PATCH", "", {"title": "After the edit", "stream_url": stream},
                    expect=200)
    await expect(page.locator("#room-title")).to_have_text("After the edit")
    await expect(page).to_have_title("After the edit · livesell")
    assert await page.evaluate("() => document.querySelector('#video').src") == stream
    await host.call("PATCH", "", {"stream_url": ""}, expect=200)
    await expect(page.locator("#poster")).to_be_visible()
    assert await page.evaluate("() => document.querySelector('#video').getAttribute('src')") \
        is None
    await page.context.close()
    assert page_errors.errors == []

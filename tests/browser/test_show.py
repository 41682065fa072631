"""A whole show in real browsers: the host console creates a room, adds and pins a
product and schedules a flash sale; two viewers whose clocks are wrong in opposite
directions see the same countdown and arm their buy buttons at the moment the
sale opens by server time; one buys with a claimed coupon while the other watches
the stock move; a keyword giveaway is entered by chat and by button, drawn, and
verified in the page; chat is rendered as text only and moderated."""

from __future__ import annotations

import asyncio
import re
import time
from typing import Any

import httpx

from server.core import domain
from tests.browser.conftest import PageErrors
from tests.browser.helpers import (
    DESKTOP,
    PHONE,
    contrast_failures,
    open_tool,
    shoot,
    skew_script,
    skip_without_browser,
)
from tests.support import LiveServer

skip_without_browser()

from playwright.async_api import Page, expect  # noqa: E402

SKEW_A_MS = 90_000  # viewer A's clock runs 90 s fast
SKEW_B_MS = -45_000  # viewer B's clock runs 45 s slow


async def clock_error_ms(page: Page) -> float:
    """How far the page's estimate of server time is from the true time (this
    machine's clock, which the server uses), measured with the page's monotonic
    clock so the page's wrong Date does not enter into it."""
    value: float = await page.evaluate(
        "() => window.livesell.serverNow() - (performance.timeOrigin + performance.now())")
    return value


async def same_text(a: Any, b: Any, attempts: int = 30) -> str:
    """Read two locators' text at (nearly) the same moment until both agree. Each
    page's estimate of server time may be off by up to 250 ms (checked before), so
    two countdowns may show different seconds for up to 500 ms of every second: the
    reads span at least 1.5 s (30 reads 50 ms apart), so correct pages must agree
    in one of them, while a clock wrong by a second or more never agrees."""
    seen = []
    for _ in range(attempts):
        ta, tb = await asyncio.gather(a.text_content(), b.text_content())
        if ta == tb:
            return str(ta)
        seen.append((ta, tb))
        await asyncio.sleep(0.05)
    raise AssertionError(f"the two viewers disagree: {seen}")


async def test_host_and_two_viewers_run_a_flash_sale(server: LiveServer, http: httpx.AsyncClient,
                                                     browser: Any,
                                                     page_errors: PageErrors) -> None:
    host_ctx = await browser.new_context(viewport=DESKTOP)
    host = page_errors.watch(await host_ctx.new_page(), "host")
    a_ctx = await browser.new_context(viewport=PHONE, device_scale_factor=1, has_touch=True)
    await a_ctx.add_init_script(skew_script(SKEW_A_MS))
    b_ctx = await browser.new_context(viewport=DESKTOP)
    await b_ctx.add_init_script(skew_script(SKEW_B_MS))
    a = page_errors.watch(await a_ctx.new_page(), "viewer A")
    b = page_errors.watch(await b_ctx.new_page(), "viewer B")

    # ---------------------------------------------------------------- host sets up
    await host.goto(server.base + "/host")
    await host.get_by_label("Show title").fill("Browser test show")
    await host.get_by_role("button", name="Create room").click()
    await expect(host.locator("#console")).to_be_visible()
    room_id = (await host.locator("#room-id").text_content() or "").strip()
    assert re.fullmatch(r"r_[A-Za-z0-9_-]+", room_id), room_id
    await expect(host.locator("#share-link")).to_have_value(f"{server.base}/r/{room_id}")
    await expect(host.locator("#conn")).to_have_attribute("data-state", "live")

    await host.locator("#pf-title").fill("Aurora Desk Lamp")
    await host.locator("#pf-price").fill("49.00")
    await host.locator("#pf-stock").fill("5")
    await host.get_by_role("button", name="Add product").click()
    await expect(host.locator("#product-result")).to_have_text(re.compile("Added"))
    row = host.locator("#product-rows tr")
    await expect(row).to_have_count(1)
    product_id = await row.get_attribute("data-product-id")
    assert product_id

    # A host error is shown in the server's words: a sale bigger than the stock.
    await open_tool(host, "Sale")
    await host.locator("#sf-units").fill("50")
    await host.get_by_role("button", name="Start flash sale").click()
    await expect(host.locator("#sale-result")).to_have_text(re.compile("only 5 are in stock"))
    await expect(host.locator("#sale-result")).to_have_attribute("data-outcome", "error")

    # ---------------------------------------------------------------- viewers join
    await asyncio.gather(a.goto(f"{server.base}/r/{room_id}"), b.goto(f"{server.base}/r/{room_id}"))
    for page in (a, b):
        await expect(page.locator("#conn")).to_have_attribute("data-state", "live")
        await expect(page.locator("#room-title")).to_have_text("Browser test show")

    await open_tool(host, "Catalogue")
    await host.get_by_role("button", name="Pin Aurora Desk Lamp").click()
    await expect(host.locator("#cat-result")).to_have_text(re.compile("Pinned"))
    card_a = a.locator(f'.pcard[data-product-id="{product_id}"]')
    card_b = b.locator(f'.pcard[data-product-id="{product_id}"]')
    # Pinned, it is for sale at its list price (buy-it-now); this show sells it only
    # in its flash sale, so the host closes that from the console.
    for card in (card_a, card_b):
        await expect(card.locator(".ptitle")).to_have_text("Aurora Desk Lamp")
        await expect(card.locator(".buy-btn")).to_have_text(re.compile(r"^Buy now · .*49"))
        await expect(card.locator(".buy-btn")).to_be_enabled()
    await host.get_by_role("button", name="Close Aurora Desk Lamp for sale at its list "
                                          "price").click()
    await expect(host.locator("#cat-result")).to_have_text(re.compile("no longer for sale"))
    for card in (card_a, card_b):
        await expect(card.locator(".buy-btn")).to_have_text("Not on sale")
        await expect(card.locator(".buy-btn")).to_be_disabled()

    # ---------------------------------------------------------------- the countdown
    await open_tool(host, "Sale")
    await host.locator("#sf-price").fill("29.00")
    await host.locator("#sf-units").fill("5")
    await host.locator("#sf-limit").fill("2")
    await host.locator("#sf-in").fill("4")
    await host.locator('input[name="sf-start"][value="in"]').check()
    await host.locator("#sf-duration").fill("120")
    await host.get_by_role("button", name="Start flash sale").click()
    await expect(host.locator("#sale-result")).to_have_text(re.compile("scheduled: starts in"))
    card_state = (await http.get(f"/api/rooms/{room_id}/products/{product_id}")).json()
    starts_at = card_state["sale"]["starts_at"]
    assert card_state["sale"]["state"] == "scheduled"
    assert starts_at - time.time() * 1000 > 1500, "the countdown must still be running"

    for card in (card_a, card_b):
        await expect(card).to_have_attribute("data-sale-state", "scheduled")
        await expect(card.locator(".buy-btn")).to_be_disabled()
        await expect(card.locator(".buy-btn")).to_have_text(re.compile(r"Starts in 0:0\d"))
        await expect(card.locator(".price-now")).to_have_text("$29.00")
        await expect(card.locator(".price-was")).to_have_text("$49.00")
    # The pages' clocks are 135 s apart, yet both know the server's time closely...
    assert abs(await a.evaluate("() => Date.now() - (performance.timeOrigin + performance.now())")
               - SKEW_A_MS) < 1000
    for page in (a, b):
        assert abs(await clock_error_ms(page)) < 250
    # ...and show the same countdown.
    shown = await same_text(card_a.locator(".buy-btn"), card_b.locator(".buy-btn"))
    assert shown.startswith("Starts in 0:0")
    await shoot(a, "viewer-phone-countdown")

    # Both buttons arm when the sale opens by server time, not by their own clocks.
    await expect(card_a.locator(".buy-btn")).to_be_enabled(timeout=10_000)
    await expect(card_b.locator(".buy-btn")).to_be_enabled(timeout=2_000)
    armed_js = f"() => window.livesell.state.armedAt[{product_id!r}]"
    armed = [await p.evaluate(armed_js) for p in (a, b)]
    for at in armed:
        assert starts_at - 150 <= at <= starts_at + 600, (at - starts_at, armed)
    assert abs(armed[0] - armed[1]) < 500, armed
    for card in (card_a, card_b):
        await expect(card.locator(".buy-btn")).to_have_text("Buy now")
        await expect(card).to_have_attribute("data-left", "5")
        await expect(card).to_have_attribute("data-held", "0")
        await expect(card).to_have_attribute("data-sold", "0")
        await expect(card.locator(".stock-legend")).to_contain_text("5 left")

    # ---------------------------------------------------------------- coupon drop
    await open_tool(host, "Coupons")
    await host.locator("#cf-title").fill("Viewer gift")
    await host.locator("#cf-value").fill("5.00")
    await host.locator("#cf-count").fill("10")
    await host.get_by_role("button", name="Drop coupons").click()
    await expect(host.locator("#coupon-result")).to_have_text(re.compile("Dropped 10"))
    coupon_a = a.locator(".promo.coupon")
    coupon_b = b.locator(".promo.coupon")
    await expect(coupon_a).to_contain_text("Viewer gift")
    await coupon_a.get_by_role("button", name=re.compile("^Claim")).click()
    await expect(coupon_a.get_by_role("button")).to_have_text("Claimed ✓")
    await expect(coupon_b).to_have_attribute("data-remaining", "9")
    await expect(coupon_b).to_contain_text("9 of 10 left")

    # ---------------------------------------------------------------- buy, hold, checkout
    await card_a.locator(".buy-btn").click()
    dialog = a.locator("#checkout")
    await expect(dialog).to_be_visible()
    await expect(a.locator("#hold-remaining")).to_have_text(re.compile(r"^(3:00|2:5\d)$"))
    await expect(a.locator("#cartbar")).to_be_visible()
    await expect(card_b).to_have_attribute("data-held", "1")
    await expect(card_b).to_have_attribute("data-left", "4")
    await expect(card_b.locator(".stock-legend")).to_contain_text("1 in carts")
    # The claimed coupon is offered and applied: $29.00 - $5.00.
    await expect(a.locator("#coupon-select")).to_have_value(re.compile("^c_"))
    await expect(a.locator("#sum-total")).to_have_text("$24.00")
    await shoot(a, "viewer-phone-checkout")
    await a.locator("#pay-btn").click()
    await expect(a.locator("#order-done")).to_be_visible()
    await expect(a.locator("#order-text")).to_contain_text("paid $24.00")
    await expect(a.locator("#cartbar")).to_be_hidden()
    for card in (card_a, card_b):
        await expect(card).to_have_attribute("data-sold", "1")
        await expect(card).to_have_attribute("data-left", "4")
        await expect(card).to_have_attribute("data-held", "0")
    await a.locator("#checkout-close").click()
    await expect(dialog).to_be_hidden()

    # The host's live numbers follow.
    await expect(host.locator("#st-orders")).to_have_text("1", timeout=5_000)
    await expect(host.locator("#st-revenue")).to_have_text("$24.00")
    host_row = host.locator(f'#product-rows tr[data-product-id="{product_id}"]')
    await expect(host_row).to_have_attribute("data-sold", "1")

    # A refusal in plain words: 1 bought + 2 more is over the limit of 2.
    await card_a.locator(".qty").select_option("2")
    await card_a.locator(".buy-btn").click()
    await expect(card_a.locator(".card-msg")).to_have_text(
        "You've reached the per-buyer limit for this sale.")
    await expect(dialog).to_be_hidden()

    # ---------------------------------------------------------------- likes and viewers
    for _ in range(3):
        await a.locator("#like-btn").click()
    await expect(a.locator("#hearts .heart").first).to_be_attached()
    await expect(b.locator("#likes-total")).to_have_text("3")
    await expect(a.locator("#likes-total")).to_have_text("3")
    await expect(b.locator("#viewers-now")).to_have_text("2")  # A and B; the console is no viewer

    # ---------------------------------------------------------------- chat, safely
    attack = '<img src=x onerror="window.__pwned=1">hello <b>bold</b>'
    await b.locator("#chat-input").fill(attack)
    await b.locator("#chat-input").press("Enter")
    msg_a = a.locator("#chat-list .msg", has_text="hello")
    await expect(msg_a.locator(".text")).to_have_text(attack)
    assert await a.locator("#chat-list img, #chat-list b").count() == 0
    assert await a.evaluate("() => window.__pwned") is None
    await expect(a.locator("#chat-list .msg .nick").first).to_have_text(re.compile("^guest-"))

    # ---------------------------------------------------------------- giveaway
    await open_tool(host, "Giveaway")
    await host.locator("#lf-prize").fill("Signed vinyl")
    await host.locator("#lf-entry").select_option("keyword")
    await host.locator("#lf-keyword").fill("vinyl")
    await host.locator("#lf-duration").fill("60")
    await host.get_by_role("button", name="Open giveaway").click()
    await expect(host.locator("#lottery-result")).to_have_text(re.compile("is open"))
    lot_a = a.locator('.promo.lottery[data-state="open"]')
    lot_b = b.locator('.promo.lottery[data-state="open"]')
    await expect(lot_a).to_contain_text("Comment “vinyl” in chat")
    # A enters by commenting the keyword, B with the button.
    await a.locator("#chat-input").fill("I want the VINYL please")
    await a.locator("#chat-form button[type=submit]").click()
    await expect(lot_a.get_by_role("button")).to_have_text("You're in ✓")
    await lot_b.get_by_role("button", name=re.compile("Enter the giveaway")).click()
    await expect(lot_b.get_by_role("button")).to_have_text("You're in ✓")
    for lot in (lot_a, lot_b):
        await expect(lot).to_have_attribute("data-entrants", "2")
    lottery_row = host.locator("#lottery-list .item").first
    await expect(lottery_row).to_contain_text("2 entrants")
    await lottery_row.get_by_role("button", name=re.compile("Show entrants")).click()
    await expect(host.locator("#entrants-list li")).to_have_count(2)
    await expect(host.locator("#entrants-summary")).to_have_text("2 entrants")
    await host.locator("#entrants-close").click()
    await lottery_row.get_by_role("button", name=re.compile("Draw")).click()
    # An irreversible action asks first (tests/browser/test_host_console.py).
    await host.locator("#confirm-dlg").get_by_role("button", name="Draw now").click()
    await expect(host.locator("#now-result")).to_have_text(re.compile("Drawn: 1 winner"))

    for page in (a, b):
        await expect(page.locator("#winner-banner")).to_be_visible()
    banners = [await p.locator("#winner-banner").get_attribute("class") or "" for p in (a, b)]
    assert sum("me" in c.split() for c in banners) == 1, banners
    winner_page = a if "me" in banners[0].split() else b
    await expect(winner_page.locator("#winner-banner")).to_contain_text("You won!")

    lottery_id = await a.locator("#winner-banner").get_attribute("data-lottery-id")
    published = (await http.get(f"/api/rooms/{room_id}/lotteries/{lottery_id}")).json()
    assert domain.verify_lottery({**published, **published["result"]}).ok

    # Verify in the page: SubtleCrypto SHA-256 and BigInt recompute the draw.
    await b.locator("#winner-banner").get_by_role("button", name="Verify draw").click()
    summary = b.locator("#verify-summary")
    await expect(summary).to_have_attribute("data-result", "pass")
    await expect(summary).to_contain_text("Verified")
    # Five checks, including that the seed hash is the one this page saw at opening.
    await expect(b.locator("#verify-checks li.good")).to_have_count(5)
    await expect(b.locator("#verify-checks li.bad")).to_have_count(0)
    await shoot(b, "viewer-desktop-verify")
    await b.locator("#verify-close").click()
    # The in-page check is not a rubber stamp: a tampered record fails it, and the
    # plain-JavaScript SHA-256 used on non-secure origins agrees with SubtleCrypto.
    tampered = await b.evaluate("""async (rec) => {
        const m = await import('/static/js/lottery.js');
        const honest = await m.verifyLottery(rec);
        const fallback = await m.verifyLottery(rec, null, { forceFallback: true });
        const swapped = { ...rec, result: { ...rec.result,
            winners: rec.result.entrants.filter((e) => !rec.result.winners.includes(e)) } };
        const reseeded = { ...rec, result: { ...rec.result, seed: 'f'.repeat(64) } };
        return { honest: honest.ok, fallback: fallback.ok, expected: honest.expected,
                 swapped: (await m.verifyLottery(swapped)).ok,
                 reseeded: (await m.verifyLottery(reseeded)).ok,
                 sha: [await m.sha256Hex('abc'), await m.sha256Hex('abc', { forceFallback: true }),
                       await m.sha256Hex('', { forceFallback: true }),
                       await m.sha256Hex('x'.repeat(200), { forceFallback: true }),
                       await m.sha256Hex('x'.repeat(200))] };
    }""", published)
    assert tampered["honest"] and tampered["fallback"]
    assert tampered["expected"] == published["result"]["winners"]
    assert not tampered["swapped"] and not tampered["reseeded"]
    abc = "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad"
    empty = "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855"
    assert tampered["sha"][:3] == [abc, abc, empty]
    assert tampered["sha"][3] == tampered["sha"][4]

    # ---------------------------------------------------------------- moderation
    host_msg = host.locator("#mod-chat .mod-msg", has_text="hello")
    await expect(host_msg).to_be_visible()
    await host_msg.get_by_role("button", name=re.compile("^Delete message")).click()
    await host.locator("#confirm-dlg").get_by_role("button", name="Delete message").click()
    await expect(host.locator("#mod-result")).to_have_text(re.compile("Message deleted"))
    await expect(a.locator("#chat-list .msg", has_text="hello")).to_have_count(0)
    await expect(b.locator("#chat-list .msg", has_text="hello")).to_have_count(0)
    await host_msg.get_by_role("button", name=re.compile("^Mute")).click()
    await host.locator("#confirm-dlg").get_by_role("button", name=re.compile("^Mute for")).click()
    await expect(host.locator("#mod-result")).to_have_text(re.compile("Muted guest-"))
    await expect(b.locator("#chat-notice")).to_contain_text("The host muted you")
    await expect(b.locator("#chat-input")).to_be_disabled()
    await expect(a.locator("#chat-input")).to_be_enabled()

    await host.locator("#announce-text").fill("Thanks for shopping with us!")
    await host.get_by_role("button", name="Announce").click()
    await expect(host.locator("#announce-result")).to_have_text(re.compile("Announced"))
    await expect(a.locator("#announce-text")).to_have_text("Thanks for shopping with us!")

    # ---------------------------------------------------------------- the record
    key = await host.locator("#host-key-view").input_value()
    audit = (await http.get(f"/api/rooms/{room_id}/audit", headers={"X-Host-Key": key})).json()
    assert audit["ok"], audit
    assert audit["orders"]["orders"] == 1
    assert [(p["left"], p["held"], p["sold"]) for p in audit["products"]] == [(4, 0, 1)]

    chart = host.locator("#chart-orders")
    await expect(chart).to_have_attribute("data-points", re.compile(r"^[1-9]"))
    await a.evaluate("() => window.scrollTo(0, 0)")
    await shoot(a, "viewer-phone", doc="viewer.png")
    await shoot(b, "viewer-desktop")
    await host.evaluate("() => window.scrollTo(0, 0)")
    await open_tool(host, "Catalogue")
    await shoot(host, "host-desktop", doc="host.png")
    await shoot(host, "host-desktop-full", full_page=True)
    # Whatever state the show left the pages in (hovered, disabled, drawn), text stays readable.
    for page in (a, b, host):
        _, failures = await contrast_failures(page)
        assert failures == [], failures
    assert page_errors.errors == []
    for ctx in (host_ctx, a_ctx, b_ctx):
        await ctx.close()

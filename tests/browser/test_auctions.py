"""Auctions in the pages, in Chromium against a real server (docs/protocol.md
section 15): the host starts an auction from the console; two viewers bid from
their cards (one with a max bid, which the server uses to outbid the other by
proxy); each card says who leads and labels its bid button with the next amount
the server takes; every bid in the window moves the end, and the clock shows it;
the host ends it early; the winner sees the hold with its timer and pays it
through the page's checkout; "Verify" re-checks the published bid chain in the
browser. A second test runs an auction to its end by the server's clock on a
phone (bid button on screen without scrolling, a refusal in words, reserve and
buy-now shown, a tampered log that fails to verify); a third lets the winner's
hold lapse and offers the unit to the runner-up (second chance), whose page keeps
its bidder identity across a reload; a fourth starts one with the host's own
increments and sudden death, and cancels it; a fifth buys one outright at its
buy-now price and shows a guest that a shop-customers-only auction needs a sign-in."""

from __future__ import annotations

import asyncio
import re
from typing import Any

import httpx

from tests.browser.conftest import PageErrors
from tests.browser.helpers import (
    DESKTOP,
    PHONE,
    console_room,
    contrast_failures,
    live_page,
    open_tool,
    shoot,
    skip_without_browser,
    unnamed_controls,
)
from tests.support import Host, LiveServer, create_room

skip_without_browser()

from playwright.async_api import Page, expect  # noqa: E402

# Waits for the server's clock (an auction's end, a hold's expiry): generous bounds,
# each ended by the condition itself, never by the bound.
CLOCK_WAIT_MS = 30_000


async def viewer_page(browser: Any, base: str, room_id: str, watch: Any, name: str,
                      viewport: dict[str, int] = DESKTOP) -> Page:
    page: Page = await live_page(browser, f"{base}/r/{room_id}", watch, name, viewport)
    return page


async def nickname(page: Page) -> str:
    await expect(page.locator("#me-name")).not_to_have_text("…")
    return (await page.locator("#me-name").text_content() or "").strip()


async def start_auction(host: Host, product_id: str, **fields: Any) -> dict[str, Any]:
    auction: dict[str, Any] = await host.call("POST", "/auctions",
                                              {"product_id": product_id, **fields}, expect=201)
    return auction


async def test_console_auction_two_bidders_extension_win_pay_and_verify(
        server: LiveServer, http: httpx.AsyncClient, browser: Any,
        page_errors: PageErrors) -> None:
    console, host = await console_room(browser, server.base, http, "Auction show",
                                       page_errors.watch)
    vase = await host.product(stock=2, price=2000, title="Blue Vase")
    pid = vase["product_id"]
    a = await viewer_page(browser, server.base, host.room_id, page_errors.watch, "viewer A",
                          PHONE)
    b = await viewer_page(browser, server.base, host.room_id, page_errors.watch, "viewer B")
    a_name, b_name = await nickname(a), await nickname(b)

    # ---------------------------------------------------------------- the console starts it
    # Every bid of a 60 s auction with a 120 s window is "in the window": each one
    # moves the end to 120 s after it, which the clocks show at once.
    await expect(console.locator(f'#af-product option[value="{pid}"]')).to_have_count(1)
    await open_tool(console, "Auction")
    await console.locator("#af-product").select_option(pid)
    await expect(console.locator("#af-start")).to_have_value("20.00")
    await console.locator("#af-start").fill("10.00")
    await console.locator("#af-duration").fill("60")
    await console.locator("#af-extend").fill("120")
    await expect(console.locator("#af-increments")).to_have_value("")  # the server's table
    await console.get_by_role("button", name="Start auction").click()
    result = console.locator("#auction-result")
    await expect(result).to_have_text(re.compile("Auction of “Blue Vase” is open: from \\$10\\.00"))
    await expect(result).to_have_attribute("data-outcome", "ok")
    item = console.locator("#auction-list .auction-item")
    await expect(item).to_have_count(1)
    aid = await item.get_attribute("data-auction-id")
    assert aid and aid.startswith("a_"), aid
    await expect(item).to_have_attribute("data-state", "open")
    await expect(item.locator(".alead")).to_have_text("No bids yet · starts at $10.00")
    await expect(item.locator(".atiming")).to_have_text(
        re.compile(r"^ends in (1:00|0:5\d) · 0 bids"))
    # Starting took the unit out of stock (held).
    assert (await host.call("GET", f"/products/{pid}", expect=200))["stock"]["held"] == 1

    card_a = a.locator(f'.acard[data-auction-id="{aid}"]')
    card_b = b.locator(f'.acard[data-auction-id="{aid}"]')
    bid_a, bid_b = card_a.locator(".abid-btn"), card_b.locator(".abid-btn")
    for card, bid in ((card_a, bid_a), (card_b, bid_b)):
        await expect(card).to_have_attribute("data-state", "open")
        await expect(card.locator(".acard-title")).to_have_text("Blue Vase")
        await expect(card.locator(".aprice-now")).to_have_text("$10.00")
        await expect(bid).to_have_text("Bid $10.00")
        await expect(bid).to_be_enabled()
        await expect(card.locator(".astatus")).to_have_text("No bids yet: be the first")
        await expect(card.locator(".aclock")).to_have_text(re.compile(r"^(1:00|0:[0-5]\d)$"))
        await expect(card).to_have_attribute("data-extended", "false")
    # The clock counts down by the server's clock.
    shown = await card_b.locator(".aclock").text_content()
    await expect(card_b.locator(".aclock")).not_to_have_text(shown or "", timeout=5000)

    # ---------------------------------------------------------------- A bids with a max
    await card_a.get_by_label("Your max bid").fill("25.00")
    await expect(bid_a).to_have_text("Bid $10.00")
    await bid_a.click()
    await expect(card_a).to_have_attribute("data-standing", "leading")
    await expect(card_a.locator(".astatus")).to_have_text(
        "You are leading at $10.00 · your max $25.00")
    await expect(bid_a).to_have_text("You're leading")
    await expect(bid_a).to_be_disabled()
    await expect(card_b.locator(".aprice-now")).to_have_text("$10.00")
    await expect(bid_b).to_have_text("Bid $11.00")
    await expect(card_b.locator(".astatus")).to_have_text(f"{a_name} leads")
    # The bid came in the window: the end moved to 120 s after it, on both pages.
    for card in (card_a, card_b):
        await expect(card).to_have_attribute("data-extended", "true")
        await expect(card.locator(".achip.hot")).to_have_text("Extended +120 s")
        await expect(card.locator(".aclock")).to_have_text(re.compile(r"^(2:00|1:5\d)$"))
    await expect(item.locator(".atiming")).to_have_text(
        re.compile(r"^ends in (2:00|1:5\d) · 1 bid · 1 extension$"))

    # ---------------------------------------------------------------- B is outbid by proxy
    await bid_b.click()
    await expect(card_b.locator(".amsg")).to_have_text(
        "Another bidder's max bid is higher: the bid is now $12.00. Bid $13.00 or more to lead.")
    await expect(card_b).to_have_attribute("data-standing", "outbid")
    await expect(card_b.locator(".astatus")).to_have_text(
        f"Outbid: {a_name} leads at $12.00. Bid again!")
    await expect(bid_b).to_have_text("Bid $13.00")
    await expect(card_a.locator(".aprice-now")).to_have_text("$12.00")
    await expect(card_a).to_have_attribute("data-standing", "leading")

    # ---------------------------------------------------------------- B bids over A's max
    await card_b.get_by_label("Your max bid").fill("30.00")
    await bid_b.click()
    await expect(card_b).to_have_attribute("data-standing", "leading")
    await expect(card_b.locator(".astatus")).to_have_text(
        "You are leading at $26.00 · your max $30.00")
    await expect(card_a).to_have_attribute("data-standing", "outbid")
    await expect(card_a.locator(".astatus")).to_have_text(
        f"Outbid: {b_name} leads at $26.00. Bid again!")
    await expect(bid_a).to_have_text("Bid $27.00")
    await expect(bid_a).to_be_enabled()
    await expect(card_a.locator(".achip.hot")).to_have_text("Extended +120 s (3\u00d7)")
    await expect(item.locator(".alead")).to_have_text(f"Leading $26.00 · {b_name} · next $27.00")
    await expect(item).to_have_attribute("data-bids", "3")
    await expect(item).to_have_attribute("data-extensions", "3")
    await expect(item.locator(".atiming")).to_have_text(
        re.compile(r"^ends in (2:00|1:5\d) · 3 bids · 3 extensions$"))
    state = await host.call("GET", f"/auctions/{aid}", expect=200)
    assert (state["amount"], state["bids"], state["extensions"]) == (2600, 3, 3), state
    await shoot(a, "auction-phone-outbid")

    # ---------------------------------------------------------------- the host ends it now
    second = console.get_by_role("button", name="Offer Blue Vase to the runner-up (second chance)")
    await expect(second).to_be_disabled()
    await console.get_by_role("button", name="End the auction of Blue Vase now").click()
    # An irreversible action asks first (tests/browser/test_host_console.py).
    await console.locator("#confirm-dlg").get_by_role("button", name="End now").click()
    # (Said in the live column's "On now", where the auction and its buttons are.)
    await expect(console.locator("#now-result")).to_have_text(
        f"✓ Ended the auction of “Blue Vase”: {b_name} wins at $26.00")
    await expect(item).to_have_attribute("data-state", "ended")
    await expect(item.locator(".aresult")).to_have_text(
        re.compile(rf"^Won by {re.escape(b_name)} at \$26\.00 \(ended early\) "
                   r"· pays within \d:\d\d$"))
    # While the winner may pay, there is no second chance and no unit to give back.
    await expect(second).to_be_disabled()
    await expect(item.get_by_role("button", name="Return the unpaid unit of Blue Vase to "
                                                 "stock")).to_be_disabled()
    end_now = console.get_by_role("button", name="End the auction of Blue Vase now")
    await expect(end_now).to_be_disabled()
    await expect(item.locator(".alead")).to_have_text(f"Last bid $26.00 · {b_name}")

    await expect(card_a).to_have_attribute("data-state", "ended")
    await expect(card_a).to_have_attribute("data-standing", "lost")
    await expect(card_a.locator(".astatus")).to_have_text(
        f"You didn't win. Won by {b_name} at $26.00.")
    await expect(bid_a).to_be_hidden()
    await expect(card_b).to_have_attribute("data-standing", "won")
    await expect(card_b.locator(".astatus")).to_have_text("You won at $26.00!")
    await expect(card_b).to_have_attribute("data-hold", "held")
    await expect(card_b.locator(".ahold-text")).to_have_text(
        re.compile(r"^Held for you for (3:00|2:[0-5]\d)$"))

    await shoot(b, "auction-desktop-won")
    await item.scroll_into_view_if_needed()
    await shoot(console, "auction-console")

    # ---------------------------------------------------------------- B pays through the checkout
    await card_b.get_by_role("button", name="Pay $26.00 for Blue Vase").click()
    await expect(b.locator("#checkout")).to_be_visible()
    await expect(b.locator("#checkout-item")).to_contain_text("Blue Vase")
    await expect(b.locator("#sum-total")).to_have_text("$26.00")
    await b.locator("#pay-btn").click()
    await expect(b.locator("#order-done")).to_be_visible()
    await expect(b.locator("#order-text")).to_contain_text("paid $26.00")
    await b.locator("#checkout-close").click()
    await expect(card_b).to_have_attribute("data-hold", "paid")
    await expect(card_b.locator(".ahold-text")).to_have_text("Paid ✓ $26.00: your order is placed.")
    orders = await host.call("GET", "/orders", expect=200)
    assert [(o["product_id"], o["total"]) for o in orders["orders"]] == [(pid, 2600)]

    # ---------------------------------------------------------------- both verify the chain
    await card_a.get_by_role("button", name="Verify the auction of Blue Vase").click()
    await expect(card_a.locator(".averify-out")).to_have_text(
        f"Verified: 3 bids, winner {b_name} at $26.00", timeout=15_000)
    await expect(card_a.locator(".averify-out")).to_have_attribute("data-result", "pass")
    await expect(card_a.locator(".verify-checks li.bad")).to_have_count(0)
    await card_b.get_by_role("button", name="Verify the auction of Blue Vase").click()
    await expect(card_b.locator(".averify-out")).to_have_text(
        "Verified: 3 bids, winner you at $26.00", timeout=15_000)
    await shoot(a, "auction-phone-verified")
    assert (await host.audit())["ok"]
    assert page_errors.errors == []


async def test_phone_bids_in_the_last_seconds_and_the_clock_ends_it(
        server: LiveServer, http: httpx.AsyncClient, browser: Any,
        page_errors: PageErrors) -> None:
    host = await create_room(http, "Last seconds show")
    lamp = await host.product(stock=1, price=3000, title="Brass Lamp")
    pid = lamp["product_id"]
    phone = await viewer_page(browser, server.base, host.room_id, page_errors.watch, "phone",
                              PHONE)
    # A short sudden-death auction with a hidden reserve above the first bid and a
    # buy-now price: no bid moves its end, and only the server's clock ends it.
    auction = await start_auction(host, pid, start_price=1000, duration_s=10,
                                  anti_snipe="sudden_death", reserve_price=1500,
                                  buy_now_price=5000)
    aid = auction["auction_id"]
    card = phone.locator(f'.acard[data-auction-id="{aid}"]')
    bid = card.locator(".abid-btn")
    await expect(bid).to_have_text("Bid $10.00")
    await expect(card.locator(".achip", has_text="Reserve")).to_have_text("Reserve not met")
    await expect(card.locator(".achip", has_text="Buy now")).to_have_text("Buy now $50.00")
    await expect(card.get_by_role("button", name="Buy Brass Lamp now for $50.00")).to_be_enabled()
    await expect(card.locator(".achip", has_text="Sudden death")).to_be_visible()

    # On a 390 x 844 phone the card, from its title to its bid button, is on screen
    # as the page opens: nothing to scroll in the last seconds.
    assert await phone.evaluate("() => window.scrollY") == 0
    await expect(bid).to_be_in_viewport(ratio=1)
    await expect(card.locator(".aclock")).to_be_in_viewport(ratio=1)
    top = await phone.locator(".topbar").bounding_box()
    title = await card.locator(".acard-title").bounding_box()
    button = await bid.bounding_box()
    assert top and title and button
    assert title["y"] >= top["y"] + top["height"], (title, top)
    assert button["y"] + button["height"] <= PHONE["height"], button
    assert button["height"] >= 48 and button["width"] >= 150, button
    await shoot(phone, "auction-phone-open")

    await bid.click()
    await expect(card).to_have_attribute("data-standing", "leading")
    await expect(card.locator(".astatus")).to_have_text(
        "You are leading at $10.00 · your max $10.00")
    # The first accepted bid takes buy-now away; the reserve is still not met.
    await expect(card.get_by_role("button", name="Buy Brass Lamp now for $50.00")).to_be_hidden()
    await expect(card.locator(".achip", has_text="Reserve")).to_have_text("Reserve not met")
    await expect(card).to_have_attribute("data-extended", "false")

    # A bid below the next amount (a button older than the last bid) is refused
    # in words next to the button; nothing changes.
    await phone.evaluate("(id) => window.livesell.live.request({type: 'bid', auction_id: id, "
                         "amount: 1000})", aid)
    await expect(card.locator(".amsg")).to_have_text(
        "Too low: the next bid must be at least $11.00.")
    await expect(card).to_have_attribute("data-bids", "1")
    # Every control on the card is named, and its text is readable (4.5:1).
    assert await unnamed_controls(phone) == []
    _, failures = await contrast_failures(phone)
    assert failures == [], failures

    # The server's clock ends it: below the reserve there is no winner, and the unit
    # goes back to stock.
    await expect(card).to_have_attribute("data-state", "ended", timeout=CLOCK_WAIT_MS)
    await expect(card.locator(".aclock")).to_have_text("Ended")
    await expect(card).to_have_attribute("data-standing", "lost")
    await expect(card.locator(".astatus")).to_have_text(
        "You didn't win. Ended: the reserve was not met, no winner.")
    await expect(card.locator(".ahold")).to_be_hidden()
    ended = await host.call("GET", f"/auctions/{aid}", expect=200)
    assert ended["result"]["winner"] is None and ended["result"]["ended_by"] == "clock", ended
    assert ended["result"]["reserve_price"] == 1500
    stock = (await host.call("GET", f"/products/{pid}", expect=200))["stock"]
    assert (stock["left"], stock["held"]) == (1, 0), stock

    verify = card.get_by_role("button", name="Verify the auction of Brass Lamp")
    await verify.click()
    await expect(card.locator(".averify-out")).to_have_text("Verified: 1 bid, no winner",
                                                            timeout=15_000)

    # A log changed after the fact does not verify: the page names the first failure.
    async def tampered(route: Any) -> None:
        response = await route.fetch()
        body = await response.json()
        for entry in body["bids"]:
            entry["amount"] += 100
        await route.fulfill(response=response, json=body)

    await phone.route(re.compile(r".*/auctions/[^/]+/bids\?.*"), tampered)
    await verify.click()
    out = card.locator(".averify-out")
    await expect(out).to_have_attribute("data-result", "fail", timeout=15_000)
    await expect(out).to_have_text("Not verified: Every bid links to the one before it and its "
                                   "hash recomputes (entry 1: hash does not recompute)")
    await phone.unroute(re.compile(r".*/auctions/[^/]+/bids\?.*"))

    # The page's own SHA-1 (for plain-http LAN pages, where SubtleCrypto is hidden)
    # agrees with SubtleCrypto's.
    agree = await phone.evaluate(r"""async () => {
        const { sha1Hex } = await import('/static/js/auction.js');
        const texts = ['', 'abc', 'a'.repeat(55), 'a'.repeat(64),
                       'livesell-auction|\u00e9|\u{1F600}'];
        for (const t of texts) {
            if (await sha1Hex(t) !== await sha1Hex(t, { forceFallback: true })) return t;
        }
        return true;
    }""")
    assert agree is True, agree
    assert page_errors.errors == []


async def test_an_unpaid_win_goes_to_the_runner_up_as_a_second_chance(
        server: LiveServer, http: httpx.AsyncClient, browser: Any,
        page_errors: PageErrors) -> None:
    console, host = await console_room(browser, server.base, http, "Second chance show",
                                       page_errors.watch)
    clock_ = await host.product(stock=1, price=4000, title="Mantel Clock")
    pid = clock_["product_id"]
    # Started before the viewers come: their cards come from the snapshot.
    auction = await start_auction(host, pid, start_price=1000, duration_s=300, pay_s=10)
    aid = auction["auction_id"]
    a = await viewer_page(browser, server.base, host.room_id, page_errors.watch, "viewer A")
    b = await viewer_page(browser, server.base, host.room_id, page_errors.watch, "viewer B")
    card_a = a.locator(f'.acard[data-auction-id="{aid}"]')
    card_b = b.locator(f'.acard[data-auction-id="{aid}"]')
    await expect(card_a.locator(".abid-btn")).to_have_text("Bid $10.00")
    await card_a.locator(".abid-btn").click()
    await expect(card_a).to_have_attribute("data-standing", "leading")

    # A reload keeps who A is in this auction (sessionStorage, by auction id).
    await a.reload()
    await expect(a.locator("#conn")).to_have_attribute("data-state", "live")
    await expect(card_a).to_have_attribute("data-standing", "leading")
    await expect(card_a.locator(".astatus")).to_have_text(
        "You are leading at $10.00 · your max $10.00")

    await card_b.get_by_label("Your max bid").fill("20.00")
    await card_b.locator(".abid-btn").click()
    await expect(card_b).to_have_attribute("data-standing", "leading")
    await expect(card_a).to_have_attribute("data-standing", "outbid")
    await expect(card_a.locator(".abid-btn")).to_have_text("Bid $12.00")

    item = console.locator(f'#auction-list li[data-auction-id="{aid}"]')
    await console.get_by_role("button", name="End the auction of Mantel Clock now").click()
    await console.locator("#confirm-dlg").get_by_role("button", name="End now").click()
    await expect(item).to_have_attribute("data-state", "ended")
    await expect(card_b).to_have_attribute("data-hold", "held")

    # B lets the 10 s hold lapse (the page shows it by the clock; the server decides).
    await expect(card_b).to_have_attribute("data-hold", "expired", timeout=CLOCK_WAIT_MS)
    await expect(card_b.locator(".ahold-text")).to_have_text(
        "Your hold expired before it was paid.")
    await expect(item.locator(".aresult")).to_have_text(re.compile("pay window over$"))

    # The second chance goes to A at A's highest bid. The server may take a moment
    # to notice the lapse: until then it answers winner_paying, in its own words.
    second = console.get_by_role("button",
                                 name="Offer Mantel Clock to the runner-up (second chance)")
    await expect(second).to_be_enabled()
    outcome = console.locator("#now-result")
    for _ in range(40):
        await outcome.evaluate("(el) => { el.textContent = ''; el.dataset.outcome = ''; }")
        await second.click()
        await console.locator("#confirm-dlg").get_by_role(
            "button", name="Offer second chance").click()
        await expect(outcome).to_have_attribute("data-outcome", re.compile("^(ok|error)$"))
        if await outcome.get_attribute("data-outcome") == "ok":
            break
        await expect(outcome).to_have_text(re.compile(r"\(winner_paying\)$"))
        await asyncio.sleep(0.25)  # only paces the retries: each answer is checked
    await expect(outcome).to_have_attribute("data-outcome", "ok")
    a_name = await nickname(a)
    await expect(outcome).to_have_text(f"✓ Offered “Mantel Clock” to {a_name} at $10.00")
    await expect(second).to_be_disabled()
    await expect(item.locator(".aresult")).to_contain_text(f"second chance: {a_name} at $10.00")

    await expect(card_a).to_have_attribute("data-standing", "won")
    await expect(card_a.locator(".astatus")).to_have_text("Second chance: it's yours at $10.00")
    await expect(card_a).to_have_attribute("data-hold", "held")
    await card_a.get_by_role("button", name="Pay $10.00 for Mantel Clock").click()
    await expect(a.locator("#checkout")).to_be_visible()
    await a.locator("#pay-btn").click()
    await expect(a.locator("#order-done")).to_be_visible()
    await expect(a.locator("#order-text")).to_contain_text("paid $10.00")
    orders = await host.call("GET", "/orders", expect=200)
    assert [(o["product_id"], o["total"]) for o in orders["orders"]] == [(pid, 1000)]
    assert (await host.audit())["ok"]
    assert page_errors.errors == []


async def test_the_host_cancels_an_open_auction(
        server: LiveServer, http: httpx.AsyncClient, browser: Any,
        page_errors: PageErrors) -> None:
    console, host = await console_room(browser, server.base, http, "Cancelled show",
                                       page_errors.watch)
    bowl = await host.product(stock=1, price=1500, title="Glass Bowl")
    pid = bowl["product_id"]
    viewer = await viewer_page(browser, server.base, host.room_id, page_errors.watch, "viewer")
    await expect(console.locator(f'#af-product option[value="{pid}"]')).to_have_count(1)
    await open_tool(console, "Auction")
    await console.locator("#af-product").select_option(pid)
    await console.locator("#af-mode").select_option("sudden_death")
    await expect(console.locator("#af-extend")).to_be_hidden()
    await console.locator("#af-increments").fill("0:0.50, 20.00:1.00")
    await console.get_by_role("button", name="Start auction").click()
    await expect(console.locator("#auction-result")).to_have_attribute("data-outcome", "ok")
    aid = await console.locator("#auction-list .auction-item").first.get_attribute(
        "data-auction-id")
    state = await host.call("GET", f"/auctions/{aid}", expect=200)
    assert state["increments"] == [{"from": 0, "step": 50}, {"from": 2000, "step": 100}]
    assert (state["anti_snipe"], state["start_price"]) == ("sudden_death", 1500)

    card = viewer.locator(f'.acard[data-auction-id="{aid}"]')
    await card.locator(".abid-btn").click()
    await expect(card).to_have_attribute("data-standing", "leading")
    # The host's increments: the next bid is 50 cents up.
    assert (await host.call("GET", f"/auctions/{aid}", expect=200))["min_next"] == 1550

    await console.get_by_role("button", name="Cancel the auction of Glass Bowl").click()
    await console.locator("#confirm-dlg").get_by_role("button", name="Cancel auction").click()
    await expect(console.locator("#now-result")).to_have_text(
        "✓ Cancelled the auction of “Glass Bowl”")
    await expect(card).to_have_attribute("data-state", "cancelled")
    await expect(card.locator(".astatus")).to_have_text(
        "The host cancelled this auction: no winner.")
    await expect(card.locator(".abid-btn")).to_be_hidden()
    stock = (await host.call("GET", f"/products/{pid}", expect=200))["stock"]
    assert (stock["left"], stock["held"]) == (1, 0), stock
    await card.get_by_role("button", name="Verify the auction of Glass Bowl").click()
    await expect(card.locator(".averify-out")).to_have_text("Verified: 1 bid, no winner",
                                                            timeout=15_000)
    assert page_errors.errors == []


async def test_buy_now_wins_at_once_and_signed_only_asks_guests_to_sign_in(
        server: LiveServer, http: httpx.AsyncClient, browser: Any,
        page_errors: PageErrors) -> None:
    host = await create_room(http, "Buy-now show")
    print_ = await host.product(stock=1, price=6000, title="Framed Print")
    rug = await host.product(stock=1, price=9000, title="Wool Rug")
    viewer = await viewer_page(browser, server.base, host.room_id, page_errors.watch, "viewer",
                               PHONE)
    signed = await start_auction(host, rug["product_id"], start_price=3000, duration_s=300,
                                 signed_only=True)
    offer = await start_auction(host, print_["product_id"], start_price=2000, duration_s=300,
                                buy_now_price=5000)
    rug_card = viewer.locator(f'.acard[data-auction-id="{signed["auction_id"]}"]')
    await expect(rug_card.locator(".abid-btn")).to_have_text("Sign in on the shop to bid")
    await expect(rug_card.locator(".abid-btn")).to_be_disabled()
    await expect(rug_card.locator(".achip", has_text="Shop customers only")).to_be_visible()
    # The server says the same to a guest who bids anyway, in words by the button.
    await viewer.evaluate("(id) => window.livesell.live.request({type: 'bid', auction_id: id, "
                          "amount: 3000})", signed["auction_id"])
    await expect(rug_card.locator(".amsg")).to_have_text(
        "Only customers signed in on the shop can bid here. Sign in on the shop and open "
        "the show from there.")

    card = viewer.locator(f'.acard[data-auction-id="{offer["auction_id"]}"]')
    await card.get_by_role("button", name="Buy Framed Print now for $50.00").click()
    await expect(card).to_have_attribute("data-state", "ended")
    await expect(card).to_have_attribute("data-standing", "won")
    await expect(card.locator(".astatus")).to_have_text("You won at $50.00!")
    await expect(card).to_have_attribute("data-hold", "held")
    ended = await host.call("GET", f"/auctions/{offer['auction_id']}", expect=200)
    assert ended["result"]["ended_by"] == "buy_now" and ended["result"]["amount"] == 5000
    await card.get_by_role("button", name="Verify the auction of Framed Print").click()
    await expect(card.locator(".averify-out")).to_have_text(
        "Verified: 1 bid, winner you at $50.00", timeout=15_000)
    await card.get_by_role("button", name="Pay $50.00 for Framed Print").click()
    await expect(viewer.locator("#checkout")).to_be_visible()
    await viewer.locator("#pay-btn").click()
    await expect(viewer.locator("#order-done")).to_be_visible()
    await expect(viewer.locator("#order-text")).to_contain_text("paid $50.00")
    await viewer.locator("#checkout-close").click()
    await expect(card).to_have_attribute("data-hold", "paid")
    assert page_errors.errors == []

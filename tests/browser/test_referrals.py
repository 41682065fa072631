"""Referral invites in the pages (docs/protocol.md section 20), in Chromium against a
real server and Redis. Every browser here comes from 127.0.0.1, and a guest on the
inviter's network address is a self-invite, so the friends who accept an invite are
shop customers (a shop-signed identity handed over in the URL fragment).

Ada opens the share sheet: her link, Copy and its QR code. Ben opens the link in a
browser of his own and is told who invited him; the console's Referrals panel shows
Ada with one join. The host saves a coupon reward from the console; Ben's first
order pays Ada her coupon, which her page offers at checkout (already claimed: it
is never claimed again) and takes off her order. Ben, already invited, opening
another customer's link is refused in words, as are two guests on one network
inviting each other, a viewer opening its own link and a damaged link."""

from __future__ import annotations

import re
import time
from pathlib import Path
from typing import Any

import jwt

from tests.browser.conftest import PageErrors
from tests.browser.helpers import (
    DESKTOP,
    PHONE,
    console_room,
    contrast_failures,
    open_tool,
    shoot,
    skip_without_browser,
    unnamed_controls,
)
from tests.support import Host, create_room, server_with

skip_without_browser()

from playwright.async_api import Page, expect  # noqa: E402

SHOP_KEY = "s" * 48  # auth.shop_key needs at least 32 bytes


def shop_token(sub: str, name: str) -> str:
    """What the shop's own site signs for its signed-in customer (docs/security.md)."""
    now = int(time.time())
    return jwt.encode({"sub": sub, "name": name, "iat": now, "exp": now + 600}, SHOP_KEY,
                      algorithm="HS256")


async def open_page(browser: Any, url: str, watch: Any, name: str,
                    viewport: dict[str, int] = DESKTOP, customer: tuple[str, str] | None = None
                    ) -> Page:
    """A viewer page in a browser context of its own: a guest, or the shop customer
    (sub, name) signed in through the URL fragment; once its connection is live."""
    ctx = await browser.new_context(viewport=viewport, has_touch=viewport is PHONE)
    page: Page = watch(await ctx.new_page(), name)
    await page.goto(url + (f"#shop_token={shop_token(*customer)}" if customer else ""))
    await expect(page.locator("#conn")).to_have_attribute("data-state", "live")
    if customer:
        await expect(page.locator("#me-verified")).to_be_visible()
    return page


async def invite_link(page: Page) -> str:
    """Open the share sheet and read the link in it (then close the sheet)."""
    await page.get_by_role("button", name="Invite friends to this show").click()
    sheet = page.locator("#invite-dlg")
    await expect(sheet).to_be_visible()
    link = sheet.get_by_label("Your invite link", exact=True)
    await expect(link).to_have_value(re.compile(r"\?invite="))
    value = await link.input_value()
    await sheet.get_by_role("button", name="Close invite friends").click()
    await expect(sheet).to_be_hidden()
    return value


async def buy_and_pay(page: Page, title: str) -> None:
    await page.get_by_role("button", name=re.compile(f"^Buy {re.escape(title)}")).first.click()
    await expect(page.locator("#checkout")).to_be_visible()
    await page.get_by_role("button", name=re.compile("^Place order")).click()
    await expect(page.locator("#order-done")).to_be_visible()


async def test_share_accept_reward_and_the_console_tree(
        redis_url: str, data_dir: Path, browser: Any, page_errors: PageErrors) -> None:
    async with server_with(redis_url, data_dir, auth={"shop_key": SHOP_KEY}) as (live, http):
        console, host = await console_room(browser, live.base, http, "Bring a friend show",
                                           page_errors.watch)
        lamp = await host.product(stock=10, price=4900, title="Aurora Desk Lamp")
        await host.call("POST", "/pins", {"product_id": lamp["product_id"]}, expect=200)
        room_url = f"{live.base}/r/{host.room_id}"
        ada = await open_page(browser, room_url, page_errors.watch, "Ada", PHONE,
                              customer=("cust-ada", "Ada"))

        # ---------------------------------------------------------------- the share sheet
        await ada.get_by_role("button", name="Invite friends to this show").tap()
        sheet = ada.locator("#invite-dlg")
        await expect(sheet).to_be_visible()
        link_input = sheet.get_by_label("Your invite link", exact=True)
        await expect(link_input).to_have_value(re.compile(
            f"^{re.escape(room_url)}\\?invite=[^#\\s]+$"))
        link = await link_input.input_value()
        await expect(sheet.get_by_role("button", name="Copy your invite link")).to_be_enabled()
        qr = sheet.get_by_role("img", name="QR code of your invite link")
        await expect(qr).to_be_visible()
        assert (await qr.get_attribute("src") or "").startswith("/api/qr.svg?text=")
        await ada.wait_for_function("el => el.complete && el.naturalWidth > 0",
                                    arg=await qr.element_handle())
        # Web Share only where the browser has it.
        has_share = await ada.evaluate("() => typeof navigator.share === 'function'")
        share = sheet.get_by_role("button", name="Share…")
        await (expect(share).to_be_visible() if has_share else expect(share).to_be_hidden())
        await sheet.get_by_role("button", name="Copy your invite link").tap()
        await expect(sheet.locator("#invite-status")).to_have_text(re.compile(
            r"^(Link copied: paste it to friends\.|Your link is selected: copy it and send it "
            r"to friends\.)$"))
        box = await sheet.bounding_box()
        assert box and box["width"] <= PHONE["width"], box
        assert await unnamed_controls(ada) == []
        await shoot(ada, "referrals-phone-share")
        # The same link each time the sheet opens.
        await ada.keyboard.press("Escape")
        await expect(sheet).to_be_hidden()
        assert await invite_link(ada) == link

        # ---------------------------------------------------------------- Ben accepts it
        ben = await open_page(browser, link, page_errors.watch, "Ben",
                              customer=("cust-ben", "Ben"))
        note = ben.locator("#invite-note")
        await expect(note).to_have_text("Invited by Ada")
        await expect(note).to_have_attribute("data-state", "accepted")
        assert "?invite=" in ben.url  # the shop token left the address, the invite did not
        assert "shop_token" not in ben.url

        # The console's Referrals panel (in Fans): Ada with one join, Ben under her.
        await open_tool(console, "Fans")
        await console.get_by_role("button", name="Refresh the referrals").click()
        await expect(console.locator("#ref-load-result")).to_have_text(
            "✓ Referrals loaded: 1 inviter")
        ada_row = console.locator("#ref-tree .ref-inviter")
        await expect(ada_row).to_have_count(1)
        await expect(ada_row.locator(".item-title")).to_have_text("Ada")
        await expect(ada_row).to_have_attribute("data-joins", "1")
        await expect(ada_row.locator(".ref-counts")).to_have_text(re.compile(
            r"^\d+ invites? sent · 1 join · 0 first orders · 0 rewards paid$"))
        ben_item = ada_row.locator(".ref-invitee")
        await expect(ben_item.locator(".ref-who")).to_have_text("Ben")
        await expect(ben_item).to_have_attribute("data-reward", "pending")
        await expect(ben_item.locator(".ref-reward")).to_have_text("no order yet")
        await expect(console.locator("#ref-totals")).to_have_text(re.compile(
            r"^1 inviter · \d+ invites? sent · 1 join · 0 first orders · 0 rewards paid · "
            r"0 reversed$"))

        # ---------------------------------------------------------------- a coupon reward
        form = console.locator("#ref-form")
        await form.get_by_label("A coupon").check()
        await expect(form.get_by_label("Points per reward")).to_be_hidden()
        await form.get_by_label("Reward coupon title").fill("Thanks for bringing Ben")
        await form.get_by_label("Amount off").fill("5.00")
        await form.get_by_label("Coupon minimum spend").fill("0")
        await form.get_by_label("Rewards per inviter, at most").fill("3")
        await console.get_by_role("button", name="Save referral program").click()
        await expect(console.locator("#ref-result")).to_have_text(
            "✓ Referral program saved: a coupon “Thanks for bringing Ben” ($5.00 off) per "
            "friend's first order, at most 3 rewards per inviter")
        await expect(console.locator("#ref-program")).to_have_attribute("data-kind", "coupon")
        program = await host.call("GET", "/referrals", expect=200)
        assert program["program"]["max_rewards_per_inviter"] == 3, program

        # Ben's first order pays Ada's reward.
        await buy_and_pay(ben, "Aurora Desk Lamp")
        reward = ada.locator("#reward-note")
        await expect(reward).to_have_text(
            "A friend you invited placed their first order: you got a coupon, Thanks for "
            "bringing Ben ($5.00 off). It's ready at checkout.")
        await expect(reward).to_have_attribute("data-state", "paid")
        await expect(ben.locator("#reward-note")).to_be_hidden()  # the event names Ada only

        # Ada's checkout offers the coupon (claimed for her already) and takes it off.
        await buy_and_pay_with_reward(ada)
        await expect(ada.locator("#order-text")).to_have_text(re.compile(
            r"^1 \u00d7 Aurora Desk Lamp · paid \$44\.00 \(saved \$5\.00\)"))
        orders = (await host.call("GET", "/orders", expect=200))["orders"]
        ada_orders = [o for o in orders if o["buyer_id"] == "shop_cust-ada"]
        assert [(o["total"], o["discount"]) for o in ada_orders] == [(4400, 500)], orders
        assert ada_orders[0]["coupon_id"] == await reward_coupon_id(ada), ada_orders

        # The tree says the reward was paid.
        await console.get_by_role("button", name="Refresh the referrals").click()
        await expect(ben_item).to_have_attribute("data-reward", "paid")
        await expect(ben_item.locator(".ref-reward")).to_have_text("reward paid")
        await expect(ada_row.locator(".ref-counts")).to_have_text(re.compile(
            r"· 1 join · 1 first order · 1 reward paid$"))
        await shoot(console, "referrals-console", full_page=True)

        # ---------------------------------------------------------------- already invited
        cy = await open_page(browser, room_url, page_errors.watch, "Cy",
                             customer=("cust-cy", "Cy"))
        cy_link = await invite_link(cy)
        ben2: Page = page_errors.watch(await ben.context.new_page(), "Ben, second tab")
        await ben2.goto(cy_link)
        await expect(ben2.locator("#conn")).to_have_attribute("data-state", "live")
        await expect(ben2.locator("#invite-note")).to_have_text(
            "You already joined through another friend's invite: only the first one counts.")
        await expect(ben2.locator("#invite-note")).to_have_attribute("data-state",
                                                                     "already_invited")
        # The notice blocks nothing: Ben still chats.
        await ben2.locator("#chat-input").fill("Thanks Ada!")
        await ben2.locator("#chat-input").press("Enter")
        await expect(ben2.locator("#chat-list .msg.me", has_text="Thanks Ada!")).to_have_count(1)

        _, failures = await contrast_failures(ada)
        assert failures == [], failures
        assert await unnamed_controls(console) == []
    assert page_errors.errors == []


async def reward_coupon_id(page: Page) -> str:
    """The reward coupon the page keeps for checkout (by room and identity)."""
    ids: list[str] = await page.evaluate("() => [...window.livesell.state.rewardCoupons.keys()]")
    assert len(ids) == 1, ids
    return ids[0]


async def buy_and_pay_with_reward(page: Page) -> None:
    await page.get_by_role("button", name=re.compile("^Buy Aurora Desk Lamp")).first.tap()
    await expect(page.locator("#checkout")).to_be_visible()
    select = page.locator("#coupon-select")
    option = select.locator("option", has_text="referral reward")
    await expect(option).to_have_text("Thanks for bringing Ben ($5.00 off) · referral reward")
    coupon_id = await option.get_attribute("value")
    assert coupon_id
    await expect(select).to_have_value(coupon_id)
    await expect(page.locator("#sum-discount")).to_have_text("\u2212$5.00")
    await page.get_by_role("button", name="Place order · $44.00").tap()
    await expect(page.locator("#order-done")).to_be_visible()


async def test_self_invites_and_a_damaged_link_are_refused_in_words(
        redis_url: str, data_dir: Path, browser: Any, page_errors: PageErrors) -> None:
    async with server_with(redis_url, data_dir, auth={"shop_key": SHOP_KEY}) as (live, http):
        host: Host = await create_room(http, "Invite rules show")
        room_url = f"{live.base}/r/{host.room_id}"
        gus = await open_page(browser, room_url, page_errors.watch, "guest Gus", PHONE)
        link = await invite_link(gus)

        # Another guest on the same network address: a self-invite.
        gia = await open_page(browser, link, page_errors.watch, "guest Gia", PHONE)
        note = gia.locator("#invite-note")
        await expect(note).to_have_text(
            "That's your own invite link (or one shared on your own network): send it to "
            "friends instead.")
        await expect(note).to_have_attribute("data-state", "self_invite")
        await expect(note).to_have_class(re.compile(r"\bwarn\b"))
        # Short and non-blocking: the page goes on working, the notice goes away.
        await expect(gia.get_by_role("button", name="Invite friends to this show")).to_be_enabled()
        await expect(note).to_be_hidden(timeout=20_000)
        assert await gia.evaluate("() => document.documentElement.scrollWidth") <= PHONE["width"]

        # A customer opening their own link.
        dee = await open_page(browser, room_url, page_errors.watch, "Dee",
                              customer=("cust-dee", "Dee"))
        own = await invite_link(dee)
        dee2: Page = page_errors.watch(await dee.context.new_page(), "Dee, second tab")
        await dee2.goto(own)
        await expect(dee2.locator("#invite-note")).to_have_attribute("data-state", "self_invite")

        # A damaged link (or one for another show).
        other = await create_room(http, "Another show")
        bad = link.replace(host.room_id, other.room_id)
        eve = await open_page(browser, bad, page_errors.watch, "Eve",
                              customer=("cust-eve", "Eve"))
        await expect(eve.locator("#invite-note")).to_have_text(
            "That invite link isn't valid for this show: it may be damaged or for another show.")
        await expect(eve.locator("#invite-note")).to_have_attribute("data-state", "invite_invalid")
        # A token whose signature is not this server's.
        payload, _, signature = link.partition("?invite=")[2].partition(".")
        forged = f"{room_url}?invite={payload}.{'A' if signature[0] != 'A' else 'B'}{signature[1:]}"
        fay = await open_page(browser, forged, page_errors.watch, "Fay",
                              customer=("cust-fay", "Fay"))
        await expect(fay.locator("#invite-note")).to_have_attribute("data-state", "invite_invalid")
        # Not even the shape of a token (the server refuses its format as a bad
        # request): the page says the same.
        mangled = await open_page(browser, f"{room_url}?invite=not-a-real-token", page_errors.watch,
                                  "Gil", customer=("cust-gil", "Gil"))
        await expect(mangled.locator("#invite-note")).to_have_text(
            "That invite link isn't valid for this show: it may be damaged or for another show.")
        await expect(mangled.locator("#invite-note")).to_have_attribute("data-state",
                                                                        "invite_invalid")

        # Nobody was counted as invited.
        tree = await host.call("GET", "/referrals", expect=200)
        assert tree["totals"]["joins"] == 0, tree
    assert page_errors.errors == []


async def test_a_cancelled_first_order_reverses_the_reward(
        redis_url: str, data_dir: Path, browser: Any, page_errors: PageErrors) -> None:
    async with server_with(redis_url, data_dir, auth={"shop_key": SHOP_KEY},
                           fans={"watch_points": 0}) as (live, http):
        host: Host = await create_room(http, "Reversal show")
        mug = await host.product(stock=10, price=1800, title="Ceramic Mug")
        await host.call("POST", "/pins", {"product_id": mug["product_id"]}, expect=200)
        await host.call("PUT", "/referrals", {
            "reward": {"kind": "coupon", "coupon": {
                "title": "Friend bonus", "kind": "percent", "value": 10, "currency": "USD",
                "min_spend": 0, "expires_in_s": 3600}},
            "max_rewards_per_inviter": 5}, expect=200)
        room_url = f"{live.base}/r/{host.room_id}"
        ada = await open_page(browser, room_url, page_errors.watch, "Ada", PHONE,
                              customer=("cust-ada", "Ada"))
        link = await invite_link(ada)
        ben = await open_page(browser, link, page_errors.watch, "Ben",
                              customer=("cust-ben", "Ben"))
        await expect(ben.locator("#invite-note")).to_have_text("Invited by Ada")

        # ---------------------------------------------------------------- a coupon, withdrawn
        await buy_and_pay(ben, "Ceramic Mug")
        reward = ada.locator("#reward-note")
        await expect(reward).to_have_text(
            "A friend you invited placed their first order: you got a coupon, Friend bonus "
            "(10% off). It's ready at checkout.")
        ben_order = [o for o in (await host.call("GET", "/orders", expect=200))["orders"]
                     if o["buyer_id"] == "shop_cust-ben"]
        assert len(ben_order) == 1, ben_order
        await host.call("POST", f"/orders/{ben_order[0]['order_id']}/cancel",
                        {"reason": "changed their mind"}, expect=200)
        await expect(reward).to_have_attribute("data-state", "reversed")
        await expect(reward).to_have_text(
            "A friend you invited cancelled their first order, so your reward coupon was "
            "withdrawn.")
        assert await ada.evaluate("() => window.livesell.state.rewardCoupons.size") == 0
        # Not offered at checkout any more.
        await ada.get_by_role("button", name=re.compile("^Buy Ceramic Mug")).first.tap()
        await expect(ada.locator("#checkout")).to_be_visible()
        await expect(ada.locator("#coupon-select option", has_text="referral reward")
                     ).to_have_count(0)
        await ada.get_by_role("button", name="Release hold").tap()
        await expect(ada.locator("#cartbar")).to_be_hidden()

        # ---------------------------------------------------------------- points, taken back
        await host.call("PUT", "/referrals", {"reward": {"kind": "points", "points": 50}},
                        expect=200)
        cy = await open_page(browser, link, page_errors.watch, "Cy",
                             customer=("cust-cy", "Cy"))
        await expect(cy.locator("#invite-note")).to_have_text("Invited by Ada")
        fan = ada.locator("#fan")
        # Two joins through Ada's link: share points for each.
        await ada.reload()
        await expect(ada.locator("#conn")).to_have_attribute("data-state", "live")
        await expect(fan).to_have_attribute("data-points", "10")
        await buy_and_pay(cy, "Ceramic Mug")
        await expect(reward).to_have_text(
            "A friend you invited placed their first order: you earned 50 fan points!")
        await expect(fan).to_have_attribute("data-points", "60")
        cy_order = [o for o in (await host.call("GET", "/orders", expect=200))["orders"]
                    if o["buyer_id"] == "shop_cust-cy"]
        await host.call("POST", f"/orders/{cy_order[0]['order_id']}/cancel", {}, expect=200)
        await expect(reward).to_have_text(
            "A friend you invited cancelled their first order, so the 50 fan points were "
            "taken back.")
        await expect(fan).to_have_attribute("data-points", "10")

        tree = await host.call("GET", "/referrals", expect=200)
        assert tree["totals"]["rewards_reversed"] == 2, tree
        states = {i["nickname"]: i["reward"] for i in tree["inviters"][0]["invitees"]}
        assert states == {"Ben": "reversed", "Cy": "reversed"}, states
    assert page_errors.errors == []

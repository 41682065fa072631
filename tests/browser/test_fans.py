"""Fan levels in the pages (docs/protocol.md section 19), in Chromium against a real
server and Redis. With levels low enough for a couple of chat messages, a viewer on
a phone sees its points and level grow as it chats; the badge stands beside its
name in another viewer's chat, live and in the history a late joiner gets; the
console's Top fans lists it. A page sends `watching` once a minute only while it
is visible (the page's clock is driven, the server's is not), and with fan levels
switched off it shows and sends nothing. A giveaway and a group deal opened from
the console with a minimum fan level say so on their cards, and a level-0
viewer's entry is refused in words that name both levels."""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

import httpx

from tests.browser.conftest import PageErrors
from tests.browser.helpers import (
    DESKTOP,
    PHONE,
    console_room,
    contrast_failures,
    forward,
    live_page,
    open_tool,
    shoot,
    skip_without_browser,
    unnamed_controls,
)
from tests.support import LiveServer, create_room, eventually, server_with

skip_without_browser()

from playwright.async_api import Page, WebSocket, expect  # noqa: E402

# Levels a couple of chat messages reach: 1 point is level 1, 3 points level 2.
LOW_LEVELS: dict[str, Any] = {"levels": "1 3 100", "badges": ["Fan", "Regular", "Super fan"]}
# The same, with no points for watching: a test that runs past a minute of real time
# keeps the exact counts its chat messages earned.
CHAT_ONLY: dict[str, Any] = {**LOW_LEVELS, "watch_points": 0}


async def viewer_page(browser: Any, url: str, watch: Any, name: str,
                      viewport: dict[str, int] = DESKTOP) -> Page:
    page: Page = await live_page(browser, url, watch, name, viewport)
    return page


async def nickname(page: Page) -> str:
    await expect(page.locator("#me-name")).not_to_have_text("…")
    return (await page.locator("#me-name").text_content() or "").strip()


async def chat(page: Page, text: str) -> None:
    await page.locator("#chat-input").fill(text)
    await page.locator("#chat-input").press("Enter")
    await expect(page.locator("#chat-list .msg.me", has_text=text)).to_have_count(1)


class Frames:
    """The frames a page sends and receives on its room socket, by type."""

    def __init__(self) -> None:
        self.sent: list[dict[str, Any]] = []
        self.received: list[dict[str, Any]] = []

    def watch(self, page: Page) -> None:
        page.on("websocket", self._socket)

    def _socket(self, ws: WebSocket) -> None:
        ws.on("framesent", lambda payload: self._add(self.sent, payload))
        ws.on("framereceived", lambda payload: self._add(self.received, payload))

    @staticmethod
    def _add(into: list[dict[str, Any]], payload: str | bytes) -> None:
        try:
            frame = json.loads(payload)
        except ValueError:
            return
        if isinstance(frame, dict):
            into.append(frame)

    def sent_of(self, kind: str) -> list[dict[str, Any]]:
        return [f for f in self.sent if f.get("type") == kind]

    def answers_to(self, kind: str) -> list[dict[str, Any]]:
        ids = {f.get("request_id") for f in self.sent_of(kind)}
        return [f for f in self.received if f.get("re") in ids]


async def test_points_and_level_grow_with_chat_the_badge_shows_in_chat_and_top_fans(
        redis_url: str, data_dir: Path, browser: Any, page_errors: PageErrors) -> None:
    async with server_with(redis_url, data_dir, fans=CHAT_ONLY) as (live, http):
        console, host = await console_room(browser, live.base, http, "Fan show",
                                           page_errors.watch)
        room_url = f"{live.base}/r/{host.room_id}"
        a = await viewer_page(browser, room_url, page_errors.watch, "viewer A", PHONE)
        b = await viewer_page(browser, room_url, page_errors.watch, "viewer B")
        a_name = await nickname(a)

        # ---------------------------------------------------------------- a new fan
        fan = a.locator("#fan")
        await expect(fan).to_be_visible()
        await expect(fan).to_have_attribute("data-points", "0")
        await expect(a.locator("#fan-badge")).to_have_text("No badge yet")
        await expect(a.locator("#fan-points")).to_have_text("0")
        await expect(a.locator("#fan-next")).to_have_text("1 point to Lv1 Fan")
        # Visible page, fans on: the minute's timer runs.
        await expect(fan).to_have_attribute("data-watching", "on")
        assert await a.evaluate("() => document.documentElement.scrollWidth") <= PHONE["width"]

        # ---------------------------------------------------------------- A chats
        await chat(a, "Hello from the front row")
        await expect(fan).to_have_attribute("data-points", "1")
        await expect(a.locator("#fan-badge")).to_have_text("Lv1 Fan")
        await expect(a.locator("#fan-points-unit")).to_have_text("point")
        await expect(a.locator("#fan-next")).to_have_text("2 points to Lv2 Regular")
        await expect(a.get_by_role("progressbar", name="Progress to the next fan level")
                     ).to_have_attribute("aria-valuenow", "0")
        await chat(a, "Love the lamp")
        await expect(fan).to_have_attribute("data-points", "2")
        await expect(a.locator("#fan-next")).to_have_text("1 point to Lv2 Regular")
        await expect(a.get_by_role("progressbar", name="Progress to the next fan level")
                     ).to_have_attribute("aria-valuenow", "50")

        # The second message was sent at level 1: its badge beside A's name in B's chat.
        line = b.locator("#chat-list .msg", has_text="Love the lamp")
        await expect(line.locator(".nick")).to_have_text(a_name)
        badge = line.locator(".fan-badge")
        await expect(badge).to_have_text("Lv1 Fan")
        await expect(line).to_have_attribute("data-level", "1")
        # Beside the name, before the text; the name itself stays just the name.
        order = await line.evaluate(
            "li => Array.from(li.children).map(c => c.className.split(' ')[0])")
        assert order == ["nick", "fan-badge", "text"], order
        await expect(a.locator("#chat-list .msg", has_text="Love the lamp").locator(".fan-badge")
                     ).to_have_text("Lv1 Fan")

        # A third message reaches level 2.
        await chat(a, "Third time lucky")
        await expect(fan).to_have_attribute("data-level", "2")
        await expect(a.locator("#fan-badge")).to_have_text("Lv2 Regular")
        await expect(a.locator("#fan-next")).to_have_text("97 points to Lv3 Super fan")
        await shoot(a, "fans-phone-level")

        # ---------------------------------------------------------------- the history
        # A viewer joining now gets the recent chat with each message's level.
        late = await viewer_page(browser, room_url, page_errors.watch, "late joiner", PHONE)
        late_line = late.locator("#chat-list .msg", has_text="Love the lamp")
        await expect(late_line.locator(".fan-badge")).to_have_text("Lv1 Fan")
        # A message without a level (B's, at level 0) has no badge.
        await chat(b, "Just browsing")
        await expect(late.locator("#chat-list .msg", has_text="Just browsing")
                     ).to_have_attribute("data-level", "0")
        await expect(late.locator("#chat-list .msg", has_text="Just browsing")
                     .locator(".fan-badge")).to_have_count(0)
        await expect(late.locator("#fan-badge")).to_have_text("No badge yet")

        # ---------------------------------------------------------------- Top fans
        rows = console.locator("#fans-rows tr")
        await open_tool(console, "Fans")
        await console.get_by_role("button", name="Refresh the top fans").click()
        await expect(console.locator("#fans-result")).to_have_text(
            re.compile(r"^✓ Leaderboard loaded: \d+ fans?$"))
        top = rows.first
        await expect(top.locator(".fan-nick")).to_have_text(a_name)
        await expect(top.locator(".fan-lv")).to_have_text("Lv2 Regular")
        await expect(top.locator(".fan-pts")).to_have_text("3")
        await expect(top).to_have_attribute("data-level", "2")
        b_name = await nickname(b)
        b_row = rows.filter(has_text=b_name)
        await expect(b_row.locator(".fan-pts")).to_have_text("1")
        await expect(b_row.locator(".fan-lv")).to_have_text("Lv1 Fan")
        # The board refreshes itself every 10 s: B's second message shows up unasked.
        await chat(b, "Second from B")
        await expect(b_row.locator(".fan-pts")).to_have_text("2", timeout=25_000)
        await shoot(console, "fans-console-top", full_page=True)

        assert await unnamed_controls(a) == []
        assert await unnamed_controls(console) == []
        _, failures = await contrast_failures(a)
        assert failures == [], failures
        _, failures = await contrast_failures(b)
        assert failures == [], failures
    assert page_errors.errors == []


HIDE = ("() => { Object.defineProperty(document, 'visibilityState', "
        "{ configurable: true, get: () => 'hidden' }); "
        "Object.defineProperty(document, 'hidden', { configurable: true, get: () => true }); "
        "document.dispatchEvent(new Event('visibilitychange')); }")
SHOW = ("() => { delete document.visibilityState; delete document.hidden; "
        "document.dispatchEvent(new Event('visibilitychange')); }")


async def test_watching_is_sent_once_a_minute_only_while_the_page_is_visible(
        redis_url: str, data_dir: Path, browser: Any, page_errors: PageErrors) -> None:
    async with server_with(redis_url, data_dir, fans=LOW_LEVELS) as (live, http):
        host = await create_room(http, "Watch show")
        ctx = await browser.new_context(viewport=PHONE, has_touch=True)
        page: Page = page_errors.watch(await ctx.new_page(), "watcher")
        frames = Frames()
        frames.watch(page)
        # The page's timers run on a clock the test moves; the server's clock is real.
        await page.clock.install()
        await page.goto(f"{live.base}/r/{host.room_id}")
        await expect(page.locator("#conn")).to_have_attribute("data-state", "live")
        fan = page.locator("#fan")
        await expect(fan).to_have_attribute("data-points", "0")
        await expect(fan).to_have_attribute("data-watching", "on")

        assert frames.sent_of("watching") == []

        # A minute of watching with the page visible: one `watching`, one point.
        await forward(page, "01:01")
        await expect(fan).to_have_attribute("data-points", "1")
        assert len(frames.sent_of("watching")) == 1
        answer = frames.answers_to("watching")
        assert [(f["type"], f["awarded"], f["points"], f["level"]) for f in answer] == \
            [("fan", 1, 1, 1)], answer
        await expect(page.locator("#fan-badge")).to_have_text("Lv1 Fan")

        # Hidden (another app, a locked phone): the timer stops, minutes pass unsent.
        await page.evaluate(HIDE)
        await expect(fan).to_have_attribute("data-watching", "off")
        for _ in range(3):
            await forward(page, "01:01")
        await page.evaluate("() => new Promise(r => setTimeout(r, 0))")
        assert len(frames.sent_of("watching")) == 1

        # Visible again: the minute starts from zero, not before it is over.
        await page.evaluate(SHOW)
        await expect(fan).to_have_attribute("data-watching", "on")
        await forward(page, "00:30")
        await page.evaluate("() => new Promise(r => setTimeout(r, 0))")
        assert len(frames.sent_of("watching")) == 1
        await forward(page, "00:31")

        async def two_answers() -> bool:
            return len(frames.answers_to("watching")) == 2

        await eventually(two_answers, timeout=60)
        assert len(frames.sent_of("watching")) == 2
        # The server counts each minute of its own clock once: this one (the same real
        # minute, or the next) earned at most one more point.
        second = frames.answers_to("watching")[1]
        assert second["type"] == "fan" and second["awarded"] in (0, 1), second
        await expect(fan).to_have_attribute("data-points", str(1 + second["awarded"]))
    assert page_errors.errors == []


async def test_with_fan_levels_off_the_page_shows_and_sends_nothing(
        redis_url: str, data_dir: Path, browser: Any, page_errors: PageErrors) -> None:
    async with server_with(redis_url, data_dir, fans={"enabled": False}) as (live, http):
        host = await create_room(http, "No fans show")
        ctx = await browser.new_context(viewport=PHONE, has_touch=True)
        page: Page = page_errors.watch(await ctx.new_page(), "viewer")
        frames = Frames()
        frames.watch(page)
        await page.clock.install()
        await page.goto(f"{live.base}/r/{host.room_id}")
        await expect(page.locator("#conn")).to_have_attribute("data-state", "live")
        await chat(page, "No points here")
        await page.clock.fast_forward("02:02")
        await page.evaluate("() => new Promise(r => setTimeout(r, 0))")
        await expect(page.locator("#fan")).to_be_hidden()
        await expect(page.locator("#fan")).to_have_attribute("data-watching", "off")
        await expect(page.locator("#chat-list .msg .fan-badge")).to_have_count(0)
        assert frames.sent_of("watching") == [] and frames.sent_of("fan_status") == []
        # Inviting friends does not depend on fan levels.
        await expect(page.get_by_role("button", name="Invite friends to this show")).to_be_visible()
    assert page_errors.errors == []


async def test_a_minimum_fan_level_on_a_giveaway_and_a_group_deal(
        server: LiveServer, http: httpx.AsyncClient, browser: Any,
        page_errors: PageErrors) -> None:
    console, host = await console_room(browser, server.base, http, "Members' giveaway",
                                       page_errors.watch)
    tea = await host.product(stock=20, price=1500, title="Tea Set")
    room_url = f"{server.base}/r/{host.room_id}"
    viewer = await viewer_page(browser, room_url, page_errors.watch, "level 0 viewer", PHONE)
    await expect(viewer.locator("#fan-badge")).to_have_text("No badge yet")

    # ---------------------------------------------------------------- a giveaway for everyone
    # An empty "Minimum fan level" sends none, and the card says nothing of levels.
    await open_tool(console, "Giveaway")
    lottery_form = console.locator("#lottery-form")
    await lottery_form.get_by_label("Prize").fill("Tote bag")
    async with console.expect_request(lambda r: r.url.endswith("/lotteries")
                                      and r.method == "POST") as sent:
        await console.get_by_role("button", name="Open giveaway").click()
    body = (await sent.value).post_data_json
    assert "min_level" not in body, body
    open_card = viewer.locator(".promo.lottery", has_text="Tote bag")
    await expect(open_card).to_have_attribute("data-min-level", "0")
    await expect(open_card.locator(".level-req")).to_be_hidden()

    # ---------------------------------------------------------------- a giveaway for level 2+
    await lottery_form.get_by_label("Prize").fill("Signed vinyl")
    await lottery_form.get_by_label("Minimum fan level").fill("2")
    await console.get_by_role("button", name="Open giveaway").click()
    await expect(console.locator("#lottery-result")).to_have_text(re.compile(
        r"^✓ Giveaway “Signed vinyl” is open, fans at level 2\+ only \(seed hash "))
    item = console.locator("#lottery-list .item", has_text="Signed vinyl")
    await expect(item.locator(".item-meta").first).to_contain_text("level 2+ only")
    lottery_id = await item.get_attribute("data-lottery-id")
    assert lottery_id
    lottery = await host.call("GET", f"/lotteries/{lottery_id}", expect=200)
    assert lottery["min_level"] == 2, lottery

    card = viewer.locator(f'.promo.lottery[data-lottery-id="{lottery_id}"]')
    await expect(card.locator(".level-req")).to_have_text("Level 2+ only")
    await expect(card).to_have_attribute("data-min-level", "2")
    # The server decides: the button is there, the refusal names both levels.
    enter = card.get_by_role("button", name="Enter the giveaway for Signed vinyl (level 2+ only)")
    await expect(enter).to_be_enabled()
    await enter.tap()
    msg = card.locator(".promo-msg")
    await expect(msg).to_have_text(
        "Only fans at level 2 or higher can enter this giveaway. You're level 0: earn points "
        "by watching, chatting and inviting friends.")
    await expect(msg).to_be_visible()
    await expect(enter).to_be_enabled()  # not entered
    entrants = await host.call("GET", f"/lotteries/{lottery_id}/entrants", expect=200)
    assert entrants["entrants"] == [], entrants
    assert await viewer.evaluate("() => document.documentElement.scrollWidth") <= PHONE["width"]
    await shoot(viewer, "fans-phone-level-required")

    # ---------------------------------------------------------------- a group deal for level 1+
    await expect(console.locator(f'#gf-product option[value="{tea["product_id"]}"]')
                 ).to_have_count(1)
    await open_tool(console, "Group deal")
    group_form = console.locator("#group-form")
    await group_form.get_by_label("Group size").fill("2")
    await group_form.get_by_label("Units in the deal").fill("10")
    await group_form.get_by_label("Minimum fan level").fill("1")
    await console.get_by_role("button", name="Start group deal").click()
    await expect(console.locator("#group-result")).to_have_text(
        "✓ Group deal on “Tea Set” is open: groups of 2 at $12.00, 10 units, fans at level 1+ only")
    deal_item = console.locator("#deal-list .deal-item").first
    await expect(deal_item.locator(".gterms")).to_contain_text("level 1+ only")
    deal_id = await deal_item.get_attribute("data-deal-id")
    gcard = viewer.locator(f'.gcard[data-deal-id="{deal_id}"]')
    await expect(gcard.locator(".glevel")).to_have_text("Level 1+ only")
    await gcard.get_by_role("button", name=re.compile("^Start a group for Tea Set")).tap()
    await expect(gcard.locator(".gmsg")).to_have_text(
        "Only fans at level 1 or higher can join this group deal. You're level 0: earn points "
        "by watching, chatting and inviting friends.")
    await expect(gcard).to_have_attribute("data-mine", "none")
    deal = await host.call("GET", f"/group-deals/{deal_id}", expect=200)
    assert (deal["min_level"], deal["groups"]) == (1, []), deal

    assert await unnamed_controls(viewer) == []
    assert await unnamed_controls(console) == []
    _, failures = await contrast_failures(viewer)
    assert failures == [], failures
    assert page_errors.errors == []

"""The host cockpit (issue 18), in Chromium against a real server, Redis and store:

- at 1280x800 and at 1920x1080 the live controls (the stream preview, the live
  numbers, "On now" with each running sale's Stop, the chat log and the reply box)
  are all on the one screen: the document does not scroll, and opening any tool's
  tab (or the host key notice) moves none of them;
- the keyboard shortcuts select a product (J / K), pin it (P), open its flash sale
  (S, then Enter starts it) and announce (A), are said to screen readers, and do
  nothing while the host types in a field or while a dialog is open;
- the host's reply in the chat reaches a viewer marked as the host's, and a refusal
  puts the text back with the server's words;
- a sale and an auction are ended from On now, each after its confirmation;
- the stream preview follows the room's stream (`room_updated`) and plays it;
- accessibility of the new panels and of every tool: names, Tab reach with a
  visible ring, the tab list's arrow keys, text contrast."""

from __future__ import annotations

import base64
import re
from pathlib import Path
from typing import Any

import httpx

from tests.browser.conftest import PageErrors
from tests.browser.helpers import (
    DESKTOP,
    contrast_failures,
    keyed_console,
    live_page,
    shoot,
    skip_without_browser,
    tab_walk,
    unnamed_controls,
)
from tests.support import Host, LiveServer, create_room, join, server_with

skip_without_browser()

from playwright.async_api import Page, Route, expect  # noqa: E402

FULL_HD = {"width": 1920, "height": 1080}
ONE_AT_A_TIME = {"burst": 1, "messages_per_s": 0.01}
TOOLS = ["Catalogue", "Sale", "Coupons", "Giveaway", "Auction", "Group deal", "Poll",
         "Questions", "Fans", "Settings", "Report"]

# The live controls, each of which must be on screen whatever the workspace shows.
LIVE_CONTROLS = {
    "preview": "#preview-frame",
    "numbers": "section.stats",
    "viewers": "#st-viewers",
    "revenue": "#st-revenue",
    "on now": "#now-h",
    "open sale's Stop": '#sale-list li[data-state="open"] button',
    "scheduled sale's Stop": '#sale-list li[data-state="scheduled"] button',
    # (On now's list scrolls inside it: the running sales first, then the pins.)
    "first pinned product": "#now-pins li:first-child",
    "chat log": "#mod-chat",
    "reply box": "#reply-text",
    "reply button": "#reply-send",
    "announcement box": "#announce-text",
    "tools": "#tool-tabs",
    "end show": "#end-show",
}

# The live column's and the chat's panels, whose place no tool may change.
PLACE = ("top", "left", "width")
FIXED = ("preview", "numbers", "chat log", "reply box",
         "reply button", "announcement box", "tools", "end show")

# Where each live control is, and whether the document can scroll.
LAYOUT_JS = """(selectors) => {
  const out = { scrollHeight: document.scrollingElement.scrollHeight,
                scrollWidth: document.scrollingElement.scrollWidth,
                innerHeight, innerWidth, boxes: {} };
  for (const [name, sel] of Object.entries(selectors)) {
    const el = document.querySelector(sel);
    const r = el ? el.getBoundingClientRect() : null;
    out.boxes[name] = r ? { top: r.top, bottom: r.bottom, left: r.left, right: r.right,
                            width: r.width, height: r.height } : null;
  }
  return out;
}"""


async def busy_room(server: LiveServer, http: httpx.AsyncClient,
                    title: str = "Friday Night Tech Drop") -> tuple[Host, dict[str, Any]]:
    """A show in full swing: four products (two pinned), a sale open and one coming,
    a coupon drop, a giveaway, an auction, a poll and six chat messages."""
    host = await create_room(http, title)
    lamp = await host.product(stock=12, price=4900, title="Aurora Desk Lamp")
    buds = await host.product(stock=6, price=12900, title="Noise-cancelling Earbuds")
    mug = await host.product(stock=20, price=1800, title="Ceramic Mug")
    clock_p = await host.product(stock=3, price=3000, title="Mantel Clock")
    for p in (lamp, buds):
        await host.call("POST", "/pins", {"product_id": p["product_id"]}, expect=200)
    sale = await host.sale(lamp["product_id"], units=10, limit=2, price=2900)
    later = await host.sale(buds["product_id"], units=4, limit=1, price=9900, starts_in_s=300)
    await host.call("POST", "/coupons", {"title": "Welcome gift", "kind": "amount", "value": 500,
                                         "currency": "USD", "count": 50, "expires_in_s": 3600},
                    expect=201)
    await host.call("POST", "/lotteries", {"prize": "Signed vinyl", "winners": 1,
                                           "duration_s": 600}, expect=201)
    auction = await host.call("POST", "/auctions", {"product_id": mug["product_id"],
                                                    "start_price": 1000, "duration_s": 600},
                              expect=201)
    await host.call("POST", "/polls", {"question": "Which colour next?",
                                       "options": ["Red", "Blue"], "duration_s": 600},
                    expect=201)
    for i, text in enumerate(["Does the lamp come in white?", "How long does the battery last?",
                              "Love this show!!", "Is shipping free?", "Sold on the earbuds",
                              "What size is the mug?"]):
        viewer = await join(server, host.room_id, nickname=f"Viewer{i}")
        await viewer.next_event("snapshot")
        await viewer.send({"type": "chat", "text": text})
        await viewer.next_event("chat")
        await viewer.close()
    return host, {"lamp": lamp, "buds": buds, "mug": mug, "clock": clock_p, "sale": sale,
                  "later": later, "auction": auction}


async def open_cockpit(browser: Any, base: str, host: Host, watch: Any, title: str,
                       **context: Any) -> Page:
    console: Page = await keyed_console(browser, base, host, watch, title, **context)
    await expect(console.locator("#mod-chat .mod-msg")).not_to_have_count(0)
    return console


async def layout(page: Page) -> dict[str, Any]:
    result: dict[str, Any] = await page.evaluate(LAYOUT_JS, LIVE_CONTROLS)
    return result


def assert_one_screen(seen: dict[str, Any], where: str) -> None:
    """No document scroll either way, and every live control wholly on screen."""
    assert seen["scrollHeight"] <= seen["innerHeight"], (where, seen["scrollHeight"])
    assert seen["scrollWidth"] <= seen["innerWidth"], (where, seen["scrollWidth"])
    for name, box in seen["boxes"].items():
        assert box is not None, (where, name, "missing")
        assert box["width"] > 0 and box["height"] > 0, (where, name, box)
        assert box["top"] >= 0 and box["left"] >= 0, (where, name, box)
        assert box["bottom"] <= seen["innerHeight"] and box["right"] <= seen["innerWidth"], \
            (where, name, box)


async def check_every_tool(page: Page, where: str) -> None:
    """Each tool's tab shown in turn: the live controls stay exactly where they were."""
    before = await layout(page)
    assert_one_screen(before, where)
    for name in TOOLS:
        tab = page.get_by_role("tab", name=re.compile(f"^{name}"))
        await tab.click()
        await expect(tab).to_have_attribute("aria-selected", "true")
        panel = page.locator(f"#{await tab.get_attribute('aria-controls')}")
        await expect(panel).to_be_visible()
        seen = await layout(page)
        assert_one_screen(seen, f"{where}, {name} tab")
        # The panels stay where they were. (Their heights are the live data's: a number
        # or a clock that takes another line, "ends in 10:00" being wider than "9:59".)
        for control in FIXED:
            now, then = seen["boxes"][control], before["boxes"][control]
            assert [now[k] for k in PLACE] == [then[k] for k in PLACE], (where, name, control)
    await page.get_by_role("tab", name="Catalogue").click()


async def test_the_cockpit_fits_one_screen(server: LiveServer, http: httpx.AsyncClient,
                                           browser: Any, page_errors: PageErrors) -> None:
    host, room = await busy_room(server, http)
    title = "Friday Night Tech Drop"
    console = await open_cockpit(browser, server.base, host, page_errors.watch, title)
    await expect(console.locator("#product-rows tr")).to_have_count(4)
    await expect(console.locator("#sale-list li")).to_have_count(2)
    await expect(console.locator("#now-pins li")).to_have_count(2)
    await expect(console.locator("#mod-chat .mod-msg")).to_have_count(6)
    # Everything running is in On now, each with its end or stop button.
    await expect(console.locator("#auction-list > li")).to_have_count(1)
    await expect(console.locator("#coupon-list > li")).to_have_count(1)
    await expect(console.locator("#lottery-list > li")).to_have_count(1)
    await expect(console.locator("#poll-list > li")).to_have_count(1)
    stop = console.get_by_role("button", name="Stop the sale of Aurora Desk Lamp")
    await expect(stop).to_be_visible()
    await expect(console.locator("#st-revenue")).to_have_text("$0.00")
    # A viewer's question: counted on the Questions tab, whichever tool is open.
    asker = await join(server, host.room_id, nickname="Asker")
    await asker.next_event("snapshot")
    asked = await asker.request("ask", text="Is the lamp dimmable?")
    assert asked["type"] == "asked", asked
    await expect(console.get_by_role("tab", name="Questions 1")).to_be_visible()
    await asker.close()
    await shoot(console, "cockpit-1280", doc="cockpit.png")
    await check_every_tool(console, "1280x800")

    # The host key notice (after creating a room) takes the workspace's top, not more.
    await console.get_by_role("button", name="Host key").click()
    await expect(console.locator("#key-notice")).to_be_visible()
    assert_one_screen(await layout(console), "1280x800 with the host key notice")
    await console.get_by_role("button", name="Dismiss the host key notice").click()
    await expect(console.locator("#key-notice")).to_be_hidden()

    # The chat log scrolls inside its panel, newest at the bottom, as more arrives.
    for i in range(20):
        viewer = await join(server, host.room_id, nickname=f"Chatty{i}")
        await viewer.next_event("snapshot")
        await viewer.send({"type": "chat", "text": f"Message number {i}"})
        await viewer.next_event("chat")
        await viewer.close()
    last = console.locator("#mod-chat .mod-msg", has_text="Message number 19")
    await expect(last).to_be_in_viewport()
    assert_one_screen(await layout(console), "1280x800 with a long chat")
    await console.context.close()

    # A big screen: the same one screen, with room to spare.
    big = await open_cockpit(browser, server.base, host, page_errors.watch, title,
                             viewport=FULL_HD)
    await expect(big.locator("#sale-list li")).to_have_count(2)
    await shoot(big, "cockpit-1920", doc="cockpit-1920.png")
    await check_every_tool(big, "1920x1080")
    await big.context.close()
    assert room["sale"]["state"] == "open"
    assert page_errors.errors == []


async def test_below_1280_the_cockpit_stacks(server: LiveServer, http: httpx.AsyncClient,
                                             browser: Any, page_errors: PageErrors) -> None:
    host, _ = await busy_room(server, http, "Stacked show")
    console = await open_cockpit(browser, server.base, host, page_errors.watch, "Stacked show",
                                 viewport={"width": 1024, "height": 768})
    seen = await layout(console)
    # The page scrolls (everything is still there, one column set under the other);
    # nothing sticks out sideways.
    assert seen["scrollWidth"] <= seen["innerWidth"], seen
    boxes = seen["boxes"]
    assert boxes["preview"]["bottom"] <= boxes["on now"]["top"], boxes
    assert boxes["chat log"]["left"] > boxes["preview"]["right"], boxes
    assert boxes["tools"]["top"] > boxes["reply box"]["bottom"], boxes
    await console.context.close()
    assert page_errors.errors == []


async def test_shortcuts_select_pin_sell_and_announce(server: LiveServer,
                                                      http: httpx.AsyncClient, browser: Any,
                                                      page_errors: PageErrors) -> None:
    host = await create_room(http, "Shortcut show")
    lamp = await host.product(stock=12, price=4900, title="Aurora Desk Lamp")
    mug = await host.product(stock=20, price=1800, title="Ceramic Mug")
    await host.product(stock=3, price=3000, title="Mantel Clock")
    viewer = await join(server, host.room_id, nickname="Ada")
    await viewer.next_event("snapshot")
    console = await keyed_console(browser, server.base, host, page_errors.watch, "Shortcut show")
    await expect(console.locator("#product-rows tr")).to_have_count(3)
    said = console.locator("#kbd-status")
    selected = console.locator("#now-selected")

    async def pins() -> list[str]:
        return list((await host.call("GET", "", expect=200))["pins"])

    # Nothing pinned: the first product is selected. J moves down, K back up.
    await expect(selected).to_have_text("Selected: Aurora Desk Lamp")
    await console.locator("body").click(position={"x": 640, "y": 20})  # no field focused
    await console.keyboard.press("j")
    await expect(selected).to_have_text("Selected: Ceramic Mug")
    await expect(said).to_have_text("Selected Ceramic Mug, 2 of 3")
    row = console.locator(f'#product-rows tr[data-product-id="{mug["product_id"]}"]')
    await expect(row).to_have_class(re.compile(r"\bselected\b"))
    await console.keyboard.press("j")
    await console.keyboard.press("k")
    await expect(selected).to_have_text("Selected: Ceramic Mug")

    # P pins the selected product (and says so); a second P unpins it.
    await console.keyboard.press("p")
    await expect(console.locator("#cat-result")).to_have_text("✓ Pinned “Ceramic Mug”")
    await expect(console.locator("#now-pins li")).to_have_count(1)
    assert await pins() == [mug["product_id"]]
    await console.keyboard.press("p")
    await expect(console.locator("#cat-result")).to_have_text("✓ Unpinned “Ceramic Mug”")
    await expect(console.locator("#now-pins li")).to_have_count(0)
    assert await pins() == []
    # With another tool showing, the outcome is a toast (a live region) as well.
    await console.get_by_role("tab", name="Poll").click()
    await console.locator("body").click(position={"x": 640, "y": 20})
    await console.keyboard.press("p")
    await expect(console.locator("#toasts .toast", has_text="Pinned “Ceramic Mug”")).to_be_visible()
    assert await pins() == [mug["product_id"]]

    # Typing in a field: the letters are the host's text, not shortcuts.
    await console.get_by_role("tab", name="Catalogue").click()
    title = console.locator("#pf-title")
    await title.click()
    await console.keyboard.type("jkps?a")
    await expect(title).to_have_value("jkps?a")
    await expect(selected).to_have_text("Selected: Ceramic Mug")
    await expect(console.get_by_role("tab", name="Catalogue")).to_have_attribute(
        "aria-selected", "true")
    await expect(console.locator("#keys-dlg")).to_be_hidden()
    assert await pins() == [mug["product_id"]]
    await title.fill("")
    # Escape leaves the field; then the keys work again. Not while a dialog is open,
    # though: the shortcuts' own list here.
    await console.keyboard.press("Escape")
    await expect(title).not_to_be_focused()
    await console.keyboard.press("?")
    keys = console.get_by_role("dialog", name="Keyboard shortcuts")
    await expect(keys).to_be_visible()
    await expect(keys).to_contain_text("Pin the selected product")
    await console.keyboard.press("p")
    await console.keyboard.press("Escape")
    await expect(keys).to_be_hidden()
    assert await pins() == [mug["product_id"]]
    # Modified keys are the browser's: Alt+P, Shift+P do nothing here.
    await console.keyboard.press("Alt+p")
    await console.keyboard.press("Shift+P")
    await expect(console.locator("#now-pins li")).to_have_count(1)
    assert await pins() == [mug["product_id"]]

    # S: the sale form of the selected product, its price focused; Enter starts it.
    await console.keyboard.press("k")
    await expect(selected).to_have_text("Selected: Aurora Desk Lamp")
    await console.keyboard.press("s")
    await expect(console.get_by_role("tab", name="Sale")).to_have_attribute("aria-selected", "true")
    await expect(console.locator("#sf-product")).to_have_value(lamp["product_id"])
    await expect(console.locator("#sf-price")).to_be_focused()
    await expect(said).to_have_text(re.compile("^Flash sale of Aurora Desk Lamp: "))
    await console.keyboard.type("29.00")
    await console.keyboard.press("Enter")
    await expect(console.locator("#sale-result")).to_have_text(
        re.compile("^✓ Sale of “Aurora Desk Lamp” is live"))
    opened = await viewer.next_event("sale_open")
    assert (opened["sale"]["product_id"], opened["sale"]["price"]) == (lamp["product_id"], 2900)
    await expect(console.locator("#sale-list li")).to_have_count(1)

    # A: the announcement box; Enter announces to every viewer.
    await console.keyboard.press("Escape")  # out of the price field
    await console.keyboard.press("a")
    await expect(console.locator("#announce-text")).to_be_focused()
    await expect(said).to_have_text(re.compile("^Announcement to every viewer"))
    await console.keyboard.type("Lamp deal is live!")
    await console.keyboard.press("Enter")
    heard = await viewer.next_event("announcement")
    assert heard["text"] == "Lamp deal is live!"
    await expect(console.locator("#announce-result")).to_have_text("✓ Announced to every viewer")
    # R: the reply box.
    await console.keyboard.press("Escape")
    await console.keyboard.press("r")
    await expect(console.locator("#reply-text")).to_be_focused()
    await viewer.close()
    await console.context.close()
    assert page_errors.errors == []


async def test_the_host_replies_in_the_chat(redis_url: str, data_dir: Path, browser: Any,
                                            page_errors: PageErrors) -> None:
    # One chat message per connection at once (burst 1), slowly refilled: the second
    # reply in a row is refused, as a host typing too fast would be.
    async with server_with(redis_url, data_dir, chat=ONE_AT_A_TIME) as (server, http):
        host = await create_room(http, "Reply show")
        viewer = await join(server, host.room_id, nickname="Mia")
        await viewer.next_event("snapshot")
        await viewer.send({"type": "chat", "text": "Does it come in white?"})
        await viewer.next_event("chat")
        console = await keyed_console(browser, server.base, host, page_errors.watch,
                                      "Reply show")
        await expect(console.locator("#mod-chat .mod-msg")).to_have_count(1)

        box = console.get_by_label("Reply in chat")
        await box.fill("Yes, white and black!")
        await console.get_by_role("button", name="Send", exact=True).click()
        said = await viewer.next_event("chat", where=lambda f: f["text"] == "Yes, white and black!")
        # Marked as the host's by the server, for every viewer.
        assert said["host"] is True, said
        await expect(box).to_have_value("")
        line = console.locator("#mod-chat .mod-msg", has_text="Yes, white and black!")
        await expect(line.locator(".host-badge")).to_have_text("Host")
        # The history new viewers get has it too, still the host's.
        history = (await host.call("GET", "", expect=200))["chat"]
        assert [(m["text"], m.get("host")) for m in history][-1] == \
            ("Yes, white and black!", True)

        # A refusal puts the text back in the box, with the server's words.
        await box.fill("And in red next week")
        await box.press("Enter")
        result = console.locator("#reply-result")
        await expect(result).to_have_attribute("data-outcome", "error")
        await expect(result).to_have_text(re.compile(r"^✗ .+\(rate_limited\)$"))
        await expect(box).to_have_value("And in red next week")
        assert not [f for f in viewer.frames if f.get("text") == "And in red next week"]
        await viewer.close()
        await console.context.close()
    assert page_errors.errors == []


async def test_ending_things_from_on_now_asks_first(server: LiveServer,
                                                    http: httpx.AsyncClient, browser: Any,
                                                    page_errors: PageErrors) -> None:
    host, room = await busy_room(server, http, "Ending things show")
    console = await open_cockpit(browser, server.base, host, page_errors.watch,
                                 "Ending things show")
    dialog = console.locator("#confirm-dlg")
    # The Auction tool is not showing: its auction is ended from On now all the same.
    await console.get_by_role("tab", name="Coupons").click()

    async def sale_state(product: dict[str, Any]) -> str:
        card = await host.call("GET", f"/products/{product['product_id']}", expect=200)
        return str(card["sale"]["state"])

    stop = console.get_by_role("button", name="Stop the sale of Aurora Desk Lamp")
    await stop.click()
    await expect(console.get_by_role("alertdialog", name="Stop the sale of “Aurora Desk Lamp”?")
                 ).to_be_visible()
    await expect(console.locator("#confirm-cancel")).to_be_focused()
    await console.keyboard.press("Escape")
    await expect(dialog).to_be_hidden()
    await expect(stop).to_be_focused()
    assert await sale_state(room["lamp"]) == "open"
    await stop.click()
    await dialog.get_by_role("button", name="Stop sale").click()
    await expect(console.locator("#now-result")).to_have_text(
        "✓ Stopped the sale of “Aurora Desk Lamp”")
    assert await sale_state(room["lamp"]) == "stopped"
    await expect(console.locator("#sale-list li")).to_have_count(1)
    # Its button left with it: keyboard focus is still in On now.
    focused = await console.evaluate("() => !!document.activeElement.closest('#onnow')")
    assert focused

    # The scheduled sale, from the keyboard: Tab to it, Enter, confirm.
    later = console.get_by_role("button", name="Stop the sale of Noise-cancelling Earbuds")
    await later.focus()
    await console.keyboard.press("Enter")
    await expect(console.locator("#confirm-cancel")).to_be_focused()
    await console.keyboard.press("Tab")
    await expect(console.locator("#confirm-ok")).to_be_focused()
    await console.keyboard.press("Enter")
    await expect(console.locator("#sale-list li")).to_have_count(0)
    assert await sale_state(room["buds"]) == "stopped"

    # The auction: End now, confirmed.
    end_now = console.get_by_role("button", name="End the auction of Ceramic Mug now")
    await end_now.click()
    await expect(dialog).to_contain_text("Bidding stops at once")
    await dialog.get_by_role("button", name="End now").click()
    await expect(console.locator("#now-result")).to_have_text(
        "✓ Ended the auction of “Ceramic Mug”: no winner")
    auction = await host.call("GET", f"/auctions/{room['auction']['auction_id']}", expect=200)
    assert auction["state"] == "ended"
    # The giveaway: Draw now, confirmed.
    await console.get_by_role("button", name="Draw Signed vinyl now").click()
    await dialog.get_by_role("button", name="Draw now").click()
    await expect(console.locator("#now-result")).to_have_text(re.compile("^✓ Drawn: 0 winner"))

    # The coupon drop: End now, confirmed; a viewer's page takes it off at once and
    # the server refuses a claim of it.
    viewer = await live_page(browser, f"{server.base}/r/{host.room_id}", page_errors.watch,
                             "viewer")
    offer = viewer.locator("#coupons > *", has_text="Welcome gift")
    await expect(offer).to_have_count(1)
    end_drop = console.get_by_role("button", name="End the coupon drop Welcome gift now")
    await end_drop.click()
    await expect(dialog).to_contain_text("Nobody can claim one from now on")
    await console.keyboard.press("Escape")
    await expect(end_drop).to_be_focused()
    await end_drop.click()
    await dialog.get_by_role("button", name="End drop").click()
    await expect(console.locator("#now-result")).to_have_text(
        "✓ Ended the coupon drop “Welcome gift”")
    await expect(console.locator("#coupon-list > li .badge")).to_have_text("expired")
    await expect(end_drop).to_be_hidden()
    await expect(viewer.locator("#toasts .toast",
                                has_text="The host ended the coupon drop “Welcome gift”.")
                 ).to_have_count(1)
    await expect(offer).to_have_count(0)
    coupon_id = await console.locator("#coupon-list > li").get_attribute("data-coupon-id")
    late = await join(server, host.room_id)
    refused = await late.request("claim_coupon", coupon_id=coupon_id)
    assert refused.get("code") == "coupon_expired", refused
    await late.close()
    await viewer.context.close()
    await console.context.close()
    assert page_errors.errors == []


async def recorded_webm(browser: Any) -> bytes:
    """A two-second WebM made in the browser (a canvas through MediaRecorder): a
    stream the preview can really play, with no media file in the repository."""
    ctx = await browser.new_context()
    page = await ctx.new_page()
    data: str = await page.evaluate("""async () => {
      const canvas = Object.assign(document.createElement('canvas'), { width: 160, height: 90 });
      const g = canvas.getContext('2d');
      let frame = 0;
      const draw = () => {
        g.fillStyle = `hsl(${(frame++ * 9) % 360} 70% 50%)`;
        g.fillRect(0, 0, 160, 90);
      };
      draw();
      const timer = setInterval(draw, 33);
      const recorder = new MediaRecorder(canvas.captureStream(30),
                                         { mimeType: 'video/webm;codecs=vp8' });
      const chunks = [];
      recorder.ondataavailable = (e) => chunks.push(e.data);
      const done = new Promise((resolve) => { recorder.onstop = resolve; });
      recorder.start();
      await new Promise((resolve) => setTimeout(resolve, 2000));  // the video's length
      recorder.stop();
      await done;
      clearInterval(timer);
      const bytes = new Uint8Array(await new Blob(chunks).arrayBuffer());
      let text = '';
      for (const b of bytes) text += String.fromCharCode(b);
      return btoa(text);
    }""")
    await ctx.close()
    return base64.b64decode(data)


async def test_the_preview_follows_the_rooms_stream(server: LiveServer, http: httpx.AsyncClient,
                                                    browser: Any,
                                                    page_errors: PageErrors) -> None:
    host = await create_room(http, "Preview show")
    video = await recorded_webm(browser)
    stream = "https://media.example.test/live/show.webm"
    console = await keyed_console(browser, server.base, host, page_errors.watch, "Preview show")

    async def serve(route: Route) -> None:
        await route.fulfill(status=200, body=video, content_type="video/webm")

    await console.context.route(stream, serve)
    frame = console.locator("#preview-frame")
    await expect(frame).to_have_attribute("data-state", "idle")
    await expect(console.locator("#preview-idle")).to_have_text(
        "No stream URL yet. Add one in Settings.")
    await expect(console.locator("#preview-state")).to_have_text("No stream")
    await expect(console.locator("#preview-video")).to_be_hidden()

    # Another console (here: the API) sets the stream: room_updated, and it plays.
    await host.call("PATCH", "", {"stream_url": stream}, expect=200)
    player = console.locator("#preview-video")
    await expect(player).to_have_attribute("src", stream)
    await expect(player).to_have_attribute("data-player", "file")
    await expect(frame).to_have_attribute("data-state", re.compile("^(playing|ended)$"))
    assert await player.evaluate("(v) => v.muted && !v.controls")
    await expect(frame).to_have_attribute("data-state", "ended")
    await expect(console.locator("#preview-state")).to_have_text("Stopped")

    # A stream that cannot be played says so (the host changes it in Settings).
    await console.get_by_role("tab", name="Settings").click()
    broken = f"{server.base}/static/no-such-stream.webm"
    await console.get_by_label("Video stream URL").fill(broken)
    await console.get_by_role("button", name="Save show details").click()
    await expect(player).to_have_attribute("src", broken)
    await expect(frame).to_have_attribute("data-state", "error")
    await expect(console.locator("#preview-idle")).to_have_text(
        "The video stream could not be played.")
    await expect(console.locator("#preview-state")).to_have_text("Cannot play")
    # No stream any more: idle, nothing fetched.
    await console.get_by_label("Video stream URL").fill("")
    await console.get_by_role("button", name="Save show details").click()
    await expect(frame).to_have_attribute("data-state", "idle")
    assert await player.get_attribute("src") is None
    await console.context.close()
    assert page_errors.errors == []


async def test_cockpit_accessibility(server: LiveServer, http: httpx.AsyncClient, browser: Any,
                                     page_errors: PageErrors) -> None:
    host, _ = await busy_room(server, http, "Accessible cockpit")
    console = await open_cockpit(browser, server.base, host, page_errors.watch,
                                 "Accessible cockpit")

    # The tab list: one Tab stop (the selected tab); arrows, Home and End move.
    catalogue = console.get_by_role("tab", name="Catalogue")
    await catalogue.focus()
    await console.keyboard.press("ArrowRight")
    sale = console.get_by_role("tab", name="Sale")
    await expect(sale).to_be_focused()
    await expect(sale).to_have_attribute("aria-selected", "true")
    await expect(console.get_by_role("tabpanel", name="Sale")).to_be_visible()
    await console.keyboard.press("End")
    await expect(console.get_by_role("tab", name="Report")).to_be_focused()
    await console.keyboard.press("ArrowRight")
    await expect(catalogue).to_be_focused()
    await console.keyboard.press("ArrowLeft")
    await expect(console.get_by_role("tab", name="Report")).to_be_focused()
    await console.keyboard.press("Home")
    await expect(catalogue).to_be_focused()
    tab_stops = await console.evaluate(
        "() => [...document.querySelectorAll('[role=tab]')].filter((t) => t.tabIndex >= 0).length")
    assert tab_stops == 1

    # Every tool: names, Tab reach with a visible ring, contrast; the live column and
    # the chat are checked with each.
    for name in TOOLS:
        await console.get_by_role("tab", name=re.compile(f"^{name}")).click()
        missing = await unnamed_controls(console)
        assert missing == [], (name, missing)
        controls, stops = await tab_walk(console, max_steps=260)
        reached = {s["index"] for s in stops if s["index"] is not None}
        unreached = [c for c in controls if c["index"] not in reached]
        assert unreached == [], (name, unreached)
        assert [s for s in stops if not s["focusVisible"]] == [], name
        checked, failures = await contrast_failures(console)
        assert checked >= 20 and failures == [], (name, failures)

    # The new regions are named landmarks a screen reader can jump to.
    for region in ("Stream preview", "Live numbers", "On now", "Chat", "Tools"):
        await expect(console.get_by_role("region", name=region, exact=True)).to_be_visible()
    await expect(console.get_by_role("log", name="Chat messages")).to_be_visible()
    # The shortcuts' list, and the confirmation asked from On now.
    await console.get_by_role("button", name=re.compile("^Shortcuts")).click()
    keys = console.get_by_role("dialog", name="Keyboard shortcuts")
    await expect(keys).to_be_visible()
    await expect(console.get_by_role("button", name="Close the keyboard shortcuts")).to_be_focused()
    assert await unnamed_controls(console) == []
    _, failures = await contrast_failures(console)
    assert failures == [], failures
    await console.keyboard.press("Escape")
    await expect(console.get_by_role("button", name=re.compile("^Shortcuts"))).to_be_focused()
    await console.get_by_role("button", name="Stop the sale of Aurora Desk Lamp").click()
    _, failures = await contrast_failures(console)
    assert failures == [], failures
    await console.keyboard.press("Escape")
    await console.context.close()
    assert page_errors.errors == []


async def test_the_shortcuts_help_is_on_the_page(server: LiveServer, http: httpx.AsyncClient,
                                                 browser: Any,
                                                 page_errors: PageErrors) -> None:
    host = await create_room(http, "Help show")
    console = await keyed_console(browser, server.base, host, page_errors.watch, "Help show",
                                  viewport=DESKTOP)
    button = console.get_by_role("button", name=re.compile("^Shortcuts"))
    await expect(button).to_be_visible()
    await expect(button).to_have_attribute("aria-keyshortcuts", "?")
    await button.click()
    keys = console.get_by_role("dialog", name="Keyboard shortcuts")
    for words in ("Select the next / previous product", "Pin the selected product",
                  "Flash sale of the selected product", "announcement", "Reply in chat",
                  "except while you type in a field"):
        await expect(keys).to_contain_text(words)
    await console.get_by_role("button", name="Close the keyboard shortcuts").click()
    await expect(keys).to_be_hidden()
    await expect(button).to_be_focused()
    await console.context.close()
    assert page_errors.errors == []

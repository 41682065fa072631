"""The viewer stage, phone first (360 x 740, 390 x 844) and on a desktop (1280 x 800),
in Chromium against a real server, Redis and SQLite.

- The moment a flash sale opens, its card rises over the video, whatever the
  product's place in the shop, with the countdown from the server's clock and a big
  buy button that takes a hold; it goes when the sale sells out or ends, or when the
  viewer hides it.
- On a phone the chat is over the lower part of the video, readable (contrast), and
  new messages appear there; on a desktop it is the right column.
- The cart button and its hold timer stay in view, above the bottom edge, wherever
  the page is scrolled.
- The featured product's compact card over the video opens its sheet, and the shop
  button the sheet of every pinned product; Escape closes a sheet and gives the
  focus back to what opened it. On a phone the stage is the whole screen under the
  top bar; "More" brings the lane (everything else) up, and Escape takes it back.
- On a desktop, products left, video centre, chat right, side by side, with no
  horizontal scroll.
- Every new panel and sheet: controls named, reached with the keyboard, text at
  4.5:1 at least."""

from __future__ import annotations

import re
from typing import Any

import httpx
import pytest

from tests.browser.conftest import PageErrors
from tests.browser.helpers import (
    DESKTOP,
    PHONE,
    SETTLED_JS,
    contrast_failures,
    shoot,
    skip_without_browser,
    tab_walk,
    unnamed_controls,
)
from tests.support import Host, LiveServer, create_room, join

skip_without_browser()

from playwright.async_api import Locator, Page, expect  # noqa: E402

PHONE_SMALL = {"width": 360, "height": 740}
VIEWPORTS = pytest.mark.parametrize("viewport", [PHONE_SMALL, PHONE, DESKTOP],
                                    ids=["360", "390", "1280"])

Box = dict[str, float]


# ---------------------------------------------------------------------- helpers

async def open_viewer(browser: Any, url: str, page_errors: PageErrors, name: str,
                      viewport: dict[str, int]) -> Page:
    """A viewer page in a context of its own (a phone's has touch), once live."""
    ctx = await browser.new_context(viewport=viewport, has_touch=viewport is not DESKTOP)
    page: Page = page_errors.watch(await ctx.new_page(), name)
    await page.goto(url)
    await expect(page.locator("#conn")).to_have_attribute("data-state", "live")
    return page


async def box_of(locator: Locator) -> Box:
    box = await locator.bounding_box()
    assert box is not None, f"{locator} has no box"
    return {"x": box["x"], "y": box["y"], "width": box["width"], "height": box["height"]}


def intersects(a: Box, b: Box) -> bool:
    return (a["x"] < b["x"] + b["width"] and b["x"] < a["x"] + a["width"]
            and a["y"] < b["y"] + b["height"] and b["y"] < a["y"] + a["height"])


def inside(inner: Box, outer: Box) -> bool:
    return (outer["x"] <= inner["x"] + 0.5
            and inner["x"] + inner["width"] <= outer["x"] + outer["width"] + 0.5
            and outer["y"] <= inner["y"] + 0.5
            and inner["y"] + inner["height"] <= outer["y"] + outer["height"] + 0.5)


def seconds(text: str) -> int:
    """'m:ss' (or 'h:mm:ss') as seconds."""
    parts = [int(p) for p in text.strip().split(":")]
    total = 0
    for p in parts:
        total = total * 60 + p
    return total


async def in_view(page: Page, locator: Locator) -> None:
    """Wholly inside the viewport (not cut by its bottom edge)."""
    box = await box_of(locator)
    size = page.viewport_size
    assert size is not None
    assert box["y"] >= 0 and box["x"] >= 0, box
    assert box["y"] + box["height"] <= size["height"] + 0.5, (box, size)
    assert box["x"] + box["width"] <= size["width"] + 0.5, (box, size)


async def shop_of_three(host: Host, *, sale_units: int = 5) -> dict[str, Any]:
    """Three pinned products; the flash sale is on the last pinned (third in the shop)."""
    mug = await host.product(stock=20, price=1800, title="Ceramic Mug")
    tote = await host.product(stock=15, price=2400, title="Linen Tote",
                              description="Heavy linen, inner pocket.")
    lamp = await host.product(stock=10, price=4900, title="Aurora Desk Lamp",
                              description="Warm dimmable light with a USB-C cable.")
    for p in (mug, tote, lamp):
        await host.call("POST", "/pins", {"product_id": p["product_id"]}, expect=200)
    sale = await host.sale(lamp["product_id"], units=sale_units, limit=2, price=2900,
                           duration_s=300)
    return {"mug": mug, "tote": tote, "lamp": lamp, "sale": sale}


# ---------------------------------------------------------------------- the sale's card

@VIEWPORTS
async def test_the_sale_card_rises_over_the_video_and_buys(
        server: LiveServer, http: httpx.AsyncClient, browser: Any, page_errors: PageErrors,
        viewport: dict[str, int]) -> None:
    host = await create_room(http, "Stage show")
    shop = await shop_of_three(host)
    lamp_id = shop["lamp"]["product_id"]
    width = viewport["width"]
    page = await open_viewer(browser, f"{server.base}/r/{host.room_id}", page_errors,
                             f"stage {width}", viewport)

    # The sale's product is third in the shop, not first...
    cards = page.locator("#cards .pcard")
    await expect(cards).to_have_count(3)
    assert await cards.nth(0).get_attribute("data-product-id") != lamp_id
    assert await cards.nth(2).get_attribute("data-product-id") == lamp_id
    # ...and its card rises over the video, in view, as the page opens.
    rise = page.locator("#sale-rise")
    await expect(rise).to_be_visible()
    await expect(rise).to_have_attribute("data-product-id", lamp_id)
    await expect(page.locator("#rise-title")).to_have_text("Aurora Desk Lamp")
    await page.evaluate(SETTLED_JS)
    assert await page.evaluate("() => window.scrollY") == 0
    video = await box_of(page.locator(".video-box"))
    card = await box_of(rise)
    assert intersects(card, video), (card, video)
    assert inside(card, video), (card, video)
    await expect(rise).to_be_in_viewport(ratio=1)
    await in_view(page, rise)
    await expect(page.locator("#rise-price")).to_have_text("$29.00")
    await expect(page.locator("#rise-stock")).to_have_text("5 left of 5 on sale")

    # The countdown is the server's ends_at counted on the page's server clock.
    ends_at = shop["sale"]["ends_at"]
    assert int(await page.locator("#rise-time").get_attribute("data-ends-at") or 0) == ends_at
    shown, left_ms = await page.evaluate(
        "() => { const t = document.querySelector('#rise-time');"
        " return [t.textContent, Number(t.dataset.endsAt) - window.livesell.serverNow()]; }")
    assert abs(seconds(shown) - left_ms / 1000) <= 1.5, (shown, left_ms)
    assert 280 <= seconds(shown) <= 300, shown
    docs = {390: "viewer-sale-phone.png", 1280: "viewer-sale-desktop.png"}
    await shoot(page, f"stage-sale-{width}", doc=docs.get(width))

    # The big buy button takes a hold: the checkout opens, the server counts it held.
    buy = page.locator("#rise-buy")
    await expect(buy).to_have_text("Buy now · $29.00")
    box = await box_of(buy)
    assert box["height"] >= 48, box
    await buy.click()
    await expect(page.locator("#checkout")).to_be_visible()
    await expect(page.locator("#hold-timer")).to_contain_text("Held for you for")
    product = (await http.get(f"/api/rooms/{host.room_id}/products/{lamp_id}")).json()
    assert product["sale"]["held"] == 1, product
    await page.locator("#checkout-close").click()
    await expect(page.locator("#checkout")).to_be_hidden()

    # The cart button and its timer: in view, above the bottom edge, wherever the page
    # is scrolled.
    cart = page.locator("#cartbar")
    await expect(cart).to_be_visible()
    await expect(page.locator("#cartbar-timer")).to_have_text(re.compile(r"^[23]:\d\d$"))
    for y in ("0", "document.documentElement.scrollHeight"):
        await page.evaluate(f"() => window.scrollTo(0, {y})")
        await expect(cart).to_be_in_viewport(ratio=1)
        await in_view(page, page.locator("#cartbar-open"))
        await in_view(page, page.locator("#cartbar-timer"))
    await page.evaluate("() => window.scrollTo(0, 0)")
    # On a phone the stage makes room: the rising card and the chat's input are above it.
    bar = await box_of(cart)
    assert not intersects(await box_of(rise), bar)
    if width < 1000:
        assert not intersects(await box_of(page.locator("#chat-input")), bar)
    await shoot(page, f"stage-hold-{width}")

    # Hidden by the viewer, the card goes; the product's card in the shop stays.
    await page.locator("#rise-hide").click()
    await expect(rise).to_be_hidden()
    await expect(cards.nth(2).locator(".buy-btn")).to_be_attached()
    await page.context.close()
    assert page_errors.errors == []

    # Sold out: the card goes by itself (the server's counters say no unit is left).
    others = [await join(server, host.room_id, nickname=f"Buyer{i}") for i in range(2)]
    try:
        for v in others:
            await v.next_event("snapshot")
        again = await open_viewer(browser, f"{server.base}/r/{host.room_id}", page_errors,
                                  f"stage {width} again", viewport)
        await expect(again.locator("#sale-rise")).to_be_visible()
        for v in others:
            held = await v.request("buy", product_id=lamp_id, quantity=2)
            assert held["type"] == "hold", held
        await expect(again.locator("#sale-rise")).to_be_hidden()
        await expect(again.locator(f'.pcard[data-product-id="{lamp_id}"]')).to_have_attribute(
            "data-left", "0")
        await again.context.close()
    finally:
        for v in others:
            await v.close()
    assert page_errors.errors == []


async def test_the_sale_card_goes_when_the_sale_ends(
        server: LiveServer, http: httpx.AsyncClient, browser: Any,
        page_errors: PageErrors) -> None:
    host = await create_room(http, "Stopped sale show")
    shop = await shop_of_three(host)
    page = await open_viewer(browser, f"{server.base}/r/{host.room_id}", page_errors,
                             "stopped", PHONE_SMALL)
    rise = page.locator("#sale-rise")
    await expect(rise).to_be_visible()
    await expect(page.locator("#spot-card")).to_be_hidden()
    await host.call("POST", f"/sales/{shop['sale']['sale_id']}/stop", expect=200)
    await expect(rise).to_be_hidden()
    # The compact card is back: the lamp sells at its list price again (its listing).
    await expect(page.locator("#spot-card")).to_be_visible()
    await expect(page.locator("#spot-card")).to_have_attribute("data-product-id",
                                                               shop["lamp"]["product_id"])
    await expect(page.locator("#spot-state")).to_have_text("Buy it now")
    await expect(page.locator("#spot-price")).to_have_text("$49.00")
    await page.context.close()
    assert page_errors.errors == []


# ---------------------------------------------------------------------- the chat

@VIEWPORTS
async def test_the_chat_is_over_the_video_on_a_phone_and_beside_it_on_a_desktop(
        server: LiveServer, http: httpx.AsyncClient, browser: Any, page_errors: PageErrors,
        viewport: dict[str, int]) -> None:
    host = await create_room(http, "Chat stage show")
    mug = await host.product(stock=20, price=1800, title="Ceramic Mug")
    await host.call("POST", "/pins", {"product_id": mug["product_id"]}, expect=200)
    width = viewport["width"]
    phone = width < 1000
    page = await open_viewer(browser, f"{server.base}/r/{host.room_id}", page_errors,
                             f"chat {width}", viewport)
    chatters = [await join(server, host.room_id, nickname=n) for n in ("Mia", "Noah", "Ivy")]
    try:
        for c in chatters:
            await c.next_event("snapshot")
        await chatters[0].send({"type": "chat", "text": "Does the mug come in blue?"})
        msg = page.locator("#chat-list .msg", has_text="come in blue")
        await expect(msg).to_be_visible()
        await expect(msg.locator(".nick")).to_have_text("Mia")
        video = await box_of(page.locator(".video-box"))
        line = await box_of(msg)
        field = await box_of(page.locator("#chat-input"))
        if phone:
            # Over the video, on its lower part; the input at its foot.
            assert await page.locator(".video-box #chat").count() == 1
            assert inside(line, video) and inside(field, video), (line, field, video)
            assert line["y"] >= video["y"] + video["height"] / 2, (line, video)
            assert field["y"] + field["height"] >= video["y"] + video["height"] - 80, (field, video)
        else:
            # The right column, beside the video.
            assert await page.locator("#chat-col #chat").count() == 1
            assert line["x"] >= video["x"] + video["width"], (line, video)
            assert field["x"] >= video["x"] + video["width"], (field, video)

        # A busy chat: the newest lines stay in view, the older ones fade out at the top.
        lines = ["Love that glaze!", "How tall is it?", "About 10 cm, I have two",
                 "Is it dishwasher safe?", "Yes it is", "Any other colours?",
                 "The green one please", "Just joined, hi all", "Same here!",
                 "Ordered one last week, great quality", "Waiting for the lamp deal",
                 "Me too"]
        for i, text in enumerate(lines):
            await chatters[i % 3].send({"type": "chat", "text": text})
        last = page.locator("#chat-list .msg", has_text="Me too")
        await expect(last).to_be_in_viewport()
        await expect(page.locator("#chat-list .msg")).to_have_count(len(lines) + 1)
        if phone:
            await expect(page.locator("#chat-list")).to_have_class(re.compile(r"\boverflows\b"))
        # This viewer's own message appears there too.
        await page.locator("#chat-input").fill("Hello from the stage")
        await page.locator("#chat-send").click()
        mine = page.locator("#chat-list .msg.me", has_text="Hello from the stage")
        await expect(mine).to_be_in_viewport()
        if phone:
            assert inside(await box_of(mine), video)
        # Readable over any picture: every line on its own dark backing, 4.5:1 at least.
        checked, failures = await contrast_failures(page)
        assert checked >= 20 and failures == [], failures
        backing = await msg.evaluate("(el) => getComputedStyle(el).backgroundColor")
        if phone:
            assert backing != "rgba(0, 0, 0, 0)", backing
        await shoot(page, f"stage-chat-{width}",
                    doc="viewer-stage-phone.png" if width == 390 else
                    "viewer-stage-desktop.png" if width == 1280 else None)
    finally:
        for c in chatters:
            await c.close()
    await page.context.close()
    assert page_errors.errors == []


# ---------------------------------------------------------------------- sheets

# The enabled, visible controls of a dialog, and where the focus goes with Tab.
DIALOG_CONTROLS_JS = """(sel) => [...document.querySelector(sel).querySelectorAll(
    'button, input, select, textarea, a[href], [tabindex]:not([tabindex="-1"])')]
  .filter((el) => !el.disabled && el.checkVisibility({ visibilityProperty: true }))
  .map((el) => el.id || el.className)"""
FOCUSED_JS = """(sel) => { const el = document.activeElement;
  const cs = getComputedStyle(el);
  return { inside: !!el.closest(sel), what: el.id || el.className,
           ring: cs.outlineStyle !== 'none' && parseFloat(cs.outlineWidth) >= 2 }; }"""


async def check_sheet(page: Page, sel: str) -> None:
    """A sheet's controls are named, each reached with Tab (which stays in the sheet)
    and ringed, and its text has 4.5:1 contrast."""
    assert await unnamed_controls(page) == []
    expected = set(await page.evaluate(DIALOG_CONTROLS_JS, sel))
    assert expected, sel
    reached = set()
    for _ in range(len(expected) + 4):
        await page.keyboard.press("Tab")
        focus = await page.evaluate(FOCUSED_JS, sel)
        if focus["what"] == "" or not focus["inside"]:
            continue  # the browser's own stop between the end of the sheet and its start
        assert focus["ring"], focus
        reached.add(focus["what"])
    assert expected <= reached, (expected, reached)
    checked, failures = await contrast_failures(page)
    assert checked >= 5 and failures == [], failures


async def focused(page: Page) -> str:
    value: str = await page.evaluate(
        "() => document.activeElement.id || document.activeElement.className")
    return value


@VIEWPORTS
async def test_the_pinned_products_card_opens_its_sheet_and_the_shop_sheet_lists_them_all(
        server: LiveServer, http: httpx.AsyncClient, browser: Any, page_errors: PageErrors,
        viewport: dict[str, int]) -> None:
    host = await create_room(http, "Sheet show")
    mug = await host.product(stock=20, price=1800, title="Ceramic Mug")
    tote = await host.product(stock=15, price=2400, title="Linen Tote",
                              description="Heavy linen, inner pocket.")
    for p in (mug, tote):
        await host.call("POST", "/pins", {"product_id": p["product_id"]}, expect=200)
    width = viewport["width"]
    page = await open_viewer(browser, f"{server.base}/r/{host.room_id}", page_errors,
                             f"sheets {width}", viewport)

    # The last pinned product, as a compact card over the video.
    spot = page.locator("#spot-card")
    await expect(spot).to_have_attribute("data-product-id", tote["product_id"])
    await expect(page.locator("#spot-title")).to_have_text("Linen Tote")
    await expect(page.locator("#spot-state")).to_have_text("Buy it now")
    assert inside(await box_of(spot), await box_of(page.locator(".video-box")))
    await expect(spot).to_be_in_viewport(ratio=1)

    # It opens into the product's sheet, from the keyboard too.
    await spot.focus()
    await page.keyboard.press("Enter")
    sheet = page.locator("#product-sheet")
    await expect(sheet).to_be_visible()
    assert await sheet.evaluate("(d) => d.open && d.matches(':modal')")
    await expect(page.locator("#psheet-title")).to_have_text("Linen Tote")
    await expect(page.locator("#psheet-desc")).to_have_text("Heavy linen, inner pocket.")
    await expect(page.locator("#psheet-left")).to_have_text("15")
    await expect(page.locator("#psheet-buy")).to_have_text("Buy now · $24.00")
    await expect(page.locator("#psheet-buy")).to_be_in_viewport(ratio=1)
    await shoot(page, f"stage-product-sheet-{width}",
                doc="viewer-sheet-phone.png" if width == 390 else None)
    await check_sheet(page, "#product-sheet")
    # Escape closes it and gives the focus back to the card.
    await page.keyboard.press("Escape")
    await expect(sheet).to_be_hidden()
    assert await focused(page) == "spot-card"

    # The shop button: the sheet of every pinned product, in pin order.
    await page.locator("#shop-btn").click()
    shop_sheet = page.locator("#shop-sheet")
    await expect(shop_sheet).to_be_visible()
    rows = shop_sheet.locator(".srow")
    await expect(rows).to_have_count(2)
    assert await rows.nth(0).get_attribute("data-product-id") == mug["product_id"]
    await expect(rows.nth(0).locator(".srow-buy")).to_have_text("Buy now · $18.00")
    await shoot(page, f"stage-shop-sheet-{width}")
    await check_sheet(page, "#shop-sheet")
    # A product's name opens its sheet over it; Escape goes back one sheet at a time.
    await rows.nth(0).locator(".srow-title").click()
    await expect(sheet).to_be_visible()
    await expect(page.locator("#psheet-title")).to_have_text("Ceramic Mug")
    await page.keyboard.press("Escape")
    await expect(sheet).to_be_hidden()
    await expect(shop_sheet).to_be_visible()
    assert await focused(page) == "srow-title"
    # Its buy button takes a hold: the checkout opens over the sheet.
    await rows.nth(0).locator(".srow-buy").click()
    await expect(page.locator("#checkout")).to_be_visible()
    await expect(page.locator("#hold-timer")).to_contain_text("Held for you for")
    await page.locator("#checkout-close").click()
    await expect(rows.nth(0)).to_contain_text("19 left")
    await page.keyboard.press("Escape")
    await expect(shop_sheet).to_be_hidden()
    assert await focused(page) == "shop-btn"
    await expect(page.locator("#cartbar")).to_be_in_viewport(ratio=1)
    await page.context.close()
    assert page_errors.errors == []


# ---------------------------------------------------------------------- layout

async def test_a_desktop_has_products_left_video_centre_chat_right(
        server: LiveServer, http: httpx.AsyncClient, browser: Any,
        page_errors: PageErrors) -> None:
    host = await create_room(http, "Three columns show")
    await shop_of_three(host)
    page = await open_viewer(browser, f"{server.base}/r/{host.room_id}", page_errors,
                             "desktop", DESKTOP)
    await expect(page.locator("#cards .pcard")).to_have_count(3)
    lane = await box_of(page.locator("#lane"))
    stage = await box_of(page.locator(".stage"))
    chat = await box_of(page.locator("#chat-col"))
    assert await page.locator("#lane #cards").count() == 1
    assert await page.locator("#chat-col #chat").count() == 1
    # Side by side, in that order, none over another, all from the same top.
    assert lane["x"] + lane["width"] <= stage["x"], (lane, stage)
    assert stage["x"] + stage["width"] <= chat["x"], (stage, chat)
    assert chat["x"] + chat["width"] <= DESKTOP["width"], chat
    assert abs(lane["y"] - stage["y"]) <= 1, (lane, stage)
    assert abs(stage["y"] - chat["y"]) <= 1, (stage, chat)
    # The video takes the screen's height and the middle of it.
    assert stage["height"] >= DESKTOP["height"] - 120, stage
    assert stage["width"] >= 400, stage
    assert await page.evaluate("() => document.documentElement.scrollWidth") <= DESKTOP["width"]
    # Scrolled down the products, the video and the chat stay in view.
    await page.evaluate("() => window.scrollTo(0, document.documentElement.scrollHeight)")
    await expect(page.locator(".video-box")).to_be_in_viewport(ratio=0.9)
    await expect(page.locator("#chat-input")).to_be_in_viewport(ratio=1)
    await page.context.close()
    assert page_errors.errors == []


@pytest.mark.parametrize("viewport", [PHONE_SMALL, PHONE], ids=["360", "390"])
async def test_a_phone_has_the_stage_and_more_brings_the_lane_up(
        server: LiveServer, http: httpx.AsyncClient, browser: Any, page_errors: PageErrors,
        viewport: dict[str, int]) -> None:
    host = await create_room(http, "Phone stage show")
    await shop_of_three(host)
    page = await open_viewer(browser, f"{server.base}/r/{host.room_id}", page_errors,
                             f"phone {viewport['width']}", viewport)
    top = await box_of(page.locator(".topbar"))
    stage = await box_of(page.locator(".stage"))
    # The stage is the whole screen under the top bar, the video all of it.
    assert abs(stage["y"] - (top["y"] + top["height"])) <= 1, (stage, top)
    assert abs(stage["y"] + stage["height"] - viewport["height"]) <= 1, stage
    assert await box_of(page.locator(".video-box")) == stage
    assert await page.evaluate("() => document.documentElement.scrollWidth") <= viewport["width"]

    # "More" brings the lane up under the top bar and takes the focus there...
    more = page.locator("#more-btn")
    await more.focus()
    await page.keyboard.press("Enter")
    await expect(page.locator("#lane-h")).to_be_focused()
    await page.wait_for_function(
        "() => Math.abs(document.querySelector('#lane').getBoundingClientRect().top"
        " - document.querySelector('.topbar').getBoundingClientRect().bottom) <= 2")
    await expect(page.locator("#lane .lane-nav")).to_be_in_viewport()
    await shoot(page, f"stage-lane-{viewport['width']}")
    # Escape (anywhere in the lane) takes it back, and the focus to "More".
    await page.locator("#ask-input").focus()
    await page.keyboard.press("Escape")
    await expect(more).to_be_focused()
    await page.wait_for_function("() => window.scrollY === 0")
    await page.locator("#lane-back").focus()
    await page.context.close()
    assert page_errors.errors == []


# ---------------------------------------------------------------------- accessibility

@VIEWPORTS
async def test_the_stage_is_accessible(
        server: LiveServer, http: httpx.AsyncClient, browser: Any, page_errors: PageErrors,
        viewport: dict[str, int]) -> None:
    host = await create_room(http, "Accessible stage show")
    await shop_of_three(host)
    await host.call("POST", "/coupons", {"title": "Welcome gift", "kind": "amount", "value": 500,
                                         "count": 20}, expect=201)
    await host.call("POST", "/lotteries", {"prize": "Signed vinyl", "winners": 1,
                                           "entry": "button", "duration_s": 600}, expect=201)
    vase = await host.product(stock=1, price=3000, title="Blue Vase")
    await host.call("POST", "/auctions", {"product_id": vase["product_id"], "start_price": 1000,
                                          "duration_s": 600}, expect=201)
    page = await open_viewer(browser, f"{server.base}/r/{host.room_id}", page_errors,
                             f"a11y {viewport['width']}", viewport)
    await host.call("POST", "/announcements", {"text": "Lamp deal is live!"}, expect=201)
    await expect(page.locator("#announce")).to_be_visible()
    await expect(page.locator("#sale-rise")).to_be_visible()
    # The open auction's card rises over the video too.
    await expect(page.locator("#auction-rise .acard")).to_have_attribute("data-state", "open")

    async def check_page(what: str) -> None:
        assert await unnamed_controls(page) == [], what
        controls, stops = await tab_walk(page, max_steps=200)
        reached = {s["index"] for s in stops if s["index"] is not None}
        unreached = [c for c in controls if c["index"] not in reached]
        assert unreached == [], f"{what}: not reachable with Tab: {unreached}"
        no_ring = [s for s in stops if not s["focusVisible"]]
        assert no_ring == [], f"{what}: focus is not visible on {no_ring}"
        await page.evaluate("() => window.scrollTo(0, 0)")
        checked, failures = await contrast_failures(page)
        assert checked >= 20 and failures == [], f"{what}: {failures}"

    # With the sale's and the auction's cards over the video, and the banner.
    await page.evaluate(SETTLED_JS)
    await shoot(page, f"stage-a11y-{viewport['width']}")
    await check_page("stage with the sale's and the auction's cards")
    # Hidden, the auction's card goes back to the list in the shop.
    await page.locator("#auction-rise-hide").click()
    await expect(page.locator("#auction-rise")).to_be_hidden()
    await expect(page.locator("#auctions .acard")).to_have_count(1)
    # With the compact card back (the sale's card hidden).
    await page.locator("#rise-hide").click()
    await expect(page.locator("#spot-card")).to_be_visible()
    await expect(page.locator("#shop-btn")).to_be_focused()
    await check_page("stage with the compact card")
    await page.context.close()
    assert page_errors.errors == []

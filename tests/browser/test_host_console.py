"""The host console's safety and its missing controls, in Chromium against a real
server, Redis and store (desktop, 1280x800):

- every irreversible button asks first in an accessible dialog that says what will
  happen: Cancel (or Escape) changes nothing on the server, Confirm does it;
- ending the show from the console: its own confirmation, then the ended state and
  the final report;
- the coupon form's currency follows the catalogue (EUR here), not USD;
- "Save your host key" after creating a room: copy, download, dismiss, show again;
- the show's title and stream edited during the show, a viewer told by
  `room_updated` at once;
- the muted viewers listed again after a reload or a switch of rooms."""

from __future__ import annotations

import asyncio
import re
from typing import Any

import httpx

from tests.browser.conftest import PageErrors
from tests.browser.helpers import (
    DESKTOP,
    contrast_failures,
    keyed_console,
    open_tool,
    requests_to,
    shoot,
    skip_without_browser,
    unnamed_controls,
)
from tests.support import Host, LiveServer, ViewerClient, create_room, eventually, join

skip_without_browser()

from playwright.async_api import Locator, Page, expect  # noqa: E402

STREAM = "https://cdn.example.com/live/part-2.m3u8"


async def open_console(browser: Any, base: str, host: Host, watch: Any,
                       **context: Any) -> Page:
    """The console of a room this device keeps the key of (as after opening it once)."""
    console: Page = await keyed_console(browser, base, host, watch, "Console show", **context)
    return console


async def chatter(server: LiveServer, room_id: str, nickname: str, text: str
                  ) -> tuple[ViewerClient, dict[str, Any]]:
    """A viewer over a real WebSocket who said `text`; their chat event."""
    viewer = await join(server, room_id, nickname=nickname)
    await viewer.next_event("snapshot")
    await viewer.send({"type": "chat", "text": text})
    said = await viewer.next_event("chat", where=lambda f: f["text"] == text)
    return viewer, said


class Confirmation:
    """The console's confirmation dialog, as a person (and a screen reader) meets it."""

    def __init__(self, page: Page) -> None:
        self.page = page
        self.dialog = page.locator("#confirm-dlg")

    async def asks(self, title: str, *words: str, confirm: str, cancel: str) -> None:
        """Open, named by its title, saying `words`, its safe choice focused."""
        await expect(self.dialog).to_be_visible()
        await expect(self.page.get_by_role("alertdialog", name=title)).to_be_visible()
        await expect(self.dialog.locator("#confirm-h")).to_have_text(title)
        for word in words:
            await expect(self.dialog.locator("#confirm-body")).to_contain_text(word)
        await expect(self.dialog.locator("#confirm-ok")).to_have_text(confirm)
        await expect(self.dialog.locator("#confirm-cancel")).to_have_text(cancel)
        await expect(self.dialog.locator("#confirm-cancel")).to_be_focused()

    async def cancel(self, opener: Locator, escape: bool = False) -> None:
        if escape:
            await self.page.keyboard.press("Escape")
        else:
            await self.dialog.locator("#confirm-cancel").click()
        await expect(self.dialog).to_be_hidden()
        # Back where the host was.
        await expect(opener).to_be_focused()

    async def confirm(self) -> None:
        await self.dialog.locator("#confirm-ok").click()
        await expect(self.dialog).to_be_hidden()


async def test_every_irreversible_action_asks_first(server: LiveServer, http: httpx.AsyncClient,
                                                    browser: Any,
                                                    page_errors: PageErrors) -> None:
    host = await create_room(http, "Careful show")
    lamp = await host.product(stock=10, price=4900, title="Aurora Lamp")
    sale = await host.sale(lamp["product_id"], units=5, limit=1, price=2900)
    vase = await host.product(stock=1, price=2000, title="Blue Vase")
    clock_p = await host.product(stock=1, price=3000, title="Mantel Clock")
    tea = await host.product(stock=10, price=900, title="Tea Set")
    lottery = await host.call("POST", "/lotteries", {"prize": "Signed cap", "duration_s": 600},
                              expect=201)
    poll = await host.call("POST", "/polls", {"question": "Which colour next?",
                                              "options": ["Red", "Blue"], "duration_s": 600},
                           expect=201)
    cancelled = await host.call("POST", "/auctions", {"product_id": vase["product_id"],
                                                      "start_price": 1000, "duration_s": 600},
                                expect=201)
    ended = await host.call("POST", "/auctions", {"product_id": clock_p["product_id"],
                                                  "start_price": 1000, "duration_s": 600},
                            expect=201)
    ben, said = await chatter(server, host.room_id, "Ben", "Cheap followers here!!")

    console = await open_console(browser, server.base, host, page_errors.watch)
    ask = Confirmation(console)
    # Group deals are not in the room state: the console learns of one by its event.
    deal = await host.call("POST", "/group-deals", {
        "product_id": tea["product_id"], "group_size": 3, "group_price": 600, "fill_s": 300,
        "units": 6}, expect=201)

    async def state_of(path: str) -> str:
        return str((await host.call("GET", path, expect=200))["state"])

    # ---------------------------------------------------------------- draw a giveaway now
    draw = console.get_by_role("button", name="Draw Signed cap now")
    await draw.click()
    await ask.asks("Draw “Signed cap” now?", "closes to new entries", "1 winner is drawn",
                   "0 entrants", "cannot be undone", confirm="Draw now", cancel="Keep it open")
    await shoot(console, "console-confirm-draw")
    assert await unnamed_controls(console) == []
    _, failures = await contrast_failures(console)
    assert failures == [], failures
    await ask.cancel(draw)
    lottery_path = f"/lotteries/{lottery['lottery_id']}"
    assert await state_of(lottery_path) == "open"
    await expect(console.locator("#now-result")).to_have_text("")
    await draw.click()
    await ask.confirm()
    await expect(console.locator("#now-result")).to_have_text(re.compile("^✓ Drawn"))
    assert await state_of(lottery_path) == "drawn"

    # ---------------------------------------------------------------- delete a message
    line = console.locator(f'#mod-chat [data-message-id="{said["message_id"]}"]')
    delete = line.get_by_role("button", name=re.compile("^Delete message from Ben"))
    await delete.click()
    await ask.asks("Delete Ben's message?", "“Cheap followers here!!”", "every viewer's chat",
                   "cannot be brought back", confirm="Delete message", cancel="Keep it")
    await ask.cancel(delete, escape=True)

    async def history() -> list[str]:
        chat = (await host.call("GET", "", expect=200))["chat"]
        return [m["message_id"] for m in chat]
    assert said["message_id"] in await history()
    await expect(line).not_to_have_class(re.compile(r"\bdeleted\b"))
    await delete.click()
    await ask.confirm()
    await expect(line).to_have_class(re.compile(r"\bdeleted\b"))
    await ben.next_event("chat_deleted")
    assert said["message_id"] not in await history()

    # ---------------------------------------------------------------- mute a viewer
    mute = line.get_by_role("button", name="Mute Ben")
    await mute.click()
    await ask.asks("Mute Ben for 5 minutes?", "cannot send chat messages or ask questions",
                   confirm="Mute for 5 minutes", cancel="Don't mute")
    await ask.cancel(mute)
    assert (await host.call("GET", "/moderation/mutes", expect=200))["mutes"] == []
    await console.locator("#mute-duration").select_option("900")
    await mute.click()
    await ask.asks("Mute Ben for 15 minutes?", confirm="Mute for 15 minutes", cancel="Don't mute")
    await ask.confirm()
    await expect(console.locator("#mod-result")).to_have_text(re.compile("^✓ Muted Ben until"))
    mutes = (await host.call("GET", "/moderation/mutes", expect=200))["mutes"]
    # (His only message was deleted: the server has no name for him; the console has.)
    assert [(m["viewer_id"], m["nickname"]) for m in mutes] == [(ben.viewer_id, None)]
    await expect(console.locator(f'#mute-list [data-viewer-id="{ben.viewer_id}"]')
                 ).to_contain_text("Ben")

    # ---------------------------------------------------------------- stop a sale
    stop = console.get_by_role("button", name="Stop the sale of Aurora Lamp")
    await stop.click()
    await ask.asks("Stop the sale of “Aurora Lamp”?", "ends now (0 of 5 sold)",
                   "go back to stock", "cannot be restarted", confirm="Stop sale",
                   cancel="Keep selling")
    await ask.cancel(stop)

    async def sale_state() -> str:
        products = (await host.call("GET", "", expect=200))["products"]
        return str(next(p for p in products if p["product_id"] == lamp["product_id"])
                   ["sale"]["state"])
    assert await sale_state() == "open"
    await stop.click()
    await ask.confirm()
    row = console.locator(f'#product-rows tr[data-product-id="{lamp["product_id"]}"]')
    await expect(row).to_have_attribute("data-sale-state", "stopped")
    assert await sale_state() == "stopped"
    assert sale["sale_id"]

    # ---------------------------------------------------------------- cancel an auction
    cancel = console.get_by_role("button", name="Cancel the auction of Blue Vase")
    await cancel.click()
    await ask.asks("Cancel the auction of “Blue Vase”?", "no winner", "back to stock",
                   confirm="Cancel auction", cancel="Keep the auction")
    await ask.cancel(cancel, escape=True)
    assert await state_of(f"/auctions/{cancelled['auction_id']}") == "open"
    await cancel.click()
    await ask.confirm()
    await expect(console.locator("#now-result")).to_have_text(
        "✓ Cancelled the auction of “Blue Vase”")
    assert await state_of(f"/auctions/{cancelled['auction_id']}") == "cancelled"

    # ---------------------------------------------------------------- end an auction now
    end_now = console.get_by_role("button", name="End the auction of Mantel Clock now")
    await end_now.click()
    await ask.asks("End the auction of “Mantel Clock” now?", "Bidding stops at once",
                   "no winner", confirm="End now", cancel="Keep bidding open")
    await ask.cancel(end_now)
    assert await state_of(f"/auctions/{ended['auction_id']}") == "open"
    await end_now.click()
    await ask.confirm()
    await expect(console.locator(f'#auction-list [data-auction-id="{ended["auction_id"]}"]')
                 ).to_have_attribute("data-state", "ended")
    assert await state_of(f"/auctions/{ended['auction_id']}") == "ended"

    # ---------------------------------------------------------------- close a poll
    close_poll = console.get_by_role("button", name="Close the poll “Which colour next?” now")
    await close_poll.click()
    await ask.asks("Close the poll “Which colour next?” now?", "Voting stops", "0 votes",
                   "cannot be reopened", confirm="Close poll", cancel="Keep voting open")
    await ask.cancel(close_poll)
    assert await state_of(f"/polls/{poll['poll_id']}") == "open"
    await close_poll.click()
    await ask.confirm()
    await expect(console.locator("#now-result")).to_have_text(re.compile("^✓ Closed “Which"))
    assert await state_of(f"/polls/{poll['poll_id']}") == "closed"

    # ---------------------------------------------------------------- close a group deal
    close_deal = console.get_by_role("button", name="Close the group deal on Tea Set")
    await close_deal.click()
    await ask.asks("Close the group deal on “Tea Set”?", "No new group can start",
                   "cannot be reopened", confirm="Close deal", cancel="Keep it open")
    await ask.cancel(close_deal, escape=True)
    assert await state_of(f"/group-deals/{deal['deal_id']}") == "open"
    await close_deal.click()
    await ask.confirm()
    # (One outcome line for On now: this one names the deal, not the poll before it.)
    await expect(console.locator("#now-result")).to_have_text(
        re.compile("^✓ Closed the group deal on “Tea Set”"))
    assert await state_of(f"/group-deals/{deal['deal_id']}") == "closed"

    await ben.close()
    await console.context.close()
    assert page_errors.errors == []


async def test_ending_the_show_from_the_console(server: LiveServer, http: httpx.AsyncClient,
                                                browser: Any, page_errors: PageErrors) -> None:
    host = await create_room(http, "Ending show")
    lamp = await host.product(stock=5, price=4900, title="Aurora Lamp")
    await host.sale(lamp["product_id"], units=3, limit=1, price=2900)
    console = await open_console(browser, server.base, host, page_errors.watch)
    viewer = await join(server, host.room_id)
    await viewer.next_event("snapshot")

    end = console.locator("#end-show")
    dialog = console.locator("#end-dlg")
    # Apart from the everyday buttons in the top bar.
    await expect(end).to_be_visible()
    zone = await console.locator("#end-zone").evaluate(
        "(el) => ({ left: getComputedStyle(el).borderLeftStyle, "
        "gap: el.getBoundingClientRect().left - "
        "document.getElementById('switch-room').getBoundingClientRect().right })")
    assert zone["left"] == "solid" and zone["gap"] >= 24, zone
    await end.click()
    await expect(console.get_by_role("alertdialog", name="End the show?")).to_be_visible()
    await expect(dialog).to_contain_text("Sales stop at once")
    await expect(dialog).to_contain_text("cannot be undone")
    await expect(console.locator("#end-cancel")).to_be_focused()
    await console.keyboard.press("Escape")
    await expect(dialog).to_be_hidden()
    await expect(end).to_be_focused()
    await end.click()
    await console.get_by_role("button", name="Keep the show running").click()
    await expect(dialog).to_be_hidden()
    assert (await host.call("GET", "", expect=200))["room"]["state"] == "live"
    await expect(console.locator("#ended-notice")).to_be_hidden()

    reports = requests_to(console, "GET", "/report")
    await end.click()
    await console.locator("#end-confirm").click()
    await expect(dialog).to_be_hidden()
    # The ended state: the badge, the notice, no End show, the details form off.
    await expect(console.locator("#room-state")).to_have_text("Ended")
    await expect(end).to_be_hidden()
    notice = console.locator("#ended-notice")
    await expect(notice).to_be_visible()
    await expect(notice.locator("#ended-h")).to_have_text(re.compile(r"^The show ended at "))
    # The final report, loaded and shown.
    panel = console.locator("#rp")
    await expect(panel).to_have_attribute("data-loaded", "true")
    await expect(panel).to_have_attribute("data-state", "ended")
    await expect(panel.locator("#rp-state")).to_contain_text("This is the final report")
    await expect(console.locator("#rp-h")).to_be_focused()
    await expect(panel).to_be_in_viewport()
    # The show's details (in Settings) can no longer change.
    await open_tool(console, "Settings")
    await expect(console.get_by_label("Title of the show")).to_be_disabled()
    await expect(console.get_by_role("button", name="Save show details")).to_be_disabled()
    await viewer.next_event("show_ended")
    room = (await host.call("GET", "", expect=200))["room"]
    assert room["state"] == "ended" and room["ended_at"], room
    # The console's own end loaded the report, and the show_ended event that came to the
    # console too did not load it again.
    await expect(console.locator("#mod-chat")).to_contain_text("The show has ended.")
    await console.evaluate("() => new Promise((r) => setTimeout(r, 300))")
    assert len(reports) == 1, reports
    await shoot(console, "console-ended")
    _, failures = await contrast_failures(console)
    assert failures == [], failures

    # After a reload: still ended, the notice and the report (loaded once), no End show.
    await console.reload()
    await expect(console.locator("#conn")).to_have_attribute("data-state", "live")
    await expect(console.locator("#ended-notice")).to_be_visible()
    await expect(end).to_be_hidden()
    await expect(panel).to_have_attribute("data-state", "ended")
    await console.wait_for_function("() => window.livesell.live.stats.snapshots >= 1")
    await console.evaluate("() => new Promise((r) => setTimeout(r, 300))")
    assert len(reports) == 2, reports
    await console.get_by_role("button", name="See the final report").click()
    await expect(console.locator("#rp-h")).to_be_focused()
    await viewer.close()
    await console.context.close()
    assert page_errors.errors == []


async def test_the_coupon_currency_follows_the_catalogue(server: LiveServer,
                                                         http: httpx.AsyncClient, browser: Any,
                                                         page_errors: PageErrors) -> None:
    host = await create_room(http, "Euro show")
    for title in ("Espresso Cup", "Moka Pot"):
        await host.product(title=title, currency="EUR", price=1500)
    await host.product(title="Import Mug", currency="USD", price=900)
    console = await open_console(browser, server.base, host, page_errors.watch)
    currency = console.locator("#cf-currency")
    # Two of three products are in EUR: the drop's currency is EUR, not USD.
    await expect(currency).to_have_value("EUR")
    await expect(console.locator("#rf-currency")).to_have_value("EUR")
    # The catalogue changes (live, by `product` events): now USD is the most common.
    for title in ("Diner Mug", "Road Flask"):
        await host.product(title=title, currency="USD", price=900)
    await expect(console.locator("#product-rows tr")).to_have_count(5)
    await expect(currency).to_have_value("USD")
    # A currency the host typed is theirs: the catalogue no longer moves it.
    await open_tool(console, "Coupons")
    await currency.fill("EUR")
    await host.product(title="Camp Mug", currency="USD", price=900)
    await expect(console.locator("#product-rows tr")).to_have_count(6)
    await expect(currency).to_have_value("EUR")
    await console.locator("#cf-value").fill("2.50")
    await console.locator("#cf-count").fill("10")
    await console.get_by_role("button", name="Drop coupons").click()
    await expect(console.locator("#coupon-result")).to_have_text(re.compile("^✓ Dropped 10"))
    coupons = (await host.call("GET", "", expect=200))["coupons"]
    assert [(c["currency"], c["value"]) for c in coupons] == [("EUR", 250)], coupons
    # Emptied and left, the field follows the catalogue again.
    await currency.fill("")
    await console.locator("#cf-value").focus()
    await expect(currency).to_have_value("USD")
    for title in ("Euro Cup", "Euro Pot", "Euro Jug", "Euro Tin"):
        await host.product(title=title, currency="EUR", price=900)
    await expect(console.locator("#product-rows tr")).to_have_count(10)
    await expect(currency).to_have_value("EUR")
    await console.context.close()
    assert page_errors.errors == []


async def test_save_your_host_key(server: LiveServer, http: httpx.AsyncClient, browser: Any,
                                  page_errors: PageErrors) -> None:
    ctx = await browser.new_context(viewport=DESKTOP, accept_downloads=True)
    await ctx.grant_permissions(["clipboard-read", "clipboard-write"], origin=server.base)
    console = page_errors.watch(await ctx.new_page(), "host")
    await console.goto(server.base + "/host")
    await console.get_by_label("Show title").fill("Key show")
    await console.get_by_role("button", name="Create room").click()
    await expect(console.locator("#conn")).to_have_attribute("data-state", "live")
    room_id = (await console.locator("#room-id").text_content() or "").strip()
    key = await console.evaluate(
        "(id) => JSON.parse(localStorage.getItem('livesell.host.rooms'))[id].host_key", room_id)
    assert (await http.get(f"/api/rooms/{room_id}/stats", headers={"X-Host-Key": key})
            ).status_code == 200

    notice = console.locator("#key-notice")
    await expect(notice).to_be_visible()
    await expect(notice).to_be_focused()
    await expect(console.get_by_role("region", name="Save your host key")).to_be_visible()
    await expect(notice).to_contain_text("only way back into this console")
    await expect(notice).to_contain_text("another device")
    await expect(notice.locator("#key-room")).to_have_text(room_id)
    await expect(console.get_by_label("Host key of this room")).to_have_value(key)
    await expect(console.locator("#show-key")).to_have_attribute("aria-expanded", "true")
    await shoot(console, "console-host-key")
    assert await unnamed_controls(console) == []
    _, failures = await contrast_failures(console)
    assert failures == [], failures

    # Copy: the key in the clipboard (127.0.0.1 is a secure context, the permission granted).
    await notice.get_by_role("button", name="Copy key").click()
    await expect(console.locator("#key-result")).to_have_text("✓ Host key copied. Keep it secret.")
    assert await console.evaluate("() => navigator.clipboard.readText()") == key
    # Download: a text file with the room id, the key and where to use them.
    async with console.expect_download() as info:
        await notice.get_by_role("button", name="Download as a file").click()
    download = await info.value
    assert download.suggested_filename == f"livesell-host-key-{room_id}.txt"
    text = (await download.path()).read_text(encoding="utf-8")
    assert f"Room id:   {room_id}" in text and f"Host key:  {key}" in text, text
    assert f"{server.base}/host?room={room_id}" in text and "Key show" in text, text
    await expect(console.locator("#key-result")).to_have_text(re.compile(r"^✓ Saved livesell-"))

    # Not dismissed yet: a reload shows it again.
    await console.reload()
    await expect(console.locator("#conn")).to_have_attribute("data-state", "live")
    await expect(notice).to_be_visible()
    await notice.get_by_role("button", name="Dismiss the host key notice").click()
    await expect(notice).to_be_hidden()
    await expect(console.locator("#show-key")).to_be_focused()
    await expect(console.locator("#show-key")).to_have_attribute("aria-expanded", "false")
    # Dismissed: gone after a reload, back from the "Host key" button.
    await console.reload()
    await expect(console.locator("#conn")).to_have_attribute("data-state", "live")
    await expect(notice).to_be_hidden()
    show_key = console.get_by_role("button", name="Host key", exact=True)
    await show_key.click()
    await expect(notice).to_be_visible()
    await expect(notice).to_be_focused()
    await expect(console.get_by_label("Host key of this room")).to_have_value(key)
    await show_key.click()
    await expect(notice).to_be_hidden()
    # A room opened with its id and key (the host has it) shows no notice by itself.
    other = await create_room(http, "Opened show")
    await console.get_by_role("button", name="Switch room").click()
    await console.locator("#open-room").fill(other.room_id)
    await console.locator("#open-key").fill(other.key)
    await console.get_by_role("button", name="Open room").click()
    await expect(console.locator("#conn")).to_have_attribute("data-state", "live")
    await expect(console.locator("#room-id")).to_have_text(other.room_id)
    await expect(notice).to_be_hidden()
    await show_key.click()
    await expect(console.get_by_label("Host key of this room")).to_have_value(other.key)
    await ctx.close()
    assert page_errors.errors == []


async def test_editing_the_stream_and_title_reaches_viewers(server: LiveServer,
                                                            http: httpx.AsyncClient,
                                                            browser: Any,
                                                            page_errors: PageErrors) -> None:
    host = await create_room(http, "First title")
    console = await open_console(browser, server.base, host, page_errors.watch)
    # A second console (another device with the key): it follows without a reload.
    other = await open_console(browser, server.base, host, page_errors.watch)
    viewer = await join(server, host.room_id)
    await viewer.next_event("snapshot")
    for page in (console, other):
        await open_tool(page, "Settings")
    title = console.get_by_label("Title of the show")
    stream = console.get_by_label("Video stream URL")
    await expect(title).to_have_value("First title")
    await expect(stream).to_have_value("")
    await expect(console.locator("#room-title")).to_have_text("First title")

    # A stream URL the server does not take: its words, nothing changed, nobody told.
    await stream.fill("ftp://cdn.example.com/live")
    await console.get_by_role("button", name="Save show details").click()
    result = console.locator("#room-result")
    await expect(result).to_have_attribute("data-outcome", "error")
    await expect(result).to_have_text(re.compile(r"stream_url: .*http.* \(bad_request\)$"))
    assert (await host.call("GET", "", expect=200))["room"]["stream_url"] == ""

    await title.fill("Second title")
    await stream.fill(STREAM)
    await console.get_by_role("button", name="Save show details").click()
    await expect(result).to_have_text("✓ Viewers now see title “Second title” and the new stream")
    event = await viewer.next_event("room_updated")
    assert (event["room_id"], event["title"], event["stream_url"]) == \
        (host.room_id, "Second title", STREAM), event
    room = (await host.call("GET", "", expect=200))["room"]
    assert (room["title"], room["stream_url"]) == ("Second title", STREAM)
    await expect(console.locator("#room-title")).to_have_text("Second title")
    assert await console.title() == "Second title · Host console · livesell"
    # The other console's header and form follow the event.
    await expect(other.locator("#room-title")).to_have_text("Second title")
    await expect(other.get_by_label("Title of the show")).to_have_value("Second title")
    await expect(other.get_by_label("Video stream URL")).to_have_value(STREAM)
    # The recent rooms list keeps the new title.
    assert await console.evaluate(
        "(id) => JSON.parse(localStorage.getItem('livesell.host.rooms'))[id].title",
        host.room_id) == "Second title"

    # Only what changed is sent: taking the stream away keeps the title.
    await other.get_by_label("Video stream URL").fill("")
    await other.get_by_role("button", name="Save show details").click()
    await expect(other.locator("#room-result")).to_have_text(
        "✓ Viewers now see no stream")
    event = await viewer.next_event("room_updated")
    assert (event["title"], event["stream_url"]) == ("Second title", "")
    await expect(stream).to_have_value("")
    # Saved with nothing changed: no request, no event.
    await console.get_by_role("button", name="Save show details").click()
    await expect(result).to_have_text("✓ Nothing changed")
    # A value being typed is not overwritten by another console's change.
    await title.fill("Typing a new tit")
    await host.call("PATCH", "", {"stream_url": STREAM}, expect=200)
    await expect(stream).to_have_value(STREAM)  # (not typed in: it follows)
    await expect(title).to_have_value("Typing a new tit")
    await viewer.close()
    for page in (console, other):
        await page.context.close()
    assert page_errors.errors == []


async def test_the_muted_viewers_survive_a_reload_and_a_switch(server: LiveServer,
                                                               http: httpx.AsyncClient,
                                                               browser: Any,
                                                               page_errors: PageErrors) -> None:
    host = await create_room(http, "Moderated show")
    other = await create_room(http, "Other show")
    ben, said = await chatter(server, host.room_id, "Ben", "Buy my followers")
    cleo, _ = await chatter(server, host.room_id, "Cleo", "Hello!")
    # A mute made elsewhere (another console, or the API) before this console opened.
    await host.call("POST", "/moderation/mute", {"viewer_id": cleo.viewer_id,
                                                 "duration_s": 3600}, expect=200)
    console = await open_console(browser, server.base, host, page_errors.watch)
    mute_list = console.locator("#mute-list")
    await expect(mute_list.locator(".mute-item")).to_have_count(1)
    await expect(mute_list).to_contain_text("Cleo")

    line = console.locator(f'#mod-chat [data-message-id="{said["message_id"]}"]')
    await line.get_by_role("button", name="Mute Ben").click()
    await console.locator("#confirm-ok").click()
    await ben.next_event("viewer_muted", where=lambda f: f["viewer_id"] == ben.viewer_id)
    await expect(mute_list.locator(".mute-item")).to_have_count(2)
    # The soonest to speak again first: Ben (5 minutes), then Cleo (an hour).
    await expect(mute_list.locator(".mute-item .who")).to_have_text(["Ben", "Cleo"])
    await expect(console.locator("#mutes-count")).to_have_text("(2)")

    # A reload: the list comes back from the server, asked for once.
    mute_loads = requests_to(console, "GET", "/moderation/mutes")
    await console.reload()
    await expect(console.locator("#conn")).to_have_attribute("data-state", "live")
    await expect(mute_list.locator(".mute-item .who")).to_have_text(["Ben", "Cleo"])
    await console.wait_for_function("() => window.livesell.live.stats.snapshots >= 1")
    await console.evaluate("() => new Promise((r) => setTimeout(r, 300))")
    assert len(mute_loads) == 1, mute_loads
    items = mute_list.locator(".mute-item")
    await expect(items.first).to_have_attribute("data-viewer-id", ben.viewer_id)
    await expect(items.first).to_contain_text(re.compile(r"until \d"))

    # Switch to another room (none muted there) and back.
    await console.get_by_role("button", name="Switch room").click()
    await console.locator("#open-room").fill(other.room_id)
    await console.locator("#open-key").fill(other.key)
    await console.get_by_role("button", name="Open room").click()
    await expect(console.locator("#room-id")).to_have_text(other.room_id)
    await expect(mute_list.locator(".mute-item")).to_have_count(0)
    await expect(console.locator("#mutes-empty")).to_be_visible()
    await console.get_by_role("button", name="Switch room").click()
    await console.get_by_role("button", name="Open Moderated show").click()
    await expect(console.locator("#room-id")).to_have_text(host.room_id)
    await expect(mute_list.locator(".mute-item .who")).to_have_text(["Ben", "Cleo"])
    # Once for each room opened: the other, then this one again.
    assert [url.split("/api/rooms/")[1].split("/")[0] for url in mute_loads] == [
        host.room_id, other.room_id, host.room_id], mute_loads

    # Unmute (a mute of one second: the server has no unmute): Ben chats again.
    await console.get_by_role("button", name="Unmute Ben").click()
    await expect(console.locator("#mutes-result")).to_have_text("✓ Ben can chat again")
    await expect(mute_list.locator(".mute-item .who")).to_have_text(["Cleo"])

    async def ben_unmuted() -> bool:
        mutes = (await host.call("GET", "/moderation/mutes", expect=200))["mutes"]
        return [m["viewer_id"] for m in mutes] == [cleo.viewer_id]
    await eventually(ben_unmuted, timeout=10)
    await ben.send({"type": "chat", "text": "sorry", "request_id": "c-1"})
    await ben.next_event("chat", where=lambda f: f["text"] == "sorry")
    await expect(console.locator("#mod-chat")).to_contain_text("Ben can chat again.")
    await asyncio.gather(ben.close(), cleo.close())
    await console.context.close()
    assert page_errors.errors == []


async def test_forgetting_a_room_asks_first(server: LiveServer, http: httpx.AsyncClient,
                                            browser: Any, page_errors: PageErrors) -> None:
    host = await create_room(http, "Remembered show")
    console = await open_console(browser, server.base, host, page_errors.watch)
    await console.get_by_role("button", name="Switch room").click()
    # (The console keeps the room's title as the server says it.)
    forget = console.get_by_role("button", name="Forget Remembered show on this device")
    ask = Confirmation(console)
    await forget.click()
    await ask.asks("Forget “Remembered show” on this device?", host.room_id,
                   "cannot open this room's console again", confirm="Forget room",
                   cancel="Keep it")
    await ask.cancel(forget, escape=True)

    def kept() -> Any:
        return console.evaluate(
            "(id) => !!(JSON.parse(localStorage.getItem('livesell.host.rooms')) || {})[id]",
            host.room_id)
    assert await kept() is True
    await forget.click()
    await ask.confirm()
    await expect(console.locator("#recent")).to_be_hidden()
    assert await kept() is False
    await expect(console.locator("#open-room")).to_be_focused()
    await console.context.close()
    assert page_errors.errors == []

"""Chat history, the pinned message and polls in the pages (docs/protocol.md
section 16), in Chromium against a real server. A viewer who joins late finds the
recent chat (without the message the host deleted) and the pinned message; a
page that missed the deletion drops the message at its next snapshot; a resync
does not show a message twice; the console pins a viewer's message from
its chat view and its own note, and unpins. The host starts a poll from the
console (options added and removed), two viewers vote (one on a phone), both see
the live percentages, a reload keeps the vote marked, a second, different vote
from the same viewer is refused in words, and the host closes it: everyone sees
the final results. A last test lets the server's clock close a poll, which a
viewer joining afterwards still finds, closed, with its results."""

from __future__ import annotations

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
from tests.support import LiveServer, create_room, join

skip_without_browser()

from playwright.async_api import Page, expect  # noqa: E402

# Waits for the server's clock (a poll closing): a generous bound, ended by the
# condition itself, never by the bound.
CLOCK_WAIT_MS = 30_000


async def viewer_page(browser: Any, base: str, room_id: str, watch: Any, name: str,
                      viewport: dict[str, int] = DESKTOP) -> Page:
    page: Page = await live_page(browser, f"{base}/r/{room_id}", watch, name, viewport)
    return page


async def say(server: LiveServer, room_id: str, nickname: str, text: str) -> dict[str, Any]:
    """A viewer (a real WebSocket) chats once; returns the room's `chat` event."""
    chatter = await join(server, room_id, nickname=nickname)
    try:
        await chatter.next_event("snapshot")
        await chatter.send({"type": "chat", "text": text})
        return await chatter.next_event("chat", where=lambda e: e["text"] == text)
    finally:
        await chatter.close()


async def snapshots(page: Page) -> int:
    n: int = await page.evaluate("() => window.livesell.live.stats.snapshots")
    return n


async def test_a_late_joiner_finds_the_recent_chat_and_the_pinned_message(
        server: LiveServer, http: httpx.AsyncClient, browser: Any,
        page_errors: PageErrors) -> None:
    console, host = await console_room(browser, server.base, http, "Chat history show",
                                       page_errors.watch)
    early = await viewer_page(browser, server.base, host.room_id, page_errors.watch, "early")
    mia = await say(server, host.room_id, "Mia", "Does the lamp come in white?")
    ben = await say(server, host.room_id, "Ben", "Cheap followers at spam dot example")
    ava = await say(server, host.room_id, "Ava", "Love this show!")
    mod = console.locator("#mod-chat .mod-msg[data-message-id]")
    await expect(mod).to_have_count(3)
    early_lines = early.locator("#chat-list .msg[data-message-id]")
    await expect(early_lines).to_have_count(3)
    # This page will miss what the host does next (its connection is down).
    await early.evaluate("() => window.livesell.live.stop()")

    # ---------------------------------------------------------------- the console moderates
    await console.get_by_role("button", name="Delete message from Ben: Cheap followers").click()
    # An irreversible action asks first (tests/browser/test_host_console.py).
    await console.locator("#confirm-dlg").get_by_role("button", name="Delete message").click()
    await expect(console.locator("#mod-result")).to_have_text("✓ Message deleted for everyone")
    await expect(console.locator(f'[data-message-id="{ben["message_id"]}"]')).to_have_class(
        re.compile(r"\bdeleted\b"))
    await console.get_by_role("button", name="Pin message from Mia: Does the lamp").click()
    await expect(console.locator("#mod-result")).to_have_text("✓ Pinned above every viewer's chat")
    await expect(console.locator("#pin-current")).to_have_text(
        "Pinned: “Does the lamp come in white?” · Mia")
    mia_line = console.locator(f'#mod-chat [data-message-id="{mia["message_id"]}"]')
    await expect(mia_line).to_have_class(re.compile(r"\bpinned\b"))
    await expect(mia_line.locator(".pin-msg")).to_be_disabled()

    # ---------------------------------------------------------------- the page that missed it
    # Back without a resume point, it gets a snapshot: the history no longer holds
    # Ben's message, so the page takes it away (its chat_deleted never came), shows
    # the others once each, and the pinned message.
    await expect(early_lines).to_have_count(3)
    await early.evaluate("() => { const l = window.livesell.live; l.lastSeq = null; l.start(); }")
    await expect(early.locator("#conn")).to_have_attribute("data-state", "live")
    await expect(early.locator("#pinned-text")).to_have_text("Does the lamp come in white?")
    await expect(early_lines).to_have_count(2)
    await expect(early_lines.locator(".text")).to_have_text(
        ["Does the lamp come in white?", "Love this show!"])

    # ---------------------------------------------------------------- a viewer joins late
    late = await viewer_page(browser, server.base, host.room_id, page_errors.watch, "late",
                             PHONE)
    lines = late.locator("#chat-list .msg[data-message-id]")
    await expect(lines).to_have_count(2)
    await expect(lines.nth(0)).to_have_attribute("data-message-id", mia["message_id"])
    await expect(lines.nth(0).locator(".nick")).to_have_text("Mia")
    await expect(lines.nth(0).locator(".text")).to_have_text("Does the lamp come in white?")
    await expect(lines.nth(1)).to_have_attribute("data-message-id", ava["message_id"])
    await expect(lines.nth(1).locator(".text")).to_have_text("Love this show!")
    # The deleted message is not in the history.
    await expect(late.locator("#chat-list")).not_to_contain_text("Cheap followers")
    await expect(late.locator("#chat-empty")).to_have_count(0)
    pinned = late.locator("#pinned-msg")
    await expect(pinned).to_be_visible()
    await expect(late.locator("#pinned-nick")).to_have_text("Mia")
    await expect(late.locator("#pinned-nick")).not_to_have_class(re.compile("host-badge"))
    await expect(late.locator("#pinned-text")).to_have_text("Does the lamp come in white?")
    await expect(pinned).to_have_attribute("data-message-id", mia["message_id"])

    # ---------------------------------------------------------------- the host pins its own note
    await console.get_by_label("Pinned message", exact=True).fill("Free shipping over $50 tonight")
    await console.get_by_role("button", name="Pin this message above the chat").click()
    await expect(console.locator("#pin-result")).to_have_text("✓ Pinned above every viewer's chat")
    await expect(console.locator("#pin-current")).to_have_text(
        "Pinned: “Free shipping over $50 tonight” · Host")
    await expect(mia_line.locator(".pin-msg")).to_be_enabled()
    # Live, by the message_pinned event: the host's note wears the host badge.
    await expect(late.locator("#pinned-text")).to_have_text("Free shipping over $50 tonight")
    await expect(late.locator("#pinned-nick")).to_have_text("Host")
    await expect(late.locator("#pinned-nick")).to_have_class(re.compile(r"\bhost-badge\b"))
    await expect(pinned).to_have_attribute("data-message-id", "")

    # ---------------------------------------------------------------- a resync shows none twice
    before = await snapshots(late)
    await late.evaluate("() => window.livesell.live.send({type: 'resync'})")
    await late.wait_for_function(f"() => window.livesell.live.stats.snapshots > {before}",
                                 timeout=15_000)
    await expect(lines).to_have_count(2)
    await expect(late.locator("#pinned-text")).to_have_text("Free shipping over $50 tonight")

    # The late joiner chats; a reload finds its own message in the history too, once.
    await late.locator("#chat-input").fill("Hi all, just arrived")
    await late.locator("#chat-input").press("Enter")
    await expect(lines).to_have_count(3)
    await expect(lines.nth(2)).to_have_class(re.compile(r"\bme\b"))
    await late.reload()
    await expect(late.locator("#conn")).to_have_attribute("data-state", "live")
    await expect(lines).to_have_count(3)
    await expect(lines.locator(".text")).to_have_text(
        ["Does the lamp come in white?", "Love this show!", "Hi all, just arrived"])
    await expect(lines.nth(2)).to_have_class(re.compile(r"\bme\b"))
    await expect(late.locator("#pinned-text")).to_have_text("Free shipping over $50 tonight")
    await shoot(late, "social-phone-history-pinned")

    # ---------------------------------------------------------------- the console reopens
    # Its chat view fills from the history as well (without the deleted message).
    await console.reload()
    await expect(console.locator("#conn")).to_have_attribute("data-state", "live")
    await expect(mod).to_have_count(3)
    await expect(mod.locator(".txt")).to_have_text(
        ["Does the lamp come in white?", "Love this show!", "Hi all, just arrived"])
    await expect(console.locator("#pin-current")).to_have_text(
        "Pinned: “Free shipping over $50 tonight” · Host")

    # ---------------------------------------------------------------- unpin
    await console.get_by_role("button", name="Unpin the pinned message").click()
    await expect(console.locator("#pin-result")).to_have_text("✓ Unpinned")
    await expect(console.locator("#pin-current")).to_have_text("Nothing is pinned.")
    await expect(console.get_by_role("button", name="Unpin the pinned message")).to_be_disabled()
    await expect(pinned).to_be_hidden()
    assert (await host.call("GET", "", expect=200))["pinned_message"] is None
    assert page_errors.errors == []


async def test_console_poll_two_viewers_vote_reload_refusal_and_close(
        server: LiveServer, http: httpx.AsyncClient, browser: Any,
        page_errors: PageErrors) -> None:
    console, host = await console_room(browser, server.base, http, "Poll show",
                                       page_errors.watch)
    a = await viewer_page(browser, server.base, host.room_id, page_errors.watch, "viewer A")
    b = await viewer_page(browser, server.base, host.room_id, page_errors.watch, "viewer B",
                          PHONE)

    # ---------------------------------------------------------------- the console starts it
    await open_tool(console, "Poll")
    await console.get_by_label("Question", exact=True).fill("Which colour next?")
    await expect(console.locator("#pl-options input")).to_have_count(2)
    await expect(console.get_by_role("button", name="Remove option 1")).to_be_hidden()
    await console.get_by_label("Option 1", exact=True).fill("Red")
    await console.get_by_label("Option 2", exact=True).fill("Blue")
    add = console.get_by_role("button", name="Add option")
    for n in range(3, 7):
        await add.click()
        await expect(console.get_by_label(f"Option {n}", exact=True)).to_be_focused()
    await expect(add).to_be_disabled()  # six at most
    await console.get_by_label("Option 3", exact=True).fill("Green")
    for _ in range(3):
        await console.get_by_role("button", name="Remove option 4").click()
    await expect(console.locator("#pl-options input")).to_have_count(3)
    await expect(add).to_be_enabled()
    await expect(console.locator("#pl-count")).to_have_text("3 of 6")
    await console.locator("#pl-duration").fill("120")
    await console.get_by_role("button", name="Start poll").click()
    result = console.locator("#poll-result")
    await expect(result).to_have_text(re.compile(
        r"^✓ Poll “Which colour next\?” is open: 3 options, closes in (2:00|1:5\d)$"))
    await expect(result).to_have_attribute("data-outcome", "ok")
    await expect(console.get_by_label("Question", exact=True)).to_have_value("")
    item = console.locator("#poll-list .poll-item")
    await expect(item).to_have_count(1)
    pid = await item.get_attribute("data-poll-id")
    assert pid and pid.startswith("p_"), pid
    await expect(item).to_have_attribute("data-state", "open")
    await expect(item.locator(".pr-label")).to_have_text(["Red", "Blue", "Green"])
    await expect(item.locator(".item-meta")).to_have_text(re.compile(r"^0 votes · closes in "))

    card_a = a.locator(f'.poll[data-poll-id="{pid}"]')
    card_b = b.locator(f'.poll[data-poll-id="{pid}"]')
    for card in (card_a, card_b):
        await expect(card).to_have_attribute("data-state", "open")
        await expect(card.locator(".poll-q")).to_have_text("Which colour next?")
        for colour in ("Red", "Blue", "Green"):
            await expect(card.get_by_role("button", name=f"Vote for {colour}")).to_be_enabled()
        await expect(card.locator(".poll-clock")).to_have_text(re.compile(r"^(2:00|1:[0-5]\d)$"))
        await expect(card.locator(".poll-meta")).to_have_text(
            "0 votes so far · tap an option to vote")
        await expect(card.locator(".poll-pct").first).to_be_hidden()
    # The clock counts down by the server's clock.
    shown = await card_b.locator(".poll-clock").text_content()
    await expect(card_b.locator(".poll-clock")).not_to_have_text(shown or "", timeout=5000)
    # On the phone each option is a big button, and nothing runs off the screen.
    box = await card_b.get_by_role("button", name="Vote for Red").bounding_box()
    assert box and box["height"] >= 48 and box["width"] >= 300, box
    assert await b.evaluate("() => document.documentElement.scrollWidth") <= PHONE["width"]

    # ---------------------------------------------------------------- A votes
    await card_a.get_by_role("button", name="Vote for Blue").click()
    await expect(card_a).to_have_attribute("data-voted", "1")
    blue_a = card_a.get_by_role("button", name="Blue: 100%, 1 vote, your vote")
    await expect(blue_a).to_have_attribute("aria-pressed", "true")
    await expect(blue_a).to_be_disabled()
    await expect(card_a.locator(".poll-pct")).to_have_text(["0%", "100%", "0%"])
    await expect(card_a.locator(".poll-meta")).to_have_text("1 vote · you voted “Blue”")
    await expect(card_a.get_by_role("status")).to_have_text(
        "Results so far: Red 0%, Blue 100%, Green 0%. 1 vote.")
    # B has not voted: the count, not the shares.
    await expect(card_b.locator(".poll-meta")).to_have_text("1 vote so far · tap an option to vote")
    await expect(card_b.locator(".poll-pct").first).to_be_hidden()
    await expect(item.locator(".pr-count")).to_have_text(["0 · 0%", "1 · 100%", "0 · 0%"])

    # ---------------------------------------------------------------- B votes, on the phone
    await card_b.get_by_role("button", name="Vote for Red").tap()
    await expect(card_b).to_have_attribute("data-voted", "0")
    for card in (card_a, card_b):
        await expect(card.locator(".poll-pct")).to_have_text(["50%", "50%", "0%"])
        await expect(card.get_by_role("status")).to_have_text(
            "Results so far: Red 50%, Blue 50%, Green 0%. 2 votes.")
    red_b = card_b.get_by_role("button", name="Red: 50%, 1 vote, your vote")
    await expect(red_b).to_have_attribute("aria-pressed", "true")
    await expect(card_b.get_by_role("button", name="Blue: 50%, 1 vote")).to_have_attribute(
        "aria-pressed", "false")
    await expect(item.locator(".pr-count")).to_have_text(["1 · 50%", "1 · 50%", "0 · 0%"])
    await expect(item.locator(".item-meta")).to_have_text(re.compile(r"^2 votes · closes in "))
    await shoot(b, "social-phone-poll-voted")

    # ---------------------------------------------------------------- a reload keeps A's vote
    await a.reload()
    await expect(a.locator("#conn")).to_have_attribute("data-state", "live")
    await expect(card_a).to_have_attribute("data-voted", "1")
    blue_a = card_a.get_by_role("button", name="Blue: 50%, 1 vote, your vote")
    await expect(blue_a).to_have_attribute("aria-pressed", "true")
    await expect(card_a.locator(".poll-opt:enabled")).to_have_count(0)

    # ---------------------------------------------------------------- a second vote is refused
    # The same viewer in a second tab (the same identity, a fresh sessionStorage):
    # the page does not know the vote, the server does.
    a2: Page = page_errors.watch(await a.context.new_page(), "viewer A, second tab")
    await a2.goto(f"{server.base}/r/{host.room_id}")
    await expect(a2.locator("#conn")).to_have_attribute("data-state", "live")
    assert await a2.evaluate("() => window.livesell.viewer.viewer_id") == \
        await a.evaluate("() => window.livesell.viewer.viewer_id")
    card_a2 = a2.locator(f'.poll[data-poll-id="{pid}"]')
    await expect(card_a2).to_have_attribute("data-voted", "")
    await card_a2.get_by_role("button", name="Vote for Green").click()
    await expect(card_a2.locator(".poll-msg")).to_have_text(
        "You've already voted in this poll: your vote for “Blue” is the one that counts.")
    await expect(card_a2.locator(".poll-msg")).to_be_visible()
    # The refusal named the option counted: this tab marks it now.
    await expect(card_a2).to_have_attribute("data-voted", "1")
    await expect(card_a2.get_by_role("button", name="Blue: 50%, 1 vote, your vote")).to_be_visible()
    await expect(card_a2.locator(".poll-pct")).to_have_text(["50%", "50%", "0%"])
    poll = await host.call("GET", f"/polls/{pid}", expect=200)
    assert (poll["votes"], poll["total"], poll["state"]) == ([1, 1, 0], 2, "open"), poll

    # ---------------------------------------------------------------- the host closes it
    await console.get_by_role("button", name="Close the poll “Which colour next?” now").click()
    # An irreversible action asks first (tests/browser/test_host_console.py).
    await console.locator("#confirm-dlg").get_by_role("button", name="Close poll").click()
    # (Said in the live column's "On now", where the poll and its Close are.)
    await expect(console.locator("#now-result")).to_have_text(
        "✓ Closed “Which colour next?”: 2 votes")
    await expect(item).to_have_attribute("data-state", "closed")
    await expect(item.locator(".badge")).to_have_text("closed")
    await expect(item.get_by_role("button", name=re.compile("Close the poll"))).to_be_hidden()
    await expect(item.locator(".item-meta")).to_have_text("2 votes · closed")
    for card in (card_a, card_b, card_a2):
        await expect(card).to_have_attribute("data-state", "closed")
        await expect(card.locator(".badge")).to_have_text("Closed")
        await expect(card.locator(".poll-clock")).to_have_text("Final")
        await expect(card.locator(".poll-meta")).to_have_text("Final results · 2 votes")
        await expect(card.locator(".poll-pct")).to_have_text(["50%", "50%", "0%"])
        await expect(card.locator(".poll-opt:enabled")).to_have_count(0)
        await expect(card.get_by_role("status")).to_have_text(
            "Final results: Red 50%, Blue 50%, Green 0%. 2 votes.")
    await expect(card_b.get_by_role("button", name="Red: 50%, 1 vote, your vote")).to_be_visible()
    poll = await host.call("GET", f"/polls/{pid}", expect=200)
    assert (poll["votes"], poll["state"]) == ([1, 1, 0], "closed"), poll

    await card_b.scroll_into_view_if_needed()
    await shoot(b, "social-phone-poll-closed")
    await shoot(console, "social-console-poll", full_page=True)
    assert await unnamed_controls(b) == []
    assert await unnamed_controls(console) == []
    _, failures = await contrast_failures(b)
    assert failures == [], failures
    assert page_errors.errors == []


async def test_the_server_clock_closes_a_poll_and_a_late_joiner_sees_the_results(
        server: LiveServer, http: httpx.AsyncClient, browser: Any,
        page_errors: PageErrors) -> None:
    host = await create_room(http, "Quick poll show")
    page = await viewer_page(browser, server.base, host.room_id, page_errors.watch, "viewer",
                             PHONE)
    poll = await host.call("POST", "/polls", {"question": "Encore?", "options": ["Yes", "No"],
                                               "duration_s": 5}, expect=201)
    pid = poll["poll_id"]
    card = page.locator(f'.poll[data-poll-id="{pid}"]')
    await expect(card).to_have_attribute("data-state", "open")
    await expect(card.locator(".poll-clock")).to_have_text(re.compile(r"^0:0[0-5]$"))
    await card.get_by_role("button", name="Vote for Yes").tap()
    await expect(card).to_have_attribute("data-voted", "0")
    await expect(card.locator(".poll-pct")).to_have_text(["100%", "0%"])
    # Nobody closes it: the server's clock does, at closes_at.
    await expect(card).to_have_attribute("data-state", "closed", timeout=CLOCK_WAIT_MS)
    await expect(card.locator(".poll-meta")).to_have_text("Final results · 1 vote")
    await expect(card.get_by_role("button", name="Yes: 100%, 1 vote, your vote")).to_be_disabled()

    # A viewer joining now finds the closed poll, with its results, in the snapshot.
    late = await viewer_page(browser, server.base, host.room_id, page_errors.watch, "late")
    late_card = late.locator(f'.poll[data-poll-id="{pid}"]')
    await expect(late_card).to_have_attribute("data-state", "closed")
    await expect(late_card.locator(".poll-pct")).to_have_text(["100%", "0%"])
    await expect(late_card.locator(".poll-meta")).to_have_text("Final results · 1 vote")
    await expect(late_card).to_have_attribute("data-voted", "")
    await expect(late_card.locator(".poll-opt:enabled")).to_have_count(0)
    assert page_errors.errors == []

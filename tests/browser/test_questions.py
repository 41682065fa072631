"""Questions (Q&A) in the pages (docs/protocol.md section 17), in Chromium against a
real server and Redis. Two viewers ask; two others upvote one question (one on a
phone), and the counts and the order (most votes first, the earlier on a tie)
change live on every page and in the console; the asker's own upvote button is
disabled; a reload keeps an upvote; the console shows the top question first,
marks it answered, and every viewer sees it move to the answered list; a viewer's
fourth unanswered question is refused in words (chat.max_open_questions is 3) and
goes through once the host answered one. A second test covers the chat's limits
(slow mode refused in words and counted down on the Ask button, a mute), and a
page that missed the `question_answered` event finding the question answered at
its next snapshot."""

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
from tests.support import LiveServer, create_room

skip_without_browser()

from playwright.async_api import Locator, Page, expect  # noqa: E402

BLUE = "Does it come in blue?"
SHIP = "When does it ship?"
TOO_MANY = ("You already have the most questions waiting for an answer. Ask this one once "
            "the host has answered one of yours.")


async def viewer_page(browser: Any, base: str, room_id: str, watch: Any, name: str,
                      viewport: dict[str, int] = DESKTOP) -> Page:
    page: Page = await live_page(browser, f"{base}/r/{room_id}", watch, name, viewport)
    return page


def open_list(page: Page) -> Locator:
    return page.locator("#qa-open .qa-item")


def answered_list(page: Page) -> Locator:
    return page.locator("#qa-answered .qa-item")


def item(page: Page, text: str) -> Locator:
    return page.locator(".qa-item", has=page.locator(".qa-text", has_text=text))


async def ask(page: Page, text: str) -> None:
    """Ask through the form and wait for the server's `asked`."""
    await page.get_by_label("Ask the host a question").fill(text)
    await page.get_by_role("button", name="Ask", exact=True).click()
    await expect(page.locator("#ask-note")).to_have_text(
        "✓ Your question is in the list: others can upvote it.")
    await expect(page.get_by_label("Ask the host a question")).to_have_value("")
    await expect(item(page, text)).to_be_visible()


async def test_ask_upvote_live_the_console_answers_and_a_fourth_question_is_refused(
        server: LiveServer, http: httpx.AsyncClient, browser: Any,
        page_errors: PageErrors) -> None:
    console, host = await console_room(browser, server.base, http, "Q&A show",
                                       page_errors.watch)
    ada = await viewer_page(browser, server.base, host.room_id, page_errors.watch, "Ada")
    ben = await viewer_page(browser, server.base, host.room_id, page_errors.watch, "Ben")
    cy = await viewer_page(browser, server.base, host.room_id, page_errors.watch, "Cy",
                           PHONE)
    viewers = (ada, ben, cy)
    for page in viewers:
        await expect(page.locator("#qa-empty")).to_have_text(
            "No questions yet: ask the first one.")
    await open_tool(console, "Questions")
    await expect(console.locator("#qa-open-empty")).to_be_visible()
    await expect(console.locator("#qa-summary")).to_have_text("0 questions waiting")

    # ---------------------------------------------------------------- two questions
    # Ben asks first: on a tie the earlier question comes first.
    await ask(ben, SHIP)
    await ask(ada, BLUE)
    ada_name = await ada.evaluate("() => window.livesell.viewer.nickname")
    for page in viewers:
        await expect(open_list(page).locator(".qa-text")).to_have_text([SHIP, BLUE])
        await expect(open_list(page).locator(".qa-votes")).to_have_text(["0", "0"])
    await expect(console.locator("#qa-open-list .qa-text")).to_have_text([SHIP, BLUE])
    await expect(console.locator("#qa-summary")).to_have_text("2 questions waiting")
    await expect(item(cy, BLUE).locator(".qa-meta")).to_have_text(
        f"Asked by {ada_name} · just now")
    await expect(item(ada, BLUE).locator(".qa-meta")).to_have_text("Asked by you · just now")

    # The asker's own question: no upvote from its asker.
    own = ada.get_by_role("button", name=f"Your question “{BLUE}”, 0 votes")
    await expect(own).to_be_disabled()
    await expect(own).to_have_attribute("aria-pressed", "false")
    await expect(ada.get_by_role("button", name=f"Upvote “{SHIP}”, 0 votes")).to_be_enabled()
    await expect(ben.get_by_role("button", name=f"Your question “{SHIP}”, 0 votes")
                 ).to_be_disabled()

    # ---------------------------------------------------------------- Cy upvotes, on the phone
    up = cy.get_by_role("button", name=f"Upvote “{BLUE}”, 0 votes")
    await expect(up).to_be_enabled()
    box = await up.bounding_box()
    assert box and box["width"] >= 48 and box["height"] >= 48, box
    assert await cy.evaluate("() => document.documentElement.scrollWidth") <= PHONE["width"]
    await up.tap()
    mine = cy.get_by_role("button", name=f"You upvoted “{BLUE}”, 1 vote")
    await expect(mine).to_be_disabled()
    await expect(mine).to_have_attribute("aria-pressed", "true")
    # Live on every page: the count, and Ada's question moves to the top.
    for page in viewers:
        await expect(open_list(page).locator(".qa-text")).to_have_text([BLUE, SHIP])
        await expect(item(page, BLUE)).to_have_attribute("data-votes", "1")
        await expect(item(page, BLUE).locator(".qa-votes")).to_have_text("1")
    await expect(console.locator("#qa-open-list .qa-text")).to_have_text([BLUE, SHIP])
    await expect(console.locator("#qa-open-list .qa-votes")).to_have_text(["1 vote", "0 votes"])

    # ---------------------------------------------------------------- Ben upvotes too
    await ben.get_by_role("button", name=f"Upvote “{BLUE}”, 1 vote").click()
    await expect(ben.get_by_role("button", name=f"You upvoted “{BLUE}”, 2 votes")).to_be_disabled()
    for page in viewers:
        await expect(item(page, BLUE)).to_have_attribute("data-votes", "2")
        await expect(item(page, BLUE).locator(".qa-votes")).to_have_text("2")
        await expect(item(page, SHIP)).to_have_attribute("data-votes", "0")
    await expect(ada.get_by_role("button", name=f"Your question “{BLUE}”, 2 votes")
                 ).to_be_disabled()
    await expect(cy.get_by_role("button", name=f"You upvoted “{BLUE}”, 2 votes")).to_be_disabled()
    await expect(console.locator("#qa-open-list .qa-votes")).to_have_text(["2 votes", "0 votes"])
    await cy.locator("#qa").scroll_into_view_if_needed()
    await shoot(cy, "questions-phone-upvoted")

    # ---------------------------------------------------------------- a reload keeps the upvote
    await cy.reload()
    await expect(cy.locator("#conn")).to_have_attribute("data-state", "live")
    await expect(open_list(cy).locator(".qa-text")).to_have_text([BLUE, SHIP])
    mine = cy.get_by_role("button", name=f"You upvoted “{BLUE}”, 2 votes")
    await expect(mine).to_be_disabled()
    await expect(mine).to_have_attribute("aria-pressed", "true")
    await expect(cy.get_by_role("button", name=f"Upvote “{SHIP}”, 0 votes")).to_be_enabled()

    # ---------------------------------------------------------------- the console answers
    top = console.locator("#qa-open-list .qa-item").first
    await expect(top.locator(".qa-text")).to_have_text(BLUE)
    await expect(top.locator(".item-meta")).to_have_text(re.compile(
        rf"^{re.escape(ada_name)} · asked (just now|1 min ago)$"))
    await console.get_by_role("button", name=f"Mark “{BLUE}” answered").click()
    await expect(console.locator("#qa-result")).to_have_text(f"✓ Marked “{BLUE}” answered")
    await expect(console.locator("#qa-open-list .qa-text")).to_have_text([SHIP])
    done = console.locator("#qa-answered-list .qa-item")
    await expect(done.locator(".qa-text")).to_have_text([BLUE])
    await expect(done.locator(".qa-votes")).to_have_text("2 votes")
    await expect(done.get_by_role("button")).to_be_hidden()
    await expect(console.locator("#qa-summary")).to_have_text("1 question waiting")
    # Viewers see it move to the answered list, with its final votes.
    for page in viewers:
        await expect(open_list(page).locator(".qa-text")).to_have_text([SHIP])
        await expect(answered_list(page).locator(".qa-text")).to_have_text([BLUE])
        answered = answered_list(page).first
        await expect(answered).to_have_attribute("data-state", "answered")
        await expect(answered.locator(".qa-badge")).to_have_text("Answered")
        await expect(answered.locator(".qa-meta")).to_have_text(re.compile(
            r" · 2 votes · answered just now$"))
        await expect(answered.locator(".qa-up")).to_be_hidden()
    await expect(ada.locator("#qa-live")).to_have_text(
        f"The host answered your question “{BLUE}”.")
    listed = await host.call("GET", "/questions?limit=20", expect=200)
    assert [q["text"] for q in listed["open"]] == [SHIP], listed
    assert [(q["text"], q["votes"]) for q in listed["answered"]] == [(BLUE, 2)], listed
    assert listed["answered"][0]["answered_at"], listed
    # A reload still shows it answered (the tab keeps what it saw answered).
    await cy.reload()
    await expect(cy.locator("#conn")).to_have_attribute("data-state", "live")
    await expect(answered_list(cy).locator(".qa-text")).to_have_text([BLUE])
    await expect(open_list(cy).locator(".qa-text")).to_have_text([SHIP])

    # The console, reopened, loads the list (GET …/questions) with the answered one.
    await console.reload()
    await expect(console.locator("#conn")).to_have_attribute("data-state", "live")
    await expect(console.locator("#qa-open-list .qa-text")).to_have_text([SHIP])
    await expect(console.locator("#qa-answered-list .qa-text")).to_have_text([BLUE])
    await console.get_by_role("button", name="Refresh the questions").click()
    await expect(console.locator("#qa-result")).to_have_text(
        "✓ Questions loaded: 1 question waiting")

    # ---------------------------------------------------------------- a fourth question is refused
    await ask(ben, "Is there a size guide?")
    await ask(ben, "Do you ship to Canada?")
    field = ben.get_by_label("Ask the host a question")
    await field.fill("Any discount codes?")
    await ben.get_by_role("button", name="Ask", exact=True).click()
    refusal = ben.locator("#ask-msg")
    await expect(refusal).to_have_text(TOO_MANY)
    await expect(refusal).to_be_visible()
    await expect(refusal).to_have_attribute("role", "alert")
    await expect(field).to_have_value("Any discount codes?")
    await expect(ben.get_by_role("button", name="Ask", exact=True)).to_be_enabled()
    for page in viewers:
        await expect(open_list(page)).to_have_count(3)
    await expect(ben.locator(".qa-text", has_text="Any discount codes?")).to_have_count(0)
    await shoot(ben, "questions-refused", full_page=True)

    # Once the host answered one of Ben's, the same question goes through.
    await console.get_by_role("button", name=f"Mark “{SHIP}” answered").click()
    await expect(console.locator("#qa-result")).to_have_text(f"✓ Marked “{SHIP}” answered")
    await expect(answered_list(ben).locator(".qa-text")).to_have_text([SHIP, BLUE])
    await ben.get_by_role("button", name="Ask", exact=True).click()
    await expect(ben.locator("#ask-note")).to_have_text(
        "✓ Your question is in the list: others can upvote it.")
    await expect(refusal).to_be_hidden()
    await expect(field).to_have_value("")
    for page in (*viewers, console):
        await expect(page.locator(".qa-text", has_text="Any discount codes?")).to_have_count(1)
    listed = await host.call("GET", "/questions?limit=20", expect=200)
    assert [q["text"] for q in listed["open"]] == [
        "Is there a size guide?", "Do you ship to Canada?", "Any discount codes?"], listed

    await shoot(console, "questions-console", full_page=True)
    for page in (cy, console):
        assert await unnamed_controls(page) == []
    _, failures = await contrast_failures(cy)
    assert failures == [], failures
    assert page_errors.errors == []


async def test_slow_mode_and_mute_in_words_and_a_missed_answer_found_at_the_snapshot(
        server: LiveServer, http: httpx.AsyncClient, browser: Any,
        page_errors: PageErrors) -> None:
    host = await create_room(http, "Q&A limits show")
    await host.call("PATCH", "/policy", {"slow_mode_s": 30}, expect=200)
    page = await viewer_page(browser, server.base, host.room_id, page_errors.watch, "viewer",
                             PHONE)
    # The same viewer in a second tab chats: slow mode now holds this viewer's next
    # message, which the first tab does not know.
    tab: Page = page_errors.watch(await page.context.new_page(), "second tab")
    await tab.goto(f"{server.base}/r/{host.room_id}")
    await expect(tab.locator("#conn")).to_have_attribute("data-state", "live")
    await tab.locator("#chat-input").fill("Hello from the other tab")
    await tab.locator("#chat-input").press("Enter")
    await expect(page.locator("#chat-list .msg .text")).to_have_text(["Hello from the other tab"])

    # ---------------------------------------------------------------- slow mode, in words
    field = page.get_by_label("Ask the host a question")
    await field.fill("Can I pay later?")
    await page.get_by_role("button", name="Ask", exact=True).tap()
    note = page.locator("#ask-note")
    await expect(note).to_have_text(re.compile(
        r"^Slow mode is on: wait ([1-9]|[12]\d|30) s before asking\. "
        r"Your question is still in the box\.$"))
    send = page.locator("#ask-send")
    await expect(send).to_have_text(re.compile(r"^Wait ([1-9]|[12]\d|30) s$"))
    await expect(send).to_be_disabled()
    await expect(field).to_have_value("Can I pay later?")
    # Counted down by the server's clock.
    shown = await send.text_content()
    await expect(send).not_to_have_text(shown or "", timeout=5000)
    await expect(page.locator("#qa-open .qa-item")).to_have_count(0)

    # The host turns slow mode off: the question goes at once.
    await host.call("PATCH", "/policy", {"slow_mode_s": 0}, expect=200)
    await expect(send).to_have_text("Ask")
    await expect(send).to_be_enabled()
    await send.tap()
    await expect(note).to_have_text("✓ Your question is in the list: others can upvote it.")
    questions = page.locator("#qa-open .qa-item")
    await expect(questions.locator(".qa-text")).to_have_text(["Can I pay later?"])
    qid = await questions.first.get_attribute("data-question-id")
    assert qid and qid.startswith("q_"), qid

    # ---------------------------------------------------------------- muted
    viewer_id = await page.evaluate("() => window.livesell.viewer.viewer_id")
    await host.call("POST", "/moderation/mute", {"viewer_id": viewer_id, "duration_s": 120},
                    expect=200)
    await expect(note).to_have_text(re.compile(
        r"^The host muted you: you can ask again at .+ \(in (2:00|1:[0-5]\d)\)\.$"))
    await expect(field).to_be_disabled()
    await expect(send).to_be_disabled()
    await host.call("POST", "/moderation/mute", {"viewer_id": viewer_id, "duration_s": 1},
                    expect=200)
    await expect(send).to_be_enabled(timeout=10_000)
    await expect(field).to_be_enabled()

    # ---------------------------------------------------------------- a missed answer
    # The page's connection is down while the host answers: back without a resume
    # point, its snapshot no longer lists the question, which moves to answered.
    await page.evaluate("() => window.livesell.live.stop()")
    await host.call("POST", f"/questions/{qid}/answered", expect=200)
    await page.evaluate("() => { const l = window.livesell.live; l.lastSeq = null; l.start(); }")
    await expect(page.locator("#conn")).to_have_attribute("data-state", "live")
    await expect(page.locator("#qa-answered .qa-text")).to_have_text(["Can I pay later?"])
    await expect(questions).to_have_count(0)
    await expect(page.locator("#qa-empty")).to_be_visible()
    await host.call("POST", f"/questions/{qid}/answered", expect=409)
    assert page_errors.errors == []

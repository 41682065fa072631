"""A scheduled show in the pages (docs/protocol.md section 3.4), in Chromium against
a real server: while the room is `scheduled` the viewer page shows the pre-show
panel (a countdown to `starts_at` by the server clock, the products to expect,
"Remind me" with the calendar file and a notification at the start). Two browsers
whose clocks are wrong by +90 s and -90 s both count down the right remaining time
and switch to the live page at the scheduled instant (the server's due job makes it
live then, too); the calendar link downloads an iCalendar file whose DTSTART is the
start. A second test shows the server's `show_reminder` as a banner, the console's
upcoming room with its start time, and a host going live early."""

from __future__ import annotations

import asyncio
import re
import time
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.browser.conftest import PageErrors
from tests.browser.helpers import (
    DESKTOP,
    PHONE,
    keyed_console,
    shoot,
    skew_clock_script,
    skip_without_browser,
    unnamed_controls,
)
from tests.support import Host, LiveServer, make_settings

skip_without_browser()

from playwright.async_api import Page, expect  # noqa: E402

CLOCK_WAIT_MS = 30_000
SKEW_MS = 90_000

# Records, in real time (the performance clock is not skewed), when the page
# switched from the pre-show to the live page; and every notification it showed.
WATCH_JS = """
(() => {
  window.__notes = [];
  const Real = window.Notification;
  if (Real) {
    const Spy = function (title, options) {
      window.__notes.push({ title, body: (options || {}).body || "" });
      return new Real(title, options);
    };
    Spy.requestPermission = (...a) => Real.requestPermission(...a);
    Object.defineProperty(Spy, "permission", { get: () => Real.permission });
    window.Notification = Spy;
  }
  const watch = () => {
    const room = document.getElementById("room");
    if (!room) { requestAnimationFrame(watch); return; }
    new MutationObserver(() => {
      if (room.dataset.phase === "live" && window.__preshowSeen && !window.__liveAt) {
        window.__liveAt = performance.timeOrigin + performance.now();
      }
      if (room.dataset.phase === "preshow") window.__preshowSeen = true;
    }).observe(room, { attributes: true, attributeFilter: ["data-phase"] });
  };
  document.addEventListener("DOMContentLoaded", watch);
})();
"""


@pytest.fixture
async def sched_server(redis_url: str, data_dir: Path) -> AsyncIterator[LiveServer]:
    # The reminder 25 s before a start: the first test's show (6 s ahead) has none,
    # the second's (30 s ahead) gets it 5 s after it is made.
    live = await LiveServer(make_settings(redis_url, data_dir,
                                          server={"reminder_lead_s": 25})).start()
    try:
        yield live
    finally:
        await live.stop()


async def scheduled_room(http: httpx.AsyncClient, title: str, in_ms: int) -> tuple[Host, int]:
    starts_at = int(time.time() * 1000) + in_ms
    r = await http.post("/api/rooms", json={"title": title, "starts_at": starts_at})
    assert r.status_code == 201, r.text
    data = r.json()
    assert data["room"]["state"] == "scheduled", data
    return Host(http, data["room"]["room_id"], data["host_key"]), starts_at


async def skewed_page(browser: Any, url: str, watch: Any, name: str, skew_ms: int,
                      viewport: dict[str, int], **ctx_args: Any) -> Page:
    ctx = await browser.new_context(viewport=viewport, has_touch=viewport is PHONE, **ctx_args)
    await ctx.add_init_script(skew_clock_script(skew_ms))
    await ctx.add_init_script(WATCH_JS)
    page: Page = watch(await ctx.new_page(), name)
    await page.goto(url)
    await expect(page.locator("#conn")).to_have_attribute("data-state", "live")
    return page


def seconds(text: str) -> int:
    m = re.fullmatch(r"(\d+):(\d\d)", text.strip())
    assert m, text
    return int(m.group(1)) * 60 + int(m.group(2))


async def shows_remaining(page: Page, starts_at: int) -> None:
    """The countdown shows the time left to starts_at by the real clock, within 2 s
    (polled briefly: the first ping round trips settle the page's offset)."""
    diff = None
    for _ in range(30):
        shown = seconds(await page.locator("#preshow-time").text_content() or "")
        left = (starts_at - time.time() * 1000) / 1000
        diff = shown - left
        if abs(diff) <= 2:
            return
        await asyncio.sleep(0.1)
    raise AssertionError(f"countdown off by {diff:.2f} s")


async def test_skewed_clocks_count_down_alike_and_go_live_at_the_start(
        sched_server: LiveServer, browser: Any, page_errors: PageErrors) -> None:
    async with httpx.AsyncClient(base_url=sched_server.base, timeout=30) as http:
        host, starts_at = await scheduled_room(http, "Sunrise drop", 6500)
        await host.product(stock=5, price=2500, title="Ceramic Mug")
        await host.product(stock=5, price=4000, title="Linen Apron")
        url = f"{sched_server.base}/r/{host.room_id}"
        ahead, behind = await asyncio.gather(
            skewed_page(browser, url, page_errors.watch, "clock +90 s", SKEW_MS, PHONE,
                        permissions=["notifications"]),
            skewed_page(browser, url, page_errors.watch, "clock -90 s", -SKEW_MS, DESKTOP))
        # The page's own clock really is wrong.
        wrong = await ahead.evaluate("() => Date.now()") - time.time() * 1000
        assert 85_000 < wrong < 95_000, wrong

        for page in (ahead, behind):
            await expect(page.locator("#room")).to_have_attribute("data-phase", "preshow")
            await expect(page.locator("#preshow")).to_be_visible()
            await expect(page.locator(".stage")).to_be_hidden()
            await expect(page.locator("#preshow-title")).to_have_text("Sunrise drop")
            await expect(page.locator("#preshow-products .preshow-ptitle")).to_have_text(
                ["Ceramic Mug", "Linen Apron"])
            await expect(page.locator("#preshow-products .preshow-pprice")).to_have_text(
                ["$25.00", "$40.00"])
            await shows_remaining(page, starts_at)
        assert await ahead.evaluate("() => document.documentElement.scrollWidth") <= PHONE["width"]

        # ------------------------------------------------------------ remind me
        await ahead.get_by_role("button", name="Remind me").tap()
        await expect(ahead.locator("#remind-status")).to_have_text(
            "✓ You'll get a notification here when the show starts (keep this page open).")
        await behind.get_by_role("button", name="Remind me").click()
        await expect(behind.locator("#remind-status")).to_have_text(re.compile(
            r"^(Notifications are blocked for this site, so this page can't alert you\. Add the "
            r"show to your calendar instead\.|Allow notifications to be alerted here when the "
            r"show starts\.)$"))
        ics_link = ahead.get_by_role("link", name="Add to calendar (.ics)")
        href = await ics_link.get_attribute("href") or ""
        assert href.startswith(f"/api/rooms/{host.room_id}/calendar.ics?page="), href
        async with ahead.expect_download() as info:
            await ics_link.tap()
        download = await info.value
        saved = await download.path()
        text = (await asyncio.to_thread(Path(saved).read_bytes)).decode("utf-8")
        stamp = time.strftime("%Y%m%dT%H%M%SZ", time.gmtime(starts_at // 1000))
        assert f"DTSTART:{stamp}\r\n" in text, text
        assert "SUMMARY:Sunrise drop\r\n" in text, text
        assert f"URL:{url}" in text.replace("\r\n ", ""), text
        await shoot(ahead, "schedule-phone-preshow")
        assert await unnamed_controls(ahead) == []

        # ------------------------------------------------------------ the start
        for page in (ahead, behind):
            await expect(page.locator("#room")).to_have_attribute("data-phase", "live",
                                                                  timeout=CLOCK_WAIT_MS)
            await expect(page.locator("#preshow")).to_be_hidden()
            await expect(page.locator(".stage")).to_be_visible()
            live_at = await page.evaluate("() => window.__liveAt")
            assert live_at is not None
            # At the scheduled instant by the server clock: not before it, and not
            # more than a moment after (the page's clock, or the server's show_live).
            assert starts_at - 300 <= live_at <= starts_at + 1500, live_at - starts_at
        # The server made it live by its clock, too.
        assert (await host.call("GET", "", expect=200))["room"]["state"] == "live"
        await expect(ahead.locator("#room")).to_have_attribute("data-phase", "live")
        notes = await ahead.evaluate("() => window.__notes")
        assert notes == [{"title": "Sunrise drop is live",
                          "body": "The show has started: come and watch."}], notes
        assert await behind.evaluate("() => window.__notes") == []
    assert page_errors.errors == []


async def test_the_reminder_banner_the_consoles_start_time_and_going_live_early(
        sched_server: LiveServer, browser: Any, page_errors: PageErrors) -> None:
    async with httpx.AsyncClient(base_url=sched_server.base, timeout=30) as http:
        host, starts_at = await scheduled_room(http, "Evening vinyl", 30_000)
        url = f"{sched_server.base}/r/{host.room_id}"
        viewer = await skewed_page(browser, url, page_errors.watch, "viewer", -SKEW_MS, PHONE)
        await expect(viewer.locator("#preshow")).to_be_visible()
        await expect(viewer.locator("#preshow-products-empty")).to_be_visible()
        await expect(viewer.locator("#reminder-banner")).to_be_hidden()

        # The console of this room (its key kept on this device) names the start.
        console = await keyed_console(browser, sched_server.base, host, page_errors.watch,
                                      "Evening vinyl")
        await expect(console.locator("#room-state")).to_have_text("Upcoming")
        await expect(console.locator("#room-starts")).to_have_text(re.compile(r"^starts .+"))
        shown = await console.locator("#room-starts").get_attribute("data-starts-at")
        assert shown == str(starts_at)

        # 25 s before the start (5 s from now) the server reminds the room.
        banner = viewer.locator("#reminder-banner")
        await expect(banner).to_be_visible(timeout=CLOCK_WAIT_MS)
        await expect(viewer.locator("#reminder-text")).to_have_text(re.compile(
            r"^Starting soon: “Evening vinyl” goes live at .+ \(in 0:(2\d|30)\)\.$"))
        await shoot(viewer, "schedule-phone-reminder")

        # The host goes live early: show_live switches the page at once.
        r = await http.post(f"/api/rooms/{host.room_id}/live", headers={"X-Host-Key": host.key})
        assert r.status_code == 200, r.text
        await expect(viewer.locator("#room")).to_have_attribute("data-phase", "live")
        await expect(banner).to_be_hidden()
        await expect(viewer.locator(".stage")).to_be_visible()
        await expect(console.locator("#room-state")).to_have_text("Live")
        await expect(console.locator("#room-starts")).to_be_hidden()
    assert page_errors.errors == []

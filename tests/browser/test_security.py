"""The pages under the server's Content-Security-Policy in Chromium: the host
console and the viewer page work (room created, viewer live, chat both ways)
with no CSP violation reported, an injected inline script is blocked (so the
watch would see a violation), the host badge comes only from the server's
`host` flag, and another site cannot frame the host console."""

from __future__ import annotations

import re
from typing import Any

import httpx

from tests.browser.conftest import PageErrors
from tests.browser.helpers import DESKTOP, skip_without_browser
from tests.support import LiveServer, join

skip_without_browser()

from playwright.async_api import Page, expect  # noqa: E402

# Registered before any page script: every CSP violation the page reports.
WATCH_VIOLATIONS = """
window.__csp = [];
document.addEventListener("securitypolicyviolation", (e) => {
  window.__csp.push(`${e.effectiveDirective} blocked ${e.blockedURI || "inline"}`);
});
"""


class Violations:
    """CSP violations from the page's own events and from Chromium's console."""

    def __init__(self) -> None:
        self.console: list[str] = []

    def watch(self, page: Page) -> Page:
        page.on("console", lambda msg: self._console(msg))
        return page

    def _console(self, msg: Any) -> None:
        if "Content Security Policy" in msg.text or "Refused to" in msg.text:
            self.console.append(msg.text)

    async def of(self, page: Page) -> list[str]:
        events: list[str] = await page.evaluate("() => window.__csp")
        return events + self.console


async def test_pages_work_under_the_policy(server: LiveServer, http: httpx.AsyncClient,
                                           browser: Any, page_errors: PageErrors) -> None:
    ctx = await browser.new_context(viewport=DESKTOP)
    await ctx.add_init_script(WATCH_VIOLATIONS)
    seen = Violations()
    host = seen.watch(page_errors.watch(await ctx.new_page(), "host"))
    response = await host.goto(server.base + "/host")
    assert response is not None
    assert "script-src 'self'" in (await response.all_headers())["content-security-policy"]
    await host.get_by_label("Show title").fill("CSP test show")
    await host.get_by_role("button", name="Create room").click()
    await expect(host.locator("#console")).to_be_visible()
    await expect(host.locator("#conn")).to_have_attribute("data-state", "live")
    room_id = (await host.locator("#room-id").text_content() or "").strip()
    host_key = await host.evaluate(
        "(id) => JSON.parse(localStorage.getItem('livesell.host.rooms'))[id].host_key", room_id)
    assert isinstance(host_key, str) and host_key
    # The console's socket carries its host key as a subprotocol, not in the URL.
    socket = await host.evaluate(
        "() => [window.livesell.live.ws.url, window.livesell.live.ws.protocol]")
    assert host_key not in socket[0] and "host_key" not in socket[0], socket
    assert socket[1] == "livesell.v1", socket

    viewer_ctx = await browser.new_context(viewport=DESKTOP)
    await viewer_ctx.add_init_script(WATCH_VIOLATIONS)
    viewer = seen.watch(page_errors.watch(await viewer_ctx.new_page(), "viewer"))
    await viewer.goto(f"{server.base}/r/{room_id}")
    await expect(viewer.locator("#conn")).to_have_attribute("data-state", "live")
    await expect(viewer.locator("#room-title")).to_have_text("CSP test show")
    await viewer.locator("#chat-input").fill("hello under CSP")
    await viewer.locator("#chat-input").press("Enter")
    mine = viewer.locator("#chat-list .msg", has_text="hello under CSP")
    await expect(mine).to_have_count(1)
    await expect(mine.locator(".nick")).to_have_text(re.compile("^guest-"))
    await expect(mine.locator(".host-badge")).to_have_count(0)
    await expect(host.locator("#mod-chat .mod-msg", has_text="hello under CSP")).to_have_count(1)

    # A host console connection's chat carries the server's flag: the badge.
    console = await join(server, room_id, host_key=host_key)
    await console.send({"type": "chat", "text": "Welcome from the host"})
    hosted = viewer.locator("#chat-list .msg.host", has_text="Welcome from the host")
    await expect(hosted.locator(".nick.host-badge")).to_have_text("Host")
    await console.close()

    for page in (host, viewer):
        assert await seen.of(page) == [], page.url

    # The watch can fail: an inline script injected into the page is refused.
    await viewer.evaluate("""() => { const s = document.createElement('script');
        s.textContent = 'window.__ran = true'; document.head.append(s); }""")
    await viewer.wait_for_function("() => window.__csp.length > 0")
    assert await viewer.evaluate("() => window.__ran === undefined")
    assert any(v.startswith("script-src") for v in await seen.of(viewer))
    await ctx.close()
    await viewer_ctx.close()


async def test_another_site_cannot_frame_the_host_console(server: LiveServer,
                                                          browser: Any) -> None:
    ctx = await browser.new_context(viewport=DESKTOP)
    page = await ctx.new_page()
    blocked: list[str] = []
    page.on("console", lambda msg: blocked.append(msg.text)
            if "frame-ancestors 'none'" in msg.text else None)
    # A page of another origin (about:blank, no policy of its own) frames the console.
    async with page.expect_event("framenavigated", timeout=30_000):
        await page.set_content(f'<iframe src="{server.base}/host"></iframe>')
    await page.wait_for_function("() => document.querySelector('iframe') !== null")
    frame = page.frames[-1]
    assert frame is not page.main_frame
    # The framed console never ran: no title, no create form, only Chromium's error page.
    assert await frame.locator("#create-form, #console").count() == 0
    assert frame.url.startswith("chrome-error:"), frame.url
    for _ in range(200):  # the console message may trail the frame's load
        if blocked:
            break
        await page.wait_for_timeout(50)
    assert blocked, "Chromium reported no frame-ancestors refusal"
    await ctx.close()

"""Browser test support: Chromium launch settings, a livesell server on a fixed
port (so a restarted server comes back where the page reconnects), page checks
for accessibility (names, keyboard reach, text contrast) and screenshots."""

from __future__ import annotations

import os
import re
import socket
from pathlib import Path
from typing import TYPE_CHECKING, Any
from urllib.parse import urlsplit

import orjson
import pytest

from server.core.settings import Settings
from tests.support import Host, LiveServer

if TYPE_CHECKING:
    from playwright.async_api import WebSocketRoute

CHROMIUM = "/usr/bin/chromium"
CHROMIUM_ARGS = [
    "--no-sandbox",
    "--disable-background-networking",
    "--disable-gpu",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
]
REPO = Path(__file__).resolve().parents[2]
ARTIFACTS = REPO / "test-artifacts" / "browser"
DOC_SHOTS = REPO / "docs" / "screenshots"

JS_DIR = Path(__file__).resolve().parent / "js"

PHONE = {"width": 390, "height": 844}
DESKTOP = {"width": 1280, "height": 800}


def _js(name: str) -> str:
    """A page-side check, kept as a plain JavaScript file beside the tests."""
    return (JS_DIR / name).read_text(encoding="utf-8")


def skip_without_browser() -> None:
    """Skip the calling test module when there is no browser, except in CI,
    where a missing browser (or Playwright) must fail the run."""
    if os.environ.get("CI"):
        return
    if not os.path.exists(CHROMIUM):
        pytest.skip(f"{CHROMIUM} is not installed (apt-get install chromium)",
                    allow_module_level=True)
    try:
        import playwright  # noqa: F401
    except ImportError:
        pytest.skip("the playwright package is not installed (pip install playwright)",
                    allow_module_level=True)


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
        return port


class FixedPortServer(LiveServer):
    """A LiveServer on a chosen port: stop it and start another on the same port,
    Redis and data directory, and the page's reconnect finds the new one."""

    def __init__(self, settings: Settings, port: int) -> None:
        super().__init__(settings, port=port)


def skew_script(skew_ms: int) -> str:
    """An init script that makes the page's clock wrong by `skew_ms`, the way a
    phone with a badly set clock is wrong: Date.now() is off, the monotonic
    performance clock is not."""
    return ("(() => { const realNow = Date.now.bind(Date); "
            f"Date.now = () => realNow() + ({int(skew_ms)}); }})();")


# The accessible-name check asks Chromium's own accessibility tree, so it sees what a
# screen reader sees. These roles are the interactive ones the pages use.
CONTROL_ROLES = {"button", "textbox", "combobox", "checkbox", "radio", "spinbutton",
                 "searchbox", "slider", "switch", "listbox", "link", "menuitem"}


async def unnamed_controls(page: Any) -> list[str]:
    """Interactive elements in the accessibility tree that have no accessible name."""
    cdp = await page.context.new_cdp_session(page)
    try:
        tree = await cdp.send("Accessibility.getFullAXTree")
    finally:
        await cdp.detach()
    missing = []
    for node in tree["nodes"]:
        if node.get("ignored"):
            continue
        role = (node.get("role") or {}).get("value")
        if role not in CONTROL_ROLES:
            continue
        name = ((node.get("name") or {}).get("value") or "").strip()
        if not name:
            missing.append(f"{role} (backend node {node.get('backendDOMNodeId')})")
    return missing


# Every visible control, described, in DOM order.
VISIBLE_CONTROLS_JS = _js("visible_controls.js")

FOCUS_SIGNATURE_JS = _js("focus_signature.js")


async def tab_walk(page: Any, max_steps: int) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
    """Press Tab from the top of the page; return (controls, focus stops reached)."""
    controls: list[dict[str, Any]] = await page.evaluate(VISIBLE_CONTROLS_JS)
    await page.evaluate("() => { document.activeElement && document.activeElement.blur(); "
                        "window.scrollTo(0, 0); }")
    stops: list[dict[str, Any]] = []
    for _ in range(max_steps):
        await page.keyboard.press("Tab")
        sig = await page.evaluate(FOCUS_SIGNATURE_JS)
        if sig is None:
            continue
        if stops and sig["index"] is not None and sig["index"] == stops[0]["index"]:
            break  # wrapped around
        stops.append(sig)
    return controls, stops


# WCAG 2 contrast of every visible text run against the background actually behind
# it (ancestor background colours composited, element opacity applied). Text over a
# background image or gradient cannot be checked this way and is reported as such.
CONTRAST_JS = _js("contrast.js")


# Colours are read once every finite transition and animation has ended: a button
# that just changed state (enabled to disabled, say) is mid-fade for .15 s, and its
# colours then are neither the old nor the new ones.
SETTLED_JS = """() => Promise.all(document.getAnimations()
  .filter((a) => a.playState === 'running'
    && Number.isFinite(a.effect?.getComputedTiming().endTime))
  .map((a) => a.finished.catch(() => null)))"""


async def contrast_failures(page: Any) -> tuple[int, list[dict[str, Any]]]:
    await page.evaluate(SETTLED_JS)
    result: dict[str, Any] = await page.evaluate(CONTRAST_JS)
    return int(result["checked"]), list(result["failures"])


async def shoot(page: Any, name: str, *, doc: str | None = None, full_page: bool = False) -> None:
    """Screenshot into test-artifacts/; with LIVESELL_UPDATE_SCREENSHOTS=1 also into
    docs/screenshots/ when `doc` names it (the README's pictures are updated on purpose,
    not by every test run)."""
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    await page.screenshot(path=str(ARTIFACTS / f"{name}.png"), full_page=full_page)
    if doc is not None:
        await page.screenshot(path=str(ARTIFACTS / doc))
    if doc is not None and os.environ.get("LIVESELL_UPDATE_SCREENSHOTS") == "1":
        DOC_SHOTS.mkdir(parents=True, exist_ok=True)
        await page.screenshot(path=str(DOC_SHOTS / doc))


async def console_room(browser: Any, base: str, http: Any, title: str,
                       watch: Any) -> tuple[Any, Host]:
    """A host console page that created a room (as a host does, through its form),
    and that room's host side over HTTP with the key the console keeps. `watch`
    (PageErrors.watch) sees the page from before it loads."""
    ctx = await browser.new_context(viewport=DESKTOP)
    console = watch(await ctx.new_page(), "host")
    await console.goto(base + "/host")
    await console.get_by_label("Show title").fill(title)
    await console.get_by_role("button", name="Create room").click()
    await console.wait_for_selector('#conn[data-state="live"]')
    room_id = (await console.locator("#room-id").text_content() or "").strip()
    host_key = await console.evaluate(
        "(id) => JSON.parse(localStorage.getItem('livesell.host.rooms'))[id].host_key", room_id)
    return console, Host(http, room_id, host_key)


async def keyed_console(browser: Any, base: str, host: Host, watch: Any, title: str,
                        init_script: str | None = None, **context: Any) -> Any:
    """The host console of `host`'s room on a device that keeps its key (as after
    creating the room or opening it once), once its connection is live. `context`:
    the browser context's options (DESKTOP unless a `viewport` is given);
    `init_script` runs in the page before any of its own."""
    from playwright.async_api import expect

    ctx = await browser.new_context(**{"viewport": DESKTOP, **context})
    if init_script is not None:
        await ctx.add_init_script(init_script)
    console = watch(await ctx.new_page(), "host")
    await console.goto(base + "/host")
    await console.evaluate(
        "([id, key, title]) => localStorage.setItem('livesell.host.rooms', JSON.stringify("
        "{[id]: {host_key: key, title, opened_at: Date.now()}}))",
        [host.room_id, host.key, title])
    await console.goto(f"{base}/host?room={host.room_id}")
    await expect(console.locator("#conn")).to_have_attribute("data-state", "live")
    return console


async def open_tool(page: Any, name: str) -> None:
    """Show one of the host console's tools, as a host does: a click on its tab in the
    workspace (Catalogue, Sale, Coupons, Giveaway, Auction, Group deal, Poll,
    Questions, Fans, Settings, Report). The live column and the chat are always there."""
    from playwright.async_api import expect

    tab = page.get_by_role("tab", name=re.compile(rf"^{re.escape(name)}\b"))
    await tab.click()
    await expect(tab).to_have_attribute("aria-selected", "true")


def skew_clock_script(skew_ms: int) -> str:
    """An init script that makes the page's wall clock wrong by `skew_ms` the way a
    phone with a badly set clock is: Date.now() and `new Date()` (no arguments) are
    off; a Date made from a timestamp, and the monotonic performance clock, are not."""
    return ("(() => { const skew = " + str(int(skew_ms)) + "; const RealDate = Date; "
            "const realNow = RealDate.now.bind(RealDate); "
            "class SkewedDate extends RealDate { constructor(...args) { "
            "if (args.length === 0) super(realNow() + skew); else super(...args); } "
            "static now() { return realNow() + skew; } } "
            "globalThis.Date = SkewedDate; })();")


async def live_page(browser: Any, url: str, watch: Any, name: str,
                    viewport: dict[str, int] = DESKTOP) -> Any:
    """A viewer page at `url` in a context of its own (a phone's has touch), watched
    for page errors as `name`, once its connection is live."""
    from playwright.async_api import expect

    ctx = await browser.new_context(viewport=viewport, has_touch=viewport is PHONE)
    page = watch(await ctx.new_page(), name)
    await page.goto(url)
    await expect(page.locator("#conn")).to_have_attribute("data-state", "live")
    return page


def requests_to(page: Any, method: str, path_end: str) -> list[str]:
    """Every request the page makes from now on with `method` to a path ending in
    `path_end` (its URL), as it makes it."""
    seen: list[str] = []

    def on_request(request: Any) -> None:
        if request.method == method and urlsplit(request.url).path.endswith(path_end):
            seen.append(request.url)

    page.on("request", on_request)
    return seen


async def forward(page: Any, time: str) -> None:
    """Move the page's clock (installed with `page.clock.install()`), then wait (real
    time) until the connection is live and the ping the jump sent is answered. The
    page's pong deadline is on its own clock, so jumps in a row faster than the server
    answers (a loaded machine) would declare the socket dead: that clears the deadline
    too, but leaves the connection down, its reconnect waiting on a clock nothing
    moves, so this waits for a live connection as well and fails then."""
    await page.clock.fast_forward(time)
    await page.wait_for_function(
        "() => { const live = window.livesell && window.livesell.live;"
        " const conn = document.querySelector('#conn');"
        " return !!live && live.state === 'live' && live.connected && !live.pongDeadline"
        " && !!conn && conn.dataset.state === 'live'; }",
        timeout=60_000)


class Network:
    """The page's WebSocket through a switch. Online, frames pass between the page
    and the server, and both ways are kept: `sent` (the page's), `log` (every frame
    in the order it passed, as ("page", frame) or ("server", frame)). Offline, the
    connection is cut, and a new one reaches nothing: it opens and stays silent, as
    on a network that is down, so the page waits for its welcome and sends nothing."""

    def __init__(self) -> None:
        self.online = True
        self.sent: list[dict[str, Any]] = []
        self.log: list[tuple[str, dict[str, Any]]] = []
        self.page_side: WebSocketRoute | None = None
        self.server_side: WebSocketRoute | None = None

    def route(self, ws: WebSocketRoute) -> None:
        self.page_side = ws
        self.server_side = None
        if not self.online:
            return
        upstream = ws.connect_to_server()
        self.server_side = upstream

        def from_page(message: str | bytes) -> None:
            frame = orjson.loads(message)
            self.sent.append(frame)
            self.log.append(("page", frame))
            upstream.send(message)

        def from_server(message: str | bytes) -> None:
            self.log.append(("server", orjson.loads(message)))
            ws.send(message)

        ws.on_message(from_page)
        upstream.on_message(from_server)

    async def go_offline(self) -> None:
        self.online = False
        assert self.page_side is not None and self.server_side is not None
        await self.server_side.close()
        await self.page_side.close(code=4000, reason="network down")

    async def go_online(self) -> None:
        self.online = True
        assert self.page_side is not None
        await self.page_side.close(code=4000, reason="network back")

    def checkouts(self) -> list[dict[str, Any]]:
        return [f for f in self.sent if f.get("type") == "checkout"]

"""Browser test support: Chromium launch settings, a livesell server on a fixed
port (so a restarted server comes back where the page reconnects), page checks
for accessibility (names, keyboard reach, text contrast) and screenshots."""

from __future__ import annotations

import asyncio
import os
import socket
from pathlib import Path
from typing import Any

import pytest
import uvicorn

from server.fastws import FastWebSocketProtocol
from server.settings import Settings
from tests.support import LiveServer

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

PHONE = {"width": 390, "height": 844}
DESKTOP = {"width": 1280, "height": 800}


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
        super().__init__(settings)
        self.port = port

    async def start(self) -> FixedPortServer:
        config = uvicorn.Config(
            self.app, host="127.0.0.1", port=self.port, lifespan="on", ws=FastWebSocketProtocol,
            ws_max_size=self.settings.hub.max_frame_bytes, ws_per_message_deflate=False,
            log_level="warning", timeout_graceful_shutdown=5,
        )
        self.server = uvicorn.Server(config)
        self.server.install_signal_handlers = False  # type: ignore[attr-defined]
        self.task = asyncio.create_task(self.server.serve())
        for _ in range(400):
            if self.server.started or self.task.done():
                break
            await asyncio.sleep(0.025)
        if not self.server.started:
            if self.task.done():
                self.task.result()
            raise RuntimeError("server did not start")
        return self


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
VISIBLE_CONTROLS_JS = """
() => {
  const sel = 'button, input, select, textarea, a[href], summary, [tabindex]:not([tabindex="-1"])';
  const out = [];
  document.querySelectorAll(sel).forEach((el, i) => {
    if (el.disabled) return;
    if (el.closest('dialog:not([open])')) return;
    if (el.tabIndex < 0) return;
    const r = el.getBoundingClientRect();
    const cs = getComputedStyle(el);
    if (!r.width || !r.height || cs.visibility === 'hidden' || el.closest('[hidden]')) return;
    if (el.type === 'radio' && !el.checked && document.querySelector(
          `input[type=radio][name="${el.name}"]:checked`)) return;  // one tab stop per group
    el.dataset.a11yIndex = String(i);
    out.push({ index: String(i), tag: el.tagName.toLowerCase(), id: el.id,
               text: (el.getAttribute('aria-label') || el.textContent || el.value || '').trim().slice(0, 40) });
  });
  return out;
}
"""

FOCUS_SIGNATURE_JS = """
() => {
  const el = document.activeElement;
  if (!el || el === document.body) return null;
  const cs = getComputedStyle(el);
  const visible = (cs.outlineStyle !== 'none' && parseFloat(cs.outlineWidth) >= 2) ||
                  cs.boxShadow !== 'none';
  return { index: el.dataset.a11yIndex || null, tag: el.tagName.toLowerCase(), id: el.id,
           focusVisible: visible };
}
"""


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
CONTRAST_JS = """
() => {
  const parse = (c) => {
    const m = c.match(/rgba?\\(([^)]+)\\)/);
    if (!m) return null;
    const p = m[1].split(/[ ,\\/]+/).filter(Boolean).map(Number);
    return { r: p[0], g: p[1], b: p[2], a: p.length > 3 ? p[3] : 1 };
  };
  const over = (top, bottom) => {
    const a = top.a + bottom.a * (1 - top.a);
    if (!a) return { r: 0, g: 0, b: 0, a: 0 };
    const mix = (x, y) => (x * top.a + y * bottom.a * (1 - top.a)) / a;
    return { r: mix(top.r, bottom.r), g: mix(top.g, bottom.g), b: mix(top.b, bottom.b), a };
  };
  const lum = (c) => {
    const ch = (v) => { v /= 255; return v <= 0.03928 ? v / 12.92 : Math.pow((v + 0.055) / 1.055, 2.4); };
    return 0.2126 * ch(c.r) + 0.7152 * ch(c.g) + 0.0722 * ch(c.b);
  };
  const ratio = (a, b) => { const [x, y] = [lum(a), lum(b)].sort((p, q) => q - p); return (x + 0.05) / (y + 0.05); };
  const background = (el) => {
    const layers = [];
    for (let n = el; n; n = n.parentElement) {
      const cs = getComputedStyle(n);
      if (cs.backgroundImage && cs.backgroundImage !== 'none') return { image: true, at: n };
      const c = parse(cs.backgroundColor);
      if (c && c.a > 0) { layers.push(c); if (c.a >= 1) break; }
    }
    let bg = { r: 255, g: 255, b: 255, a: 1 };
    for (let i = layers.length - 1; i >= 0; i--) bg = over(layers[i], bg);
    return { color: bg };
  };
  const opacity = (el) => { let o = 1; for (let n = el; n; n = n.parentElement) o *= parseFloat(getComputedStyle(n).opacity); return o; };
  const failures = [];
  let checked = 0;
  const walker = document.createTreeWalker(document.body, NodeFilter.SHOW_TEXT);
  const seen = new Set();
  for (let t = walker.nextNode(); t; t = walker.nextNode()) {
    if (!t.nodeValue.trim()) continue;
    const el = t.parentElement;
    if (!el || seen.has(el)) continue;
    seen.add(el);
    if (el.closest('dialog:not([open]), [hidden], script, style, option')) continue;
    const cs = getComputedStyle(el);
    if (cs.visibility === 'hidden' || cs.display === 'none') continue;
    const range = document.createRange();
    range.selectNodeContents(t);
    const rect = range.getBoundingClientRect();
    if (rect.width < 1 || rect.height < 1) continue;
    if (el.closest('.sr-only')) continue;
    // skipped only when the text is clipped away entirely (e.g. overflow-hidden ancestors)
    const bg = background(el);
    const label = (el.id ? '#' + el.id : el.tagName.toLowerCase() + '.' + [...el.classList].join('.')) +
                  ' "' + t.nodeValue.trim().slice(0, 30) + '"';
    if (bg.image) { failures.push({ label, ratio: 0, reason: 'text over a background image' }); continue; }
    const fgRaw = parse(cs.color);
    const fg = over({ ...fgRaw, a: fgRaw.a * opacity(el) }, bg.color);
    const r = ratio(fg, bg.color);
    checked += 1;
    const size = parseFloat(cs.fontSize);
    const bold = parseInt(cs.fontWeight, 10) >= 700;
    const large = size >= 24 || (bold && size >= 18.66);
    const need = large ? 3 : 4.5;
    if (r < need) failures.push({ label, ratio: Math.round(r * 100) / 100, need });
  }
  return { checked, failures };
}
"""


async def contrast_failures(page: Any) -> tuple[int, list[dict[str, Any]]]:
    result: dict[str, Any] = await page.evaluate(CONTRAST_JS)
    return int(result["checked"]), list(result["failures"])


async def shoot(page: Any, name: str, *, doc: str | None = None, full_page: bool = False) -> None:
    """Screenshot into test-artifacts/ (and into docs/screenshots/ when `doc` names it)."""
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    await page.screenshot(path=str(ARTIFACTS / f"{name}.png"), full_page=full_page)
    if doc is not None:
        DOC_SHOTS.mkdir(parents=True, exist_ok=True)
        await page.screenshot(path=str(DOC_SHOTS / doc))

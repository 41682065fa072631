"""HLS on the viewer page, in Chromium against a real server: the test encodes a
short stream (tests/browser/hls_stream.py) into the server's streams folder as an
encoder would, points the room at it (`/streams/<room>/index.m3u8`, through the
host API) and watches the page play it: through hls.js (the page imports the
installed copy the server serves at /static/vendor/) as in a browser without HLS
of its own, and through whatever this Chromium has (its built-in HLS player where
it has one, else hls.js again), at desktop and phone sizes. Playing means the
picture moves (currentTime goes on by more than a second, readyState at least
HAVE_CURRENT_DATA), with no native controls (no seek bar) and the poster gone; a
stream whose playlist ends (#EXT-X-ENDLIST) ends with the "stream has stopped"
poster. The page's CSP lets all of it through: a refused load is a console error,
and the test fails on any."""

from __future__ import annotations

import os
from typing import Any

import httpx
import pytest

from server.web import routes
from tests.browser.conftest import PageErrors
from tests.browser.helpers import DESKTOP, PHONE, shoot, skip_without_browser
from tests.browser.hls_stream import encode_segments, write_playlist
from tests.support import LiveServer, create_room

skip_without_browser()

from playwright.async_api import expect  # noqa: E402

# Generous: CI machines are loaded, and the video decodes on the CPU.
WAIT_MS = 60_000

# Chromium 14x and later play HLS themselves; this makes the page's Chromium answer
# as a browser without HLS of its own does (Firefox, older Chrome), so that the page
# takes hls.js. Nothing else about the browser changes.
NO_NATIVE_HLS = """(() => {
  const canPlayType = HTMLMediaElement.prototype.canPlayType;
  HTMLMediaElement.prototype.canPlayType = function (type) {
    return /mpegurl/i.test(String(type)) ? "" : canPlayType.call(this, type);
  };
})();"""

PLAYING_JS = """() => {
  const v = document.querySelector('#video');
  return !!v.dataset.player && !v.paused && v.readyState >= 2 && v.currentTime > 0;
}"""
ADVANCED_JS = """(from) => {
  const v = document.querySelector('#video');
  return v.readyState >= 2 && v.currentTime >= from + 1;
}"""


def hls_js_installed() -> None:
    if routes.vendor_file("hls.mjs") is None and not os.environ.get("CI"):
        pytest.skip("hls.js is not installed (npm ci --omit=dev)")


async def open_viewer(browser: Any, base: str, room_id: str, viewport: dict[str, int],
                      watch: Any, name: str, init_script: str | None = None) -> Any:
    ctx = await browser.new_context(viewport=viewport)
    if init_script is not None:
        await ctx.add_init_script(init_script)
    page = watch(await ctx.new_page(), name)
    await page.goto(f"{base}/r/{room_id}")
    await expect(page.locator("#conn")).to_have_attribute("data-state", "live")
    return page


async def assert_plays(page: Any) -> str:
    """The stream plays: the picture moves on, no native controls, no poster. Returns
    which player took it."""
    await page.wait_for_function(PLAYING_JS, timeout=WAIT_MS)
    start = await page.evaluate("document.querySelector('#video').currentTime")
    await page.wait_for_function(ADVANCED_JS, arg=start, timeout=WAIT_MS)
    video = page.locator("#video")
    await expect(video).to_be_visible()
    assert await video.get_attribute("controls") is None  # no seek bar of the browser's
    assert await page.evaluate("document.querySelector('#video').controls") is False
    await expect(page.locator("#poster")).to_be_hidden()
    await expect(page.locator("#video-controls")).to_be_visible()  # the page's own
    player: str = await video.evaluate("(v) => v.dataset.player")
    return player


async def test_hls_js_plays_a_live_stream_until_it_ends(
        server: LiveServer, http: httpx.AsyncClient, browser: Any,
        page_errors: PageErrors) -> None:
    """Desktop, no native HLS: hls.js plays MPEG-TS segments (transmuxed in its worker),
    keeps asking for the live playlist, and ends when the playlist does."""
    hls_js_installed()
    host = await create_room(http, "HLS live show")
    folder = server.settings.stream_dir / host.room_id
    segments = encode_segments(folder, seconds=8, fmp4=False)
    write_playlist(folder, segments, ended=False)
    url = f"/streams/{host.room_id}/index.m3u8"
    await host.call("PATCH", "", {"stream_url": url}, expect=200)

    page = await open_viewer(browser, server.base, host.room_id, DESKTOP, page_errors.watch,
                             "viewer-desktop", NO_NATIVE_HLS)
    assert await page.evaluate("document.querySelector('#video').canPlayType("
                               "'application/vnd.apple.mpegurl')") == ""
    assert await assert_plays(page) == "hls.js"
    # hls.js and its worker from this server, and the stream fetched by hls.js.
    loaded = await page.evaluate(
        "performance.getEntriesByType('resource').map((e) => new URL(e.name).pathname)")
    for path in ["/static/vendor/hls.mjs", "/static/vendor/hls.worker.js", url]:
        assert path in loaded, (path, loaded)
    # hls.js plays through a MediaSource (a blob: URL), not the playlist's address.
    assert (await page.evaluate("document.querySelector('#video').src")).startswith("blob:")
    await shoot(page, "hls-desktop-playing")

    # The encoder stops: its last playlist ends the list; the player, reloading the
    # live playlist, plays to its end and the page says the stream has stopped.
    write_playlist(folder, segments, ended=True)
    await expect(page.locator("#poster-text")).to_have_text(
        "The stream has stopped. Shopping and chat still work.", timeout=WAIT_MS)
    await expect(page.locator("#poster")).to_be_visible()
    assert await page.evaluate("document.querySelector('#video').ended") is True
    await page.context.close()
    assert page_errors.errors == []


@pytest.mark.parametrize("player", ["browser", "hls.js"])
async def test_a_phone_plays_an_ended_stream_to_its_end(
        server: LiveServer, http: httpx.AsyncClient, browser: Any, page_errors: PageErrors,
        player: str) -> None:
    """Phone size, fragmented MP4 segments behind an #EXT-X-MAP, a playlist that
    has ended (VOD): played by this Chromium's own HLS where it has it ("browser"),
    and by hls.js; the stream stopping shows the poster that says so."""
    hls_js_installed()
    host = await create_room(http, "HLS replay")
    folder = server.settings.stream_dir / host.room_id
    write_playlist(folder, encode_segments(folder, seconds=6, fmp4=True), ended=True)
    await host.call("PATCH", "", {"stream_url": f"/streams/{host.room_id}/index.m3u8"},
                    expect=200)

    page = await open_viewer(browser, server.base, host.room_id, PHONE, page_errors.watch,
                             f"viewer-phone-{player}",
                             NO_NATIVE_HLS if player == "hls.js" else None)
    native = bool(await page.evaluate(
        "document.querySelector('#video').canPlayType('application/vnd.apple.mpegurl')"))
    taken = await assert_plays(page)
    assert taken == ("native" if native else "hls.js"), (player, native, taken)
    await shoot(page, f"hls-phone-{player}-playing")
    await expect(page.locator("#poster-text")).to_have_text(
        "The stream has stopped. Shopping and chat still work.", timeout=WAIT_MS)
    await expect(page.locator("#poster")).to_be_visible()
    await page.context.close()
    assert page_errors.errors == []

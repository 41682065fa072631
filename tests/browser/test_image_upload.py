"""Product images in the pages, in Chromium against a real server: the host picks an
image file in the console's product form, which uploads it (the file's bytes, with
the host key) and shows its preview; the product saved with it shows a thumbnail in
the catalogue and its image on the viewer's card once pinned. A file that is not
what it says (a .png holding text) is refused in the server's words, and one of
another type before anything is sent. The help under the field says the server's
size limit, and an upload that gets no answer is stopped after a minute, the button
given back."""

from __future__ import annotations

import hashlib
import re
from pathlib import Path
from typing import Any

import httpx

from tests.browser.conftest import PageErrors
from tests.browser.helpers import (
    DESKTOP,
    console_room,
    requests_to,
    shoot,
    skip_without_browser,
)
from tests.support import LiveServer, server_with
from tests.test_images import png

skip_without_browser()

from playwright.async_api import expect  # noqa: E402

# An <img> the browser fetched and decoded.
LOADED = ("(el) => el.complete && el.naturalWidth > 0")


async def choose_file(page: Any, name: str, mime: str, data: bytes) -> None:
    """As the host does: the "Upload image" button, then a file in the chooser."""
    async with page.expect_file_chooser() as chosen:
        await page.get_by_role("button", name="Upload image").click()
    chooser = await chosen.value
    await chooser.set_files(files=[{"name": name, "mimeType": mime, "buffer": data}])


async def test_the_host_uploads_an_image_and_the_viewer_sees_it(
        server: LiveServer, http: httpx.AsyncClient, browser: Any,
        page_errors: PageErrors) -> None:
    console, host = await console_room(browser, server.base, http, "Image show",
                                       page_errors.watch)
    image = png(24, 16, (30, 120, 220))
    url = f"/images/{host.room_id}/{hashlib.sha256(image).hexdigest()}.png"
    result = console.locator("#pf-upload-result")
    preview = console.locator("#pf-preview")
    await expect(preview).to_be_hidden()
    uploads = requests_to(console, "POST", "/images")
    # The server's limit (the default here), said under the field.
    await expect(console.locator("#pf-image-help")).to_have_text(
        "PNG, JPEG, WebP or GIF, up to 2 MB.")

    # A .png that is really text: the server's refusal, in its words.
    await choose_file(console, "lamp.png", "image/png", b"not a picture, just some text\n")
    await expect(result).to_have_attribute("data-outcome", "error")
    await expect(result).to_have_text(
        "✗ the body is not a PNG image: it does not start with the PNG signature "
        "(bad_request)")
    await expect(console.locator("#pf-image")).to_have_value("")
    await expect(preview).to_be_hidden()
    assert len(uploads) == 1, uploads
    # A file of another type is refused before anything is sent.
    await choose_file(console, "notes.txt", "text/plain", b"hello")
    await expect(result).to_have_text(re.compile(
        r"“notes\.txt” is not a PNG, JPEG, WebP or GIF image"))
    assert len(uploads) == 1, uploads
    assert not (server.settings.data_path / "images" / host.room_id).exists() or not any(
        p.suffix == ".png" for p in (server.settings.data_path / "images" /
                                     host.room_id).iterdir())

    # The real image: uploaded, its URL in the field, its preview shown.
    await console.locator("#pf-title").fill("Blue Vase")
    await console.locator("#pf-price").fill("35")
    await choose_file(console, "vase.png", "image/png", image)
    await expect(result).to_have_text("✓ Uploaded “vase.png”")
    await expect(console.locator("#pf-image")).to_have_value(url)
    await expect(preview).to_be_visible()
    await expect(preview).to_have_attribute("src", url)
    await preview.evaluate(f"(el) => new Promise((ok) => ({LOADED})(el) ? ok() : "
                           "el.addEventListener('load', () => ok(), { once: true }))")
    assert await preview.evaluate("(el) => [el.naturalWidth, el.naturalHeight]") == [24, 16]
    assert (server.settings.data_path / "images" / host.room_id / url.rsplit("/", 1)[1]
            ).read_bytes() == image
    # Two uploads in all: the text refused by the server and this one (notes.txt never went).
    assert len(uploads) == 2, uploads

    # Saved: the product has the image, the catalogue row a thumbnail.
    await console.get_by_role("button", name="Add product").click()
    await expect(console.locator("#product-result")).to_have_text("✓ Added “Blue Vase”")
    await expect(preview).to_be_hidden()
    row = console.locator("#product-rows tr", has_text="Blue Vase")
    pid = await row.get_attribute("data-product-id")
    assert pid is not None
    thumb = row.locator("img.p-thumb")
    await expect(thumb).to_be_visible()
    await expect(thumb).to_have_attribute("src", url)
    await console.wait_for_function(f"() => ({LOADED})(document.querySelector("
                                    f"'tr[data-product-id=\"{pid}\"] img.p-thumb'))")
    await shoot(console, "image-upload-console", full_page=True)
    card = await host.call("GET", f"/products/{pid}", expect=200)
    assert card["image_url"] == url

    # The viewer's card shows it once the host pins the product.
    viewer_ctx = await browser.new_context(viewport=DESKTOP)
    viewer = page_errors.watch(await viewer_ctx.new_page(), "viewer")
    await viewer.goto(f"{server.base}/r/{host.room_id}")
    await expect(viewer.locator("#conn")).to_have_attribute("data-state", "live")
    await console.get_by_role("button", name="Pin Blue Vase").click()
    picture = viewer.locator(f'.pcard[data-product-id="{pid}"] .pimg img')
    await expect(picture).to_have_attribute("src", url)
    await viewer.wait_for_function(f"() => ({LOADED})(document.querySelector("
                                   f"'.pcard[data-product-id=\"{pid}\"] .pimg img'))")

    # Editing shows the product's image in the preview again.
    await console.get_by_role("button", name="Edit Blue Vase").click()
    await expect(console.locator("#pf-image")).to_have_value(url)
    await expect(preview).to_be_visible()
    await console.locator("#product-form").scroll_into_view_if_needed()
    await shoot(console, "image-upload-edit")
    assert page_errors.errors == []


async def test_the_size_limit_is_the_servers_and_a_stuck_upload_is_stopped(
        redis_url: str, data_dir: Path, browser: Any, page_errors: PageErrors) -> None:
    async with server_with(redis_url, data_dir, images={"max_bytes": 512 * 1024}) as (live, http):
        console, _ = await console_room(browser, live.base, http, "Small images show",
                                        page_errors.watch)
        # The help says the server's limit once the room's state has come.
        await expect(console.locator("#pf-image-help")).to_have_text(
            "PNG, JPEG, WebP or GIF, up to 0.5 MB.")
        uploads = requests_to(console, "POST", "/images")
        result = console.locator("#pf-upload-result")
        # Over that limit: refused before anything is sent.
        await choose_file(console, "big.png", "image/png", png(8, 8, (0, 0, 0)) + b"\0" * 600_000)
        await expect(result).to_have_text("✗ “big.png” is 0.6 MB; the most is 0.5 MB "
                                          "(payload_too_large)")
        assert uploads == []

        # An upload the server never answers (a network that swallows it): after a
        # minute of the page's clock it is stopped, the button given back.
        stuck: list[Any] = []
        await console.route(re.compile(r"/images$"), lambda route: stuck.append(route))
        await console.clock.install()
        button = console.locator("#pf-upload")
        await choose_file(console, "slow.png", "image/png", png(4, 4, (9, 9, 9)))
        await expect(button).to_have_text("Uploading…")
        await expect(button).to_be_disabled()
        await expect(button).to_have_attribute("aria-busy", "true")
        assert len(uploads) == 1 and len(stuck) == 1, (uploads, stuck)
        await console.clock.fast_forward("00:59")
        await expect(button).to_have_text("Uploading…")
        await console.clock.fast_forward("00:02")
        await expect(result).to_have_text(
            "✗ “slow.png” was still uploading after 60 s, so the upload was stopped. "
            "Check the connection and try again (timeout)")
        await expect(result).to_have_attribute("data-outcome", "error")
        await expect(button).to_have_text("Upload image")
        await expect(button).to_be_enabled()
        assert await button.get_attribute("aria-busy") is None
        await expect(console.locator("#pf-image")).to_have_value("")
        await console.context.close()
    assert page_errors.errors == []

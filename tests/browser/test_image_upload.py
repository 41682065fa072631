"""Product images in the pages, in Chromium against a real server: the host picks an
image file in the console's product form, which uploads it (the file's bytes, with
the host key) and shows its preview; the product saved with it shows a thumbnail in
the catalogue and its image on the viewer's card once pinned. A file that is not
what it says (a .png holding text) is refused in the server's words, and one of
another type before anything is sent."""

from __future__ import annotations

import hashlib
import re
from typing import Any

import httpx

from tests.browser.conftest import PageErrors
from tests.browser.helpers import DESKTOP, console_room, shoot, skip_without_browser
from tests.support import LiveServer
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

    # A .png that is really text: the server's refusal, in its words.
    await choose_file(console, "lamp.png", "image/png", b"not a picture, just some text\n")
    await expect(result).to_have_attribute("data-outcome", "error")
    await expect(result).to_have_text(
        "✗ the body is not a PNG image: it does not start with the PNG signature "
        "(bad_request)")
    await expect(console.locator("#pf-image")).to_have_value("")
    await expect(preview).to_be_hidden()
    # A file of another type is refused before anything is sent.
    await choose_file(console, "notes.txt", "text/plain", b"hello")
    await expect(result).to_have_text(re.compile(
        r"“notes\.txt” is not a PNG, JPEG, WebP or GIF image"))
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

"""The API docs page (/api/docs) in Chromium: Swagger UI, served from this server,
draws the server's own OpenAPI document under the page's Content-Security-Policy,
with no script error and no CSP violation; an operation opens to show the body
schema the server validates with."""

from __future__ import annotations

from typing import Any

from tests.browser.conftest import PageErrors
from tests.browser.helpers import DESKTOP, skip_without_browser
from tests.browser.test_security import WATCH_VIOLATIONS, Violations
from tests.support import LiveServer

skip_without_browser()

from playwright.async_api import expect  # noqa: E402


async def test_the_docs_page_draws_the_servers_document(server: LiveServer, browser: Any,
                                                        page_errors: PageErrors) -> None:
    ctx = await browser.new_context(viewport=DESKTOP)
    await ctx.add_init_script(WATCH_VIOLATIONS)
    seen = Violations()
    page = seen.watch(page_errors.watch(await ctx.new_page(), "docs"))
    requested: list[str] = []
    page.on("request", lambda r: requested.append(r.url))
    response = await page.goto(server.base + "/api/docs")
    assert response is not None and response.status == 200
    await expect(page.locator(".swagger-ui .info .title")).to_contain_text("livesell")
    # Every operation is listed; one opens to show its request body.
    sales = page.locator("#operations-sales-post_api_rooms_room_id_sales")
    await expect(sales).to_be_visible()
    await sales.locator(".opblock-summary").click()
    await expect(sales.locator(".opblock-body")).to_contain_text("limit_per_buyer")
    assert await page.locator(".opblock").count() >= 60
    assert await seen.of(page) == []
    assert page_errors.errors == []
    # Nothing was fetched from anywhere but this server.
    assert requested and all(u.startswith(server.base) or u.startswith("data:")
                             for u in requested), requested
    await ctx.close()

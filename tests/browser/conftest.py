"""Fixtures for the browser tests: one headless Chromium per test, with every
page's uncaught JavaScript errors collected so a test can assert there were none."""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any

import pytest

from tests.browser.helpers import CHROMIUM, CHROMIUM_ARGS

# The browser logs every HTTP error response and refused WebSocket as a console
# error; tests provoke those on purpose (a refused host action, a stopped server).
EXPECTED_CONSOLE = ("Failed to load resource", "WebSocket connection to")


class PageErrors:
    def __init__(self) -> None:
        self.errors: list[str] = []

    def watch(self, page: Any, name: str) -> Any:
        page.on("pageerror", lambda exc: self.errors.append(f"{name}: {exc}"))
        page.on("console", lambda msg: self._console(name, msg))
        return page

    def _console(self, name: str, msg: Any) -> None:
        if msg.type == "error" and not msg.text.startswith(EXPECTED_CONSOLE):
            self.errors.append(f"{name} console: {msg.text}")


@pytest.fixture
async def browser() -> AsyncIterator[Any]:
    from playwright.async_api import async_playwright

    async with async_playwright() as pw:
        chromium = await pw.chromium.launch(executable_path=CHROMIUM, headless=True,
                                            args=CHROMIUM_ARGS)
        try:
            yield chromium
        finally:
            await chromium.close()


@pytest.fixture
def page_errors() -> PageErrors:
    return PageErrors()

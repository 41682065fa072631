"""Fixtures for the browser tests: one headless Chromium per test, with every
page's uncaught JavaScript errors collected so a test can assert there were none."""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any

import pytest

from tests.browser.helpers import CHROMIUM, CHROMIUM_ARGS


class PageErrors:
    def __init__(self) -> None:
        self.errors: list[str] = []

    def watch(self, page: Any, name: str) -> Any:
        page.on("pageerror", lambda exc: self.errors.append(f"{name}: {exc}"))
        page.on("console", lambda msg: self.errors.append(f"{name} console: {msg.text}")
                if msg.type == "error" else None)
        return page


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

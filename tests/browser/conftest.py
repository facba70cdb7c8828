"""Fixtures for the chat page's browser tests: one Chromium per session, a fresh tab per test.

Nothing here imports `playwright` at module level: without it (or without Chromium) the test
module skips itself with one line saying why, and this file must still load.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import TYPE_CHECKING

import pytest

from tests.browser.chromium import CHROMIUM, LAUNCH_ARGS
from tests.support.servers import ServerProcess

if TYPE_CHECKING:
    from playwright.async_api import Browser, Page

    from tests.browser.chat import Api, ChatPage

ARTIFACTS = Path(__file__).resolve().parents[1] / "artifacts"
VIEWPORT = {"width": 1280, "height": 800}
TIMEOUT_MS = 30_000


@pytest.fixture(scope="session")
async def browser() -> AsyncIterator[Browser]:
    from playwright.async_api import async_playwright, expect

    expect.set_options(timeout=TIMEOUT_MS)
    async with async_playwright() as playwright:
        launched = await playwright.chromium.launch(
            executable_path=str(CHROMIUM), args=LAUNCH_ARGS, headless=True, timeout=60_000
        )
        yield launched
        await launched.close()


@pytest.hookimpl(wrapper=True)
def pytest_runtest_makereport(item: pytest.Item) -> Iterator[None]:
    """Remember each phase's outcome on the item, so `page` can save a screenshot on failure."""
    report = yield
    setattr(item, f"report_{report.when}", report)
    return report


@pytest.fixture
async def page(browser: Browser, request: pytest.FixtureRequest) -> AsyncIterator[Page]:
    """A fresh 1280x800 tab; uncaught page errors fail the test, failures leave a screenshot."""
    context = await browser.new_context(viewport=VIEWPORT)
    context.set_default_timeout(TIMEOUT_MS)
    tab = await context.new_page()
    page_errors: list[str] = []
    tab.on("pageerror", lambda exc: page_errors.append(str(exc)))
    yield tab
    report = getattr(request.node, "report_call", None)
    if report is not None and report.failed:
        ARTIFACTS.mkdir(parents=True, exist_ok=True)
        await tab.screenshot(path=str(ARTIFACTS / f"failed-{request.node.name}.png"))
    await context.close()
    assert not page_errors, f"uncaught errors in the page: {page_errors}"


@pytest.fixture
async def api(shared_server: ServerProcess) -> AsyncIterator[Api]:
    from tests.browser.chat import Api

    async with shared_server.client() as client:
        yield Api(client)


@pytest.fixture
def chat(page: Page, shared_server: ServerProcess) -> ChatPage:
    from tests.browser.chat import ChatPage

    return ChatPage(page, shared_server.base_url)


@pytest.fixture
def artifacts() -> Path:
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    return ARTIFACTS

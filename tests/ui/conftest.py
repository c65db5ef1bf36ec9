"""The dashboard in a real browser: Debian's chromium driven by Playwright, against real
``jobhooks serve`` processes on loopback.

A missing chromium fails the browser tests (it never skips them):
``apt-get install -y chromium``.
"""

from __future__ import annotations

import shutil
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from support.browser import (
    CHROMIUM,
    CHROMIUM_ARGS,
    DOOMED_TYPE,
    HANDLERS,
    VIEWPORTS,
    Dashboard,
    Watched,
    served_dashboard,
)


@pytest.fixture(scope="module")
def browser() -> Iterator[Any]:
    """Headless chromium (Debian's package), shared by a module's tests.

    Playwright's sync API keeps an event loop running in this thread while it is open;
    closing it after each module lets the tests after it use ``asyncio.run``.
    """
    if shutil.which("chromium") is None and not Path(CHROMIUM).exists():
        pytest.fail(
            f"chromium is not installed ({CHROMIUM}); the dashboard's browser tests need it: "
            "apt-get update && apt-get install -y chromium"
        )
    try:
        from playwright.sync_api import sync_playwright
    except ImportError:
        pytest.fail("playwright is not installed: pip install -e '.[test]'")
    with sync_playwright() as playwright:
        launched = playwright.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        try:
            yield launched
        finally:
            launched.close()


@pytest.fixture(scope="module")
def dashboard(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Dashboard]:
    """``jobhooks serve`` on a free loopback port, tokens made by ``jobhooks token create``."""
    directory = tmp_path_factory.mktemp("dashboard")
    with served_dashboard(directory, HANDLERS.format(dir=directory, doomed=DOOMED_TYPE)) as served:
        yield served


@pytest.fixture
def open_page(browser: Any) -> Iterator[Callable[..., Watched]]:
    """``open_page(viewport="desktop", javascript=True)`` -> a fresh context's page,
    watched for dialogs and errors; every context is closed afterwards."""
    contexts: list[Any] = []

    def make(viewport: str = "desktop", javascript: bool = True) -> Watched:
        width, height = VIEWPORTS[viewport]
        context = browser.new_context(
            viewport={"width": width, "height": height},
            timezone_id="Europe/Paris",
            locale="en-GB",
            java_script_enabled=javascript,
        )
        context.set_default_timeout(10_000)
        contexts.append(context)
        watched = Watched(context.new_page())

        def on_dialog(dialog: Any) -> None:
            watched.dialogs.append(f"{dialog.type}: {dialog.message}")
            dialog.dismiss()

        watched.page.on("dialog", on_dialog)

        def on_console(message: Any) -> None:
            if message.type == "error":
                watched.errors.append(message.text)

        watched.page.on("console", on_console)
        watched.page.on("pageerror", lambda error: watched.errors.append(str(error)))
        return watched

    yield make
    for context in contexts:
        context.close()

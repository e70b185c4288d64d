"""Fixtures for the browser tests: a real meshcall subprocess and one Chromium.

Every page gets a pageerror listener: an uncaught exception in the page fails the test."""

from __future__ import annotations

from typing import Any, Callable, Iterator

import pytest

from helpers.browser import chromium
from helpers.procs import Meshcall


@pytest.fixture
def server() -> Iterator[Meshcall]:
    mc = Meshcall()
    try:
        mc.start()
        yield mc
        mc.stop()
        mc.assert_clean()  # no traceback or error line in the server's log
    except BaseException:
        print(mc.output())
        raise
    finally:
        mc.close()


@pytest.fixture(scope="module")
def browser() -> Iterator[Any]:
    with chromium() as b:
        yield b


@pytest.fixture
def open_page(browser: Any) -> Iterator[Callable[..., Any]]:
    """open_page(url, viewport=..., context=...) -> a Page; closed with its context at the end."""
    contexts: list[Any] = []
    errors: list[str] = []

    def open_(url: str | None = None, viewport: dict[str, int] | None = None, context: Any = None) -> Any:
        if context is None:
            context = browser.new_context(ignore_https_errors=True,
                                          viewport=viewport or {"width": 1280, "height": 720})
            contexts.append(context)
        page = context.new_page()
        page.on("pageerror", lambda exc: errors.append(f"{page.url}: {exc}"))
        if url is not None:
            page.goto(url)
        return page

    try:
        yield open_
    finally:
        for ctx in contexts:
            try:
                ctx.close()
            except Exception:  # already closed by the test (closing a context is one of the scenarios)
                pass
    assert not errors, f"uncaught errors in pages: {errors}"

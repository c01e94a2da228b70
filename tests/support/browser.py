"""Driving Debian's Chromium with Playwright's Python package against a running service, for
the page's tests (Playwright's own browser downloads are not used; ``CHROMIUM`` names another
binary)."""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.support.stack import Stack

CHROMIUM_ARGS = [
    "--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
    "--disable-background-networking", "--disable-component-update", "--disable-sync",
]


@contextlib.contextmanager
def browser_page(chromium: Any, stack: Stack) -> Iterator[Any]:
    """A fresh page on the service; on leaving, checks that it reached nothing but the service
    and raised no JavaScript error."""
    if isinstance(chromium, str):
        pytest.fail(chromium)
    context = chromium.new_context(base_url=stack.url, accept_downloads=True,
                                   viewport={"width": 1000, "height": 900})
    context.set_default_timeout(30_000)
    page = context.new_page()
    outside: list[str] = []
    errors: list[str] = []
    allowed = (f"{stack.url}/", f"blob:{stack.url}/")

    def on_request(request: Any) -> None:
        if not request.url.startswith(allowed):
            outside.append(request.url)

    context.on("request", on_request)
    page.on("pageerror", lambda exc: errors.append(str(exc)))
    try:
        yield page
        assert not outside, f"the page made requests outside the service: {outside}"
        assert not errors, f"the page raised JavaScript errors: {errors}"
    finally:
        context.close()


def task_id_of(page: Any) -> str:
    url = str(page.url)
    assert "#job=" in url, url
    return url.split("#job=", 1)[1]


def page_text(page: Any) -> str:
    return " ".join(page.locator("#segments .segment-text").all_inner_texts())


def download(page: Any, link: str) -> tuple[str, str]:
    with page.expect_download() as info:
        page.click(link)
    got = info.value
    return got.suggested_filename, Path(got.path()).read_text(encoding="utf-8")

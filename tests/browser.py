"""A real headless Chromium for tests: Debian's `chromium` (scripts/install-system-packages.sh
browser), driven by Playwright. Playwright's own browser download is never used: the tests
run on the browser the project's files install. A `Visit` records what a page did that a
shopper or a merchant would notice: console messages, uncaught errors, dialogs, and every
request it made."""

from __future__ import annotations

import os
import shutil
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path

from playwright.sync_api import Browser, BrowserContext, Page, sync_playwright

ROOT = Path(__file__).resolve().parent.parent
INSTALL = "scripts/install-system-packages.sh browser (make system) installs it"
# Screenshots and other artefacts a person looks at after a run (CI keeps build/).
ARTIFACTS = Path(os.environ.get("EDGEPERSO_TEST_ARTIFACTS", ROOT / "build" / "test-artifacts"))


def chromium_path() -> str:
    found = os.environ.get("EDGEPERSO_CHROMIUM") or shutil.which("chromium")
    assert found, f"Debian's chromium is missing: {INSTALL}"
    return found


@contextmanager
def chromium() -> Iterator[Browser]:
    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=chromium_path())
        try:
            yield browser
        finally:
            browser.close()


@dataclass
class Visit:
    page: Page
    console: list[str] = field(default_factory=list)  # "type: text"
    errors: list[str] = field(default_factory=list)  # uncaught exceptions
    dialogs: list[str] = field(default_factory=list)  # alert(), confirm(), ...
    requests: list[str] = field(default_factory=list)  # every URL asked, the page's own first

    def screenshot(self, name: str) -> Path:
        """A full-page screenshot kept under ARTIFACTS (a test's evidence for people)."""
        path = ARTIFACTS / f"{name}.png"
        path.parent.mkdir(parents=True, exist_ok=True)
        self.page.screenshot(path=path, full_page=True)
        return path


def visit(where: Browser | BrowserContext, url: str, width: int = 1100) -> Visit:
    """Open `url` in a new page of `where` (a browser: a context of its own; a context: shared
    cookies and storage, as a shopper's next tab), recording what the page does from the start."""
    page = where.new_page()
    page.set_viewport_size({"width": width, "height": 900})
    return watch(page, url)


def watch(page: Page, url: str | None = None) -> Visit:
    """Record what `page` does from now on; then go to `url`, when given."""
    seen = Visit(page)
    page.on("console", lambda message: seen.console.append(f"{message.type}: {message.text}"))
    page.on("pageerror", lambda error: seen.errors.append(str(error)))
    page.on("request", lambda request: seen.requests.append(request.url))

    def dismiss(dialog):  # noqa: ANN001 (Playwright's Dialog)
        seen.dialogs.append(dialog.message)
        dialog.dismiss()

    page.on("dialog", dismiss)
    if url is not None:
        page.goto(url, wait_until="load")
    return seen

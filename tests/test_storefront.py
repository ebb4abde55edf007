"""Shopper journeys on the demo storefront (scripts/storefront.py: the shop's pages behind the
gateway Worker under `wrangler dev`, in front of the edge app), in a real headless Chromium
(tests/browser.py) whose clock the test controls. Each journey keeps a screenshot in
build/test-artifacts/storefront/."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
import urllib.request
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from export.experiment_report import read_log
from tests.browser import Visit, chromium, visit

ROOT = Path(__file__).resolve().parent.parent
pytestmark = pytest.mark.slow  # a bundle, the app, wrangler dev and a browser


@pytest.fixture(scope="module")
def shop(tmp_path_factory):
    """The demo storefront, started by its own command, until the module's tests are done."""
    out = tmp_path_factory.mktemp("storefront")
    ready = out / "ready.json"
    log = (out / "storefront.log").open("w")
    process = subprocess.Popen(
        [sys.executable, "scripts/storefront.py", "--port", str(free_port()), "--out", str(out),
         "--ready-file", str(ready)],
        cwd=ROOT, stdout=log, stderr=subprocess.STDOUT,
    )  # fmt: skip
    deadline = time.monotonic() + 240
    while not ready.exists():
        assert process.poll() is None, (out / "storefront.log").read_text()
        assert time.monotonic() < deadline, "the storefront was not ready within 240 s"
        time.sleep(0.5)
    try:
        yield json.loads(ready.read_text())
    finally:
        process.send_signal(signal.SIGINT)
        try:
            process.wait(timeout=30)
        except subprocess.TimeoutExpired:
            process.kill()
        log.close()


def free_port() -> int:
    from edge.ports import free_port as port

    return port()


@pytest.fixture(scope="module")
def browser():
    with chromium() as running:
        yield running


def shopper(browser, shop, consent: str | None = "yes"):
    """A new shopper: a browser context of their own, with the shop's consent cookie set."""
    context = browser.new_context()
    if consent is not None:
        context.add_cookies([{"name": "consent", "value": consent, "url": shop["shop"]}])
    return context


def slot(seen: Visit, selector: str) -> dict:
    return seen.page.eval_on_selector(
        selector,
        "el => ({filled: el.dataset.edgepersoFilled || null, text: el.innerText, items:"
        " [...el.querySelectorAll('[data-edgeperso-item]')].map(i => i.dataset.edgepersoItem)})",
    )


def product_path(seen: Visit) -> str:
    return seen.page.locator('[data-edgeperso-slot="items"] a').first.get_attribute("href")


def assert_quiet(seen: Visit) -> None:
    assert seen.console == [] and seen.errors == [] and seen.dialogs == []


def test_a_long_look_at_a_product_brings_what_goes_with_it(browser, shop):
    context = shopper(browser, shop)
    context.clock.install()
    seen = visit(context, shop["shop"] + "/")
    seen.page.goto(shop["shop"] + product_path(seen))
    accessories = '[data-edgeperso-slot="accessories"]'
    assert slot(seen, accessories)["items"] == []  # a glance: the shop's text
    seen.page.clock.fast_forward(31_000)  # half a minute on the product, the page in view
    seen.page.wait_for_selector(f'{accessories}[data-edgeperso-filled="browser"]', timeout=10_000)
    assert len(slot(seen, accessories)["items"]) >= 1
    assert_quiet(seen)
    seen.screenshot("storefront/long-look-accessories")
    context.close()


def test_a_cart_left_for_a_quarter_hour_gets_the_offer_once(browser, shop):
    context = shopper(browser, shop)
    start = datetime.now(UTC) - timedelta(minutes=16)
    context.clock.install(time=start)
    seen = visit(context, shop["shop"] + "/")
    seen.page.goto(shop["shop"] + product_path(seen))
    seen.page.click("[data-add]")
    seen.page.wait_for_function("document.cookie.includes('add_to_cart')")
    seen.page.goto("about:blank")  # the shopper leaves the shop...
    seen.page.clock.fast_forward("16:00")  # ...for 16 minutes, which brings the clock to now
    offer = '[data-edgeperso-slot="offer"]'
    seen.page.goto(shop["shop"] + "/")
    seen.page.wait_for_selector(f"{offer}[data-edgeperso-filled]", timeout=10_000)
    shown = slot(seen, offer)
    assert shown["items"] == ["abandoned-cart"] and "10% off" in shown["text"]
    seen.screenshot("storefront/abandoned-cart-offer")
    seen.page.wait_for_function("document.cookie.includes('abandoned-cart')")
    seen.page.goto(shop["shop"] + "/cart.html")
    seen.page.wait_for_timeout(1500)
    assert slot(seen, offer)["items"] == []  # once per visit
    assert_quiet(seen)
    context.close()


def test_the_third_visit_without_a_purchase_brings_the_loyalty_offer(browser, shop):
    context = shopper(browser, shop)
    offer = '[data-edgeperso-slot="offer"]'
    for _ in range(2):  # two visits: each a new tab, as each new visit
        page = visit(context, shop["shop"] + "/")
        page.page.wait_for_timeout(500)
        assert slot(page, offer)["items"] == []
        page.page.close()
    third = visit(context, shop["shop"] + "/")
    third.page.wait_for_selector(f"{offer}[data-edgeperso-filled]", timeout=10_000)
    shown = slot(third, offer)
    assert shown["items"] == ["loyalty"] and "WELCOMEBACK5" in shown["text"]
    assert_quiet(third)
    third.screenshot("storefront/third-visit-loyalty")
    context.close()


def test_without_consent_nothing_is_kept_or_sent_and_the_content_is_the_contexts(browser, shop):
    context = shopper(browser, shop, consent="no")
    seen = visit(context, shop["shop"] + "/")
    seen.page.goto(shop["shop"] + product_path(seen))
    seen.page.wait_for_timeout(2500)  # past an impression's second and a flush
    seen.page.goto(shop["shop"] + "/")
    seen.page.wait_for_timeout(2500)
    storage = seen.page.evaluate("[localStorage.length, sessionStorage.length]")
    assert storage == [0, 0]
    assert [c["name"] for c in context.cookies()] == ["consent"]
    assert not [u for u in seen.requests if u.endswith("/v1/events")]
    assert slot(seen, '[data-edgeperso-slot="content"]')["text"].startswith("Gifts and homeware")
    assert slot(seen, '[data-edgeperso-slot="offer"]')["items"] == []
    assert len(slot(seen, '[data-edgeperso-slot="items"]')["items"]) == 8  # popular here and now
    assert_quiet(seen)
    seen.screenshot("storefront/no-consent")
    context.close()


def test_impressions_and_clicks_reach_the_log_with_their_decision(browser, shop):
    context = shopper(browser, shop)
    seen = visit(context, shop["shop"] + "/")
    strip = '[data-edgeperso-slot="items"]'
    seen.page.wait_for_selector(f"{strip} [data-edgeperso-item]")
    answer = seen.page.evaluate("window.edgeperso.answer")
    session = seen.page.evaluate("JSON.parse(sessionStorage.getItem('edgeperso.session')).id")
    seen.page.wait_for_timeout(3500)  # a second in view, then the next flush
    clicked = slot(seen, strip)["items"][0]
    seen.page.click(f'{strip} [data-edgeperso-item="{clicked}"]')
    seen.page.wait_for_load_state("load")
    assert_quiet(seen)
    log = wait_for_events(Path(shop["events"]), session, want={"impression", "click"})
    mine = log[log["session_id"] == session]
    banner = mine[(mine["type"] == "impression") & (mine["slot"] == "home-banner")]
    choice = answer["slots"]["home-banner"]
    assert banner["variant"].tolist() == [choice["arm"]]
    # pandas' JSON reader, which reads the log back, parses floats to within the last place.
    assert banner["propensity"].astype(float).tolist() == [pytest.approx(choice["propensity"])]
    shown = mine[(mine["type"] == "impression") & (mine["slot"] == "home-strip")]
    assert set(shown["item_id"]) <= {it["item_id"] for it in answer["items"]} and len(shown) >= 4
    click = mine[mine["type"] == "click"]
    assert click["item_id"].tolist() == [clicked] and click["slot"].tolist() == ["home-strip"]
    assert set(mine["decision_id"].dropna()) == {answer["decision_id"]}
    report = experiment_report(shop)
    strip_test = report["experiments"]["strip-ranker"]["variants"]
    assert sum(v["units"] for v in strip_test.values()) >= 1
    seen.screenshot("storefront/after-click")
    context.close()


def wait_for_events(events: Path, session: str, want: set[str], seconds: float = 20.0):
    deadline = time.monotonic() + seconds
    while True:
        log = read_log([events])
        if "session_id" in log:
            types = set(log.loc[log["session_id"] == session, "type"])
            if want <= types:
                return log
        assert time.monotonic() < deadline, f"no {want - types} of session {session} in the log"
        time.sleep(0.5)


def experiment_report(shop) -> dict:
    out = Path(shop["events"]).parent / "report.json"
    done = subprocess.run(
        [sys.executable, "-m", "export.cli", "experiment-report", "--log", shop["events"],
         "--bundle", shop["bundle"], "--json", str(out)],
        capture_output=True, text=True, cwd=ROOT,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr
    return json.loads(out.read_text())


def fetch(url: str) -> tuple[int, dict, str]:
    with urllib.request.urlopen(url, timeout=10) as response:
        return response.status, dict(response.headers), response.read().decode()


def test_the_first_html_already_holds_the_items_and_without_the_app_the_shops_default(
    browser, shop
):
    status, headers, page = fetch(shop["shop"] + "/")
    assert status == 200 and headers["x-edgeperso-filled"] == "edge"
    assert page.count('data-edgeperso-filled="edge"') >= 2 and 'id="edgeperso-answer"' in page
    assert headers["Cache-Control"] == "private, no-store"
    _, _, original = fetch(shop["origin"] + "/")
    os.kill(shop["app_pid"], signal.SIGSTOP)  # the app stops answering
    try:
        status, headers, page = fetch(shop["shop"] + "/")
        assert status == 200 and page == original and "x-edgeperso-filled" not in headers
        context = shopper(browser, shop)
        seen = visit(context, shop["shop"] + "/")
        seen.page.wait_for_timeout(1500)
        assert slot(seen, '[data-edgeperso-slot="items"]')["filled"] is None  # the default
        assert_quiet(seen)
        seen.screenshot("storefront/app-stopped")
        context.close()
    finally:
        os.kill(shop["app_pid"], signal.SIGCONT)

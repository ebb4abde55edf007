"""The build report and the experiment report's page, opened in a real headless Chromium
(tests/browser.py): no console message, no error, no request beyond the file itself, every
chart drawn. Screenshots are kept in build/test-artifacts/report-pages/."""

from __future__ import annotations

import re

import msgspec
import pytest

from edge.bundle.manifest import FlaggedItems, InputFile
from edge.sink import JsonlSegmentSink
from export.cli import main
from export.report.build import REPORT, build_report
from export.report.page import write_page
from tests.browser import Visit, chromium, visit
from tests.export.test_experiment_report import simulated_log

pytestmark = pytest.mark.slow  # a browser


@pytest.fixture(scope="module")
def browser():
    with chromium() as running:
        yield running


def charts_drawn(seen: Visit) -> dict[str, tuple[int, int]]:
    """Each chart's name, and the size its image was drawn at (0 × 0: not drawn)."""
    sizes = seen.page.evaluate(
        """[...document.querySelectorAll('figure.chart')].map(f => {
            const img = f.querySelector('img');
            return [f.dataset.chart, img && img.complete ? img.naturalWidth : 0,
                    img ? img.getBoundingClientRect().height : 0];
        })"""
    )
    return {name: (width, height) for name, width, height in sizes}


def assert_quiet_and_offline(seen: Visit, url: str) -> None:
    assert seen.console == [] and seen.errors == [] and seen.dialogs == []
    assert all(u == url or u.startswith("data:image/svg+xml") for u in seen.requests), seen.requests


def test_the_build_report_opens_with_every_chart_and_nothing_else(browser, bundle_dir):
    path = bundle_dir / REPORT
    url = path.as_uri()
    seen = visit(browser, url)
    assert_quiet_and_offline(seen, url)
    named = re.findall(r'data-chart="([^"]+)"', path.read_text())
    drawn = charts_drawn(seen)
    assert list(drawn) == named and len(named) >= 7
    assert all(width > 100 and height > 50 for width, height in drawn.values()), drawn
    assert seen.page.title().startswith("Build ")
    assert seen.screenshot("report-pages/build-report").stat().st_size > 10_000


def test_the_experiment_page_opens_with_both_charts(browser, tmp_path, seed, capsys):
    records = simulated_log(
        seed, {"control": 600, "treatment": 600}, {"control": 0.1, "treatment": 0.16}
    )
    for record in records:
        if record["type"] == "purchase":
            record["price"] = 20.0
    sink = JsonlSegmentSink(tmp_path / "events" / "exposures")
    sink.write(records)
    sink.close()
    page = tmp_path / "experiments.html"
    assert main(["experiment-report", "--log", str(tmp_path / "events"), "--html", str(page)]) == 0
    url = page.as_uri()
    seen = visit(browser, url)
    assert_quiet_and_offline(seen, url)
    drawn = charts_drawn(seen)
    assert list(drawn) == ["conversion-rate", "revenue-per-unit"]
    assert all(width > 100 and height > 50 for width, height in drawn.values()), drawn
    assert "treatment" in seen.page.inner_text("table")
    seen.screenshot("report-pages/experiment-report")


def test_hostile_names_in_the_data_run_nothing_in_the_browser(browser, bundle, tmp_path):
    """The shop's data names files, items and reasons; a name made to run script stays text."""
    hostile = '<img src=x onerror="alert(1)"><script>alert(2)</script>'
    lineage = msgspec.structs.replace(
        bundle.manifest.lineage,
        files=[InputFile(role="events", name=hostile, sha256="0" * 64, rows=1)],
        dropped_by_reason={hostile: 3},
        non_products={"config": FlaggedItems(items=1, examples=[hostile])},
    )
    manifest = msgspec.structs.replace(bundle.manifest, lineage=lineage)
    path = tmp_path / "hostile.html"
    write_page(path, build_report(manifest, None))
    url = path.as_uri()
    seen = visit(browser, url)
    assert_quiet_and_offline(seen, url)  # no dialog, no request for "x", no CSP violation
    assert hostile in seen.page.inner_text("body")

import re

import pandas as pd

from export.experiment_report import experiment_report
from export.report.experiments import experiment_page
from tests.export.test_experiment_report import simulated_log


def test_the_page_shows_each_variant_with_its_intervals_and_charts(seed):
    log = pd.DataFrame(simulated_log(seed, {"a": 800, "b": 800}, {"a": 0.10, "b": 0.2}))
    report = experiment_report(log)
    html = experiment_page(report, "events/")
    assert "<h2>Experiment strip</h2>" in html and "Log: events/." in html
    assert "Units split as expected" in html
    assert re.findall(r'data-chart="([^"]+)"', html) == ["conversion-rate", "revenue-per-unit"]
    b = report["experiments"]["strip"]["variants"]["b"]
    assert f'<td class="num">{b["units"]:,}</td>' in html
    assert f"{b['vs_a']['difference']:+.4g}" in html


def test_a_sample_ratio_mismatch_is_said_before_any_figure(seed):
    log = pd.DataFrame(simulated_log(seed, {"a": 900, "b": 500}, {"a": 0.1, "b": 0.1}))
    html = experiment_page(experiment_report(log))
    assert "Do not trust this test." in html
    assert html.index("Do not trust") < html.index("<table>")


def test_a_policy_estimate_alone_is_a_page_too():
    report = {
        "policy": {"slot": "home", "arms": {"loyal": "b1", "": "b0"}},
        "ips": {
            "impressions": 100,
            "logged_click_rate": 0.1,
            "ips_click_rate": 0.12,
            "snips_click_rate": 0.11,
            "effective_sample_size": 33.3,
        },
    }
    html = experiment_page(report)
    assert "loyal → b1, everyone else → b0" in html and "<h2>A candidate bandit policy</h2>" in html

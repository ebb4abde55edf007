"""The experiment report as a page (`edgeperso experiment-report --html`): per experiment, the
sample-ratio check first (a failed one means the figures below it cannot be trusted), then each
variant's conversion rate and revenue per unit with their intervals, as a table and as charts.
It renders what `export.experiment_report` computed, and computes nothing itself."""

from __future__ import annotations

import math
from typing import Any

from export.report import charts
from export.report.page import Page, Section

# Each variant's figure drawn with its interval: the report's key, what it is, the caption.
CHARTS = (
    ("rate", "conversion rate", "Each variant's conversion rate and its 95% Wilson interval."),
    (
        "revenue_per_unit",
        "revenue per unit",
        "Each variant's revenue per unit (price × quantity of the target events after the first "
        "exposure) and its 95% interval.",
    ),
)


def experiment_page(report: dict[str, Any], sources: str = "") -> str:
    """The page of an `experiment_report` (and of its `ips` estimate, when one was asked).
    `sources`: where the log was read, for the page's lead."""
    target = report.get("target", "purchase")
    lead = f"Conversion = a {target} at or after the unit's first exposure."
    if sources:
        lead += f" Log: {sources}."
    page = Page("Experiment report", lead=lead)
    for key, result in report.get("experiments", {}).items():
        _experiment(page.section(f"Experiment {key}"), result)
    if "ips" in report:
        _policy(page.section("A candidate bandit policy"), report["policy"], report["ips"])
    if not page.sections:
        page.section("Nothing to report").paragraph("The log held no exposure.", "note")
    return page.html()


def _experiment(section: Section, result: dict[str, Any]) -> None:
    srm = result["sample_ratio"]
    if srm["mismatch"]:
        section.paragraph(
            f"Sample ratio mismatch (p = {srm['p_value']:.3g}): the units did not split as the "
            "weights say, so assignment or logging is broken. Do not trust this test.",
            "bad",
        )
    else:
        section.paragraph(
            f"Units split as expected (sample-ratio p = {srm['p_value']:.3g}, weights from "
            f"{srm['weights_from']}).",
            "good",
        )
    variants: dict[str, dict[str, Any]] = result["variants"]
    names = list(variants)
    section.table(
        [
            "variant",
            "units",
            "conversions",
            "rate",
            "95% interval",
            "vs the first",
            "revenue per unit",
            "95% interval",
            "vs the first",
        ],
        [_variant_row(name, v) for name, v in variants.items()],
        f"The first variant ({names[0]}) is the control; expected shares "
        + ", ".join(f"{s:.0%}" for s in srm["expected_shares"])
        + ".",
    )
    rated = [n for n in names if not _nan(variants[n]["rate"])]
    for key, what, caption in CHARTS if rated else ():
        section.chart(
            charts.intervals(
                rated,
                [variants[n][key] for n in rated],
                [tuple(variants[n][f"{key}_ci95"]) for n in rated],
                f"{what.capitalize()}, with its 95% interval",
                what,
                differences=False,
            ),
            what.replace(" ", "-"),
            caption,
        )
    if result["units_in_two_variants"]:
        section.paragraph(
            f"{result['units_in_two_variants']:,} unit(s) saw two variants and were left out.",
            "note",
        )
    if result["variants_not_in_bundle"]:
        section.paragraph(
            "Variants in the log that the bundle does not run: "
            + ", ".join(result["variants_not_in_bundle"])
            + ".",
            "bad",
        )


def _variant_row(name: str, v: dict[str, Any]) -> list[str | int | float | None]:
    rate = next((d for k, d in v.items() if k.startswith("vs_")), None)
    money = next((d for k, d in v.items() if k.startswith("revenue_vs_")), None)
    return [
        name,
        v["units"],
        v["conversions"],
        None if _nan(v["rate"]) else v["rate"],
        _interval(v["rate_ci95"]),
        _versus(rate, with_p=True),
        None if _nan(v["revenue_per_unit"]) else v["revenue_per_unit"],
        _interval(v["revenue_per_unit_ci95"]),
        _versus(money, with_p=False),
    ]


def _policy(section: Section, policy: dict[str, Any], ips: dict[str, float]) -> None:
    arms = ", ".join(
        f"{segment or 'everyone else'} → {arm}" for segment, arm in policy["arms"].items()
    )
    section.paragraph(f"Slot {policy['slot']}: {arms}.")
    section.facts(
        [
            ("impressions logged", ips["impressions"]),
            ("click rate of the logged policy", ips["logged_click_rate"]),
            ("the candidate's, by inverse propensity scoring", ips["ips_click_rate"]),
            ("the same, self-normalized", ips["snips_click_rate"]),
            ("effective sample size", ips["effective_sample_size"]),
        ]
    )


def _interval(pair: list[float]) -> str:
    low, high = pair
    return "–" if _nan(low) or _nan(high) else f"{low:.4g} to {high:.4g}"


def _versus(diff: dict[str, Any] | None, with_p: bool) -> str:
    if diff is None:
        return "(control)"
    if _nan(diff.get("difference", math.nan)):
        return "–"
    text = f"{diff['difference']:+.4g}"
    if "ci95" in diff:
        text += f" ({diff['ci95'][0]:+.4g} to {diff['ci95'][1]:+.4g})"
    if with_p and "p_value" in diff:
        text += f", p {diff['p_value']:.3g}"
    return text


def _nan(value: Any) -> bool:
    return isinstance(value, float) and math.isnan(value)

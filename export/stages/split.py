"""Split: `Dataset` → `Split` (a training part and a test part under the configured
protocol, for the evaluation).

The ranking stage cuts its label part the same way (`holdout`), and both ask that part the
questions (`cases_for`) a model of the rest must answer. `choose_holdout` settles `auto`: a
time window when it asks enough questions, else a random share of each customer's items (a
log whose customers arrive in bulk, as ratings entered at a sitting do)."""

from __future__ import annotations

from collections.abc import Collection
from dataclasses import dataclass

import msgspec
import pandas as pd

from edge.bundle.manifest import SplitInfo
from edge.schemas import Profile
from export.cases import (
    PER_CUSTOMER,
    Case,
    choose_protocol,
    leave_last_out,
    make_cases,
    next_new_item,
    random_holdout,
)
from export.config import BuildConfig
from export.errors import CannotTrainError
from export.stages.read import Dataset

# `auto` keeps the time window when it asks at least ENOUGH_CASES questions; below that, when
# it asks at least MIN_WINDOW_CASES and WINDOW_SHARE of what a random share of each customer's
# items would. A window is what a shop meets (what comes next), and a ranker trained on a
# small one still beats one trained on a random share on a time split (docs/models.md); a
# log whose customers arrive in bulk leaves the window a small share of them, first visits.
ENOUGH_CASES = 1_000
MIN_WINDOW_CASES = 200
WINDOW_SHARE = 0.25


@dataclass(frozen=True, eq=False)  # eq=False: DataFrames have no truth value to compare
class Split:
    train: Dataset  # on Spark when the events are there
    test: Dataset
    description: SplitInfo  # what the manifest says of it
    protocol: str  # settled (never `auto`): what `cases_for` asks the test part


@dataclass(frozen=True)
class Holdout:
    """A protocol `auto` was settled into, and why (the build's output and manifest say it)."""

    protocol: str  # one of export.cases.PROTOCOLS but `auto`
    reason: str


def split_events(data: Dataset, config: BuildConfig) -> Split:
    """The evaluation's split of `data`; a part left empty stops the build."""
    split = split_for_evaluation(data, config)
    if not len(split.train) or not len(split.test):
        raise CannotTrainError(
            f"the {split.description.split} split left an empty part ({len(split.train):,} "
            f"training and {len(split.test):,} test events): {_empty_because(data, config)}"
        )
    return split


def _empty_because(data: Dataset, config: BuildConfig) -> str:
    protocol = config.evaluation.protocol
    if protocol in PER_CUSTOMER:
        targets = " or ".join(present_target_types(data.summary.types, config))
        return (
            f"no known customer has two {targets} events or more; set evaluation.protocol "
            'to "auto" for a time split, or choose other evaluation.target_types'
        )
    return (
        f"the log spans {data.summary.days:.1f} days; set evaluation.holdout_days to fit the data"
    )


def split_for_evaluation(data: Dataset, config: BuildConfig, protocol: str | None = None) -> Split:
    """The training and test parts under `protocol` (default: the configured one, `auto`
    settled by `choose_holdout`)."""
    ec = config.evaluation
    chosen = choose_holdout(data, config, protocol or ec.protocol)
    days = ec.holdout_days or ranker_label_days(data, config)
    split = holdout(data, config, chosen.protocol, days)
    described = msgspec.structs.replace(split.description, chosen_because=chosen.reason)
    return Split(split.train, split.test, described, split.protocol)


def holdout(data: Dataset, config: BuildConfig, protocol: str, days: float) -> Split:
    """`data` split under a settled protocol; `days`: a time split's test window. Every
    split cuts the events where they are (on Spark too)."""
    if protocol not in PER_CUSTOMER:
        history, window = time_split(data, days)
        return Split(history, window, SplitInfo(split="time", days=round(days, 2)), protocol)
    info = msgspec.convert({"split": protocol}, SplitInfo)
    targets = present_target_types(data.summary.types, config)
    share, seed = config.evaluation.holdout_share, config.seed
    if data.held is None and data.on_spark is not None:
        from export.spark import holdout as on_spark

        if protocol == "leave_last_out":
            parts = on_spark.leave_last_out(data.on_spark, targets)
        elif protocol == "random":
            parts = on_spark.random_holdout(data.on_spark, targets, share, seed)
        else:
            parts = on_spark.next_new_item(data.on_spark, targets)
        train, test = (data.on(part) for part in parts)
        return Split(train, test, info, protocol)
    events = data.events
    if protocol == "leave_last_out":
        train_part, test_part = leave_last_out(events, targets)
    elif protocol == "random":
        train_part, test_part = random_holdout(events, targets, share, seed)
    else:
        train_part, test_part = next_new_item(events, targets)
    return Split(data.with_events(train_part), data.with_events(test_part), info, protocol)


def time_split(data: Dataset, days: float) -> tuple[Dataset, Dataset]:
    """The events before the last `days` days of `data`, and those days (where they are)."""
    last = data.summary.last
    if last is None:
        return data, data
    cut = last - pd.Timedelta(days=days)
    return data.before(cut), data.since(cut)


def choose_holdout(
    data: Dataset, config: BuildConfig, protocol: str, days: float | None = None
) -> Holdout:
    """`protocol` as set, or for `auto`: a time window of `days` (default: the evaluation's
    holdout) unless it asks too few questions, in absolute terms (under MIN_WINDOW_CASES) or
    against a random share of each customer's target items (under WINDOW_SHARE of what that
    asks), or when its visitors are mostly customers new to the history (the shape of a log
    whose customers arrive in bulk, all their events at once); then the random share. A window
    that asks ENOUGH_CASES is always kept."""
    if protocol != "auto":
        return Holdout(protocol, "set in evaluation.protocol (or --protocol)")
    days = days or config.evaluation.holdout_days or ranker_label_days(data, config)
    history, window = time_split(data, days)
    kind = choose_protocol("auto", known_share(history, window))
    targets = present_target_types(data.summary.types, config)
    in_window = _questions(kind, history, window, targets)
    described = f"the last {days:.1f} days ask {in_window:,} {kind} questions"
    if in_window >= ENOUGH_CASES:
        return Holdout(kind, f"{described} (at least {ENOUGH_CASES:,})")
    per_customer = data.customers_with_items(targets, at_least=2)
    share = f"a random {config.evaluation.holdout_share:.0%} of each customer's items"
    asks = f"{share} asks {per_customer:,}"
    visitors = window.events_per_visitor()
    identified = float(visitors.drop("", errors="ignore").sum() / max(1, visitors.sum()))
    if kind == "sessions" and identified >= 0.5 and per_customer > in_window:
        # Logged-in visitors who are new to the history: customers whose whole log arrives
        # at once (ratings entered in bulk, an imported order history).
        return Holdout("random", f"{described}, mostly first visits of customers; {asks}")
    if in_window >= max(MIN_WINDOW_CASES, WINDOW_SHARE * per_customer):
        return Holdout(kind, f"{described}; {asks}, and the window asks enough of them")
    if per_customer > in_window:
        return Holdout("random", f"{described}, too few; {asks}")
    return Holdout(kind, f"{described}; {share} would ask fewer ({per_customer:,})")


def known_share(history: Dataset, window: Dataset) -> float:
    """The share of `window`'s events whose visitor is a customer known in `history`."""
    visitors = window.events_per_visitor()
    known = history.known_customers(visitors.index.to_series())
    return float(visitors[known].sum() / visitors.sum()) if len(visitors) else 0.0


def _questions(kind: str, history: Dataset, window: Dataset, targets: list[str]) -> int:
    """About how many cases `make_cases` finds in `window` (without building profiles)."""
    if kind == "users":
        customers = window.customer_targets(targets)["user_id"]
        return int(history.known_customers(customers).sum())
    return window.sessions_with_targets(targets)


def ranker_label_days(data: Dataset, config: BuildConfig) -> float:
    """The ranker's label window: the configured days, else the last 15% of the span."""
    return config.ranker.label_days or max(1.0, 0.15 * data.summary.days)


def present_target_types(present: Collection[str], config: BuildConfig) -> list[str]:
    """The configured target types, or every positively weighted type when the data has none
    of them (a log of views only, say): of the event types `present`."""
    wanted = [t for t in config.evaluation.target_types if t in present]
    if wanted:
        return wanted
    return [t for t, w in config.events.weights.items() if w > 0 and t in present]


def cases_for(
    protocol: str,
    history: Dataset,
    window: Dataset,
    profiles: dict[str, Profile],
    config: BuildConfig,
    limit: int,
) -> tuple[str, list[Case]]:
    """The questions `window` asks of a model fitted on `history`, under `protocol`."""
    share = known_share(history, window) if protocol in ("auto", "temporal") else 0.0
    chosen = choose_protocol(protocol, share)
    targets = present_target_types(window.summary.types, config)
    return chosen, make_cases(chosen, window, profiles, targets, limit, config.seed)

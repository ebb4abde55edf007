"""Split: `Dataset` → `Split` (a training part and a test part under the configured
protocol, for the evaluation).

The ranking stage cuts its own label window the same way (`ranker_label_days`), and both ask
a window the questions (`cases_for`) a model of the events before it must answer."""

from __future__ import annotations

from dataclasses import dataclass

import pandas as pd

from edge.bundle.manifest import SplitInfo
from edge.schemas import Profile
from export.cases import Case, choose_protocol, leave_last_out, make_cases, time_split
from export.config import BuildConfig
from export.errors import CannotTrainError
from export.stages.read import Dataset

DAY = pd.Timedelta(days=1)


@dataclass(frozen=True, eq=False)  # eq=False: DataFrames have no truth value to compare
class Split:
    train: pd.DataFrame
    test: pd.DataFrame
    description: SplitInfo  # what the manifest says of it


def split_events(data: Dataset, config: BuildConfig) -> Split:
    """The evaluation's split of `data.events`; a part left empty stops the build."""
    split = split_for_evaluation(data.events, config)
    if split.train.empty or split.test.empty:
        raise CannotTrainError(
            f"the {split.description.split} split left an empty part ({len(split.train):,} "
            f"training and {len(split.test):,} test events): {_empty_because(data, config)}"
        )
    return split


def _empty_because(data: Dataset, config: BuildConfig) -> str:
    if config.evaluation.protocol == "leave_last_out":
        targets = " or ".join(present_target_types(data.events, config))
        return (
            f"no known customer has two {targets} events or more; set evaluation.protocol "
            'to "auto" for a time split, or choose other evaluation.target_types'
        )
    span = (data.events["ts"].max() - data.events["ts"].min()) / DAY
    return f"the log spans {span:.1f} days; set evaluation.holdout_days to fit the data"


def split_for_evaluation(events: pd.DataFrame, config: BuildConfig) -> Split:
    """(train, test, a description of the split) under the configured protocol."""
    ec = config.evaluation
    if ec.protocol == "leave_last_out":
        train_part, test_part = leave_last_out(events, present_target_types(events, config))
        return Split(train_part, test_part, SplitInfo(split="leave_last_out"))
    # By default the ranker's label window, so the final ranker's history models are the
    # evaluation's (`FittedBefore` in the ranking stage).
    days = ec.holdout_days or ranker_label_days(events, config)
    train_part, test_part = time_split(events, days)
    return Split(train_part, test_part, SplitInfo(split="time", days=round(days, 2)))


def ranker_label_days(events: pd.DataFrame, config: BuildConfig) -> float:
    """The ranker's label window: the configured days, else the last 15% of the span."""
    span_days = (events["ts"].max() - events["ts"].min()) / DAY
    return config.ranker.label_days or max(1.0, 0.15 * span_days)


def present_target_types(events: pd.DataFrame, config: BuildConfig) -> list[str]:
    """The configured target types, or every positively weighted type when the data has none
    of them (a log of views only, say)."""
    wanted = [t for t in config.evaluation.target_types if (events["type"] == t).any()]
    if wanted:
        return wanted
    return [t for t, w in config.events.weights.items() if w > 0 and (events["type"] == t).any()]


def cases_for(
    protocol: str,
    history: pd.DataFrame,
    window: pd.DataFrame,
    profiles: dict[str, Profile],
    config: BuildConfig,
    limit: int,
) -> tuple[str, list[Case]]:
    """The questions `window` asks of a model fitted on `history`, under `protocol`."""
    chosen = choose_protocol(protocol, history, window)
    targets = present_target_types(window, config)
    return chosen, make_cases(chosen, window, profiles, targets, limit, config.seed)

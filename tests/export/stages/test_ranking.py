"""The ranking stage: the ranker's rows from a label window, and reusing the evaluation's fit
of the history when it is the same history."""

import msgspec
import numpy as np
import pandas as pd
import pytest

from export.config import BuildConfig
from export.interactions import build_universe
from export.segments import user_features
from export.stages.candidates import fit_candidates
from export.stages.ranking import FittedBefore, RankingInput, fit_ranking
from export.stages.read import Dataset
from export.stages.split import ranker_label_days, split_for_evaluation
from export.stages.visitors import fit_segments
from export.validate import QualityReport, normalize_events


def label_days(events, config):
    return ranker_label_days(Dataset(events, build_universe(events, None)), config)


@pytest.mark.parametrize("protocol", ["users", "random"])
def test_the_final_ranker_reuses_the_models_the_evaluation_fitted_on_its_history(
    shop, seed, protocol
):
    """With the default holdout, the evaluation's training part is the final ranker's history
    (a time window's or a random share's): the candidate models fitted on it serve both, and
    the ranker is the one a refit gives."""
    labels = "window" if protocol == "users" else "random"
    config = msgspec.convert(
        {"seed": seed, "evaluation": {"protocol": protocol}, "ranker": {"labels": labels}},
        BuildConfig,
    )
    events = normalize_events(shop.events, config, QualityReport())
    universe = build_universe(events, None)
    data = Dataset(events, universe)
    split = split_for_evaluation(data, config)
    train_part = split.train.events
    kind = split.description.split
    assert kind == ("time" if protocol == "users" else "random")
    if kind == "time":
        assert split.description.days == round(ranker_label_days(data, config), 2)
    trees = fit_candidates(split.train, config).trees
    features = user_features(train_part, universe)
    segments = fit_segments(data, config)

    def ranker(fitted_before: FittedBefore | None = None):
        return fit_ranking(RankingInput(data, segments, fitted_before), config)

    before = FittedBefore(kind, len(train_part), trees, features)
    reused = ranker(before)
    refitted = ranker()
    assert reused.onnx == refitted.onnx
    assert reused.training == refitted.training
    # Models of other rows are not taken for the history's: a wrong fit would show here.
    half = data.with_events(train_part.iloc[: len(train_part) // 2])
    other = fit_candidates(half, config).trees
    wrong = ranker(FittedBefore(kind, len(train_part), other))
    assert wrong.onnx != refitted.onnx
    half_features = user_features(half.events, universe)
    wrong = ranker(FittedBefore(kind, len(train_part), trees, half_features))
    assert wrong.onnx != refitted.onnx
    mismatched = FittedBefore(kind, len(train_part) // 2, other)
    assert ranker(mismatched).onnx == refitted.onnx


def test_a_ranker_that_cannot_be_trained_says_what_its_label_window_held(shop, seed):
    """Every item of the label window new to the history: no visitor took a candidate."""
    from export.errors import CannotTrainError

    config = msgspec.convert({"seed": seed, "ranker": {"labels": "window"}}, BuildConfig)
    events = normalize_events(shop.events, config, QualityReport())
    cut = events["ts"].max() - pd.Timedelta(days=label_days(events, config))
    late = events["ts"] >= cut
    events.loc[late, "item_id"] = "new-" + events.loc[late, "item_id"]
    data = Dataset(events, build_universe(events, None))
    with pytest.raises(CannotTrainError) as refused:
        fit_ranking(RankingInput(data, fit_segments(data, config), None), config)
    message = str(refused.value)
    assert message.startswith("no visitor in the label window")
    assert f"The label window is the last {label_days(events, config):.1f} days" in message
    window = events[late]
    known = window["user_id"] != ""
    who = f"{window.loc[known, 'user_id'].nunique():,} customers"
    if not known.all():  # anonymous visitors are counted by session, not as one customer ""
        who += f" and {window.loc[~known, 'session_id'].nunique():,} anonymous sessions"
    assert f"{int(late.sum()):,} events of {who})" in message
    assert "set ranker.label_days" in message


def test_a_window_no_visitor_could_train_on_gives_way_to_a_random_share(shop, seed):
    """`labels = "auto"`: the other construction before giving up; its reason says why."""
    from export.stages.split import Holdout

    config = msgspec.convert({"seed": seed}, BuildConfig)
    events = normalize_events(shop.events, config, QualityReport())
    cut = events["ts"].max() - pd.Timedelta(days=label_days(events, config))
    late = events["ts"] >= cut
    events.loc[late, "item_id"] = "new-" + events.loc[late, "item_id"]
    data = Dataset(events, build_universe(events, None))
    window = Holdout("temporal", "the window asks enough")
    training = fit_ranking(RankingInput(data, None, None, window), config).training
    assert training.labels == "random" and training.positives > 0
    assert training.labels_chosen_because == (
        "the window asks enough; no visitor of that part took a candidate, so a random share "
        "of each customer's items instead"
    )


def test_a_label_construction_settled_on_all_events_is_kept_for_a_training_part(shop, seed):
    """The evaluation's ranker is fitted on a training part with the labels `choose_labels`
    settled on all of the build's events, not settled again on that part."""
    from export.stages.ranking import choose_labels
    from export.stages.split import Holdout

    config = msgspec.convert({"seed": seed}, BuildConfig)
    events = normalize_events(shop.events, config, QualityReport())
    data = Dataset(events, build_universe(events, None))
    segments = fit_segments(data, config)
    on_its_own = fit_ranking(RankingInput(data, segments), config).training
    assert on_its_own.labels_chosen_because == choose_labels(data, config).reason
    # The other construction than this part would settle on by itself:
    other, split = ("users", "time") if on_its_own.labels == "random" else ("random", "random")
    settled = Holdout(other, "settled on all events")
    fitted = fit_ranking(RankingInput(data, segments, None, settled), config).training
    assert (fitted.labels, fitted.labels_chosen_because) == (split, "settled on all events")


def test_a_small_label_part_is_cross_validated_and_a_large_one_holds_out_a_fifth():
    from export.selection import MIN_VALIDATION_CASES
    from export.stages.ranking import (
        CROSS_VALIDATE_UP_TO,
        FOLDS,
        VALIDATION_CASES,
        _validation_folds,
    )

    assert (_validation_folds(MIN_VALIDATION_CASES - 1, 0) == -1).all()
    small = _validation_folds(CROSS_VALIDATE_UP_TO, 0)
    assert sorted(set(small.tolist())) == list(range(FOLDS))
    assert np.bincount(small).max() - np.bincount(small).min() <= 1
    large = _validation_folds(CROSS_VALIDATE_UP_TO + 1_000, 0)
    assert (large == 0).sum() == round(0.2 * (CROSS_VALIDATE_UP_TO + 1_000))
    assert set(large.tolist()) == {-1, 0}
    assert (_validation_folds(100_000, 0) == 0).sum() == VALIDATION_CASES
    assert not (_validation_folds(300, 0) == _validation_folds(300, 1)).all()  # seeded


def test_the_guard_asks_every_case_of_a_small_label_part_once(shop, seed):
    config = msgspec.convert({"seed": seed}, BuildConfig)
    events = normalize_events(shop.events, config, QualityReport())
    data = Dataset(events, build_universe(events, None))
    training = fit_ranking(RankingInput(data, fit_segments(data, config)), config).training
    selection = training.selection
    assert selection is not None and training.cases <= 2_500
    assert selection.validation_cases == training.cases
    assert "(5 folds)" in selection.reason and set(selection.ndcg) >= {"ranker", "popular"}

"""The selection guard: the composite ranker and each generator alone rank the same held-out
cases; the best is served, and a generator that knows the answer wins over a ranker that
does not."""

import numpy as np
import pytest

from edge.ranker import Ranker
from edge.scoring import COLUMN, FEATURES, SCORERS
from export.ranker import fit_trees, ranker_to_onnx
from export.selection import (
    MIN_VALIDATION_CASES,
    HeldCase,
    case_ndcg,
    ndcg_by_scorer,
    select_scorer,
)


def _ranker_that_learned_popularity(rng) -> Ranker:
    """Trees fitted where the taken item is the popular one: they rank by pop_overall."""
    x = rng.random((4_000, len(FEATURES))).astype(np.float32)
    y = (x[:, COLUMN["pop_overall"]] > 0.8).astype(np.int8)
    return Ranker(ranker_to_onnx(fit_trees(x, y, 20, 7, 0.3, 0)), FEATURES)


def _cases(rng, n: int, knows: str) -> list[HeldCase]:
    """Cases of 30 candidates where the visitor took the candidate with the best `knows`
    column (popularity says nothing)."""
    cases = []
    for _ in range(n):
        features = rng.random((30, len(FEATURES))).astype(np.float32)
        taken = np.zeros(30, dtype=bool)
        taken[np.argmax(features[:, COLUMN[knows]])] = True
        cases.append(HeldCase(features, taken, 1))
    return cases


def test_a_generator_that_knows_the_answer_is_served_over_a_ranker_that_does_not():
    rng = np.random.default_rng(0)
    ranker = _ranker_that_learned_popularity(rng)
    selection = select_scorer(ndcg_by_scorer(ranker, _cases(rng, 300, "als_score"), 10), 10)
    assert selection.chosen == "als"
    assert selection.ndcg["als"] == 1.0 and selection.ndcg["ranker"] < 0.6
    assert set(selection.ndcg) == set(SCORERS) and selection.validation_cases == 300
    assert "als alone answered the 300 validation cases better" in selection.reason
    assert selection.versus_ranker is not None and selection.versus_ranker.ci95[0] > 0


def test_the_ranker_is_served_when_it_is_best_or_tied():
    """Visitors take what two generators agree on: the ranker, which sees both, beats each."""
    rng = np.random.default_rng(1)
    als, covis = COLUMN["als_score"], COLUMN["covis_score"]
    x = rng.random((20_000, len(FEATURES))).astype(np.float32)
    y = (x[:, als] + x[:, covis] > 1.7).astype(np.int8)
    ranker = Ranker(ranker_to_onnx(fit_trees(x, y, 60, 15, 0.3, 0)), FEATURES)
    cases = []
    for _ in range(300):
        features = rng.random((30, len(FEATURES))).astype(np.float32)
        taken = np.zeros(30, dtype=bool)
        taken[np.argmax(features[:, als] + features[:, covis])] = True
        cases.append(HeldCase(features, taken, 1))
    selection = select_scorer(ndcg_by_scorer(ranker, cases, 10), 10)
    assert selection.chosen == "ranker" and selection.versus_ranker is None
    assert selection.ndcg["ranker"] > max(selection.ndcg["als"], selection.ndcg["covis"])
    nobody_took = [HeldCase(case.features, np.zeros(30, dtype=bool), 1) for case in cases]
    tied = select_scorer(ndcg_by_scorer(ranker, nobody_took, 10), 10)
    assert set(tied.ndcg.values()) == {0.0} and tied.chosen == "ranker"


def test_a_generator_ahead_by_less_than_the_noise_does_not_replace_the_ranker():
    rng = np.random.default_rng(3)
    ranker = rng.random(200)
    per_case = {name: rng.random(200) * 0.5 for name in SCORERS}
    per_case["ranker"] = ranker
    per_case["regression"] = ranker + rng.normal(0.005, 0.1, 200)  # ahead, within noise
    kept = select_scorer(per_case, 10)
    assert kept.chosen == "ranker" and kept.ndcg["regression"] > kept.ndcg["ranker"]
    assert "regression alone answered the 200 validation cases better by" in kept.reason
    assert "within noise" in kept.reason
    assert kept.versus_ranker is not None and kept.versus_ranker.ci95[0] <= 0
    per_case["regression"] = ranker + rng.normal(0.05, 0.1, 200)  # ahead beyond it
    assert select_scorer(per_case, 10, folds=5).chosen == "regression"


def test_too_few_cases_keep_the_ranker_and_a_forced_scorer_is_served_with_its_figures():
    rng = np.random.default_rng(2)
    ranker = _ranker_that_learned_popularity(rng)
    few_cases = _cases(rng, MIN_VALIDATION_CASES - 1, "als_score")
    few = select_scorer(ndcg_by_scorer(ranker, few_cases, 10), 10)
    assert few.chosen == "ranker" and "too few to compare" in few.reason and not few.ndcg
    forced = select_scorer(ndcg_by_scorer(ranker, _cases(rng, 10, "als_score"), 10), 10, "covis")
    assert forced.chosen == "covis" and forced.reason == "set in serving.scorer"
    assert forced.ndcg["als"] == 1.0
    unasked = select_scorer({}, 10, "covis")
    assert unasked.chosen == "covis" and unasked.versus_ranker is None


@pytest.mark.parametrize(
    ("taken", "wanted", "expected"),
    [
        ([True, False, False], 1, 1.0),
        ([False, True, False], 1, 1 / np.log2(3)),
        ([False, False, False], 2, 0.0),  # wanted items no candidate holds are misses
        ([True, False, False], 2, 1.0 / (1.0 + 1 / np.log2(3))),
    ],
)
def test_a_cases_ndcg_counts_wanted_items_the_candidates_missed(taken, wanted, expected):
    order = np.arange(3)
    assert case_ndcg(order, np.array(taken), wanted, 10) == pytest.approx(expected)

"""The selection guard: a build never ships something worse than it could. The composite ranker
and each candidate generator alone (ALS, item-to-item regression, co-visitation, popularity:
`edge.scoring.SCORERS`) rank the same validation cases, held out of the ranker's fit, through
the edge's own `score_candidates`; the best mean NDCG@k is served (`models.serving.scorer`).
The ranking stage holds out a fifth of a large label part, and cross-validates a small one:
every case is asked once, of a ranker fitted without its fold.

The ranker sees every generator's score as a feature, so it can in principle match the best of
them; the guard catches the logs where it does not (a label window that taught it the wrong
thing, too few cases to learn from)."""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from edge.bundle.manifest import Comparison, ScorerSelection
from edge.ranker import Ranker
from edge.scoring import SCORERS, Scorer, score_candidates
from export.evaluate import paired_difference

# Fewer validation cases than this say too little to overrule the ranker.
MIN_VALIDATION_CASES = 50


@dataclass(frozen=True)
class HeldCase:
    """One validation case's candidates, as the edge scores them, and which the visitor took."""

    features: np.ndarray  # float32 [candidates, len(FEATURES)]
    taken: np.ndarray  # bool [candidates]
    wanted: int  # items the case counts as hits (the ideal DCG's length), taken or not
    fold: int = 0  # the validation fold: a ranker fitted without this fold's rows answers it


def case_ndcg(scores_order: np.ndarray, taken: np.ndarray, wanted: int, k: int) -> float:
    """NDCG@k of one ranked candidate list; a wanted item no candidate holds is a miss."""
    top = taken[scores_order[:k]]
    gains = (1.0 / np.log2(np.arange(2, top.size + 2)))[top].sum()
    ideal = sum(1.0 / math.log2(rank + 2) for rank in range(min(wanted, k)))
    return float(gains / ideal) if ideal else 0.0


def ndcg_by_scorer(ranker: Ranker, held: list[HeldCase], k: int) -> dict[str, np.ndarray]:
    """Each scorer's NDCG@k on each held case."""
    out: dict[str, np.ndarray] = {}
    for scorer in SCORERS:
        values = np.zeros(len(held))
        for i, case in enumerate(held):
            if case.features.shape[0]:
                _, order = score_candidates(ranker, case.features, scorer)
                values[i] = case_ndcg(order, case.taken, case.wanted, k)
        out[scorer] = values
    return out


def select_scorer(
    per_case: dict[str, np.ndarray], k: int, forced: Scorer | None = None, folds: int = 1
) -> ScorerSelection:
    """The scorer with the best mean NDCG@k over the validation cases (`ndcg_by_scorer`, per
    fold and joined), or `forced`. A generator replaces the ranker only when the 95% interval
    of its advantage, case by case, lies above zero: ties and noise keep the ranker."""
    n = len(per_case.get("ranker", ()))
    asked = f"{n:,} validation cases" + (f" ({folds} folds)" if folds > 1 else "")
    if n < MIN_VALIDATION_CASES and forced is None:
        return ScorerSelection(
            "ranker",
            f"{asked} are too few to compare (at least {MIN_VALIDATION_CASES}); the ranker is "
            "served",
            n,
            {},
            k,
        )
    means = {name: round(float(v.mean()), 4) if v.size else 0.0 for name, v in per_case.items()}
    if forced is not None:
        chosen, reason = forced, "set in serving.scorer"
        versus = _versus_ranker(per_case, chosen)
        return ScorerSelection(chosen, reason, n, means, k, versus)
    best = max(SCORERS, key=lambda name: (means[name], name == "ranker"))
    if best == "ranker":
        return ScorerSelection(
            "ranker", f"the composite ranker answered the {asked} best", n, means, k
        )
    versus = Comparison(**paired_difference(per_case[best], per_case["ranker"]))
    low, high = versus.ci95 or (0.0, 0.0)  # n >= MIN_VALIDATION_CASES: always an interval
    if low <= 0:  # the ranker sees every generator's score: a generator must show it is better
        reason = (
            f"{best} alone answered the {asked} better by {versus.difference:+.4f} NDCG@{k}, "
            f"within noise (95% interval {low:+.4f} to {high:+.4f}); the composite ranker is "
            "served"
        )
        return ScorerSelection("ranker", reason, n, means, k, versus)
    chosen = best
    reason = (
        f"{chosen} alone answered the {asked} better than the composite ranker "
        f"(NDCG@{k} {means[chosen]:.4f} against {means['ranker']:.4f})"
    )
    return ScorerSelection(chosen, reason, n, means, k, versus)


def _versus_ranker(per_case: dict[str, np.ndarray], scorer: str) -> Comparison | None:
    """`scorer`'s NDCG minus the ranker's, case by case, with its 95% interval."""
    if scorer == "ranker" or not len(per_case.get("ranker", ())):
        return None
    return Comparison(**paired_difference(per_case[scorer], per_case["ranker"]))

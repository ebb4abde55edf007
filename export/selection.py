"""The selection guard: a build never ships something worse than it could. The composite ranker
and each candidate generator alone (ALS, item-to-item regression, co-visitation, popularity:
`edge.scoring.SCORERS`) rank the same validation cases, held out of the ranker's fit, through
the edge's own `score_candidates`; the best mean NDCG@k is served (`models.serving.scorer`).

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
    ranker: Ranker, held: list[HeldCase], k: int, forced: Scorer | None = None
) -> ScorerSelection:
    """The scorer with the best mean NDCG@k on `held` (ties: the ranker), or `forced`."""
    if len(held) < MIN_VALIDATION_CASES and forced is None:
        return ScorerSelection(
            "ranker",
            f"{len(held)} validation cases are too few to compare (at least "
            f"{MIN_VALIDATION_CASES}); the ranker is served",
            len(held),
            {},
            k,
        )
    per_case = ndcg_by_scorer(ranker, held, k)
    means = {name: round(float(v.mean()), 4) if v.size else 0.0 for name, v in per_case.items()}
    if forced is not None:
        chosen, reason = forced, "set in serving.scorer"
    else:
        chosen = max(SCORERS, key=lambda name: (means[name], name == "ranker"))
        if chosen == "ranker":
            reason = "the composite ranker answered the validation cases best"
        else:
            reason = (
                f"{chosen} alone answered the validation cases better than the composite "
                f"ranker (NDCG@{k} {means[chosen]:.4f} against {means['ranker']:.4f})"
            )
    versus = None
    if chosen != "ranker":
        versus = Comparison(**paired_difference(per_case[chosen], per_case["ranker"]))
    return ScorerSelection(chosen, reason, len(held), means, k, versus)

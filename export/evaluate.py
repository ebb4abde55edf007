"""Offline evaluation: the exported bundle, answering through the edge code path (what is measured
is what is served), against public baselines tuned on a validation split carved from the
training part, all asked the same `Case`s on the same split.

Metrics per model: HR@k and NDCG@k (k = 10 by default), Recall@50, catalog coverage (share of
in-stock items that appear in some top k) and time per answer."""

from __future__ import annotations

import math
import time
from collections.abc import Callable, Mapping, Sequence
from collections.abc import Set as AbstractSet
from dataclasses import dataclass
from typing import Any

import numpy as np
import pandas as pd
import scipy.sparse as sp

from edge.bundle import Bundle
from edge.bundle.manifest import Evaluation, RankerTraining
from edge.model import top_k
from edge.recommend import Recommender
from edge.schemas import Context, RecommendRequest, Session
from edge.scoring import MAX_CONFIDENCE_WEIGHT, dwell_factor
from export.baselines import BASELINES, History, grids
from export.cases import Case
from export.interactions import ItemUniverse

RECALL_K = 50

Answer = Callable[[Case, int], list[str]]


def hit_rate_and_ndcg(
    recommended: list[str], relevant: AbstractSet[str], k: int
) -> tuple[float, float]:
    gains = [
        1.0 / math.log2(rank + 2) for rank, item in enumerate(recommended[:k]) if item in relevant
    ]
    ideal = sum(1.0 / math.log2(rank + 2) for rank in range(min(len(relevant), k)))
    return (1.0 if gains else 0.0), (sum(gains) / ideal if ideal else 0.0)


def measure(answer: Answer, cases: Sequence[Case], k: int, n_catalog: int) -> dict[str, float]:
    """Ask every case, score the answers."""
    return measure_per_case(answer, cases, k, n_catalog)[0]


def measure_per_case(
    answer: Answer,
    cases: Sequence[Case],
    k: int,
    n_catalog: int,
    cold: AbstractSet[str] = frozenset(),
) -> tuple[dict[str, float], np.ndarray]:
    """`measure`, and each case's NDCG@k (for paired comparisons). With `cold` (items without
    events in the training part), also the share of the cold items wanted that were in the
    top RECALL_K, when any was wanted."""
    depth = max(k, RECALL_K)
    hr = recall = 0.0
    cold_wanted = cold_found = 0
    ndcgs = np.zeros(len(cases))
    shown: set[str] = set()
    latencies = []
    for i, case in enumerate(cases):
        started = time.perf_counter()
        ranked = answer(case, depth)
        latencies.append((time.perf_counter() - started) * 1000.0)
        h, ndcgs[i] = hit_rate_and_ndcg(ranked, case.relevant, k)
        hr += h
        recall += len(case.relevant.intersection(ranked[:RECALL_K])) / len(case.relevant)
        shown.update(ranked[:k])
        if cold:
            wanted = case.relevant & cold
            cold_wanted += len(wanted)
            cold_found += len(wanted.intersection(ranked[:RECALL_K]))
    n = max(len(cases), 1)
    metrics = {
        f"hr@{k}": round(hr / n, 4),
        f"ndcg@{k}": round(float(ndcgs.sum()) / n, 4),
        f"recall@{RECALL_K}": round(recall / n, 4),
        "coverage": round(len(shown) / max(n_catalog, 1), 4),
        "ms_p50": round(float(np.percentile(latencies, 50)), 3) if latencies else 0.0,
        "ms_p99": round(float(np.percentile(latencies, 99)), 3) if latencies else 0.0,
    }
    if cold_wanted:
        metrics[f"cold_recall@{RECALL_K}"] = round(cold_found / cold_wanted, 4)
        metrics["cold_wanted"] = cold_wanted
    return metrics, ndcgs


def paired_difference(ours: np.ndarray, theirs: np.ndarray) -> dict[str, Any]:
    """Mean per-case difference of two models asked the same cases, with a 95% interval
    (normal approximation). Pairing removes the spread between cases, which dwarfs the one
    between models: a small shop's few hundred cases can tell a real gain from noise."""
    diff = ours - theirs
    if diff.size < 2:  # no spread to estimate an interval from
        return {"difference": round(float(diff.sum()), 4), "ci95": None}
    mean, half = float(diff.mean()), 1.96 * float(diff.std(ddof=1)) / math.sqrt(diff.size)
    return {"difference": round(mean, 4), "ci95": [round(mean - half, 4), round(mean + half, 4)]}


class BundleAnswer:
    """The bundle behind `Recommender`, asked with the request a page would send. Counts the
    answers that came from fallback content (there should be none)."""

    def __init__(self, bundle: Bundle) -> None:
        self.recommender = Recommender(bundle, budget_ms=math.inf)
        self.fallbacks = 0

    def __call__(self, case: Case, k: int) -> list[str]:
        ctx = case.context
        request = RecommendRequest(
            user_id=case.user_id,
            session=Session(events=list(case.session)) if case.session else None,
            context=Context(
                device=ctx.device or None, country=ctx.country or None, local_hour=ctx.local_hour
            ),
            k=min(k, 100),
        )
        response = self.recommender.recommend(request)
        self.fallbacks += response.fallback is not None
        return [item.item_id for item in response.items]


@dataclass
class Histories:
    """What a baseline knows of a visitor: their row of the training matrix (known customers)
    plus this session's events, weighed as the edge weighs them."""

    matrix: sp.csr_matrix
    rows: pd.Index
    universe: ItemUniverse
    weights: dict[str, float]

    def of(self, case: Case) -> History:
        items: list[int] = []
        weights: list[float] = []
        row = -1
        if case.user_id is not None:
            row = int(self.rows.get_indexer(pd.Index([case.user_id]))[0])
            if row >= 0:
                start, end = self.matrix.indptr[row], self.matrix.indptr[row + 1]
                items += self.matrix.indices[start:end].tolist()
                weights += self.matrix.data[start:end].tolist()
        if case.session:
            codes = self.universe.codes(pd.Series([e.item_id for e in case.session]))
            for code, event in zip(codes, case.session):
                w = self.weights.get(event.type, 0.0)
                if event.dwell_ms:
                    w *= float(dwell_factor(event.dwell_ms))
                if code >= 0 and w > 0:
                    items.append(int(code))
                    weights.append(w)
        if not items:
            return History(np.empty(0, dtype=np.int64), np.empty(0), row)
        unique, inverse = np.unique(np.array(items, dtype=np.int64), return_inverse=True)
        summed = np.minimum(np.bincount(inverse, weights=weights), MAX_CONFIDENCE_WEIGHT)
        return History(unique, summed, row)


def baseline_answer(model: Any, histories: Histories) -> Answer:
    """Top items by the baseline's score, under the edge's business rules: in stock, and not
    something this visitor already bought."""
    universe = histories.universe
    unavailable = ~universe.in_stock
    index = {item: i for i, item in enumerate(universe.ids)}
    if not getattr(model, "personal", True):
        return _one_ranking_answer(model, universe, unavailable, index)

    def answer(case: Case, k: int) -> list[str]:
        scores = np.array(model.scores(histories.of(case)), dtype=np.float64, copy=True)
        scores[unavailable] = -np.inf
        blocked = [index[i] for i in case.blocked if i in index]
        scores[blocked] = -np.inf
        top = top_k(scores, k)
        return [universe.ids[i] for i in top if np.isfinite(scores[i])]

    return answer


def _one_ranking_answer(
    model: Any, universe: ItemUniverse, unavailable: np.ndarray, index: dict[str, int]
) -> Answer:
    """A baseline whose scores are the same for every visitor (most popular) is ranked once;
    each answer walks that ranking past the visitor's blocked items (ties: lower index first)."""
    scores = np.asarray(model.scores(History(np.empty(0, dtype=np.int64), np.empty(0))), float)
    ranked = np.argsort(-scores, kind="stable")
    ranked = ranked[~unavailable[ranked] & np.isfinite(scores[ranked])].tolist()

    def answer(case: Case, k: int) -> list[str]:
        blocked = {index[i] for i in case.blocked if i in index}
        out: list[str] = []
        for i in ranked:
            if len(out) == k:
                break
            if i not in blocked:
                out.append(universe.ids[i])
        return out

    return answer


@dataclass(frozen=True)
class Interactions:
    """What the baselines learn from: the user × item matrix of the training part and each
    row's user key (`user_item_matrix`), the same of the part they are tuned on (None: no
    tuning), and the items with an event in the training part (the others are cold)."""

    train: tuple[sp.csr_matrix, pd.Index]
    fit: tuple[sp.csr_matrix, pd.Index] | None
    seen: frozenset[str]


def tune_and_fit(
    name: str,
    interactions: Interactions,
    validation_cases: Sequence[Case],
    universe: ItemUniverse,
    weights: dict[str, float],
    k: int,
    grid: list[dict[str, Any]],
) -> tuple[Any, Histories, dict[str, Any]]:
    """Pick the grid point with the best validation NDCG@k (fitted on the tuning part), then
    refit it on all of the training part."""
    best_params, best_ndcg, tried = grid[0], -1.0, []
    if len(grid) > 1 and validation_cases and interactions.fit is not None:
        matrix, rows = interactions.fit
        histories = Histories(matrix, rows, universe, weights)
        for params in grid:
            started = time.perf_counter()
            model = BASELINES[name](**params).fit(matrix)
            ndcg = measure(baseline_answer(model, histories), validation_cases, k, 1)[f"ndcg@{k}"]
            seconds = round(time.perf_counter() - started, 2)
            tried.append({"params": params, f"ndcg@{k}": ndcg, "seconds": seconds})
            if ndcg > best_ndcg:
                best_params, best_ndcg = params, ndcg
    matrix, rows = interactions.train
    model = BASELINES[name](**best_params).fit(matrix)
    tuning = {"chosen": best_params, "validation": tried}
    return model, Histories(matrix, rows, universe, weights), tuning


def evaluate_models(
    bundle: Bundle,
    test_cases: Sequence[Case],
    interactions: Interactions,
    validation_cases: Sequence[Case],
    universe: ItemUniverse,
    weights: dict[str, float],
    baselines: Sequence[str],
    k: int,
    seed: int,
    ease_max_items: int,
    say: Callable[[str], None] = lambda _: None,
    bundles: Mapping[str, Bundle] | None = None,
) -> dict[str, Any]:
    """The bundle and each baseline on the same test cases; also other `bundles` by name (the
    one published now, which a rebuild must not be worse than), asked as the edge asks them."""
    n_catalog = int(universe.in_stock.sum())
    # Items first seen after the cut: only content can find them.
    cold = frozenset(universe.ids) - interactions.seen
    answer = BundleAnswer(bundle)
    results, versus = {}, {}
    results["edgeperso"], ours = measure_per_case(answer, test_cases, k, n_catalog, cold)
    results["edgeperso"]["fallbacks"] = answer.fallbacks
    say(f"  edgeperso: {results['edgeperso']}")
    for name, other in (bundles or {}).items():
        other_answer = BundleAnswer(other)
        results[name], theirs = measure_per_case(other_answer, test_cases, k, n_catalog, cold)
        results[name]["fallbacks"] = other_answer.fallbacks
        versus[name] = paired_difference(ours, theirs)
        say(f"  {name} ({other.build_id}): {results[name]}")
    tuning = {}
    available = grids(len(universe.ids), ease_max_items, seed)
    for name in baselines:
        if name not in available:
            tuning[name] = {"skipped": _why_skipped(name, len(universe.ids), ease_max_items)}
            continue
        model, histories, tuning[name] = tune_and_fit(
            name, interactions, validation_cases, universe, weights, k, available[name]
        )
        answer_of = baseline_answer(model, histories)
        results[name], theirs = measure_per_case(answer_of, test_cases, k, n_catalog, cold)
        versus[name] = paired_difference(ours, theirs)
        say(f"  {name} {tuning[name]['chosen']}: {results[name]}")
    # NDCG@k of edgeperso minus each baseline's, case by case, with its 95% interval.
    return {"table": results, "versus": versus, "tuning": tuning}


def _why_skipped(name: str, n_items: int, ease_max_items: int) -> str:
    if name == "ease":
        return f"{n_items:,} items is over evaluation.ease_max_items ({ease_max_items:,})"
    if name == "lightfm":
        return "lightfm is not installed (pip install 'edgeperso[baselines]')"
    return f"unknown baseline; allowed: {', '.join(BASELINES)}"


def format_table(evaluation: Evaluation) -> str:
    if not evaluation.table:
        return f"evaluation: {evaluation.note or 'no result'}"
    k = evaluation.k
    columns = [f"hr@{k}", f"ndcg@{k}", f"recall@{RECALL_K}", "coverage", "ms_p50"]
    cold = f"cold_recall@{RECALL_K}"
    if all(cold in row for row in evaluation.table.values()):
        columns.insert(3, cold)  # items first seen after the cut were wanted
    split = evaluation.split
    held_out = "" if split is None else f" ({split.split} split)"
    lines = [
        f"offline evaluation: {evaluation.protocol} protocol{held_out}, {evaluation.cases:,} "
        f"test cases, targets: {', '.join(evaluation.target_types)}; edgeperso ranked by "
        f"{evaluation.scorer or 'ranker'}",
    ]
    if split is not None and split.chosen_because:
        lines.append(f"  split chosen because {split.chosen_because}")
    width = max(12, *(len(c) + 2 for c in columns))
    lines.append(f"  {'model':<12}" + "".join(f"{c:>{width}}" for c in columns))
    for name, row in evaluation.table.items():
        lines.append(f"  {name:<12}" + "".join(f"{row[c]:>{width}.4f}" for c in columns))
    for name, paired in evaluation.versus.items():
        interval = paired.ci95
        spread = (
            "" if interval is None else f" (95% interval {interval[0]:+.4f} to {interval[1]:+.4f})"
        )
        lines.append(
            f"  ndcg@{k}, edgeperso − {name}, case by case: {paired.difference:+.4f}{spread}"
        )
    return "\n".join(lines)


def format_selection(training: RankerTraining) -> str:
    """What the ranker learned from and what the selection guard served, for the build's
    output."""
    labels = f"ranker labels: {training.labels} ({training.labels_chosen_because})"
    selection = training.selection
    if selection is None:
        return labels
    figures = ", ".join(f"{name} {value:.4f}" for name, value in selection.ndcg.items())
    served = f"served: {selection.chosen} ({selection.reason})"
    if figures:
        served += f"; NDCG@{selection.k} on {selection.validation_cases:,} validation cases: "
        served += figures
    return f"{labels}\n{served}"

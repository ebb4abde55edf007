"""Offline evaluation on a temporal holdout, answered by the exported bundle through the edge
code path (what is measured is what is served), against a popularity baseline on the same users.

Targets are the items a known user takes in the holdout window that they had not bought before:
the edge never recommends what a user already bought, so repeat purchases are not counted."""

from __future__ import annotations

import math
import time

import numpy as np
import pandas as pd

from edge.bundle import Bundle
from edge.recommend import Recommender
from edge.schemas import Context, RecommendRequest
from export.ranker import first_context


def hit_rate_and_ndcg(recommended: list[str], relevant: set[str], k: int) -> tuple[float, float]:
    gains = [
        1.0 / math.log2(rank + 2) for rank, item in enumerate(recommended[:k]) if item in relevant
    ]
    ideal = sum(1.0 / math.log2(rank + 2) for rank in range(min(len(relevant), k)))
    return (1.0 if gains else 0.0), (sum(gains) / ideal if ideal else 0.0)


def evaluate_bundle(
    bundle: Bundle,
    test_events: pd.DataFrame,
    target_types: list[str],
    k: int = 10,
    max_users: int = 20_000,
    seed: int = 0,
) -> dict[str, object]:
    recommender = Recommender(bundle, budget_ms=math.inf)
    model = bundle.model
    # The baseline obeys the same business rules as the bundle: in stock, not already bought.
    popular = [model.items.ids[i] for i in model.popularity.top_overall if model.items.in_stock[i]]
    targets = test_events[test_events["type"].isin(target_types) & (test_events["user_id"] != "")]
    users = [u for u in targets["user_id"].unique() if bundle.profiles.get(u) is not None]
    if len(users) > max_users:
        rng = np.random.default_rng(seed)
        users = list(rng.choice(np.array(users, dtype=object), max_users, replace=False))
    groups = {u: g for u, g in targets[targets["user_id"].isin(set(users))].groupby("user_id")}
    sums = {"bundle": [0.0, 0.0], "popularity": [0.0, 0.0]}
    latencies, evaluated, fallbacks = [], 0, 0
    for user in users:
        group = groups[user]
        profile = bundle.profiles.get(user)
        bought = set(profile.bought_items) if profile else set()
        relevant = set(group["item_id"]) - bought
        if not relevant:
            continue
        ctx = first_context(group)
        request = RecommendRequest(
            user_id=user,
            k=k,
            context=Context(
                device=ctx.device or None, country=ctx.country or None, local_hour=ctx.local_hour
            ),
        )
        started = time.perf_counter()
        response = recommender.recommend(request)
        latencies.append((time.perf_counter() - started) * 1000.0)
        fallbacks += response.fallback is not None
        ranked = [item.item_id for item in response.items]
        baseline = [i for i in popular if i not in bought][:k]
        for name, items in (("bundle", ranked), ("popularity", baseline)):
            hr, ndcg = hit_rate_and_ndcg(items, relevant, k)
            sums[name][0] += hr
            sums[name][1] += ndcg
        evaluated += 1
    if evaluated == 0:
        return {"users": 0, "note": "no known user took a new item in the holdout window"}
    table = {
        name: {f"hr@{k}": round(hr / evaluated, 4), f"ndcg@{k}": round(ndcg / evaluated, 4)}
        for name, (hr, ndcg) in sums.items()
    }
    return {
        "users": evaluated,
        "k": k,
        "target_types": target_types,
        "table": table,
        "ndcg_lift_over_popularity": round(
            table["bundle"][f"ndcg@{k}"] / max(table["popularity"][f"ndcg@{k}"], 1e-9), 3
        ),
        "fallbacks": fallbacks,
        "latency_ms": {
            "p50": round(float(np.percentile(latencies, 50)), 3),
            "p99": round(float(np.percentile(latencies, 99)), 3),
        },
    }


def format_table(evaluation: dict[str, object]) -> str:
    table = evaluation.get("table")
    if not isinstance(table, dict):
        return f"evaluation: {evaluation.get('note', 'no result')}"
    k = evaluation["k"]
    lines = [
        f"offline evaluation, temporal holdout ({evaluation['users']:,} users, "
        f"targets: {', '.join(evaluation['target_types'])})",
        f"  {'model':<14}{'HR@' + str(k):>10}{'NDCG@' + str(k):>10}",
    ]
    for name, row in table.items():
        lines.append(f"  {name:<14}{row[f'hr@{k}']:>10.4f}{row[f'ndcg@{k}']:>10.4f}")
    return "\n".join(lines)

"""Purchase intent: a gradient-boosted classifier of "this session ends in a purchase" from the
signals seen before it does, trained on a sliding window of sessions and evaluated on the
window that follows (AUC, log loss, calibration), then exported to ONNX for the edge.

Each training session is cut at a random point before its first purchase (or anywhere in a
session without one), so the rows look like what the edge sees part-way through a visit."""

from __future__ import annotations

import math
from collections import namedtuple
from typing import Any

import numpy as np
import pandas as pd
from sklearn.ensemble import HistGradientBoostingClassifier
from sklearn.metrics import log_loss, roc_auc_score
from threadpoolctl import threadpool_limits

from edge.intent import INTENT_FEATURES, intent_features
from export.interactions import ItemUniverse, epoch_seconds
from export.ranker import classifier_to_onnx

Event = namedtuple("Event", "type item_id dwell_ms")
CALIBRATION_BINS = 10


def session_rows(
    events: pd.DataFrame,
    universe: ItemUniverse,
    sessions: pd.Index,
    seed: int,
) -> tuple[np.ndarray, np.ndarray]:
    """(features, bought) for the given sessions of `events`, each cut at a random point
    before its first purchase; a session that starts with a purchase shows nothing first and
    is left out. Earlier events of the same customer give the visit history."""
    rng = np.random.default_rng(seed)
    index = {item: i for i, item in enumerate(universe.ids)}
    category = universe.category

    def category_of(item_id: str) -> int:
        code = index.get(item_id, -1)
        return int(category[code]) if code >= 0 else -1

    seconds = epoch_seconds(events["ts"])
    frame = events.assign(t=seconds, is_purchase=(events["type"] == "purchase").to_numpy())
    # Per known customer: when each of their sessions started and ended, and purchases so far.
    known = frame[frame["user_id"] != ""]
    visits = known.groupby(["user_id", "session_id"], sort=False).agg(
        start=("t", "min"), end=("t", "max"), bought=("is_purchase", "sum")
    )
    visits = visits.reset_index().sort_values(["user_id", "start"], kind="stable")
    previous = visits.groupby("user_id")
    visits["last_end"] = previous["end"].shift(1)
    visits["purchases_before"] = previous["bought"].cumsum() - visits["bought"]
    history = visits.set_index("session_id")[["last_end", "purchases_before"]]

    last_end = dict(zip(history.index, history["last_end"]))
    purchases_before = dict(zip(history.index, history["purchases_before"]))
    chosen = frame[frame["session_id"].isin(sessions)].sort_values(
        ["session_id", "t"], kind="stable"
    )
    session_ids = chosen["session_id"].to_numpy()
    kinds, items = chosen["type"].to_numpy(), chosen["item_id"].to_numpy()
    dwell, t = (
        chosen["dwell_ms"].to_numpy(dtype=np.float64, na_value=np.nan),
        chosen["t"].to_numpy(),
    )
    devices, hours_of_day = chosen["device"].to_numpy(), chosen["local_hour"].to_numpy()
    starts = np.flatnonzero(np.r_[True, session_ids[1:] != session_ids[:-1]])
    ends = np.r_[starts[1:], len(chosen)]
    xs, ys = [], []
    for start, stop in zip(starts, ends):
        bought = np.flatnonzero(kinds[start:stop] == "purchase")
        seen = int(bought[0]) if bought.size else stop - start
        if seen == 0:
            continue
        cut = start + int(rng.integers(1, seen + 1))
        prefix = [
            Event(kinds[j], items[j], None if math.isnan(dwell[j]) else dwell[j])
            for j in range(start, cut)
        ]
        session_id = session_ids[start]
        hours, purchases = math.nan, None
        if session_id in purchases_before:
            purchases = int(purchases_before[session_id])
            if not math.isnan(last_end[session_id]):
                hours = (t[start] - last_end[session_id]) / 3600.0
        row = intent_features(
            prefix, category_of, hours, purchases, devices[start], int(hours_of_day[start])
        )
        xs.append(row)
        ys.append(bought.size > 0)
    x = np.array(xs, dtype=np.float32).reshape(-1, len(INTENT_FEATURES))
    return x, np.array(ys, dtype=np.int8)


def fit_classifier(x: np.ndarray, y: np.ndarray, seed: int) -> HistGradientBoostingClassifier:
    model = HistGradientBoostingClassifier(
        max_iter=100,
        max_leaf_nodes=15,
        learning_rate=0.1,
        early_stopping=y.size > 2_000,
        validation_fraction=0.15,
        n_iter_no_change=10,
        l2_regularization=1.0,
        random_state=seed,
    )
    with threadpool_limits(1, "openmp"):  # see export.ranker.fit_ranker
        return model.fit(x, y)


def calibration_table(probability: np.ndarray, outcome: np.ndarray) -> list[dict[str, float]]:
    """Per tenth of the probability range: sessions, mean predicted, observed purchase rate."""
    bins = np.minimum((probability * CALIBRATION_BINS).astype(int), CALIBRATION_BINS - 1)
    rows = []
    for b in range(CALIBRATION_BINS):
        inside = bins == b
        if inside.any():
            rows.append(
                {
                    "from": b / CALIBRATION_BINS,
                    "to": (b + 1) / CALIBRATION_BINS,
                    "sessions": int(inside.sum()),
                    "predicted": round(float(probability[inside].mean()), 4),
                    "observed": round(float(outcome[inside].mean()), 4),
                }
            )
    return rows


def sessions_starting(events: pd.DataFrame, start: pd.Timestamp, end: pd.Timestamp) -> pd.Index:
    starts = events.groupby("session_id")["ts"].min()
    return starts.index[(starts >= start) & (starts < end)]


def fit_intent(
    events: pd.DataFrame,
    universe: ItemUniverse,
    train_days: float,
    eval_days: float,
    max_sessions: int,
    seed: int,
) -> tuple[bytes | None, dict[str, Any] | None]:
    """(intent.onnx, what the manifest says of it). Evaluated on the last `eval_days` with a
    model trained on the `train_days` before them; the shipped model is trained on the last
    `train_days`. None when the log has no purchase to learn from."""
    if not (events["type"] == "purchase").any():
        return None, None
    rng = np.random.default_rng(seed)

    def sample(sessions: pd.Index) -> pd.Index:
        if len(sessions) <= max_sessions:
            return sessions
        return pd.Index(rng.choice(sessions.to_numpy(), max_sessions, replace=False))

    end = events["ts"].max() + pd.Timedelta(seconds=1)
    eval_start = end - pd.Timedelta(days=eval_days)
    train_start = eval_start - pd.Timedelta(days=train_days)
    x_train, y_train = session_rows(
        events, universe, sample(sessions_starting(events, train_start, eval_start)), seed
    )
    x_eval, y_eval = session_rows(
        events, universe, sample(sessions_starting(events, eval_start, end)), seed + 1
    )
    if len(set(y_train.tolist())) < 2 or len(set(y_eval.tolist())) < 2:
        return None, None
    model = fit_classifier(x_train, y_train, seed)
    p = model.predict_proba(x_eval)[:, 1]
    evaluation = {
        "train_window": [train_start.isoformat(), eval_start.isoformat()],
        "eval_window": [eval_start.isoformat(), end.isoformat()],
        "train_sessions": int(y_train.size),
        "eval_sessions": int(y_eval.size),
        "eval_purchase_rate": round(float(y_eval.mean()), 4),
        "auc": round(float(roc_auc_score(y_eval, p)), 4),
        "log_loss": round(float(log_loss(y_eval, p, labels=[0, 1])), 4),
        "log_loss_of_base_rate": round(
            float(log_loss(y_eval, np.full(p.size, y_train.mean()), labels=[0, 1])), 4
        ),
        "calibration": calibration_table(p, y_eval),
    }
    x_last, y_last = session_rows(
        events,
        universe,
        sample(sessions_starting(events, end - pd.Timedelta(days=train_days), end)),
        seed,
    )
    final = fit_classifier(x_last, y_last, seed) if len(set(y_last.tolist())) == 2 else model
    description = {
        "file": "intent.onnx",
        "features": list(INTENT_FEATURES),
        "estimator": "HistGradientBoostingClassifier",
        "train_days": train_days,
        "evaluation": evaluation,
    }
    return classifier_to_onnx(final, INTENT_FEATURES, "edgeperso purchase intent"), description

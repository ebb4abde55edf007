"""Purchase intent: a gradient-boosted classifier of "this session ends in a purchase" from the
signals seen before it does, trained on a sliding window of sessions and evaluated on the
window that follows (AUC, log loss, calibration), then exported to ONNX for the edge.

Each training session is cut at a random point before its first purchase (or anywhere in a
session without one), so the rows look like what the edge sees part-way through a visit."""

from __future__ import annotations

import math
from collections import namedtuple
from dataclasses import dataclass
from typing import Protocol

import numpy as np
import pandas as pd
from scipy.stats import spearmanr
from sklearn.metrics import log_loss, roc_auc_score

from edge.bundle.manifest import AgainstTruth, CalibrationBin, IntentEvaluation, IntentInfo
from edge.intent import INTENT_FEATURES, IntentLabels, intent_features
from edge.signals import session_signals
from export.interactions import ItemUniverse, epoch_seconds
from export.ranker import classifier_to_onnx, fit_trees

Event = namedtuple("Event", "type item_id dwell_ms")
CALIBRATION_BINS = 10
MAX_TREES, MAX_LEAF_NODES, LEARNING_RATE = 100, 15, 0.1


@dataclass(frozen=True)
class VisitHistory:
    """Per session of a known customer: when their previous visit ended (epoch seconds, NaN
    for none) and how many purchase events they made in earlier visits. Visits are ordered by
    start, then session id."""

    last_end: dict[str, float]
    purchases_before: dict[str, int]


class Sessions(Protocol):
    """What the intent model reads: which sessions start in a window, and their rows."""

    def starting(self, start: pd.Timestamp, end: pd.Timestamp) -> pd.Index: ...

    def rows(self, sessions: pd.Index, seed: int) -> tuple[np.ndarray, np.ndarray, list[str]]: ...


class SessionLog:
    """The event log prepared once for every window the intent model reads: events grouped by
    session in time order, when each session started, and each known customer's visits.
    `history`: the visits, when `events` hold only some sessions of the log (the Spark build
    reads the sampled ones); else they are found in `events`."""

    def __init__(
        self, events: pd.DataFrame, universe: ItemUniverse, history: VisitHistory | None = None
    ) -> None:
        # Sorted and grouped on integer codes, not on strings; session codes in session id
        # order, so sessions come in the same order as sorting by their ids would give.
        t = epoch_seconds(events["ts"])
        session_code, session_names = pd.factorize(events["session_id"], sort=True)
        order = np.lexsort((t, session_code))  # each session together, in time order
        session_code, t = session_code[order], t[order]
        if history is None:
            history = _visit_history(events, order, session_code, session_names, t)
        self.last_end = history.last_end
        self.purchases_before = history.purchases_before

        self.kinds = events["type"].to_numpy()[order]
        self.items = events["item_id"].to_numpy()[order]
        self.dwell = events["dwell_ms"].to_numpy(dtype=np.float64, na_value=np.nan)[order]
        self.t = t
        self.devices = events["device"].to_numpy()[order]
        self.hours = events["local_hour"].to_numpy()[order]
        starts = np.flatnonzero(np.r_[True, session_code[1:] != session_code[:-1]])
        self.bounds = pd.DataFrame(
            {"start": starts, "stop": np.r_[starts[1:], len(order)]},
            index=pd.Index(np.asarray(session_names, dtype=object)[session_code[starts]]),
        )
        # As a datetime array: indexing the column's numpy form made a Timestamp per event.
        self.started = pd.Series(events["ts"].array[order[starts]], index=self.bounds.index)
        index = {item: i for i, item in enumerate(universe.ids)}
        category = universe.category
        self.categories_of = lambda items: [
            int(category[index[item]]) if item in index else -1 for item in items
        ]

    def starting(self, start: pd.Timestamp, end: pd.Timestamp) -> pd.Index:
        """The sessions whose first event falls in [start, end)."""
        return self.started.index[(self.started >= start) & (self.started < end)]

    def rows(self, sessions: pd.Index, seed: int) -> tuple[np.ndarray, np.ndarray, list[str]]:
        """(features, bought, session ids) for `sessions`, each cut at a random point before its
        first purchase; a session that starts with a purchase shows nothing first and is left
        out."""
        rng = np.random.default_rng(seed)
        xs, ys, ids = [], [], []
        chosen = self.bounds.loc[sessions.sort_values()]
        for session_id, start, stop in zip(chosen.index, chosen["start"], chosen["stop"]):
            bought = np.flatnonzero(self.kinds[start:stop] == "purchase")
            seen = int(bought[0]) if bought.size else stop - start
            if seen == 0:
                continue
            cut = start + int(rng.integers(1, seen + 1))
            prefix = [
                Event(self.kinds[j], self.items[j], None if math.isnan(d) else d)
                for j, d in zip(range(start, cut), self.dwell[start:cut])
            ]
            hours, purchases = math.nan, None
            if session_id in self.purchases_before:
                purchases = int(self.purchases_before[session_id])
                last_end = self.last_end[session_id]
                if not math.isnan(last_end):
                    hours = (self.t[start] - last_end) / 3600.0
            device, hour = self.devices[start], int(self.hours[start])
            signals = session_signals(prefix, self.categories_of)
            xs.append(intent_features(signals, hours, purchases, device, hour))
            ys.append(bought.size > 0)
            ids.append(session_id)
        x = np.array(xs, dtype=np.float32).reshape(-1, len(INTENT_FEATURES))
        return x, np.array(ys, dtype=np.int8), ids


def _visit_history(
    events: pd.DataFrame,
    order: np.ndarray,
    session_code: np.ndarray,
    session_names: pd.Index,
    t: np.ndarray,
) -> VisitHistory:
    """`VisitHistory` of every known customer's sessions in `events`, given them in `order`
    (by session, then time): their session codes, the codes' names and times."""
    is_purchase = (events["type"] == "purchase").to_numpy()[order]
    user = events["user_id"].to_numpy()[order]
    known = user != ""
    user_code, _ = pd.factorize(user[known], sort=True)
    visits = (
        pd.DataFrame(
            {
                "user": user_code,
                "session": session_code[known],
                "t": t[known],
                "bought": is_purchase[known],
            }
        )
        .groupby(["user", "session"], sort=False)
        .agg(start=("t", "min"), end=("t", "max"), bought=("bought", "sum"))
        .reset_index()
        .sort_values(["user", "start"], kind="stable")
    )
    visit_session = np.asarray(session_names, dtype=object)[visits["session"].to_numpy()]
    previous = visits.groupby("user")
    last_end = dict(zip(visit_session, previous["end"].shift(1)))
    before = previous["bought"].cumsum() - visits["bought"]
    return VisitHistory(last_end, dict(zip(visit_session, before)))


def calibration_table(probability: np.ndarray, outcome: np.ndarray) -> list[CalibrationBin]:
    """Per tenth of the probability range: sessions, mean predicted, observed purchase rate."""
    bins = np.minimum((probability * CALIBRATION_BINS).astype(int), CALIBRATION_BINS - 1)
    rows = []
    for b in range(CALIBRATION_BINS):
        inside = bins == b
        if inside.any():
            rows.append(
                CalibrationBin(
                    low=b / CALIBRATION_BINS,
                    high=(b + 1) / CALIBRATION_BINS,
                    sessions=int(inside.sum()),
                    predicted=round(float(probability[inside].mean()), 4),
                    observed=round(float(outcome[inside].mean()), 4),
                )
            )
    return rows


def against_truth(
    p: np.ndarray, bought: np.ndarray, session_ids: list[str], truth: pd.Series
) -> AgainstTruth:
    """How the predictions compare with each session's true purchase probability: the rank
    correlation with it, and the AUC the truth itself reaches on the same purchases (the
    ceiling for any model: purchases are draws from it)."""
    true = truth.reindex(pd.Index(session_ids).astype(str)).to_numpy(dtype=np.float64)
    known = ~np.isnan(true)
    if known.sum() < 2 or len(set(bought[known].tolist())) < 2:
        return AgainstTruth(sessions=int(known.sum()))
    return AgainstTruth(
        sessions=int(known.sum()),
        auc_of_true_intent=round(float(roc_auc_score(bought[known], true[known])), 4),
        auc_of_model=round(float(roc_auc_score(bought[known], p[known])), 4),
        spearman_with_true_intent=round(float(spearmanr(p[known], true[known]).statistic), 4),
    )


def fit_intent(
    events: pd.DataFrame,
    universe: ItemUniverse,
    train_days: float,
    eval_days: float,
    max_sessions: int,
    seed: int,
    truth: pd.Series | None = None,
) -> tuple[bytes | None, IntentInfo | None]:
    """(the intent graph, what the manifest says of it). Evaluated on the last `eval_days` with a
    model trained on the `train_days` before them; the shipped model is trained on the last
    `train_days`. None when the log has no purchase to learn from. `truth`, each session's true
    purchase probability (a simulated shop knows it), adds a comparison with it."""
    if not (events["type"] == "purchase").any():
        return None, None
    log = SessionLog(events, universe)
    last = events["ts"].max()
    return fit_intent_on(log, last, train_days, eval_days, max_sessions, seed, truth)


def fit_intent_on(
    log: Sessions,
    last: pd.Timestamp,
    train_days: float,
    eval_days: float,
    max_sessions: int,
    seed: int,
    truth: pd.Series | None = None,
) -> tuple[bytes | None, IntentInfo | None]:
    """`fit_intent` on sessions of a log with purchases, whose last event is at `last`."""
    rng = np.random.default_rng(seed)

    def sample(sessions: pd.Index) -> pd.Index:
        if len(sessions) <= max_sessions:
            return sessions
        picked: pd.Index = pd.Index(rng.choice(sessions.to_numpy(), max_sessions, replace=False))
        return picked

    end = last + pd.Timedelta(seconds=1)
    eval_start = end - pd.Timedelta(days=eval_days)
    train_start = eval_start - pd.Timedelta(days=train_days)
    x_train, y_train, _ = log.rows(sample(log.starting(train_start, eval_start)), seed)
    x_eval, y_eval, eval_ids = log.rows(sample(log.starting(eval_start, end)), seed + 1)
    if len(set(y_train.tolist())) < 2 or len(set(y_eval.tolist())) < 2:
        return None, None
    model = fit_trees(x_train, y_train, MAX_TREES, MAX_LEAF_NODES, LEARNING_RATE, seed)
    p = model.predict_proba(x_eval)[:, 1]
    evaluation = IntentEvaluation(
        train_window=(train_start.isoformat(), eval_start.isoformat()),
        eval_window=(eval_start.isoformat(), end.isoformat()),
        train_sessions=int(y_train.size),
        eval_sessions=int(y_eval.size),
        eval_purchase_rate=round(float(y_eval.mean()), 4),
        auc=round(float(roc_auc_score(y_eval, p)), 4),
        log_loss=round(float(log_loss(y_eval, p, labels=[0, 1])), 4),
        log_loss_of_base_rate=round(
            float(log_loss(y_eval, np.full(p.size, y_train.mean()), labels=[0, 1])), 4
        ),
        calibration=calibration_table(p, y_eval),
        against_truth=None if truth is None else against_truth(p, y_eval, eval_ids, truth),
    )
    x_last, y_last, _ = log.rows(
        sample(log.starting(end - pd.Timedelta(days=train_days), end)), seed
    )
    final = model
    if len(set(y_last.tolist())) == 2:
        final = fit_trees(x_last, y_last, MAX_TREES, MAX_LEAF_NODES, LEARNING_RATE, seed)
    # The labels are the build config's; the caller sets them.
    description = IntentInfo(
        labels=IntentLabels(),
        features=list(INTENT_FEATURES),
        train_days=train_days,
        evaluation=evaluation,
    )
    return classifier_to_onnx(final, INTENT_FEATURES, "edgeperso purchase intent"), description

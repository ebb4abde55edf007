"""The stress shapes: event logs shaped like the ones shops actually have, made from a good one.

Each shape is a pure, seeded function of a canonical event log (the columns `edgeperso export`
reads: `ts`, `user_id`, `item_id`, `session_id`, `type`, ...) that returns a new log in time
order and never changes its input. `bench/stress.py` runs `edgeperso evaluate` on each.

A visitor is a known customer (`user_id`), else the anonymous session (`session_id`).
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np
import pandas as pd

DAY = pd.Timedelta(days=1)
# What the evaluation holds out when its config sets no holdout_days: the ranker's label
# window, 15% of the log's span and at least a day (export.stages.split.ranker_label_days).
DEFAULT_HOLDOUT_SHARE = 0.15


def visitors(events: pd.DataFrame) -> pd.Series:
    """Each event's visitor: the customer id, else `session:` and the session id."""
    user = events["user_id"].astype(object)
    anonymous = user.isna() | (user == "")
    return user.where(~anonymous, "session:" + events["session_id"].astype(str))


def in_time_order(events: pd.DataFrame) -> pd.DataFrame:
    """Rows sorted by time (equal times keep their order), indexed 0..n-1."""
    return events.sort_values("ts", kind="stable").reset_index(drop=True)


def evaluation_cut(events: pd.DataFrame, holdout_days: float | None = None) -> pd.Timestamp:
    """Where a temporal evaluation of `events` starts its test part: `holdout_days` before the
    last event, else 15% of the span (at least a day), as the build's default."""
    t_min, t_max = events["ts"].min(), events["ts"].max()
    days = holdout_days or max(1.0, DEFAULT_HOLDOUT_SHARE * ((t_max - t_min) / DAY))
    return pd.Timestamp(t_max - pd.Timedelta(days=days))


def original(events: pd.DataFrame, seed: int = 0) -> pd.DataFrame:
    """The log as it is: the reference every other shape is read against."""
    return in_time_order(events.copy())


def bulk_timestamps(events: pd.DataFrame, seed: int = 0, max_stamps: int = 3) -> pd.DataFrame:
    """Each visitor's events share one to `max_stamps` timestamps, as in a ratings log filled
    in at a sitting or an order history imported in bulk: the visitor's events in time order
    are cut into that many runs, and every event of a run takes the run's first timestamp."""
    if max_stamps < 1:
        raise ValueError(f"max_stamps must be at least 1, got {max_stamps}")
    rng = np.random.default_rng(seed)
    out = events.copy()
    who = visitors(out)
    order = np.lexsort((pd.DatetimeIndex(out["ts"]).asi8, who.to_numpy(dtype=str)))
    codes, _ = pd.factorize(who)
    stamps = rng.integers(1, max_stamps + 1, size=codes.max() + 1 if len(codes) else 0)
    ordered = pd.Series(codes[order])
    position = ordered.groupby(ordered).cumcount().to_numpy()
    size = ordered.groupby(ordered).transform("size").to_numpy()
    run = np.empty(len(out), dtype=np.int64)
    run[order] = position * stamps[ordered.to_numpy()] // size
    key = pd.Series(codes, index=out.index).astype(np.int64) * (max_stamps + 1) + run
    out["ts"] = out["ts"].groupby(key).transform("min")
    return in_time_order(out)


def stray_timestamps(events: pd.DataFrame, seed: int = 0) -> pd.DataFrame:
    """Two mistyped dates: one event moved two months before the first, one a year after the
    last; each at least a whole span (and a day) beyond its end of the log, so the build's
    stray-timestamp check (export.validate.stray_timestamps) drops them rather than letting
    one typo stretch every window that is a share of the span."""
    if len(events) < 3:
        raise ValueError(f"stray_timestamps needs at least 3 events, got {len(events)}")
    rng = np.random.default_rng(seed)
    out = events.copy()
    t_min, t_max = out["ts"].min(), out["ts"].max()
    span = max(t_max - t_min, DAY)
    early, late = rng.choice(len(out), size=2, replace=False)
    ts = out["ts"].copy()
    ts.iloc[early] = t_min - max(pd.Timedelta(days=61), span) - DAY
    ts.iloc[late] = t_max + max(pd.Timedelta(days=365), span) + DAY
    out["ts"] = ts
    return in_time_order(out)


def purchase_only(events: pd.DataFrame, seed: int = 0) -> pd.DataFrame:
    """Purchases alone, as an order export holds them."""
    return in_time_order(events[(events["type"] == "purchase").to_numpy()].copy())


def view_only(events: pd.DataFrame, seed: int = 0) -> pd.DataFrame:
    """Views alone, as a web analytics export holds them."""
    return in_time_order(events[(events["type"] == "view").to_numpy()].copy())


def power_law_caps(counts: np.ndarray, exponent: float, tail_share: float) -> np.ndarray:
    """Caps for item counts sorted in descending order: max(1, ⌊s · r^-exponent⌋) at rank r,
    the scale s chosen (by bisection) so that the events over their cap are about
    `tail_share` of all events (or as many as caps of one allow)."""
    ranks = np.arange(1, len(counts) + 1, dtype=float) ** -exponent
    wanted = tail_share * counts.sum()

    def caps(scale: float) -> np.ndarray:
        return np.maximum(1.0, np.floor(scale * ranks))

    low, high = 0.0, float(np.log(counts.max() * len(counts) ** exponent + 1.0))
    for _ in range(60):  # moved(scale) only falls as the scale grows
        middle = (low + high) / 2
        moved = np.maximum(0.0, counts - caps(np.exp(middle))).sum()
        low, high = (middle, high) if moved > wanted else (low, middle)
    return caps(np.exp(high))


def long_tail(
    events: pd.DataFrame, seed: int = 0, exponent: float = 1.0, tail_share: float = 0.25
) -> pd.DataFrame:
    """Popularity under a steep power law, and a very long tail of items seen once: the item
    of popularity rank r keeps at most s · r^-exponent of its events (`power_law_caps`; chosen
    at random), and each of its other events, about `tail_share` of the log, becomes the only
    event of an item of its own (a marketplace's one-off listing, a custom product). The most
    popular items, under their cap, keep all their events."""
    rng = np.random.default_rng(seed)
    out = events.copy()
    counts = out["item_id"].value_counts().reset_index()
    counts = counts.sort_values(["count", "item_id"], ascending=[False, True])
    cap = pd.Series(
        power_law_caps(counts["count"].to_numpy(dtype=float), exponent, tail_share),
        index=counts["item_id"].to_numpy(),
    )
    shuffled = rng.permutation(len(out))
    items = out["item_id"].to_numpy(dtype=object)[shuffled]
    place = pd.Series(items).groupby(items).cumcount().to_numpy()
    moved = shuffled[place >= cap.reindex(items).to_numpy()]
    new_ids = out["item_id"].to_numpy(dtype=object, copy=True)
    new_ids[moved] = [f"long-tail:{i}" for i in range(len(moved))]
    out["item_id"] = new_ids
    return in_time_order(out)


def one_event_users(events: pd.DataFrame, seed: int = 0, share: float = 0.5) -> pd.DataFrame:
    """Many visitors with a single event (bounces, guests, a tracking cookie lost): events are
    split off visitors with more than one, each to a visitor of its own (a new customer, or a
    new anonymous session), until at least `share` of all visitors have one event. Each
    visitor keeps their first event."""
    if not 0.0 <= share < 1.0:
        raise ValueError(f"share must be in [0, 1), got {share}")
    rng = np.random.default_rng(seed)
    out = events.copy()
    who = visitors(out)
    sizes = who.map(who.value_counts())
    single = int((who.value_counts() == 1).sum())
    total = who.nunique()
    needed = max(0, int(np.ceil((share * total - single) / (1.0 - share))))
    first = out.assign(_who=who).sort_values("ts", kind="stable").duplicated("_who")
    candidates = np.flatnonzero(((sizes > 1) & first.reindex(out.index)).to_numpy())
    moved = np.sort(rng.choice(candidates, size=min(needed, len(candidates)), replace=False))
    names = np.array([f"one-event:{i}" for i in range(len(moved))], dtype=object)
    users = out["user_id"].to_numpy(dtype=object, copy=True)
    known = (users[moved] != "") & pd.notna(users[moved])
    users[moved] = np.where(known, names, "")
    sessions = out["session_id"].to_numpy(dtype=object, copy=True)
    sessions[moved] = names
    out["user_id"], out["session_id"] = users, sessions
    return in_time_order(out)


def late_items(
    events: pd.DataFrame, seed: int = 0, share: float = 0.3, holdout_days: float | None = None
) -> pd.DataFrame:
    """A catalog where `share` of the items appear only after the evaluation's cut
    (`evaluation_cut`): new products launched during the test window. Every event of the
    chosen items before the cut is moved after it (its time mapped linearly from [first event,
    cut) onto [cut, last event], so their order holds), in a session of its own. The items
    of the log's first event stay, so its span, and with it the cut, stays where it was."""
    if not 0.0 <= share <= 1.0:
        raise ValueError(f"share must be in [0, 1], got {share}")
    rng = np.random.default_rng(seed)
    out = events.copy()
    cut = evaluation_cut(out, holdout_days)
    t_min, t_max = out["ts"].min(), out["ts"].max()
    items = out["item_id"].astype(str)
    first = items[out["ts"] == t_min].unique()
    eligible = np.sort(np.setdiff1d(items.unique(), first))
    size = min(int(round(share * items.nunique())), len(eligible))
    chosen = rng.choice(eligible, size=size, replace=False)
    moved = (out["item_id"].isin(chosen) & (out["ts"] < cut)).to_numpy()
    before = out.loc[moved, "ts"]
    fraction = (before - t_min) / (cut - t_min)
    ts = out["ts"].copy()
    ts.loc[moved] = cut + (t_max - cut) * fraction
    out["ts"] = ts
    out.loc[moved, "session_id"] = out.loc[moved, "session_id"].astype(str) + "~late"
    return in_time_order(out)


Shape = Callable[..., pd.DataFrame]
# The grid's shapes, in the order the tables list them.
SHAPES: dict[str, Shape] = {
    "original": original,
    "bulk_timestamps": bulk_timestamps,
    "stray_timestamps": stray_timestamps,
    "purchase_only": purchase_only,
    "view_only": view_only,
    "long_tail": long_tail,
    "one_event_users": one_event_users,
    "late_items": late_items,
}


def apply_shape(
    name: str, events: pd.DataFrame, seed: int, holdout_days: float | None = None
) -> pd.DataFrame:
    """One shape by name; `late_items` is told the evaluation's holdout."""
    if name not in SHAPES:
        raise ValueError(f"unknown shape {name!r}; allowed: {', '.join(SHAPES)}")
    if name == "late_items":
        return late_items(events, seed, holdout_days=holdout_days)
    return SHAPES[name](events, seed)


def sample_visitors(events: pd.DataFrame, max_events: int, seed: int) -> pd.DataFrame:
    """Whole visitors drawn at random (seeded) until `max_events` are reached, so each kept
    history is complete; the log itself when it is no larger."""
    if len(events) <= max_events:
        return events
    rng = np.random.default_rng(seed)
    who = visitors(events)
    sizes = who.value_counts(sort=False)
    sizes = sizes.iloc[rng.permutation(len(sizes))]
    kept = sizes.index[np.cumsum(sizes.to_numpy()) <= max_events]
    return in_time_order(events[who.isin(kept).to_numpy()])

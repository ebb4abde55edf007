"""The profile store's content: per known user, their recent items and a few counters."""

from __future__ import annotations

import math

import numpy as np
import pandas as pd

from edge.schemas import Profile
from export.interactions import epoch_seconds, event_weights

MAX_RECENT_ITEMS = 50


def build_profiles(
    events: pd.DataFrame,
    weights: dict[str, float],
    attributes: dict[str, dict[str, str]] | None = None,
    max_recent: int = MAX_RECENT_ITEMS,
) -> dict[str, Profile]:
    """Profiles of the users with events; `attributes` (from the users file) ride along."""
    attributes = attributes or {}
    known = events[events["user_id"] != ""]
    if known.empty:
        return {}
    w = event_weights(known, weights)
    frame = pd.DataFrame(
        {
            "user": known["user_id"].to_numpy(),
            "item": known["item_id"].to_numpy(),
            "w": w,
            "t": epoch_seconds(known["ts"]),
            "session": known["session_id"].to_numpy(),
            "purchase": (known["type"] == "purchase").to_numpy(),
            "spend": (known["qty"] * known["price"]).to_numpy(),
            "price": known["price"].where(w > 0).to_numpy(),
        }
    )
    stats = frame.groupby("user", sort=True).agg(
        n_events=("w", "size"),
        n_purchases=("purchase", "sum"),
        last_ts=("t", "max"),
        mean_price=("price", "mean"),
    )
    stats["monetary"] = frame[frame["purchase"]].groupby("user")["spend"].sum()
    stats["monetary"] = stats["monetary"].fillna(0.0)
    # For the rules: when each user last bought, and how many visits they made since.
    last_purchase = frame[frame["purchase"]].groupby("user")["t"].max()
    stats["last_purchase_ts"] = last_purchase.reindex(stats.index).fillna(0.0)
    visits = frame.groupby(["user", "session"], sort=False)["t"].min().reset_index()
    since = visits["t"] > visits["user"].map(last_purchase).fillna(-math.inf).to_numpy()
    stats["visits_since_purchase"] = since.groupby(visits["user"]).sum()
    recent = frame[frame["w"] > 0].sort_values(
        ["user", "t"], ascending=[True, False], kind="stable"
    )
    recent = recent[recent.groupby("user", sort=False).cumcount() < max_recent]
    # First purchase of each item, in time order (`events` is sorted by time).
    bought = frame[frame["purchase"]].drop_duplicates(["user", "item"])
    bought = bought.sort_values("user", kind="stable")
    recent_items = _lists_by_user(recent["user"], recent["item"])
    recent_weights = _lists_by_user(recent["user"], recent["w"])
    bought_items = _lists_by_user(bought["user"], bought["item"])

    profiles: dict[str, Profile] = {}
    names = ("n_events", "n_purchases", "last_ts", "monetary", "mean_price")
    names += ("visits_since_purchase", "last_purchase_ts")
    for user, row in zip(stats.index, zip(*(stats[c].to_numpy() for c in names))):
        n_events, n_purchases, last_ts, monetary, mean_price, visits_since, last_bought = row
        user = str(user)
        profiles[user] = Profile(
            recent_items=recent_items.get(user, []),
            recent_weights=recent_weights.get(user, []),
            bought_items=bought_items.get(user, []),
            n_events=int(n_events),
            n_purchases=int(n_purchases),
            last_ts=float(last_ts),
            monetary=round(float(monetary), 2) if math.isfinite(monetary) else 0.0,
            mean_price=float(mean_price) if math.isfinite(mean_price) else math.nan,
            attributes=attributes.get(user, {}),
            visits_since_purchase=int(visits_since),
            last_purchase_ts=float(last_bought),
        )
    return profiles


def _lists_by_user(users: pd.Series, values: pd.Series) -> dict[str, list]:
    """{user: [values...]} for rows already grouped by user (contiguous), order kept."""
    if users.empty:
        return {}
    u = users.to_numpy()
    starts = np.flatnonzero(np.r_[True, u[1:] != u[:-1]])
    chunks = np.split(values.to_numpy(), starts[1:])
    return {str(u[s]): chunk.tolist() for s, chunk in zip(starts, chunks)}

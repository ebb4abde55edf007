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
            "purchase": (known["type"] == "purchase").to_numpy(),
            "spend": (known["qty"] * known["price"]).to_numpy(),
            "price": known["price"].where(w > 0).to_numpy(),
        }
    )
    stats = frame.groupby("user", sort=False).agg(
        n_events=("w", "size"),
        n_purchases=("purchase", "sum"),
        last_ts=("t", "max"),
        mean_price=("price", "mean"),
    )
    stats["monetary"] = frame[frame["purchase"]].groupby("user")["spend"].sum()
    recent = frame[frame["w"] > 0].sort_values(
        ["user", "t"], ascending=[True, False], kind="stable"
    )
    recent = recent[recent.groupby("user", sort=False).cumcount() < max_recent]
    recent_items = recent.groupby("user", sort=False)["item"].agg(list)
    recent_weights = recent.groupby("user", sort=False)["w"].agg(list)
    bought = (
        frame[frame["purchase"]]
        .groupby("user", sort=False)["item"]
        .agg(lambda s: list(dict.fromkeys(s)))
    )
    profiles: dict[str, Profile] = {}
    for user, row in stats.iterrows():
        monetary = row["monetary"]
        profiles[str(user)] = Profile(
            recent_items=recent_items.get(user, []),
            recent_weights=[float(x) for x in recent_weights.get(user, [])],
            bought_items=bought.get(user, []),
            n_events=int(row["n_events"]),
            n_purchases=int(row["n_purchases"]),
            last_ts=float(row["last_ts"]),
            monetary=0.0 if not np.isfinite(monetary) else round(float(monetary), 2),
            mean_price=float(row["mean_price"]) if math.isfinite(row["mean_price"]) else math.nan,
            attributes=attributes.get(str(user), {}),
        )
    return profiles

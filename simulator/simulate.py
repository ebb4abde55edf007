"""`simulate_shop`: one seeded shop, its parts drawn from independent random streams."""

from __future__ import annotations

import numpy as np
import pandas as pd

from simulator.funnel import finish
from simulator.sessions import draw_views, plan_sessions
from simulator.shop import SimulatedShop
from simulator.world import make_catalog, make_context, make_users


class ShopSizeError(ValueError):
    """Sizes that describe no shop (no users, fewer items than categories, ...)."""


def simulate_shop(
    n_users: int = 2_000,
    n_items: int = 1_000,
    n_events: int = 100_000,
    *,
    seed: int = 0,
    start: str = "2026-01-01",
    days: int = 60,
    n_categories: int = 20,
) -> SimulatedShop:
    """Simulate about `n_events` events of `n_users` shoppers over `days` days from `start`."""
    _check_sizes(n_users, n_items, n_events, days, n_categories)
    # Independent streams per part: changing one part's draws leaves the others intact.
    streams = [np.random.default_rng(s) for s in np.random.SeedSequence(seed).spawn(6)]
    start_ms = _utc_ms(start)
    catalog = make_catalog(streams[0], n_items, n_categories)
    people = make_users(streams[1], n_users, days)
    ctx = make_context(streams[2], n_categories, catalog.cat)
    sessions = plan_sessions(streams[3], people, ctx, n_events, days, start_ms)
    views = draw_views(streams[4], sessions, people, catalog, ctx)
    return finish(streams[5], sessions, views, people, catalog, n_events, days, start_ms)


def _check_sizes(n_users: int, n_items: int, n_events: int, days: int, n_categories: int) -> None:
    if n_users < 1 or n_events < 1 or days < 1:
        raise ShopSizeError("n_users, n_events and days must be positive")
    if not 2 <= n_categories <= n_items:
        raise ShopSizeError("need 2 <= n_categories <= n_items")


def _utc_ms(start: str) -> int:
    stamp = pd.Timestamp(start)
    stamp = stamp.tz_localize("UTC") if stamp.tzinfo is None else stamp.tz_convert("UTC")
    return int(stamp.value // 1_000_000)

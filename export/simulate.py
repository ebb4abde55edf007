"""A seeded simulator of an online shop, for tests and benchmarks of the build pipeline.

The world has latent truth (user and item taste vectors, per-context category biases,
per-session purchase intent) that the exported frames never show directly, so a model that
scores well on the simulated log has learned real effects rather than the simulator's
bookkeeping. Everything is vectorized with numpy: sessions are generated as a block and each
view step is drawn for every still-active session at once, which keeps ten million events
well under a minute.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow as pa

DEVICES = ("desktop", "mobile", "tablet")
COUNTRIES = ("gb", "de", "fr", "us", "pl", "es", "it", "nl")
COUNTRY_SHARE = np.array([0.27, 0.20, 0.13, 0.15, 0.08, 0.07, 0.06, 0.04])
UTC_OFFSET_H = np.array([0, 1, 1, -5, 1, 1, 1, 1])  # fixed offsets: no DST in this world
# Later evenings in the south, earlier in the north: shifts of the daily curve in hours.
COUNTRY_HOUR_SHIFT = np.array([0, -1, 0, 0, 0, 2, 1, -1])
EVENT_TYPES = ("view", "add_to_cart", "remove_from_cart", "purchase")
HOUR_BUCKETS = ("night", "morning", "afternoon", "evening")  # 0-5, 6-11, 12-17, 18-23
LOYALTY_TIERS = ("none", "silver", "gold", "platinum")
AGE_BANDS = ("18-24", "25-34", "35-44", "45-54", "55-64", "65+")
AGE_SHARE = np.array([0.14, 0.27, 0.23, 0.17, 0.12, 0.07])
REGIONS = ("north", "south", "east", "west", "central")
CATEGORY_NAMES = (
    "electronics",
    "phones",
    "computers",
    "home",
    "kitchen",
    "garden",
    "womens_fashion",
    "mens_fashion",
    "shoes",
    "beauty",
    "health",
    "sports",
    "outdoor",
    "toys",
    "baby",
    "books",
    "music",
    "games",
    "pets",
    "grocery",
)
_BRAND_HEADS = ("Nor", "Vel", "Kap", "Lum", "Tor", "Bri", "Sol", "Zen", "Mar", "Qui", "Fen", "Ost")
_BRAND_TAILS = ("ex", "ora", "ix", "ano", "ello", "io", "ar", "um", "is", "eon")

# Sessions start mostly in the evening, rarely at night (local time, before country shifts).
_BASE_HOUR_CURVE = np.array(
    [
        0.50,
        0.30,
        0.20,
        0.15,
        0.15,
        0.25,
        0.60,
        1.00,
        1.30,
        1.40,
        1.40,
        1.50,
        1.70,
        1.60,
        1.40,
        1.40,
        1.50,
        1.70,
        2.00,
        2.40,
        2.60,
        2.40,
        1.80,
        1.00,
    ]
)

LATENT_DIM = 16
N_TASTE_CLUSTERS = 32
MS_PER_HOUR = 3_600_000
MS_PER_DAY = 24 * MS_PER_HOUR

# Session dynamics: after the first view a session stays in its category, jumps to the
# complementary one, re-opens the previous item, or draws a fresh category.
P_STAY, P_COMPLEMENT, P_REVISIT = 0.55, 0.12, 0.06
MAX_VIEWS = 60
P_REMOVE = 0.2
P_REBUY = 0.12  # share of repeat purchases of the same item that survive
# Rows per view, measured on the default world; only used to size the block of sessions.
EVENTS_PER_VIEW = 1.11
SESSION_SLACK = 1.08  # draw a few more sessions than needed, then keep a prefix


@dataclass(frozen=True, eq=False)  # eq=False: DataFrames have no truth value to compare
class SimulatedShop:
    events: pd.DataFrame
    catalog: pd.DataFrame
    users: pd.DataFrame
    sessions: pd.DataFrame  # ground truth, never an input of the product

    def write(self, directory: str | Path, fmt: str = "parquet") -> dict[str, Path]:
        """Write events, catalog and users as `<name>.parquet` or `<name>.csv`, and the
        sessions' ground truth (true purchase intent) as `truth.<fmt>`, to measure against."""
        if fmt not in ("parquet", "csv"):
            raise ValueError(f"fmt must be 'parquet' or 'csv', not {fmt!r}")
        out = Path(directory)
        out.mkdir(parents=True, exist_ok=True)
        paths: dict[str, Path] = {}
        for name, frame in (
            ("events", self.events),
            ("catalog", self.catalog),
            ("users", self.users),
            ("truth", self.sessions),
        ):
            path = out / f"{name}.{fmt}"
            if fmt == "parquet":
                frame.to_parquet(path, index=False)
            else:
                frame.to_csv(path, index=False)
            paths[name] = path
        return paths


@dataclass
class _Catalog:
    cat: np.ndarray  # category index per item
    pop: np.ndarray  # log base popularity (Zipf-like)
    resid: np.ndarray  # item taste vector minus its category's vector
    cat_vec: np.ndarray  # (C, D): the category part of every item vector
    log_price_rel: np.ndarray  # log price relative to the category's typical price
    price: np.ndarray
    in_stock: np.ndarray
    frame: pd.DataFrame


@dataclass
class _Population:
    vec: np.ndarray  # (U, D) taste vectors
    cluster: np.ndarray  # taste cluster, used for within-category item sampling
    cluster_vec: np.ndarray  # (K, D)
    country: np.ndarray
    device: np.ndarray  # preferred device
    age: np.ndarray
    loyalty: np.ndarray
    activity: np.ndarray  # relative session rate, heavy-tailed
    price_sens: np.ndarray
    join_day: np.ndarray  # first day a user can appear: some users are new later on
    frame: pd.DataFrame


@dataclass
class _Context:
    """Additive category logits per context value: the effects a context model can learn."""

    cat_base: np.ndarray  # (C,)
    device: np.ndarray  # (3, C)
    country: np.ndarray  # (8, C)
    hour: np.ndarray  # (4, C)
    age: np.ndarray  # (6, C)
    complement: np.ndarray  # (C,) the "bought together" category of each category
    hour_cdf: np.ndarray  # (8, 24) session start hour per country, local time


@dataclass
class _Sessions:
    user: np.ndarray
    device: np.ndarray
    country: np.ndarray
    bucket: np.ndarray
    start_ms: np.ndarray  # UTC epoch milliseconds
    n_views: np.ndarray
    intent_logit: np.ndarray


@dataclass
class _Views:
    sess: np.ndarray
    item: np.ndarray
    ts: np.ndarray
    dwell: np.ndarray
    affinity_z: np.ndarray


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
    _validate(n_users, n_items, n_events, days, n_categories)
    # Independent streams per part: changing one part's draws leaves the others intact.
    streams = [np.random.default_rng(s) for s in np.random.SeedSequence(seed).spawn(6)]
    start_ms = _utc_ms(start)
    catalog = _make_catalog(streams[0], n_items, n_categories)
    people = _make_users(streams[1], n_users, days)
    ctx = _make_context(streams[2], n_categories, catalog.cat)
    sessions = _plan_sessions(streams[3], people, ctx, n_events, days, start_ms)
    views = _draw_views(streams[4], sessions, people, catalog, ctx)
    return _finish(streams[5], sessions, views, people, catalog, n_events, days, start_ms)


def _validate(n_users: int, n_items: int, n_events: int, days: int, n_categories: int) -> None:
    if n_users < 1 or n_events < 1 or days < 1:
        raise ValueError("n_users, n_events and days must be positive")
    if not 2 <= n_categories <= n_items:
        raise ValueError("need 2 <= n_categories <= n_items")


def _utc_ms(start: str) -> int:
    stamp = pd.Timestamp(start)
    stamp = stamp.tz_localize("UTC") if stamp.tzinfo is None else stamp.tz_convert("UTC")
    return int(stamp.value // 1_000_000)


def _ids(prefix: str, n: int, width: int) -> np.ndarray:
    width = max(width, len(str(max(n - 1, 0))))
    return np.array([f"{prefix}{i:0{width}d}" for i in range(n)], dtype=object)


def _zipf_weights(n: int, exponent: float) -> np.ndarray:
    weights = np.arange(1, n + 1, dtype=np.float64) ** -exponent
    return weights / weights.sum()


def _sigmoid(x: np.ndarray) -> np.ndarray:
    return 1.0 / (1.0 + np.exp(-x))


# ---------------------------------------------------------------- catalog and users


def _make_catalog(rng: np.random.Generator, n_items: int, n_cats: int) -> _Catalog:
    cat_names = [
        CATEGORY_NAMES[c] if c < len(CATEGORY_NAMES) else f"category_{c:02d}" for c in range(n_cats)
    ]
    # One item per category guarantees no empty category; the rest follow Zipf-like sizes.
    cat = np.concatenate(
        [np.arange(n_cats), rng.choice(n_cats, n_items - n_cats, p=_zipf_weights(n_cats, 0.9))]
    )
    rng.shuffle(cat)
    # Base popularity: a long tail over a random ranking of items.
    pop = -0.9 * np.log(rng.permutation(n_items) + 1.0)
    cat_vec = rng.normal(0.0, 0.5, (n_cats, LATENT_DIM))
    resid = rng.normal(0.0, 0.3, (n_items, LATENT_DIM))
    # Prices: log-normal around a typical price that differs by category.
    cat_log_price = rng.normal(3.4, 0.8, n_cats)
    log_price_rel = rng.normal(0.0, 0.45, n_items)
    price = np.maximum(np.round(np.exp(cat_log_price[cat] + log_price_rel), 2), 0.99)
    in_stock = rng.random(n_items) >= 0.03
    brands = _brands(rng, cat, n_cats)
    item_ids = _ids("i", n_items, 6)
    names = np.array(cat_names, dtype=object)
    titles = [f"{b} {names[c].replace('_', ' ')} {i}" for i, (b, c) in enumerate(zip(brands, cat))]
    frame = pd.DataFrame(
        {
            "item_id": item_ids,
            "title": titles,
            "category": names[cat],
            "price": price,
            "brand": brands,
            "in_stock": in_stock,
        }
    )
    return _Catalog(cat, pop, resid, cat_vec, log_price_rel, price, in_stock, frame)


def _brands(rng: np.random.Generator, cat: np.ndarray, n_cats: int) -> np.ndarray:
    """A global pool of brands; each category uses a Zipf-skewed window of it."""
    n_brands = max(10, len(cat) // 40)
    stems = [h + t for h in _BRAND_HEADS for t in _BRAND_TAILS]
    names = np.array(
        [
            stems[b % len(stems)] + (str(b // len(stems)) if b >= len(stems) else "")
            for b in range(n_brands)
        ],
        dtype=object,
    )
    per_cat = max(4, 3 * n_brands // n_cats)
    offset = rng.integers(0, n_brands, n_cats)
    rank = rng.choice(per_cat, len(cat), p=_zipf_weights(per_cat, 1.1))
    return names[(offset[cat] + rank) % n_brands]


def _make_users(rng: np.random.Generator, n_users: int, days: int) -> _Population:
    cluster_vec = rng.normal(0.0, 0.55, (N_TASTE_CLUSTERS, LATENT_DIM))
    cluster = rng.choice(N_TASTE_CLUSTERS, n_users, p=_zipf_weights(N_TASTE_CLUSTERS, 0.6))
    vec = cluster_vec[cluster] + rng.normal(0.0, 0.25, (n_users, LATENT_DIM))
    country = rng.choice(len(COUNTRIES), n_users, p=COUNTRY_SHARE / COUNTRY_SHARE.sum())
    age = rng.choice(len(AGE_BANDS), n_users, p=AGE_SHARE / AGE_SHARE.sum())
    # Younger shoppers prefer phones, older ones desktops and tablets.
    p_mobile = 0.72 - 0.08 * age
    p_tablet = 0.05 + 0.02 * age
    u = rng.random(n_users)
    device = np.where(u < p_mobile, 1, np.where(u < p_mobile + p_tablet, 2, 0))
    activity = rng.lognormal(0.0, 1.1, n_users)
    # Loyalty follows activity loosely: heavy shoppers tend to have higher tiers.
    score = np.log(activity) + rng.normal(0.0, 0.7, n_users)
    loyalty = np.searchsorted(np.quantile(score, [0.55, 0.80, 0.95]), score)
    price_sens = rng.lognormal(np.log(0.8), 0.5, n_users)
    # A quarter of users join at some point during the period (cold starts in later days).
    join_day = np.where(rng.random(n_users) < 0.25, rng.integers(0, days, n_users), 0)
    region = rng.integers(0, len(REGIONS), n_users)
    frame = pd.DataFrame(
        {
            "user_id": _ids("u", n_users, 7),
            "loyalty_tier": np.array(LOYALTY_TIERS, dtype=object)[loyalty],
            "age_band": np.array(AGE_BANDS, dtype=object)[age],
            "region": [f"{COUNTRIES[c]}-{REGIONS[r]}" for c, r in zip(country, region)],
        }
    )
    return _Population(
        vec,
        cluster,
        cluster_vec,
        country,
        device,
        age,
        loyalty,
        activity,
        price_sens,
        join_day,
        frame,
    )


def _make_context(rng: np.random.Generator, n_cats: int, item_cat: np.ndarray) -> _Context:
    size_share = np.bincount(item_cat, minlength=n_cats) / len(item_cat)
    cat_base = 0.5 * np.log(size_share) + rng.normal(0.0, 0.3, n_cats)
    # A derangement: every category's complement is another category.
    complement = (np.arange(n_cats) + rng.integers(1, n_cats, n_cats)) % n_cats
    curves = np.stack([np.roll(_BASE_HOUR_CURVE, s) for s in COUNTRY_HOUR_SHIFT])
    curves *= rng.lognormal(0.0, 0.15, curves.shape)
    hour_cdf = np.cumsum(curves, axis=1)
    hour_cdf /= hour_cdf[:, -1:]
    return _Context(
        cat_base=cat_base,
        device=rng.normal(0.0, 1.0, (len(DEVICES), n_cats)),
        country=rng.normal(0.0, 0.8, (len(COUNTRIES), n_cats)),
        hour=rng.normal(0.0, 1.0, (len(HOUR_BUCKETS), n_cats)),
        age=rng.normal(0.0, 0.4, (len(AGE_BANDS), n_cats)),
        complement=complement,
        hour_cdf=hour_cdf,
    )


# ---------------------------------------------------------------- sessions


def _plan_sessions(
    rng: np.random.Generator,
    people: _Population,
    ctx: _Context,
    n_events: int,
    days: int,
    start_ms: int,
) -> _Sessions:
    n_views = np.minimum(1 + np.floor(rng.lognormal(1.2, 0.9, _n_sessions(n_events))), MAX_VIEWS)
    n = len(n_views)
    user = rng.choice(len(people.activity), n, p=people.activity / people.activity.sum())
    # The preferred device most of the time, another one otherwise; likewise home country.
    other_device = (people.device[user] + rng.integers(1, len(DEVICES), n)) % len(DEVICES)
    device = np.where(rng.random(n) < 0.8, people.device[user], other_device)
    country = np.where(
        rng.random(n) < 0.96, people.country[user], rng.integers(0, len(COUNTRIES), n)
    )
    join = people.join_day[user]
    day = join + np.floor(rng.random(n) * (days - join)).astype(np.int64)
    u = rng.random(n)
    local_hour = (ctx.hour_cdf[country] < u[:, None]).sum(axis=1).clip(0, 23)
    local_ms = local_hour * MS_PER_HOUR + rng.integers(0, MS_PER_HOUR, n)
    # Keep the UTC start inside its day; local_hour of events is recomputed from ts later.
    utc_in_day = (local_ms - UTC_OFFSET_H[country] * MS_PER_HOUR) % MS_PER_DAY
    intent = (
        -0.3
        + 0.3 * np.log(people.activity[user])
        + np.array([0.35, -0.3, 0.0])[device]
        + np.array([0.0, 0.2, 0.4, 0.6])[people.loyalty[user]]
        + rng.normal(0.0, 0.6, n)
    )
    return _Sessions(
        user=user,
        device=device,
        country=country,
        bucket=local_hour // 6,
        start_ms=start_ms + day * MS_PER_DAY + utc_in_day,
        n_views=n_views.astype(np.int64),
        intent_logit=intent,
    )


def _n_sessions(n_events: int) -> int:
    mean_views = 0.5 + np.exp(1.2 + 0.9**2 / 2)  # 1 + floor(lognormal), roughly
    return max(1, int(np.ceil(n_events * SESSION_SLACK / (mean_views * EVENTS_PER_VIEW))))


def _session_category_cdf(
    sessions: _Sessions, people: _Population, catalog: _Catalog, ctx: _Context, order: np.ndarray
) -> np.ndarray:
    """(S, C) CDF of a fresh category draw: taste plus device, country and hour biases."""
    user = sessions.user[order]
    taste = (people.vec @ catalog.cat_vec.T + ctx.age[people.age]).astype(np.float32)
    logits = taste[user]
    logits += ctx.cat_base.astype(np.float32)
    logits += ctx.device.astype(np.float32)[sessions.device[order]]
    logits += ctx.country.astype(np.float32)[sessions.country[order]]
    logits += ctx.hour.astype(np.float32)[sessions.bucket[order]]
    logits -= logits.max(axis=1, keepdims=True)
    np.exp(logits, out=logits)
    np.cumsum(logits, axis=1, out=logits)
    logits /= logits[:, -1:]
    return logits


@dataclass
class _ItemSampler:
    """Per (taste cluster, category) CDFs over the category's items, laid end to end.

    Segment (k, c) holds values in [k*C + c, k*C + c + 1], so one searchsorted over the
    flat array draws items for any mix of clusters and categories at once."""

    flat_cdf: np.ndarray
    items: np.ndarray  # items sorted by category
    seg_start: np.ndarray
    seg_end: np.ndarray
    n_cats: int

    def draw(self, cluster: np.ndarray, cat: np.ndarray, u: np.ndarray) -> np.ndarray:
        n_items = len(self.items)
        query = cluster * self.n_cats + cat + u
        # Sorted queries walk the table in order: about four times faster than random probes.
        by_query = np.argsort(query)
        pos = np.empty(len(query), dtype=np.int64)
        pos[by_query] = np.searchsorted(self.flat_cdf, query[by_query], side="right")
        base = cluster * n_items
        pos = np.clip(pos, base + self.seg_start[cat], base + self.seg_end[cat] - 1)
        return self.items[pos - base]


def _item_sampler(catalog: _Catalog, cluster_vec: np.ndarray) -> _ItemSampler:
    n_cats = len(catalog.cat_vec)
    items = np.argsort(catalog.cat, kind="stable")
    cat_sorted = catalog.cat[items]
    seg_end = np.cumsum(np.bincount(cat_sorted, minlength=n_cats))
    seg_start = seg_end - np.bincount(cat_sorted, minlength=n_cats)
    # Popularity plus the cluster's taste for what sets an item apart within its category.
    logits = catalog.pop[items][None, :] + cluster_vec @ catalog.resid[items].T
    logits -= np.maximum.reduceat(logits, seg_start, axis=1)[:, cat_sorted]
    cum = np.cumsum(np.exp(logits), axis=1)
    before = np.where(seg_start > 0, cum[:, np.maximum(seg_start - 1, 0)], 0.0)
    total = cum[:, seg_end - 1] - before
    # Same arithmetic for the last item and the total: each segment ends at exactly 1.0.
    within = (cum - before[:, cat_sorted]) / total[:, cat_sorted]
    offsets = np.arange(len(cluster_vec))[:, None] * n_cats + cat_sorted[None, :]
    return _ItemSampler((offsets + within).ravel(), items, seg_start, seg_end, n_cats)


def _draw_views(
    rng: np.random.Generator,
    sessions: _Sessions,
    people: _Population,
    catalog: _Catalog,
    ctx: _Context,
) -> _Views:
    # Longest sessions first, so the sessions active at step t are a prefix.
    order = np.argsort(-sessions.n_views, kind="stable")
    lengths = sessions.n_views[order]
    offset = np.concatenate([[0], np.cumsum(lengths)[:-1]])
    cat_cdf = _session_category_cdf(sessions, people, catalog, ctx, order)
    sampler = _item_sampler(catalog, people.cluster_vec)
    cluster = people.cluster[sessions.user[order]]
    total = int(lengths.sum())
    v_item = np.empty(total, dtype=np.int64)
    prev_cat = np.zeros(len(order), dtype=np.int64)
    prev_item = np.zeros(len(order), dtype=np.int64)
    for step in range(int(lengths[0]) if len(lengths) else 0):
        n = int(np.searchsorted(-lengths, -step, side="left"))
        cat, revisit = _next_categories(rng, step, cat_cdf[:n], prev_cat[:n], ctx.complement)
        item = sampler.draw(cluster[:n], cat, rng.random(n))
        item[revisit] = prev_item[:n][revisit]
        v_item[offset[:n] + step] = item
        prev_cat[:n], prev_item[:n] = cat, item
    v_sess = np.repeat(order, lengths)
    return _time_views(rng, sessions, people, catalog, v_sess, v_item, offset, lengths)


def _next_categories(
    rng: np.random.Generator,
    step: int,
    cat_cdf: np.ndarray,
    prev_cat: np.ndarray,
    complement: np.ndarray,
) -> tuple[np.ndarray, np.ndarray]:
    """Category of the next view per active session, and which sessions re-open an item."""
    n = len(prev_cat)
    if step == 0:  # a session opens on a fresh draw
        comp = revisit = np.zeros(n, dtype=bool)
        fresh = ~comp
    else:
        r = rng.random(n)
        comp = (r >= P_STAY) & (r < P_STAY + P_COMPLEMENT)
        revisit = r >= 1.0 - P_REVISIT
        fresh = (r >= P_STAY + P_COMPLEMENT) & ~revisit
    cat = prev_cat.copy()
    cat[comp] = complement[prev_cat[comp]]
    u = rng.random(int(fresh.sum()), dtype=np.float32)
    cat[fresh] = np.minimum((cat_cdf[fresh] < u[:, None]).sum(axis=1), cat_cdf.shape[1] - 1)
    return cat, revisit


def _time_views(
    rng: np.random.Generator,
    sessions: _Sessions,
    people: _Population,
    catalog: _Catalog,
    v_sess: np.ndarray,
    v_item: np.ndarray,
    offset: np.ndarray,
    lengths: np.ndarray,
) -> _Views:
    affinity = _affinity(people.vec[sessions.user], catalog, v_sess, v_item)
    z = (affinity - affinity.mean()) / max(float(affinity.std()), 1e-9)
    # People linger on what they like.
    dwell = np.exp(np.log(15_000) + 0.35 * z + rng.normal(0.0, 0.7, len(z)))
    dwell = np.clip(dwell, 300, 600_000).astype(np.int64)
    gap = np.clip(rng.lognormal(np.log(4_000), 0.6, len(z)), 500, 120_000).astype(np.int64)
    step_ms = dwell + gap
    cum = np.cumsum(step_ms)
    before = np.repeat(cum[offset] - step_ms[offset], lengths)
    ts = sessions.start_ms[v_sess] + cum - step_ms - before
    return _Views(v_sess, v_item, ts, dwell, z)


def _affinity(
    user_vec: np.ndarray, catalog: _Catalog, v_sess: np.ndarray, v_item: np.ndarray
) -> np.ndarray:
    """dot(user, item) + base popularity, in chunks to bound the gathered (n, D) blocks."""
    item_vec = (catalog.cat_vec[catalog.cat] + catalog.resid).astype(np.float32)
    user_vec = user_vec.astype(np.float32)
    out = np.empty(len(v_item), dtype=np.float64)
    chunk = 1_000_000
    for lo in range(0, len(v_item), chunk):
        hi = lo + chunk
        dots = np.einsum("ij,ij->i", user_vec[v_sess[lo:hi]], item_vec[v_item[lo:hi]])
        out[lo:hi] = dots + catalog.pop[v_item[lo:hi]]
    return out


# ---------------------------------------------------------------- funnel and frames


def _finish(
    rng: np.random.Generator,
    sessions: _Sessions,
    views: _Views,
    people: _Population,
    catalog: _Catalog,
    n_events: int,
    days: int,
    start_ms: int,
) -> SimulatedShop:
    n_sess = len(sessions.user)
    v_end = views.ts + views.dwell
    sess_end = np.zeros(n_sess, dtype=np.int64)
    np.maximum.at(sess_end, views.sess, v_end)
    checkout = sess_end + np.clip(rng.lognormal(np.log(45_000), 0.5, n_sess), 20_000, 300_000)
    checkout = checkout.astype(np.int64)
    carts = _carts(rng, sessions, views, people, catalog, checkout)
    true_intent, buys = _purchases(rng, sessions, carts, catalog, checkout)
    true_intent, buys = _rarely_rebuy(rng, sessions, carts, buys, true_intent)
    # Keep a random prefix of sessions (they are in random order) totalling <= n_events rows.
    rows = (
        np.bincount(views.sess, minlength=n_sess)
        + np.bincount(carts["sess"], minlength=n_sess)
        + np.bincount(carts["sess"][carts["removed"]], minlength=n_sess)
        + np.bincount(buys["sess"], minlength=n_sess)
    )
    keep = np.cumsum(rows) <= n_events
    keep[0] = True
    shift = _day_shift(sessions.start_ms, checkout + MAX_VIEWS, days, start_ms)
    return _frames(sessions, views, carts, buys, keep, shift, true_intent, people, catalog)


def _carts(
    rng: np.random.Generator,
    sessions: _Sessions,
    views: _Views,
    people: _Population,
    catalog: _Catalog,
    checkout: np.ndarray,
) -> dict[str, np.ndarray]:
    user = sessions.user[views.sess]
    logit = (
        -3.1
        + 0.9 * views.affinity_z
        + 0.35 * sessions.intent_logit[views.sess]
        - people.price_sens[user] * catalog.log_price_rel[views.item]
    )
    is_cart = (rng.random(len(logit)) < _sigmoid(logit)) & catalog.in_stock[views.item]
    sess = views.sess[is_cart]
    ts = views.ts[is_cart] + views.dwell[is_cart]
    removed = rng.random(len(sess)) < P_REMOVE
    # A removal lands somewhere between the cart and the checkout page.
    window = np.maximum(checkout[sess] - ts - 1_000, 1)
    remove_ts = ts + 500 + (rng.random(len(sess)) * window).astype(np.int64)
    return {
        "sess": sess,
        "item": views.item[is_cart],
        "ts": ts,
        "qty": rng.geometric(0.82, len(sess)).astype(np.int64),
        "removed": removed,
        "remove_ts": remove_ts,
    }


def _purchases(
    rng: np.random.Generator,
    sessions: _Sessions,
    carts: dict[str, np.ndarray],
    catalog: _Catalog,
    checkout: np.ndarray,
) -> tuple[np.ndarray, dict[str, np.ndarray]]:
    """Session intent decides whether the remaining cart is bought; otherwise it is abandoned."""
    n_sess = len(sessions.user)
    kept = ~carts["removed"]
    n_kept = np.bincount(carts["sess"][kept], minlength=n_sess)
    p_buy = _sigmoid(0.2 + sessions.intent_logit + 0.5 * np.log1p(n_kept))
    true_intent = np.where(n_kept > 0, p_buy, 0.0)
    buys_session = rng.random(n_sess) < true_intent
    take = kept & buys_session[carts["sess"]]
    # One purchase row per (session, item), summing quantities of repeated carts.
    key = carts["sess"][take] * len(catalog.price) + carts["item"][take]
    uniq, inverse = np.unique(key, return_inverse=True)
    qty = np.bincount(inverse, weights=carts["qty"][take]).astype(np.int64)
    sess, item = np.divmod(uniq, len(catalog.price))
    first = np.searchsorted(sess, sess, side="left")
    ts = checkout[sess] + (np.arange(len(sess)) - first)  # one order, items a ms apart
    return true_intent, {"sess": sess, "item": item, "ts": ts, "qty": qty}


def _rarely_rebuy(
    rng: np.random.Generator,
    sessions: _Sessions,
    carts: dict[str, np.ndarray],
    buys: dict[str, np.ndarray],
    true_intent: np.ndarray,
) -> tuple[np.ndarray, dict[str, np.ndarray]]:
    """Drop most purchases of an item the user bought in an earlier session.

    The cart stays, abandoned: people re-cart what they own but rarely buy it twice. A session
    whose whole cart is such repeats buys less often, and its true_intent says so."""
    n_items = int(max(buys["item"].max(initial=0), carts["item"].max(initial=0))) + 1
    when = np.empty(len(sessions.user), dtype=np.int64)  # session order by start time
    when[np.argsort(sessions.start_ms, kind="stable")] = np.arange(len(sessions.user))
    # The first purchase of each (user, item): anything later is a repeat.
    key = sessions.user[buys["sess"]] * n_items + buys["item"]
    order = np.lexsort((when[buys["sess"]], key))
    first_key, first_at = np.unique(key[order], return_index=True)
    first_when = when[buys["sess"]][order][first_at]

    def is_repeat(sess: np.ndarray, item: np.ndarray) -> np.ndarray:
        probe = sessions.user[sess] * n_items + item
        at = np.minimum(np.searchsorted(first_key, probe), max(len(first_key) - 1, 0))
        found = (first_key[at] == probe) if len(first_key) else np.zeros(len(probe), bool)
        return found & (first_when[at] < when[sess])

    keep = ~is_repeat(buys["sess"], buys["item"]) | (rng.random(len(key)) < P_REBUY)
    # Kept cart items per session, and how many of them the user already owns.
    kept = ~carts["removed"]
    cart_key = np.unique(carts["sess"][kept] * n_items + carts["item"][kept])
    sess, item = np.divmod(cart_key, n_items)
    n_cart = np.bincount(sess, minlength=len(when))
    n_owned = np.bincount(sess[is_repeat(sess, item)], minlength=len(when))
    all_owned = (n_cart > 0) & (n_owned == n_cart)
    survive = 1.0 - (1.0 - P_REBUY) ** n_cart
    true_intent = np.where(all_owned, true_intent * survive, true_intent)
    return true_intent, {name: values[keep] for name, values in buys.items()}


def _day_shift(start: np.ndarray, end: np.ndarray, days: int, range_start: int) -> np.ndarray:
    """Milliseconds to move each session by so it ends before the period does.

    Whole days keep local hours intact; only a one-day period has to clamp."""
    range_end = range_start + days * MS_PER_DAY
    over = end >= range_end
    whole_day = start - MS_PER_DAY >= range_start
    clamp = np.maximum(range_end - 1 - end, range_start - start)
    return np.where(over, np.where(whole_day, -MS_PER_DAY, clamp), 0).astype(np.int64)


def _frames(
    sessions: _Sessions,
    views: _Views,
    carts: dict[str, np.ndarray],
    buys: dict[str, np.ndarray],
    keep: np.ndarray,
    shift: np.ndarray,
    true_intent: np.ndarray,
    people: _Population,
    catalog: _Catalog,
) -> SimulatedShop:
    removed = carts["removed"]
    n_view, n_cart, n_rem = len(views.sess), len(carts["sess"]), int(removed.sum())
    sess = np.concatenate([views.sess, carts["sess"], carts["sess"][removed], buys["sess"]])
    item = np.concatenate([views.item, carts["item"], carts["item"][removed], buys["item"]])
    ts = np.concatenate([views.ts, carts["ts"], carts["remove_ts"][removed], buys["ts"]])
    kind = np.repeat(np.arange(4), [n_view, n_cart, n_rem, len(buys["sess"])])
    qty = np.concatenate(
        [np.ones(n_view, dtype=np.int64), carts["qty"], carts["qty"][removed], buys["qty"]]
    )
    dwell = np.concatenate([views.dwell, np.zeros(len(sess) - n_view, dtype=np.int64)])
    ts = ts + shift[sess]

    # Session ids follow start time, so s00000000 is the first session of the period.
    kept = np.flatnonzero(keep)
    by_start = kept[np.argsort(sessions.start_ms[kept] + shift[kept], kind="stable")]
    rank = np.full(len(keep), -1, dtype=np.int64)
    rank[by_start] = np.arange(len(by_start))
    rows = np.flatnonzero(keep[sess])
    rows = rows[_event_order(ts[rows], rank[sess[rows]], kind[rows])]
    sess, item, ts, kind, qty, dwell = (a[rows] for a in (sess, item, ts, kind, qty, dwell))

    session_ids = _ids("s", len(by_start), 8)
    user_ids = people.frame["user_id"].to_numpy(dtype=object)
    item_ids = catalog.frame["item_id"].to_numpy(dtype=object)
    country = sessions.country[sess]
    utc_hour = (ts // MS_PER_HOUR) % 24
    events = pd.DataFrame(
        {
            "ts": _utc_series(ts),
            "user_id": _labels(sessions.user[sess], user_ids),
            "session_id": _labels(rank[sess], session_ids),
            "item_id": _labels(item, item_ids),
            "type": _labels(kind, np.array(EVENT_TYPES, dtype=object)),
            "qty": qty,
            "price": catalog.price[item],
            "dwell_ms": dwell,
            "device": _labels(sessions.device[sess], np.array(DEVICES, dtype=object)),
            "country": _labels(country, np.array(COUNTRIES, dtype=object)),
            "local_hour": (utc_hour + UTC_OFFSET_H[country]) % 24,
        }
    )
    purchased = np.zeros(len(keep), dtype=bool)
    purchased[buys["sess"]] = True
    truth = pd.DataFrame(
        {
            "session_id": session_ids,
            "user_id": user_ids[sessions.user[by_start]],
            "device": np.array(DEVICES, dtype=object)[sessions.device[by_start]],
            "country": np.array(COUNTRIES, dtype=object)[sessions.country[by_start]],
            "start_ts": _utc_series(sessions.start_ms[by_start] + shift[by_start]),
            "true_intent": true_intent[by_start],
            "purchased": purchased[by_start],
        }
    )
    return SimulatedShop(events, catalog.frame, people.frame, truth)


def _event_order(ts: np.ndarray, rank: np.ndarray, kind: np.ndarray) -> np.ndarray:
    """Order by (ts, session rank, event type); one packed int64 key sorts far faster."""
    rel = ts - ts.min() if len(ts) else ts
    rank_bits = max(int(rank.max(initial=0)).bit_length(), 1)
    if int(rel.max(initial=0)).bit_length() + rank_bits + 2 > 62:
        return np.lexsort((kind, rank, ts))
    key = (rel << (rank_bits + 2)) | (rank << 2) | kind
    return np.argsort(key, kind="stable")


def _utc_series(ms: np.ndarray) -> pd.Series:
    return pd.Series(pd.DatetimeIndex(ms.astype("datetime64[ms]"), tz="UTC").as_unit("ns"))


_STR_DTYPE = pd.Series([""]).dtype  # pandas' default string dtype (arrow-backed from 3.0)


def _labels(codes: np.ndarray, labels: np.ndarray) -> pd.Series:
    """Strings from integer codes; arrow does the gather when pandas stores strings in arrow."""
    if pd.api.types.is_object_dtype(_STR_DTYPE):
        return pd.Series(labels[codes])
    gathered = pa.array(labels.astype(str)).take(pa.array(codes.astype(np.int32)))
    if getattr(_STR_DTYPE, "storage", None) == "pyarrow":
        # Wrapping the arrow array directly skips pandas' per-chunk validation copy.
        return pd.Series(pd.arrays.ArrowStringArray(gathered, dtype=_STR_DTYPE), copy=False)
    return pd.Series(gathered, dtype=_STR_DTYPE)

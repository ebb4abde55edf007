"""The simulated world's fixed parts: its catalog, its shoppers and the context effects
(device, country, hour, age) on what they look at. Each holds latent truth (taste vectors,
biases) next to the frame the shop would export, which never shows it."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd

DEVICES = ("desktop", "mobile", "tablet")
COUNTRIES = ("gb", "de", "fr", "us", "pl", "es", "it", "nl")
COUNTRY_SHARE = np.array([0.27, 0.20, 0.13, 0.15, 0.08, 0.07, 0.06, 0.04])
UTC_OFFSET_H = np.array([0, 1, 1, -5, 1, 1, 1, 1])  # fixed offsets: no DST in this world
# Later evenings in the south, earlier in the north: shifts of the daily curve in hours.
COUNTRY_HOUR_SHIFT = np.array([0, -1, 0, 0, 0, 2, 1, -1])
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


@dataclass
class Catalog:
    cat: np.ndarray  # category index per item
    pop: np.ndarray  # log base popularity (Zipf-like)
    resid: np.ndarray  # item taste vector minus its category's vector
    cat_vec: np.ndarray  # (C, D): the category part of every item vector
    log_price_rel: np.ndarray  # log price relative to the category's typical price
    price: np.ndarray
    in_stock: np.ndarray
    frame: pd.DataFrame


@dataclass
class Population:
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
class Context:
    """Additive category logits per context value: the effects a context model can learn."""

    cat_base: np.ndarray  # (C,)
    device: np.ndarray  # (3, C)
    country: np.ndarray  # (8, C)
    hour: np.ndarray  # (4, C)
    age: np.ndarray  # (6, C)
    complement: np.ndarray  # (C,) the "bought together" category of each category
    hour_cdf: np.ndarray  # (8, 24) session start hour per country, local time


def make_ids(prefix: str, n: int, width: int) -> np.ndarray:
    width = max(width, len(str(max(n - 1, 0))))
    return np.array([f"{prefix}{i:0{width}d}" for i in range(n)], dtype=object)


def _zipf_weights(n: int, exponent: float) -> np.ndarray:
    weights = np.arange(1, n + 1, dtype=np.float64) ** -exponent
    normalized: np.ndarray = weights / weights.sum()
    return normalized


def make_catalog(rng: np.random.Generator, n_items: int, n_cats: int) -> Catalog:
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
    item_ids = make_ids("i", n_items, 6)
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
    return Catalog(cat, pop, resid, cat_vec, log_price_rel, price, in_stock, frame)


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
    brands: np.ndarray = names[(offset[cat] + rank) % n_brands]
    return brands


def make_users(rng: np.random.Generator, n_users: int, days: int) -> Population:
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
            "user_id": make_ids("u", n_users, 7),
            "loyalty_tier": np.array(LOYALTY_TIERS, dtype=object)[loyalty],
            "age_band": np.array(AGE_BANDS, dtype=object)[age],
            "region": [f"{COUNTRIES[c]}-{REGIONS[r]}" for c, r in zip(country, region)],
        }
    )
    return Population(
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


def make_context(rng: np.random.Generator, n_cats: int, item_cat: np.ndarray) -> Context:
    size_share = np.bincount(item_cat, minlength=n_cats) / len(item_cat)
    cat_base = 0.5 * np.log(size_share) + rng.normal(0.0, 0.3, n_cats)
    # A derangement: every category's complement is another category.
    complement = (np.arange(n_cats) + rng.integers(1, n_cats, n_cats)) % n_cats
    curves = np.stack([np.roll(_BASE_HOUR_CURVE, s) for s in COUNTRY_HOUR_SHIFT])
    curves *= rng.lognormal(0.0, 0.15, curves.shape)
    hour_cdf = np.cumsum(curves, axis=1)
    hour_cdf /= hour_cdf[:, -1:]
    return Context(
        cat_base=cat_base,
        device=rng.normal(0.0, 1.0, (len(DEVICES), n_cats)),
        country=rng.normal(0.0, 0.8, (len(COUNTRIES), n_cats)),
        hour=rng.normal(0.0, 1.0, (len(HOUR_BUCKETS), n_cats)),
        age=rng.normal(0.0, 0.4, (len(AGE_BANDS), n_cats)),
        complement=complement,
        hour_cdf=hour_cdf,
    )

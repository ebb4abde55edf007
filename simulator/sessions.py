"""Sessions and their views: when each session starts, on which device and in which country,
how long it runs, and which item each view opens. Vectorized: sessions are planned as a block
and each view step is drawn for every still-active session at once."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from simulator.world import (
    COUNTRIES,
    DEVICES,
    MS_PER_DAY,
    MS_PER_HOUR,
    UTC_OFFSET_H,
    Catalog,
    Context,
    Population,
)

# Session dynamics: after the first view a session stays in its category, jumps to the
# complementary one, re-opens the previous item, or draws a fresh category.
P_STAY, P_COMPLEMENT, P_REVISIT = 0.55, 0.12, 0.06
MAX_VIEWS = 60
# Rows per view, measured on the default world; only used to size the block of sessions.
EVENTS_PER_VIEW = 1.11
SESSION_SLACK = 1.08  # draw a few more sessions than needed, then keep a prefix


@dataclass
class Sessions:
    user: np.ndarray
    device: np.ndarray
    country: np.ndarray
    bucket: np.ndarray
    start_ms: np.ndarray  # UTC epoch milliseconds
    n_views: np.ndarray
    intent_logit: np.ndarray


@dataclass
class Views:
    sess: np.ndarray
    item: np.ndarray
    ts: np.ndarray
    dwell: np.ndarray
    affinity_z: np.ndarray


def plan_sessions(
    rng: np.random.Generator,
    people: Population,
    ctx: Context,
    n_events: int,
    days: int,
    start_ms: int,
) -> Sessions:
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
    return Sessions(
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
    sessions: Sessions, people: Population, catalog: Catalog, ctx: Context, order: np.ndarray
) -> np.ndarray:
    """(S, C) CDF of a fresh category draw: taste plus device, country and hour biases."""
    user = sessions.user[order]
    taste = (people.vec @ catalog.cat_vec.T + ctx.age[people.age]).astype(np.float32)
    logits: np.ndarray = taste[user]
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
        drawn: np.ndarray = self.items[pos - base]
        return drawn


def _item_sampler(catalog: Catalog, cluster_vec: np.ndarray) -> _ItemSampler:
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


def draw_views(
    rng: np.random.Generator,
    sessions: Sessions,
    people: Population,
    catalog: Catalog,
    ctx: Context,
) -> Views:
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
    sessions: Sessions,
    people: Population,
    catalog: Catalog,
    v_sess: np.ndarray,
    v_item: np.ndarray,
    offset: np.ndarray,
    lengths: np.ndarray,
) -> Views:
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
    return Views(v_sess, v_item, ts, dwell, z)


def _affinity(
    user_vec: np.ndarray, catalog: Catalog, v_sess: np.ndarray, v_item: np.ndarray
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

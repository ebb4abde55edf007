"""The funnel after the views: carts, removals, purchases (decided by each session's intent),
rarely a second purchase of an item already owned; then which sessions make up the requested
number of rows."""

from __future__ import annotations

import numpy as np

from simulator.frames import shop_frames
from simulator.sessions import MAX_VIEWS, Sessions, Views
from simulator.shop import SimulatedShop
from simulator.world import MS_PER_DAY, Catalog, Population

P_REMOVE = 0.2
P_REBUY = 0.12  # share of repeat purchases of the same item that survive


def finish(
    rng: np.random.Generator,
    sessions: Sessions,
    views: Views,
    people: Population,
    catalog: Catalog,
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
    return shop_frames(sessions, views, carts, buys, keep, shift, true_intent, people, catalog)


def _sigmoid(x: np.ndarray) -> np.ndarray:
    y: np.ndarray = 1.0 / (1.0 + np.exp(-x))
    return y


def _carts(
    rng: np.random.Generator,
    sessions: Sessions,
    views: Views,
    people: Population,
    catalog: Catalog,
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
    sessions: Sessions,
    carts: dict[str, np.ndarray],
    catalog: Catalog,
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
    sessions: Sessions,
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
        repeat: np.ndarray = found & (first_when[at] < when[sess])
        return repeat

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

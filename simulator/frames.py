"""The simulated world as the frames a shop exports: the event log in time order, and each
session's ground truth (its true purchase intent) next to it."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pyarrow as pa

from simulator.sessions import Sessions, Views
from simulator.shop import SimulatedShop
from simulator.world import (
    COUNTRIES,
    DEVICES,
    MS_PER_HOUR,
    UTC_OFFSET_H,
    Catalog,
    Population,
    make_ids,
)

EVENT_TYPES = ("view", "add_to_cart", "remove_from_cart", "purchase")


def shop_frames(
    sessions: Sessions,
    views: Views,
    carts: dict[str, np.ndarray],
    buys: dict[str, np.ndarray],
    keep: np.ndarray,
    shift: np.ndarray,
    true_intent: np.ndarray,
    people: Population,
    catalog: Catalog,
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

    session_ids = make_ids("s", len(by_start), 8)
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
        strings = pd.arrays.ArrowStringArray(gathered, dtype=_STR_DTYPE)  # type: ignore[call-arg]  # pandas 3 takes dtype; pandas-stubs 3.1 does not list it
        return pd.Series(strings, copy=False)
    return pd.Series(gathered, dtype=_STR_DTYPE)

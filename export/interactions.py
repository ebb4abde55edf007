"""The item universe and the user × item interaction matrix the factorization learns from."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd
import scipy.sparse as sp

from edge.arrays import narrowest_int
from edge.bundle.codecs import brands_and_tags_to_tree, titles_to_tree
from edge.ids import encode_ids
from edge.scoring import MAX_CONFIDENCE_WEIGHT, dwell_factor

UNKNOWN_CATEGORY = -1
ITEM_CODE = "item_code"  # the events' column of item indices, once `attach_item_codes` ran


def epoch_seconds(ts: pd.Series) -> np.ndarray:
    """Seconds since the epoch, whatever the datetime unit pandas chose (ns, us, s)."""
    return ts.astype("datetime64[ns, UTC]").to_numpy(dtype="int64") / 1e9


@dataclass(frozen=True)
class ItemUniverse:
    """Every item a bundle knows, in a fixed order shared by all its arrays."""

    ids: list[str]
    category: np.ndarray  # int32, -1 unknown
    category_names: list[str]
    price: np.ndarray  # float32, NaN unknown
    in_stock: np.ndarray  # bool
    brand: np.ndarray | None = None  # object: label per item, "" unknown (export only: cold start)
    tags: list[list[str]] | None = None  # the catalog's tags per item (merchandising)
    title: np.ndarray | None = None  # object: per item, "" unknown (export only: content)

    def codes(self, item_ids: pd.Series) -> np.ndarray:
        """Index of each id in this universe (-1 for ids it does not hold)."""
        return pd.Index(self.ids).get_indexer(pd.Index(item_ids))

    def to_tree(self) -> dict[str, object]:
        # Brands and tags for merchandising, when any item has one (format 8).
        known = self.brand is not None and bool(np.any(self.brand != ""))
        brands = self.brand.tolist() if known and self.brand is not None else None
        tags = self.tags if self.tags is not None and any(self.tags) else None
        titles = None if self.title is None else [str(t) for t in self.title]
        return (
            {
                "ids": encode_ids(self.ids),
                "category": narrowest_int(self.category),  # int8 for up to 127 categories
                "category_names": self.category_names,
                "price": self.price,
                "in_stock": self.in_stock,
            }
            | brands_and_tags_to_tree(len(self.ids), brands, tags)
            | titles_to_tree(len(self.ids), titles)
        )


ITEM_LABELS = ("category", "brand", "title")
ITEM_COUNTS = ("events", "sessions")  # of `item_facts`: the non-product heuristic's figures


def item_facts(events: pd.DataFrame) -> pd.DataFrame:
    """What the events say of each item they name, by item id in id order: its median price,
    the category, brand and title its events name most often ("" for none), and how many
    events and distinct sessions name it (`ITEM_COUNTS`)."""
    seen = events.groupby("item_id", sort=True).agg(
        price=("price", "median"), events=("item_id", "size")
    )
    seen["sessions"] = sessions_per_item(events).reindex(seen.index)
    for label in ITEM_LABELS:
        named = most_frequent(events, "item_id", label).reindex(seen.index)
        seen[label] = named.fillna("").astype(object)
    return seen


def sessions_per_item(events: pd.DataFrame) -> pd.Series:
    """The number of distinct sessions whose events name each item."""
    # Distinct (item, session) pairs as one integer each: a drop_duplicates over the id strings
    # hashes every row's pair of Python objects.
    items, item_ids = pd.factorize(events["item_id"])
    sessions, session_ids = pd.factorize(events["session_id"])
    pairs = np.sort(items.astype(np.int64) * len(session_ids) + sessions)  # np.unique: 50× slower
    pairs = pairs[np.r_[True, pairs[1:] != pairs[:-1]]] if pairs.size else pairs
    counts = np.bincount(pairs // max(len(session_ids), 1), minlength=len(item_ids))
    return pd.Series(counts, index=pd.Index(item_ids, dtype=object), dtype=np.int64)


def build_universe(events: pd.DataFrame, catalog: pd.DataFrame | None) -> ItemUniverse:
    """Catalog items plus any item seen in events; catalog facts win over what events say."""
    return universe_of(item_facts(events), catalog)


def universe_of(seen: pd.DataFrame, catalog: pd.DataFrame | None) -> ItemUniverse:
    """The universe from the events' `item_facts` and the catalog, whose facts win."""
    seen = seen[["price", *ITEM_LABELS]]
    if catalog is not None and len(catalog):
        table = catalog.reindex(
            columns=["item_id", "price", "category", "brand", "title", "in_stock", "tags"]
        )
        table = table.set_index("item_id")
        table["brand"] = table["brand"].astype(object).fillna("")
        table["title"] = table["title"].astype(object).fillna("")
        # An empty catalog label is unknown: what the events say fills it.
        labels = ["category", "brand", "title"]
        table[labels] = table[labels].replace("", np.nan)
        table = table.combine_first(seen.assign(in_stock=True))
        table["price"] = table["price"].fillna(seen["price"].reindex(table.index))
        table["in_stock"] = table["in_stock"].fillna(True).astype(bool)
    else:
        table = seen.assign(in_stock=True)
    table = table.sort_index()
    categories = table["category"].fillna("").astype(str)
    names = sorted(set(categories) - {""})
    lookup = {name: i for i, name in enumerate(names)}
    return ItemUniverse(
        ids=[str(i) for i in table.index],
        category=np.array([lookup.get(c, UNKNOWN_CATEGORY) for c in categories], dtype=np.int32),
        category_names=names,
        price=table["price"].to_numpy(dtype=np.float32, na_value=np.nan),
        in_stock=table["in_stock"].to_numpy(dtype=bool),
        brand=table["brand"].fillna("").astype(str).to_numpy(dtype=object),
        tags=[t.split("|") if t else [] for t in table["tags"].astype(object).fillna("")]
        if "tags" in table
        else None,
        title=table["title"].fillna("").astype(str).to_numpy(dtype=object),
    )


def attach_item_codes(events: pd.DataFrame, universe: ItemUniverse) -> None:
    """Store each event's item index in `universe` in the frame (column ITEM_CODE), searched
    once: at 10 million events one search takes 5 s, and a build fits models that need it some
    eight times per training (its time slices carry the column along)."""
    events[ITEM_CODE] = universe.codes(events["item_id"]).astype(np.int32)


def item_codes(events: pd.DataFrame, universe: ItemUniverse) -> np.ndarray:
    """Each event's item index in `universe` (-1 for an item it lacks): the attached column
    when the frame has one (`attach_item_codes`), else searched now."""
    if ITEM_CODE in events:
        return events[ITEM_CODE].to_numpy()
    return universe.codes(events["item_id"])


def most_frequent(frame: pd.DataFrame, key: str, column: str) -> pd.Series:
    """Per `key`, the `column` value its rows name most often, ignoring "" (ties: the first in
    value order): an item's category, a customer's usual device."""
    if column not in frame:
        return pd.Series(dtype=object)
    labelled = frame.loc[frame[column] != "", [key, column]]
    # Counted per integer code of the value (codes in value order, for the ties): grouping on
    # the labels themselves hashed every row's string again.
    codes, values = pd.factorize(labelled[column], sort=True)
    pairs = pd.DataFrame({key: labelled[key].to_numpy(), "code": codes})
    counts = pairs.groupby([key, "code"]).size().reset_index(name="n")
    mode = counts.sort_values([key, "n"], ascending=[True, False], kind="stable")
    mode = mode.drop_duplicates(key)
    found = np.asarray(values)[mode["code"].to_numpy()]
    return pd.Series(found, index=pd.Index(mode[key].to_numpy(), name=key), name=column)


def event_weights(events: pd.DataFrame, weights: dict[str, float]) -> np.ndarray:
    """Type weight × dwell factor per event, exactly as the edge weighs a session's events."""
    # One comparison per weighed type: `Series.map` looks every row's string up in a dict,
    # ten times slower at 10 million events (4 s against 0.3).
    base = np.zeros(len(events))
    for kind, weight in weights.items():
        base[(events["type"] == kind).to_numpy()] = weight
    if "dwell_ms" not in events:
        return base
    weighed: np.ndarray = base * dwell_factor(
        events["dwell_ms"].to_numpy(dtype=np.float64, na_value=np.nan)
    )
    return weighed


def user_keys(events: pd.DataFrame) -> pd.Series:
    """Known users by id; anonymous sessions as their own pseudo-users, so their co-occurrence
    still teaches the item factors."""
    keys = events["user_id"].to_numpy(dtype=object, copy=True)
    anonymous = keys == ""
    # Prefixed only where needed: `where` built a prefixed copy of every session id.
    keys[anonymous] = "session:" + events["session_id"].to_numpy(dtype=object)[anonymous]
    return pd.Series(keys, index=events.index, name="user_id")


def interaction_matrix(
    events: pd.DataFrame, universe: ItemUniverse, weights: dict[str, float]
) -> sp.csr_matrix:
    """users × items, summed event weights, capped as the edge caps them when folding in."""
    return user_item_matrix(events, universe, weights)[0]


def user_item_matrix(
    events: pd.DataFrame, universe: ItemUniverse, weights: dict[str, float]
) -> tuple[sp.csr_matrix, pd.Index]:
    """The interaction matrix and the key of each row (`user_keys`)."""
    w = event_weights(events, weights)
    positive = w > 0
    users = user_keys(events)[positive]
    user_codes, keys = pd.factorize(users)
    items = item_codes(events, universe)[positive]
    matrix = sp.csr_matrix(
        (w[positive], (user_codes, items)),
        shape=(user_codes.max() + 1 if len(users) else 0, len(universe.ids)),
    )
    matrix.sum_duplicates()
    np.minimum(matrix.data, MAX_CONFIDENCE_WEIGHT, out=matrix.data)
    return matrix.astype(np.float32), pd.Index(keys)


def item_statistics(events: pd.DataFrame, universe: ItemUniverse) -> dict[str, np.ndarray]:
    """Per item, from the events a model is fitted on (never from later ones): days from its
    first event to the last event of the log (0 for items without events: they are new), and
    the share of its buyers who bought it in more than one session (staples vs one-offs)."""
    n_items = len(universe.ids)
    codes = item_codes(events, universe)
    seconds = epoch_seconds(events["ts"])
    first = np.full(n_items, np.inf)
    np.minimum.at(first, codes, seconds)
    end = seconds.max() if seconds.size else 0.0

    bought = (events["type"] == "purchase").to_numpy()
    purchases = events.loc[bought, ["user_id", "session_id"]]  # keys of these rows alone
    baskets = pd.DataFrame(
        {
            "item": codes[bought],
            "user": user_keys(purchases).to_numpy(),
            "session": purchases["session_id"].to_numpy(),
        }
    ).drop_duplicates()
    sessions_per_buyer = baskets.groupby(["item", "user"]).size()
    buyers = np.zeros(n_items)
    repeaters = np.zeros(n_items)
    per_item = sessions_per_buyer.groupby(level="item")
    buyers[per_item.size().index.to_numpy()] = per_item.size().to_numpy()
    repeated = (sessions_per_buyer > 1).groupby(level="item").sum()
    repeaters[repeated.index.to_numpy()] = repeated.to_numpy()
    return ItemActivity(first, end, buyers, repeaters).to_tree()


@dataclass(frozen=True)
class ItemActivity:
    """What `item_statistics` is made of, per item: its first event (epoch seconds, inf for
    none), the log's last event, its buyers (users, or anonymous sessions, who bought it) and
    those of them who bought it in more than one session."""

    first: np.ndarray
    end: float
    buyers: np.ndarray
    repeaters: np.ndarray

    def to_tree(self) -> dict[str, np.ndarray]:
        age_days = np.where(np.isfinite(self.first), (self.end - self.first) / 86_400.0, 0.0)
        repeat_rate = np.divide(
            self.repeaters, self.buyers, out=np.zeros(self.buyers.size), where=self.buyers > 0
        )
        return {
            # Features of the ranker, which splits on them: half precision is plenty and half
            # the size.
            "age_days": age_days.astype(np.float16),
            "repeat_rate": repeat_rate.astype(np.float16),
        }

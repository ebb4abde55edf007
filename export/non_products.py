"""Non-product items: postage, carriage, fees, discounts, manual adjustments, gift vouchers. A
shop's log books them on the same lines as its products, and since they ride along with
many orders they top the popular lists ("POST" is the most popular item of most countries in
UCI Online Retail). They are never recommended.

Three ways flag an item, each reported in the data-quality table and the lineage:

- the catalog's `non_product` column (true, 1, yes);
- the config's `[catalog]` patterns: regular expressions searched in item ids
  (`non_product_ids`, case-sensitive) and in titles (`non_product_titles`, any case);
- a heuristic (`non_product_heuristic`, on by default): the item's id is shaped unlike
  the shop's id scheme (`id_shape`), and its title names a service (postage, carriage,
  fee, discount, ...) or it is in an unusually large share of sessions. Both halves must
  hold, so a product that happens to be named "gift card holder" keeps its place, and a log
  whose ids all share one shape (most do) has nothing flagged.

Flagged items keep their events: those are real baskets, so the models still learn from them
(a customer who pays postage abroad is a customer abroad), and dropping the rows would miscount
the log. The item table marks them not available (`withhold`), the flag every path that serves
items honours: candidates, the ranker's top-up and the fallback content, accessories."""

from __future__ import annotations

import dataclasses
import re
from dataclasses import dataclass, field

import numpy as np
import pandas as pd

from export.config import CatalogConfig
from export.interactions import ItemUniverse

# A service named in a title. Searched only in items whose id is shaped unlike the shop's.
SERVICE_WORDS = re.compile(
    r"\b(?:postage|shipping|carriage|delivery|freight|fees?|discounts?|manual|vouchers?|"
    r"gift ?cards?|bank charges?|commission|adjust(?:ment)?s?)\b",
    re.IGNORECASE,
)
RARE_SHAPE_SHARE = 0.01  # an id shape held by fewer of the items than this is unusual...
CLEAR_SCHEME_SHARE = 0.9  # ...when the other shapes together hold at least this share
UBIQUITY_QUANTILE = 0.99  # "in an unusually large share of sessions": the top 1% of items...
MIN_UBIQUITY_SHARE = 0.01  # ...and in at least 1% of all sessions
TRUE_LABELS = ("1", "true", "yes", "y", "t")
EXAMPLES = 5  # item ids the report names per way of flagging


@dataclass(frozen=True)
class NonProducts:
    """The items flagged, by how (`HOW`; an item may be flagged more than one way), each
    list by descending number of events (ties in id order)."""

    by: dict[str, list[str]] = field(default_factory=dict)

    @property
    def ids(self) -> set[str]:
        return {item for found in self.by.values() for item in found}

    def summary(self, examples: int = EXAMPLES) -> dict[str, tuple[int, list[str]]]:
        """How → (items flagged that way, the first `examples` of them); ways that flagged
        nothing are left out."""
        return {how: (len(found), found[:examples]) for how, found in self.by.items() if found}


def id_shape(item_id: str) -> str:
    """An id's shape: each run of digits as "9", each run of letters as "A", anything else as
    it is. "85123A" → "9A", "POST" → "A", "C2" → "A9", "gift_0001_20" → "A_9_9"."""
    return re.sub(r"[^\W\d_]+", "A", re.sub(r"\d+", "9", item_id))


def find_non_products(
    facts: pd.DataFrame, n_sessions: int, catalog: pd.DataFrame | None, config: CatalogConfig
) -> NonProducts:
    """The non-product items of a validated log, from its `item_facts` (each item's title and
    its events and sessions), the number of its sessions, and its normalized catalog."""
    ids = pd.Index(facts.index)
    if catalog is not None and len(catalog):
        ids = ids.union(pd.Index(catalog["item_id"]))
    by: dict[str, list[str]] = {}
    if catalog is not None and "non_product" in catalog:
        by["catalog"] = sorted(catalog.loc[catalog["non_product"], "item_id"])
    titles = item_titles(facts, catalog, ids)
    by["config"] = _by_patterns(ids, titles, config)
    if config.non_product_heuristic:
        by["heuristic"] = heuristic_non_products(ids, titles, ubiquitous(facts, n_sessions))
    # Most events first: the report's examples are then the items that mattered most.
    counts = facts["events"].to_dict()
    return NonProducts(
        {how: sorted(found, key=lambda i: (-counts.get(i, 0), i)) for how, found in by.items()}
    )


def _by_patterns(ids: pd.Index, titles: pd.Series, config: CatalogConfig) -> list[str]:
    found: set[str] = set()
    if config.non_product_ids:
        pattern = re.compile("|".join(f"(?:{p})" for p in config.non_product_ids))
        found |= {item for item in ids if pattern.search(item)}
    if config.non_product_titles:
        pattern = re.compile("|".join(f"(?:{p})" for p in config.non_product_titles), re.IGNORECASE)
        found |= {str(item) for item, title in titles.items() if pattern.search(title)}
    return sorted(found)


def item_titles(facts: pd.DataFrame, catalog: pd.DataFrame | None, ids: pd.Index) -> pd.Series:
    """Per item of `ids`, its catalog title, else the title its events give most often ("")."""
    titles = facts["title"].reindex(ids)
    if catalog is not None and "title" in catalog:
        named = catalog.loc[catalog["title"] != "", ["item_id", "title"]].set_index("item_id")
        titles = named["title"].reindex(ids).combine_first(titles)
    return titles.fillna("").astype(str)


def heuristic_non_products(ids: pd.Index, titles: pd.Series, everywhere: pd.Index) -> list[str]:
    """Items whose id shape is rare in a shop with a clear id scheme (the usual shapes hold 90%
    of the items, this one under 1%) and whose title names a service or that are in an
    unusually large share of sessions (`everywhere`)."""
    shapes = pd.Series(ids, index=ids, dtype=object).map(id_shape)
    share = shapes.value_counts(normalize=True)
    rare = share[share < RARE_SHAPE_SHARE]
    if rare.empty or rare.sum() > 1.0 - CLEAR_SCHEME_SHARE:
        return []  # one shape for all, or no scheme to stand out from
    odd = pd.Index(shapes.index[shapes.isin(rare.index)])
    flagged = {str(item) for item, title in titles[odd].items() if SERVICE_WORDS.search(title)}
    flagged |= {str(item) for item in odd.intersection(everywhere)}
    return sorted(flagged)


def ubiquitous(facts: pd.DataFrame, n_sessions: int) -> pd.Index:
    """Items in an unusually large share of the `n_sessions` sessions: the top 1% of items by
    sessions, and in at least 1% of them."""
    if facts.empty or not n_sessions:
        return pd.Index([])
    share = facts["sessions"].to_numpy() / n_sessions
    bar = max(float(np.quantile(share, UBIQUITY_QUANTILE)), MIN_UBIQUITY_SHARE)
    found: pd.Index = pd.Index(facts.index[share >= bar], dtype=object)
    return found


def withhold(universe: ItemUniverse, flagged: NonProducts) -> ItemUniverse:
    """The universe with the flagged items marked not available, as out of stock is."""
    unavailable = universe.codes(pd.Series(sorted(flagged.ids), dtype=object))
    in_stock = universe.in_stock.copy()
    in_stock[unavailable[unavailable >= 0]] = False
    return dataclasses.replace(universe, in_stock=in_stock)


def catalog_flags(column: pd.Series) -> np.ndarray:
    """The catalog's `non_product` column as booleans: true, 1, yes (any case) flag an item;
    anything else, blank included, does not."""
    text = column.astype("string").str.strip().str.lower()
    flags: np.ndarray = text.isin(TRUE_LABELS).to_numpy(dtype=bool, na_value=False)
    return flags

"""What one pass over a visit's events says about the visitor: the shared input of the segment
features (for visitors without a profile) and of the intent features. `export` builds its
training rows through the same function, so training and serving count alike."""

from __future__ import annotations

from collections.abc import Callable, Iterable
from typing import NamedTuple


# A named tuple: built on every request, at a fraction of a frozen dataclass's cost.
class SessionSignals(NamedTuple):
    events: int
    items: int  # distinct items
    categories: int  # distinct known categories of those items
    dwell_s: float  # seconds on viewed items, summed over views that report it
    dwelled_views: int  # views that report their dwell
    cart_adds: int
    cart_removes: int
    purchases: int
    spent: float  # price of the purchased items (0 for items without a price)


def session_signals(
    events: Iterable,
    category_of: Callable[[str], int],
    price_of: Callable[[str], float] | None = None,
) -> SessionSignals:
    """Signals of events with `type`, `item_id` and `dwell_ms`; `category_of` gives -1 for an
    unknown category, `price_of` 0 for an unknown price (None: do not add up spend)."""
    n = cart_adds = cart_removes = purchases = dwelled = 0
    dwell_ms = spent = 0.0
    items = set()
    for event in events:
        n += 1
        kind, item = event.type, event.item_id
        items.add(item)
        if kind == "view":
            if event.dwell_ms:
                dwell_ms += event.dwell_ms
                dwelled += 1
        elif kind == "add_to_cart":
            cart_adds += 1
        elif kind == "remove_from_cart":
            cart_removes += 1
        elif kind == "purchase":
            purchases += 1
            if price_of is not None:
                spent += price_of(item)
    categories = {category_of(item) for item in items}
    categories.discard(-1)
    return SessionSignals(
        n,
        len(items),
        len(categories),
        dwell_ms / 1000.0,
        dwelled,
        cart_adds,
        cart_removes,
        purchases,
        spent,
    )

"""What one pass over a visit's events says about the visitor: the shared input of the segment
features (for visitors without a profile) and of the intent features. `export` builds its
training rows through the same function, so training and serving count alike."""

from __future__ import annotations

from collections.abc import Callable, Iterable
from typing import NamedTuple, Protocol


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


class SignalEvent(Protocol):
    """What an event needs for its signals: the edge's `SessionEvent`, export's tuples."""

    @property
    def type(self) -> str: ...
    @property
    def item_id(self) -> str: ...
    @property
    def dwell_ms(self) -> float | None: ...


def session_signals(
    events: Iterable[SignalEvent],
    categories_of: Callable[[list[str]], Iterable[int]],
    prices_of: Callable[[list[str]], Iterable[float]] | None = None,
) -> SessionSignals:
    """Signals of events with `type`, `item_id` and `dwell_ms`. `categories_of` gives the
    category code of each id (-1 when unknown), `prices_of` each price (0 when unknown; None:
    do not add up spend); each is asked once, for all the ids at a time."""
    n = cart_adds = cart_removes = purchases = dwelled = 0
    dwell_ms = 0.0
    items: dict[str, None] = {}  # distinct, in first-seen order
    bought: list[str] = []
    for event in events:
        n += 1
        kind, item = event.type, event.item_id
        items[item] = None
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
            bought.append(item)
    spent = float(sum(prices_of(bought))) if prices_of is not None and bought else 0.0
    categories = set(categories_of(list(items))) if items else set()
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

"""Cases: the requests a shop's visitors would have sent, with what they took next.

One definition serves the ranker's training rows and every evaluation, for the bundle and the
baselines alike, so all of them are asked the same questions:

- `users`: a known customer arrives at the start of a window with the profile built before it;
  the answer should hold the target items they take in the window (items they had already
  bought are not counted: the edge never recommends those again).
- `sessions`: a visitor is part-way through a session; the answer should hold the item they
  take next. Anonymous sessions count (the session is all there is); for a known customer the
  profile rides along.
- `leave_last_out` (a split, then `users` cases): each customer's last target event is the test.
- `random` (a split, then `users` cases): a seeded share of each customer's distinct target
  items is the test, from the first time they took each; for logs whose order means little
  (ratings entered in bulk, baskets).
- `next_new_item` (a split, then `users` cases): each customer's last target event on an item
  they had never touched before is the test; the targets most logs' shops care about.
- `temporal`: the last days of the log are the test, asked as `users` or `sessions` cases
  (`choose_protocol`).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Protocol, TypeVar

import numpy as np
import pandas as pd

from edge.context import hour_bucket
from edge.rules import cart_from
from edge.schemas import Profile, ResolvedContext, SessionEvent

PROTOCOLS = (
    "auto",
    "temporal",
    "users",
    "sessions",
    "leave_last_out",
    "random",
    "next_new_item",
)
# Protocols whose split is per customer (not a time window), asked as `users` cases.
PER_CUSTOMER = ("leave_last_out", "random", "next_new_item")


@dataclass(frozen=True)
class Case:
    user_id: str | None  # a known customer (has a profile), else None
    session: tuple[SessionEvent, ...]  # this session's events before the question, oldest first
    context: ResolvedContext
    relevant: frozenset[str]  # what counts as a hit
    blocked: frozenset[str]  # what the edge would never show this visitor (already bought)
    ts: float = 0.0  # when the question is asked, epoch seconds


def context_of(row: pd.Series) -> ResolvedContext:
    return context_from(row["device"], row["country"], row["local_hour"])


def context_from(device: str, country: str, local_hour: int) -> ResolvedContext:
    hour = int(local_hour)
    return ResolvedContext(
        device=device, country=country, local_hour=hour, hour_bucket=hour_bucket(hour)
    )


T = TypeVar("T")


def _sample(keys: list[T], limit: int, rng: np.random.Generator) -> list[T]:
    if len(keys) <= limit:
        return keys
    picked = rng.choice(len(keys), limit, replace=False)
    return [keys[i] for i in sorted(picked)]


class Window(Protocol):
    """What the cases ask of a window's events, wherever they are (here, or on Spark, where
    only the answers reach this machine)."""

    def customer_targets(self, target_types: list[str]) -> pd.DataFrame:
        """`customer_targets` of the window's events."""
        ...

    def sessions_of_two_or_more(self) -> np.ndarray:
        """`sessions_of_two_or_more` of the window's events."""
        ...

    def events_of_sessions(self, session_ids: np.ndarray) -> pd.DataFrame:
        """`events_of_sessions` of the window's events."""
        ...


@dataclass(frozen=True, eq=False)  # eq=False: DataFrames have no truth value to compare
class HeldWindow:
    """A window whose events are on this machine, in time order."""

    events: pd.DataFrame

    def customer_targets(self, target_types: list[str]) -> pd.DataFrame:
        return customer_targets(self.events, target_types)

    def sessions_of_two_or_more(self) -> np.ndarray:
        return sessions_of_two_or_more(self.events)

    def events_of_sessions(self, session_ids: np.ndarray) -> pd.DataFrame:
        return events_of_sessions(self.events, session_ids)


CUSTOMER_TARGETS = ["user_id", "items", "device", "country", "local_hour", "ts"]


def customer_targets(window: pd.DataFrame, target_types: list[str]) -> pd.DataFrame:
    """One row per known customer with target events in `window` (in time order), in id order:
    the items of those events (`items`, a list), and the context and time of the first."""
    targets = window[window["type"].isin(target_types) & (window["user_id"] != "")]
    # Customers in id order, each one's rows together in time order (a stable sort of a window
    # in time order), walked as lists: a pandas group per customer took 20 s at 10M events.
    user_code, user_ids = pd.factorize(targets["user_id"].to_numpy(), sort=True)
    order = np.argsort(user_code, kind="stable")
    starts = np.flatnonzero(np.diff(user_code[order], prepend=-1))
    ends = np.r_[starts[1:], order.size]
    items = targets["item_id"].to_numpy()[order].tolist()
    first = targets.iloc[order[starts]]
    per_customer = {
        "user_id": np.asarray(user_ids, dtype=object),
        "items": [items[start:end] for start, end in zip(starts.tolist(), ends.tolist())],
    }
    context = {c: first[c].to_numpy() for c in CUSTOMER_TARGETS[2:]}
    return pd.DataFrame(per_customer | context)


def user_cases(
    window: pd.DataFrame,
    profiles: dict[str, Profile],
    target_types: list[str],
    limit: int,
    seed: int,
) -> list[Case]:
    """One case per known customer who takes a target item in `window` they had not bought."""
    return cases_of_customers(customer_targets(window, target_types), profiles, limit, seed)


def cases_of_customers(
    targets: pd.DataFrame, profiles: dict[str, Profile], limit: int, seed: int
) -> list[Case]:
    """`user_cases` from `customer_targets`: a case for each customer with a profile who took
    an item they had not bought, asked in the context of their first target event."""
    cases = []
    for user, items, device, country, hour, ts in zip(
        *(targets[c].tolist() for c in CUSTOMER_TARGETS), strict=True
    ):
        if user not in profiles:
            continue
        bought = frozenset(profiles[user].bought_items)
        relevant = frozenset(items) - bought
        if relevant:
            context = context_from(device, country, hour)
            cases.append(Case(user, (), context, relevant, bought, ts.timestamp()))
    return _sample(cases, limit, np.random.default_rng(seed))


def sessions_of_two_or_more(window: pd.DataFrame) -> np.ndarray:
    """The ids of `window`'s sessions of two events or more, in id order."""
    sizes = window["session_id"].value_counts(sort=False)
    ids: np.ndarray = np.sort(sizes.index[sizes.to_numpy() >= 2].to_numpy(dtype=object))
    return ids


def events_of_sessions(window: pd.DataFrame, session_ids: np.ndarray) -> pd.DataFrame:
    """The events of `session_ids` in `window` (in time order), each session's together, the
    sessions in id order."""
    events = window[window["session_id"].isin(session_ids)]
    return events.sort_values("session_id", kind="stable")


def session_cases(
    window: pd.DataFrame,
    profiles: dict[str, Profile],
    target_types: list[str],
    limit: int,
    seed: int,
) -> list[Case]:
    """One case per session of two or more events: cut before a random target event (not the
    first), ask for what comes next."""
    return cases_of_sessions(HeldWindow(window), profiles, target_types, limit, seed)


def cases_of_sessions(
    window: Window,
    profiles: dict[str, Profile],
    target_types: list[str],
    limit: int,
    seed: int,
) -> list[Case]:
    """`session_cases` of a window: the sessions are sampled by their ids, and only the
    sampled ones' events are asked for."""
    rng = np.random.default_rng(seed)
    ids = window.sessions_of_two_or_more()
    chosen = _sample(list(range(ids.size)), limit, rng)  # in id order
    events = window.events_of_sessions(ids[chosen])
    is_target = events["type"].isin(target_types).to_numpy()
    session_ids = events["session_id"].to_numpy()
    starts = np.flatnonzero(np.r_[True, session_ids[1:] != session_ids[:-1]])
    ends = np.r_[starts[1:], len(events)]
    types = events["type"].to_numpy()
    items = events["item_id"].to_numpy()
    users = events["user_id"].to_numpy()
    dwell = events["dwell_ms"].to_numpy(dtype=np.float64, na_value=np.nan)
    cases = []
    for start, end in zip(starts.tolist(), ends.tolist()):
        positions = np.flatnonzero(is_target[start + 1 : end]) + start + 1
        if positions.size == 0:
            continue
        taken = int(rng.choice(positions))
        # An item the session put in its cart before taking it is asked for before it went
        # in: the edge never recommends what is in the cart, so after that it is no question.
        cut = taken
        while cut > start and _in_cart(types[start:cut], items[start:cut], items[taken]):
            cut = start + _last_add(types[start:cut], items[start:cut], items[taken])
        if cut == start:
            continue
        user = users[cut] if users[cut] in profiles else None
        session = tuple(
            SessionEvent(
                type=types[j],
                item_id=items[j],
                dwell_ms=None if np.isnan(dwell[j]) else int(dwell[j]),
            )
            for j in range(start, cut)
        )
        # What the edge would never show: bought (in this session or before), or in the cart
        # this session's events leave.
        blocked = {e.item_id for e in session if e.type == "purchase"} | set(cart_from(session))
        if user is not None:
            blocked |= set(profiles[user].bought_items)
        if items[taken] in blocked:
            continue
        row = events.iloc[cut]
        cases.append(
            Case(
                user,
                session,
                context_of(row),
                frozenset([items[taken]]),
                frozenset(blocked),
                row["ts"].timestamp(),
            )
        )
    return cases


def _in_cart(types: np.ndarray, items: np.ndarray, item: str) -> bool:
    """Whether these events (a session's, in order) leave `item` in the cart."""
    events = [
        SessionEvent(type=t, item_id=i)
        for t, i in zip(types, items)
        if i == item or t == "purchase"
    ]
    return item in cart_from(events)


def _last_add(types: np.ndarray, items: np.ndarray, item: str) -> int:
    """The position of the last add_to_cart of `item` among these events."""
    adds = np.flatnonzero((types == "add_to_cart") & (items == item))
    return int(adds[-1])


def choose_protocol(protocol: str, known_share: float) -> str:
    """The kind of cases a window asks: `users` or `sessions` as set, `users` for the
    per-customer splits; for a time window (`auto`, `temporal`), `users` when most target-window
    events come from customers known before it (`known_share` of them do), else `sessions` (a
    log of anonymous visits)."""
    if protocol in PER_CUSTOMER:
        return "users"
    if protocol not in ("auto", "temporal"):
        return protocol
    return "users" if known_share >= 0.5 else "sessions"


def make_cases(
    protocol: str,
    window: pd.DataFrame | Window,
    profiles: dict[str, Profile],
    target_types: list[str],
    limit: int,
    seed: int,
) -> list[Case]:
    """The cases of `window` (its events, or a `Window` that answers for them)."""
    source = HeldWindow(window) if isinstance(window, pd.DataFrame) else window
    if protocol == "users" or protocol in PER_CUSTOMER:
        return cases_of_customers(source.customer_targets(target_types), profiles, limit, seed)
    if protocol == "sessions":
        return cases_of_sessions(source, profiles, target_types, limit, seed)
    raise ValueError(f"unknown protocol {protocol!r}; allowed: {', '.join(PROTOCOLS[1:])}")


def leave_last_out(
    events: pd.DataFrame, target_types: list[str]
) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Each known customer's last target event becomes the test; the training part keeps every
    event before it (their later non-target events would leak what they did next)."""
    known = events[(events["user_id"] != "") & events["type"].isin(target_types)]
    last = known.groupby("user_id")["ts"].transform("max") == known["ts"]
    last_ts = known[last].groupby("user_id")["ts"].max()
    # Customers with a single target event have nothing to learn from: they stay in training.
    counts = known.groupby("user_id").size()
    last_ts = last_ts[counts.reindex(last_ts.index) > 1]
    if last_ts.empty:  # mapping ids through an empty Series gives floats, not timestamps
        return events, events.iloc[:0]
    cut = events["user_id"].map(last_ts)
    test_mask = cut.notna() & (events["ts"] >= cut)
    test = events[test_mask & events["type"].isin(target_types)]
    return events[~test_mask], test


def random_holdout(
    events: pd.DataFrame, target_types: list[str], share: float, seed: int
) -> tuple[pd.DataFrame, pd.DataFrame]:
    """A seeded `share` of each known customer's distinct target items (at least one, and never
    all: customers with a single one stay in training) becomes the test: their target events on
    those items. The training part drops their events on those items from the first target
    event on, and keeps what came before it (the view before a purchase), as leave-last-out
    does: a model is asked at the moment the customer took the item."""
    known = events[(events["user_id"] != "") & events["type"].isin(target_types)]
    held = held_pairs(known[["user_id", "item_id"]].drop_duplicates(), share, seed)
    if held.empty:
        return events, events.iloc[:0]
    # Each held item's first target event, per customer: from it on, their events on the item
    # are the test's (targets) or left out (the rest); what they did before it (a view, a cart)
    # stays, as it would at the moment they took it.
    first = known.merge(held, on=["user_id", "item_id"]).groupby(["user_id", "item_id"])["ts"]
    since = first.min().rename("since")
    joined = events[["user_id", "item_id", "ts"]].join(since, on=["user_id", "item_id"])
    after = (joined["ts"] >= joined["since"]).to_numpy()  # False where no item is held
    test = events[after & events["type"].isin(target_types).to_numpy()]
    return events[~after], test


def held_pairs(pairs: pd.DataFrame, share: float, seed: int) -> pd.DataFrame:
    """The rows of `pairs` (distinct customer and target item, in the order first taken) that
    `random_holdout` holds out: a seeded `share` of each customer's, at least one and never
    all."""
    if pairs.empty:
        return pairs
    rng = np.random.default_rng(seed)
    pairs = pairs.iloc[rng.permutation(len(pairs))]
    position = pairs.groupby("user_id", sort=False).cumcount().to_numpy()
    count = pairs.groupby("user_id", sort=False)["item_id"].transform("size").to_numpy()
    held_count = np.clip(np.floor(share * count + 0.5), 1, count - 1)
    return pairs[(count >= 2) & (position < held_count)]


def next_new_item(
    events: pd.DataFrame, target_types: list[str]
) -> tuple[pd.DataFrame, pd.DataFrame]:
    """For each known customer, the last item they took (a target event) that they had never
    touched before: the cut is their first event on it (a view that led to the purchase, or the
    purchase itself), the test their target events on it, with any other item first touched at
    that same moment and taken. The training part keeps every event before the cut. Customers
    with nothing before it stay in training."""
    known = events[events["user_id"] != ""]
    first = known.drop_duplicates(["user_id", "item_id"])  # events are in time order
    taken = known.loc[known["type"].isin(target_types), ["user_id", "item_id"]]
    taken = taken.drop_duplicates()
    first = first.merge(taken, on=["user_id", "item_id"])
    if first.empty:
        return events, events.iloc[:0]
    cut = first.groupby("user_id")["ts"].max()
    before = known[known["ts"] < known["user_id"].map(cut)]["user_id"].unique()
    cut = cut[cut.index.isin(before)]
    if cut.empty:
        return events, events.iloc[:0]
    newest = first[first["ts"] == first["user_id"].map(cut)][["user_id", "item_id"]]
    user_cut = events["user_id"].map(cut)
    later = (user_cut.notna() & (events["ts"] >= user_cut)).to_numpy()
    is_newest = pd.MultiIndex.from_frame(events[["user_id", "item_id"]]).isin(
        pd.MultiIndex.from_frame(newest)
    )
    test = events[later & is_newest & events["type"].isin(target_types).to_numpy()]
    return events[~later], test

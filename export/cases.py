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
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TypeVar

import numpy as np
import pandas as pd

from edge.context import hour_bucket
from edge.schemas import Profile, ResolvedContext, SessionEvent

PROTOCOLS = ("auto", "users", "sessions", "leave_last_out")


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


def user_cases(
    window: pd.DataFrame,
    profiles: dict[str, Profile],
    target_types: list[str],
    limit: int,
    seed: int,
) -> list[Case]:
    """One case per known customer who takes a target item in `window` they had not bought."""
    targets = window[window["type"].isin(target_types) & (window["user_id"] != "")]
    targets = targets[targets["user_id"].isin(profiles.keys())]
    # Customers in id order, each one's rows together in time order (a stable sort of a window
    # in time order), walked as lists: a pandas group per customer took 20 s at 10M events.
    user_code, user_ids = pd.factorize(targets["user_id"].to_numpy(), sort=True)
    order = np.argsort(user_code, kind="stable")
    sorted_codes = user_code[order]
    starts = np.flatnonzero(np.diff(sorted_codes, prepend=-1))
    ends = np.r_[starts[1:], order.size]
    items = targets["item_id"].to_numpy()[order].tolist()
    found, firsts = [], []
    for start, end in zip(starts.tolist(), ends.tolist()):
        user = user_ids[sorted_codes[start]]
        bought = frozenset(profiles[user].bought_items)
        relevant = frozenset(items[start:end]) - bought
        if relevant:
            found.append((user, relevant, bought))
            firsts.append(order[start])
    first = targets.iloc[firsts]
    cases = [
        Case(user, (), context_from(device, country, hour), relevant, bought, ts.timestamp())
        for (user, relevant, bought), device, country, hour, ts in zip(
            found, first["device"], first["country"], first["local_hour"], first["ts"]
        )
    ]
    return _sample(cases, limit, np.random.default_rng(seed))


def session_cases(
    window: pd.DataFrame,
    profiles: dict[str, Profile],
    target_types: list[str],
    limit: int,
    seed: int,
) -> list[Case]:
    """One case per session of two or more events: cut before a random target event (not the
    first), ask for what comes next."""
    rng = np.random.default_rng(seed)
    sizes = window.groupby("session_id", sort=False)["item_id"].transform("size")
    # Each session's events together, in time order (`window` is sorted by time).
    events = window[sizes >= 2].sort_values("session_id", kind="stable")
    is_target = events["type"].isin(target_types).to_numpy()
    session_ids = events["session_id"].to_numpy()
    starts = np.flatnonzero(np.r_[True, session_ids[1:] != session_ids[:-1]])
    ends = np.r_[starts[1:], len(events)]
    chosen = _sample(list(range(starts.size)), limit, rng)
    types = events["type"].to_numpy()
    items = events["item_id"].to_numpy()
    users = events["user_id"].to_numpy()
    dwell = events["dwell_ms"].to_numpy(dtype=np.float64, na_value=np.nan)
    cases = []
    for s in chosen:
        start, end = starts[s], ends[s]
        positions = np.flatnonzero(is_target[start + 1 : end]) + start + 1
        if positions.size == 0:
            continue
        cut = int(rng.choice(positions))
        user = users[cut] if users[cut] in profiles else None
        session = tuple(
            SessionEvent(
                type=types[j],
                item_id=items[j],
                dwell_ms=None if np.isnan(dwell[j]) else int(dwell[j]),
            )
            for j in range(start, cut)
        )
        bought = {e.item_id for e in session if e.type == "purchase"}
        if user is not None:
            bought |= set(profiles[user].bought_items)
        if items[cut] in bought:
            continue
        row = events.iloc[cut]
        cases.append(
            Case(
                user,
                session,
                context_of(row),
                frozenset([items[cut]]),
                frozenset(bought),
                row["ts"].timestamp(),
            )
        )
    return cases


def choose_protocol(protocol: str, history: pd.DataFrame, window: pd.DataFrame) -> str:
    """`auto`: `users` when most target-window events come from customers known before it,
    else `sessions` (a log of anonymous visits)."""
    if protocol != "auto":
        return protocol
    known = pd.unique(history["user_id"])  # a hash table, not a set of Python strings
    share = window["user_id"].isin(known[known != ""]).mean() if len(window) else 0.0
    return "users" if share >= 0.5 else "sessions"


def make_cases(
    protocol: str,
    window: pd.DataFrame,
    profiles: dict[str, Profile],
    target_types: list[str],
    limit: int,
    seed: int,
) -> list[Case]:
    if protocol in ("users", "leave_last_out"):
        return user_cases(window, profiles, target_types, limit, seed)
    if protocol == "sessions":
        return session_cases(window, profiles, target_types, limit, seed)
    raise ValueError(f"unknown protocol {protocol!r}; allowed: {', '.join(PROTOCOLS[1:])}")


def time_split(events: pd.DataFrame, days: float) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Events before the last `days` days, and those days."""
    cut = events["ts"].max() - pd.Timedelta(days=days)
    if events["ts"].is_monotonic_increasing:
        # Sorted by time, as read_inputs leaves it: two slices that share the events' memory,
        # where masks copied every column (a gigabyte at 10M events).
        at = int(events["ts"].searchsorted(cut, side="left"))
        return events.iloc[:at], events.iloc[at:]
    return events[events["ts"] < cut], events[events["ts"] >= cut]


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

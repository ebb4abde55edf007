from collections import defaultdict
from fractions import Fraction

import numpy as np
import pandas as pd
import pytest

from export.covisitation import CoVisitation
from export.interactions import ItemUniverse

WEIGHTS = {"view": 1.0, "purchase": 8.0, "cancel": 0.0}


def universe(ids):
    n = len(ids)
    return ItemUniverse(
        ids, np.full(n, -1, np.int32), [], np.full(n, np.nan, np.float32), np.ones(n, bool)
    )


def frame(rows):
    return pd.DataFrame(rows, columns=["session_id", "item_id", "type", "ts"]).assign(
        ts=lambda f: pd.to_datetime(f["ts"], unit="s", utc=True)
    )


def test_neighbours_come_from_the_same_session_within_the_window():
    events = frame(
        [
            ("s1", "a", "view", 1),
            ("s1", "b", "view", 2),
            ("s1", "c", "view", 3),
            ("s2", "a", "view", 1),
            ("s2", "b", "view", 2),
            ("s3", "d", "view", 1),
            ("s3", "e", "cancel", 2),
        ]
    )
    cv = CoVisitation(window=1, neighbours=5).fit(events, universe(list("abcde")), WEIGHTS)
    row = lambda i: cv.indices_[cv.indptr_[i] : cv.indptr_[i + 1]].tolist()  # noqa: E731
    assert row(0) == [1]  # a-b twice; a-c is 2 apart, outside the window
    assert sorted(row(1)) == [0, 2]
    assert row(3) == [] and row(4) == []  # a zero-weight event makes no pair
    scores = cv.scores_[cv.indptr_[1] : cv.indptr_[2]]
    assert scores[0] > scores[1]  # b-a (2 sessions) outranks b-c (1)


def test_only_the_top_neighbours_are_kept_sorted_by_score(seed):
    rng = np.random.default_rng(seed)
    ids = [f"i{i}" for i in range(30)]
    rows = [
        (f"s{s}", ids[i], "view", t)
        for s in range(200)
        for t, i in enumerate(rng.integers(0, 30, 6))
    ]
    cv = CoVisitation(window=3, neighbours=4).fit(frame(rows), universe(ids), WEIGHTS)
    lengths = np.diff(cv.indptr_)
    assert lengths.max() == 4
    for i in range(30):
        s = cv.scores_[cv.indptr_[i] : cv.indptr_[i + 1]]
        assert np.all(np.diff(s) <= 0)


def reference(events, ids, window, neighbours, min_count):
    """Straight from the definition: every ordered pair within `window` positions of a session
    (repeats of one item in a row collapsed), weight 1/lag, summed both ways in fractions
    (exact, so equal sums tie); score = sum / sqrt(freq a * freq b); per item the best
    `neighbours`, by score then item index."""
    n = len(ids)
    code = {item: i for i, item in enumerate(ids)}
    positive = events[events["type"].map(WEIGHTS) > 0]
    positive = positive.sort_values(["session_id", "ts"], kind="stable")
    total, times = defaultdict(Fraction), np.zeros((n, n))
    frequency = np.zeros(n)
    for _, group in positive.groupby("session_id"):
        items = [code[i] for i in group["item_id"]]
        items = [x for j, x in enumerate(items) if j == 0 or x != items[j - 1]]
        for x in items:
            frequency[x] += 1
        for j, a in enumerate(items):
            for lag in range(1, window + 1):
                if j + lag < len(items) and items[j + lag] != a:
                    b = items[j + lag]
                    for x, y in ((a, b), (b, a)):
                        total[x, y] += Fraction(1, lag)
                        times[x, y] += 1
    rows = []
    for x in range(n):
        ys = [y for y in range(n) if times[x, y] >= max(min_count, 1)]
        scored = sorted(
            (-float(total[x, y]) / np.sqrt(frequency[x] * frequency[y]), y) for y in ys
        )[:neighbours]
        rows.append(([y for _, y in scored], [-s for s, _ in scored]))
    return rows


@pytest.mark.parametrize("min_count", [1, 3])
def test_same_neighbours_and_scores_as_the_definition(seed, min_count):
    rng = np.random.default_rng(seed)
    ids = [f"i{i:02d}" for i in range(40)]
    # Skewed item draws (best-sellers), repeats, zero-weight events and equal timestamps.
    p = 1.0 / np.arange(1, 41)
    rows = [
        (f"s{s}", ids[i], "cancel" if rng.random() < 0.1 else "view", t // 2)
        for s in range(300)
        for t, i in enumerate(rng.choice(40, rng.integers(1, 12), p=p / p.sum()))
    ]
    events = frame(rows).sample(frac=1.0, random_state=seed)  # any row order
    cv = CoVisitation(window=3, neighbours=6, min_count=min_count).fit(
        events, universe(ids), WEIGHTS
    )
    assert cv.indptr_.dtype == np.int32 and cv.indices_.dtype == np.int32
    assert cv.scores_.dtype == np.float16
    for x, (want_items, want_scores) in enumerate(reference(events, ids, 3, 6, min_count)):
        got = slice(cv.indptr_[x], cv.indptr_[x + 1])
        assert cv.indices_[got].tolist() == want_items
        np.testing.assert_allclose(cv.scores_[got], want_scores, rtol=1e-3)

import numpy as np
import pandas as pd

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

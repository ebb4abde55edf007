import numpy as np
import pytest
import scipy.sparse as sp

from export.baselines import (
    ALS,
    BASELINES,
    EASE,
    History,
    ItemKNN,
    LightFMBaseline,
    MostPopular,
    grids,
    lightfm_available,
)

N_PAIRS = 10


@pytest.fixture(scope="module")
def pairs(seed):
    """Users who each take both items of one pair (2i, 2i+1), plus one random other item."""
    rng = np.random.default_rng(seed)
    rows, cols = [], []
    for user in range(400):
        pair = rng.integers(N_PAIRS)
        noise = rng.integers(2 * N_PAIRS)
        for item in (2 * pair, 2 * pair + 1, noise):
            rows.append(user)
            cols.append(item)
    matrix = sp.csr_matrix((np.ones(len(rows)), (rows, cols)), shape=(400, 2 * N_PAIRS))
    matrix.sum_duplicates()
    return matrix.astype(np.float32)


def history(*items):
    return History(np.array(items, dtype=np.int64), np.ones(len(items)))


@pytest.mark.parametrize(
    "make",
    [
        lambda: ItemKNN(neighbours=5),
        lambda: EASE(regularization=10.0),
        lambda: ALS(factors=8, regularization=0.1, alpha=2.0),
        pytest.param(
            lambda: LightFMBaseline(components=16, epochs=30),
            marks=pytest.mark.skipif(not lightfm_available(), reason="lightfm not installed"),
        ),
    ],
    ids=["item_knn", "ease", "als", "lightfm"],
)
def test_each_baseline_finds_the_partner_of_an_item(make, pairs):
    model = make().fit(pairs)
    hits = 0
    for pair in range(N_PAIRS):
        scores = np.array(model.scores(history(2 * pair)), dtype=np.float64)
        scores[2 * pair] = -np.inf  # what the visitor already has
        hits += int(np.argmax(scores) == 2 * pair + 1)
    assert hits >= N_PAIRS - 1


def test_most_popular_counts_distinct_users_not_weight(pairs):
    heavy = pairs.copy()
    heavy[0, heavy[0].indices[0]] = 1000.0
    scores = MostPopular().fit(heavy).scores(history())
    np.testing.assert_array_equal(scores, np.asarray((pairs > 0).sum(axis=0)).ravel())


def test_lightfm_scores_a_known_visitor_by_their_own_row(pairs):
    if not lightfm_available():
        pytest.skip("lightfm not installed")
    model = LightFMBaseline(components=8, epochs=2).fit(pairs)
    own = model.scores(History(np.empty(0, dtype=np.int64), np.empty(0), row=3))
    np.testing.assert_allclose(own, model.item_vectors_ @ model.user_vectors_[3] + model.item_bias_)


def test_grids_leave_ease_out_of_big_catalogs():
    assert "ease" in grids(1_000, ease_max_items=15_000, seed=0)
    assert "ease" not in grids(20_000, ease_max_items=15_000, seed=0)
    assert set(grids(10, 15_000, 0)) <= set(BASELINES)

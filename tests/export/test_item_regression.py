import numpy as np
import scipy.sparse as sp

from export.item_regression import ItemRegression, ease_weights


def test_the_sparse_table_keeps_each_items_best_positive_ease_weights(seed):
    rng = np.random.default_rng(seed)
    dense = (rng.random((300, 30)) < 0.15).astype(np.float32)
    dense[:, 29] = 0.0  # an item no one took has no neighbours and is no one's neighbour
    matrix = sp.csr_matrix(dense * rng.integers(1, 5, dense.shape))
    table = ItemRegression(regularization=20.0, neighbours=5, max_items=1000).fit(matrix)
    weights = ease_weights(sp.csr_matrix(dense[:, :29]), 20.0)
    for item in range(29):
        row = slice(table.indptr_[item], table.indptr_[item + 1])
        expected = np.argsort(-weights[item])[:5]
        expected = expected[weights[item, expected] > 0]
        np.testing.assert_array_equal(table.indices_[row], expected)
        # Stored as float16: three significant digits.
        np.testing.assert_allclose(table.scores_[row], weights[item, expected], rtol=1e-3)
    assert table.indptr_[29] == table.indptr_[30] and 29 not in table.indices_


def test_only_the_most_taken_items_are_fitted(seed):
    dense = np.zeros((50, 6), np.float32)
    dense[:, :3] = 1.0  # three items everyone takes
    dense[::10, 3:5] = 1.0
    table = ItemRegression(regularization=1.0, neighbours=5, max_items=3).fit(sp.csr_matrix(dense))
    assert table.items_fitted_ == 3
    assert set(table.indices_.tolist()) <= {0, 1, 2}
    assert np.all(np.diff(table.indptr_)[3:] == 0)


def test_the_symmetric_inverse_is_the_inverse(seed):
    from export.item_regression import symmetric_inverse

    rng = np.random.default_rng(seed)
    x = (rng.random((400, 60)) < 0.1).astype(np.float64)
    gram = x.T @ x + 5.0 * np.eye(60)
    np.testing.assert_allclose(symmetric_inverse(gram), np.linalg.inv(gram), rtol=1e-10, atol=1e-12)
    indefinite = np.array([[0.0, 1.0], [1.0, 0.0]])  # not positive definite: LU's answer
    np.testing.assert_allclose(symmetric_inverse(indefinite), np.linalg.inv(indefinite))

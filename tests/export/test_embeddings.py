"""Parity: the edge's fold-in must give the user vector implicit itself computes."""

import numpy as np
import scipy.sparse as sp

from edge.bundle import embeddings_from_tree
from edge.scoring import solve_user
from export.embeddings import ItemEmbeddings


def test_edge_fold_in_matches_implicit_recalculate_user(seed):
    rng = np.random.default_rng(seed)
    n_users, n_items = 300, 120
    dense = (rng.random((n_users, n_items)) < 0.05) * rng.integers(1, 9, (n_users, n_items))
    user_items = sp.csr_matrix(dense.astype(np.float32))
    emb = ItemEmbeddings(factors=16, regularization=0.1, alpha=2.0, iterations=5, seed=seed).fit(
        user_items
    )
    tree = emb.to_tree()
    embeddings = embeddings_from_tree(tree)
    for user in range(10):
        row = user_items[user]
        if row.nnz == 0:
            continue
        expected = emb.model_.recalculate_user(user, row)
        got = solve_user(embeddings.rows(row.indices), row.data, embeddings.gram, embeddings.alpha)
        np.testing.assert_allclose(got, np.asarray(expected).ravel(), rtol=1e-3, atol=1e-4)

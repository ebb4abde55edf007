"""Parity: the edge's fold-in must give the user vector implicit itself computes."""

import numpy as np
import scipy.sparse as sp

from edge.bundle import embeddings_from_tree
from edge.model import CoVisitation, ItemTable, Model, Popularity
from edge.scoring import build_user_state, fold_in
from export.embeddings import ItemEmbeddings


def test_edge_fold_in_matches_implicit_recalculate_user(seed):
    rng = np.random.default_rng(seed)
    n_users, n_items = 300, 120
    dense = (rng.random((n_users, n_items)) < 0.05) * rng.integers(1, 9, (n_users, n_items))
    user_items = sp.csr_matrix(dense.astype(np.float32))
    emb = ItemEmbeddings(factors=16, regularization=0.1, alpha=2.0, iterations=5, seed=seed).fit(
        user_items
    )
    ids = [f"i{i}" for i in range(n_items)]
    model = Model(
        items=ItemTable(
            ids,
            np.zeros(n_items, np.int32),
            ["c"],
            np.ones(n_items, np.float32),
            np.ones(n_items, bool),
        ),
        embeddings=embeddings_from_tree(emb.to_tree()),
        covisitation=CoVisitation(
            np.zeros(n_items + 1, np.int64), np.zeros(0, np.int32), np.zeros(0, np.float32)
        ),
        popularity=Popularity(np.ones(n_items, np.float32), {}, np.arange(5), {}),
        event_weights={"view": 1.0},
    )
    from edge.schemas import Profile

    for user in range(10):
        row = user_items[user]
        if row.nnz == 0:
            continue
        expected = emb.model_.recalculate_user(user, row)
        profile = Profile(
            [ids[i] for i in row.indices],
            [float(v) for v in row.data],
            [],
            0,
            0,
            0.0,
            0.0,
            float("nan"),
        )
        got = fold_in(model, build_user_state(model, profile))
        np.testing.assert_allclose(got, np.asarray(expected).ravel(), rtol=1e-3, atol=1e-4)

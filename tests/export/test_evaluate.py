import math

from export.evaluate import hit_rate_and_ndcg


def test_hit_rate_and_ndcg():
    assert hit_rate_and_ndcg(["a", "b"], {"c"}, 10) == (0.0, 0.0)
    assert hit_rate_and_ndcg(["a", "b"], {"a"}, 10) == (1.0, 1.0)
    hr, ndcg = hit_rate_and_ndcg(["x", "a"], {"a", "b"}, 10)
    assert hr == 1.0 and math.isclose(ndcg, (1 / math.log2(3)) / (1 + 1 / math.log2(3)))
    assert hit_rate_and_ndcg(["x", "a"], {"a"}, 1) == (0.0, 0.0)


def _case(relevant, user_id=None, session=(), blocked=()):
    from edge.schemas import ResolvedContext
    from export.cases import Case

    ctx = ResolvedContext(device="", country="", local_hour=12, hour_bucket="afternoon")
    return Case(user_id, tuple(session), ctx, frozenset(relevant), frozenset(blocked))


def test_measure_scores_answers_and_coverage():
    from export.evaluate import measure

    cases = [_case({"a"}), _case({"b", "z"})]
    answers = {frozenset({"a"}): ["a", "c"], frozenset({"b", "z"}): ["c", "d"] + ["x"] * 48 + ["z"]}
    result = measure(lambda case, k: answers[case.relevant], cases, k=10, n_catalog=8)
    assert result["hr@10"] == 0.5 and result["ndcg@10"] == 0.5
    # Recall@50 counts the top 50 only: "z" is 51st.
    assert result["recall@50"] == 0.5
    assert result["coverage"] == round(4 / 8, 4)  # a, c, d, x


def test_histories_merge_the_training_row_and_the_session():
    import numpy as np
    import pandas as pd
    import scipy.sparse as sp

    from edge.schemas import SessionEvent
    from export.evaluate import Histories
    from export.interactions import ItemUniverse

    universe = ItemUniverse(
        ["a", "b", "c"],
        np.full(3, -1, np.int32),
        [],
        np.full(3, np.nan, np.float32),
        np.ones(3, bool),
    )
    matrix = sp.csr_matrix(np.array([[2.0, 0.0, 0.0], [0.0, 1.0, 0.0]], dtype=np.float32))
    histories = Histories(matrix, pd.Index(["u1", "u2"]), universe, {"view": 1.0, "purchase": 8.0})
    session = [SessionEvent("view", "a"), SessionEvent("purchase", "c"), SessionEvent("view", "?")]
    h = histories.of(_case({"b"}, user_id="u1", session=session))
    assert h.row == 0 and h.items.tolist() == [0, 2] and h.weights.tolist() == [3.0, 8.0]
    anonymous = histories.of(_case({"b"}, session=session[:1]))
    assert anonymous.row == -1 and anonymous.items.tolist() == [0]
    # A long look weighs twice, as the edge weighs it.
    long_look = histories.of(_case({"b"}, session=[SessionEvent("view", "b", dwell_ms=60_000)]))
    assert long_look.weights.tolist() == [2.0]


def test_baselines_obey_the_edge_business_rules():
    import numpy as np
    import pandas as pd
    import scipy.sparse as sp

    from export.baselines import MostPopular
    from export.evaluate import Histories, baseline_answer
    from export.interactions import ItemUniverse

    universe = ItemUniverse(
        ["a", "b", "c", "d"],
        np.full(4, -1, np.int32),
        [],
        np.full(4, np.nan, np.float32),
        np.array([True, False, True, True]),
    )
    matrix = sp.csr_matrix(np.array([[1, 1, 1, 0], [1, 1, 1, 0], [1, 1, 0, 0]], np.float32))
    model = MostPopular().fit(matrix)
    answer = baseline_answer(model, Histories(matrix, pd.Index(["u"]), universe, {}))
    # b is out of stock, a was bought; d was never taken but still ranks (score 0) last.
    assert answer(_case({"c"}, blocked={"a"}), 10) == ["c", "d"]


def test_one_ranking_for_all_visitors_answers_as_the_per_visitor_path():
    """Most popular is ranked once; its answers are the ones of scoring every visitor."""
    import numpy as np
    import pandas as pd
    import scipy.sparse as sp

    from export.baselines import MostPopular
    from export.evaluate import Histories, baseline_answer
    from export.interactions import ItemUniverse

    rng = np.random.default_rng(0)
    n = 600  # past top_k's sorting threshold, so its partition path is compared too
    universe = ItemUniverse(
        [f"i{i:04d}" for i in range(n)],
        np.full(n, -1, np.int32),
        [],
        np.full(n, np.nan, np.float32),
        rng.random(n) > 0.1,
    )
    matrix = sp.csr_matrix((rng.random((300, n)) < rng.random(n) * 0.5).astype(np.float32))
    histories = Histories(matrix, pd.Index([f"u{i}" for i in range(300)]), universe, {})
    model = MostPopular().fit(matrix)
    once = baseline_answer(model, histories)

    class EveryVisitor(MostPopular):
        personal = True

    per_visitor = EveryVisitor().fit(matrix)
    each = baseline_answer(per_visitor, histories)
    counts = model.counts_
    for blocked in ([], universe.ids[:5], [universe.ids[int(np.argmax(counts))], "unknown"]):
        for k in (1, 10, 50):
            case = _case({"i0000"}, blocked=blocked)
            got, want = once(case, k), each(case, k)
            # Equal counts may come in either order: compare the scores at each rank.
            scores = [counts[universe.ids.index(i)] for i in got]
            assert scores == [counts[universe.ids.index(i)] for i in want]
            assert len(got) == k and not set(got) & set(blocked)


def test_paired_difference_has_an_interval_from_the_spread_of_the_differences():
    import numpy as np

    from export.evaluate import paired_difference

    ours = np.array([1.0, 0.5, 0.0, 1.0])
    theirs = np.array([0.5, 0.5, 0.0, 0.5])
    result = paired_difference(ours, theirs)
    half = 1.96 * np.std([0.5, 0.0, 0.0, 0.5], ddof=1) / 2
    assert result["difference"] == 0.25
    assert result["ci95"] == [round(0.25 - half, 4), round(0.25 + half, 4)]
    # A constant shift is certain; one case gives no interval.
    assert paired_difference(theirs + 0.1, theirs)["ci95"] == [0.1, 0.1]
    assert paired_difference(ours[:1], theirs[:1]) == {"difference": 0.5, "ci95": None}

import math

from export.evaluate import hit_rate_and_ndcg


def test_hit_rate_and_ndcg():
    assert hit_rate_and_ndcg(["a", "b"], {"c"}, 10) == (0.0, 0.0)
    assert hit_rate_and_ndcg(["a", "b"], {"a"}, 10) == (1.0, 1.0)
    hr, ndcg = hit_rate_and_ndcg(["x", "a"], {"a", "b"}, 10)
    assert hr == 1.0 and math.isclose(ndcg, (1 / math.log2(3)) / (1 + 1 / math.log2(3)))
    assert hit_rate_and_ndcg(["x", "a"], {"a"}, 1) == (0.0, 0.0)

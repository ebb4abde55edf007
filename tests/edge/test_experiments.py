import dataclasses
import hashlib
import json
import struct
from pathlib import Path

import msgspec
import numpy as np
import pytest

from edge.experiments import Experiment, assign, bucket, experiment_errors, treatment
from edge.recommend import Recommender
from edge.schemas import Context, RecommendRequest

CASES = json.loads((Path(__file__).parent.parent / "cases" / "assignment.json").read_text())


def experiment(key, *variants, unit="user"):
    return msgspec.convert({"key": key, "unit": unit, "variants": list(variants)}, Experiment)


def test_the_shared_vectors_hold():
    experiments = {e["key"]: msgspec.convert(e, Experiment) for e in CASES["experiments"]}
    for case in CASES["cases"]:
        chosen = assign(experiments[case["experiment"]], case["unit_id"])
        assert chosen.name == case["variant"], case
        assert bucket(case["experiment"], case["unit_id"]) == pytest.approx(case["bucket"])


def test_the_bucket_is_the_documented_formula():
    """Written out again from the module's docstring, as another client would."""
    digest = hashlib.sha256("strip-ranker:visitor-é".encode()).digest()
    (first,) = struct.unpack(">I", digest[:4])
    assert bucket("strip-ranker", "visitor-é") == first / 2**32


def test_assignment_is_sticky_follows_the_weights_and_is_independent_per_experiment(seed):
    split = experiment("split", {"name": "a", "weight": 1}, {"name": "b", "weight": 3})
    other = experiment("other", {"name": "x"}, {"name": "y"})
    units = [f"user-{seed}-{i}" for i in range(40_000)]
    first = [assign(split, u).name for u in units]
    assert first == [assign(split, u).name for u in units]  # the same every time
    share_b = np.mean([name == "b" for name in first])
    assert share_b == pytest.approx(0.75, abs=0.01)
    in_x = np.array([assign(other, u).name == "x" for u in units])
    is_b = np.array(first) == "b"
    assert in_x[is_b].mean() == pytest.approx(in_x[~is_b].mean(), abs=0.02)


def test_units_and_the_order_experiments_apply_in():
    by_session = experiment(
        "s",
        {"name": "a", "content": {"banner": "spring"}},
        {"name": "b", "content": {"banner": "spring"}},
        unit="session",
    )
    holdout = experiment(
        "h",
        {"name": "hold", "ranker": "popularity", "weight": 1e9},
        {"name": "rest", "weight": 1e-9},
    )
    chosen = treatment([by_session, holdout], "u1", "s9")
    # SHA-256("s:s9") begins 653625ed: bucket 0.395, in a's half; the user id's
    # ("s:u1", 9e711e22: bucket 0.619) would have given b.
    assert chosen.variants == {"s": "a", "h": "hold"}
    assert chosen.ranker == "popularity" and chosen.content == {"banner": "spring"}
    assert treatment([by_session], "u1", None).variants == {}  # no session id: not in it
    assert treatment([holdout], None, "s9").variants == {"h": "hold"}  # user unit, else session


def test_config_errors_name_the_experiment_and_variant():
    twice = experiment("e", {"name": "a"}, {"name": "a"})
    errors = experiment_errors([twice, twice])
    assert any("experiment 'e': variant 'a' is defined twice" in e for e in errors)
    assert any("experiment 'e' is defined twice" in e for e in errors)
    with pytest.raises(msgspec.ValidationError, match="length >= 2"):
        experiment("e", {"name": "only"})
    with pytest.raises(msgspec.ValidationError, match="Invalid enum value 'deep'"):
        experiment("e", {"name": "a", "ranker": "deep"}, {"name": "b"})


def test_answers_name_their_variants_and_a_holdout_gets_popular_items(bundle):
    top = {item for item, _ in bundle.fallback["country=de"][:5]}
    # A customer who bought one of the country's five most popular items: the holdout's
    # popular items must leave it out.
    user = next(u for u, p in bundle.profiles.as_dict().items() if top & set(p.bought_items))
    content = {"banner": "loyalty-10"}
    holdout = experiment(
        "holdout",
        {"name": "popular", "ranker": "popularity", "weight": 1e9},
        {"name": "personal", "weight": 1e-9},
    )
    banner = experiment(
        "banner", {"name": "on", "content": content, "weight": 1e9}, {"name": "off", "weight": 1e-9}
    )
    with_experiments = Recommender(dataclasses.replace(bundle, experiments=(holdout, banner)))
    request = RecommendRequest(user_id=user, k=5, context=Context(country="de"))
    answer = with_experiments.recommend(request)
    assert answer.variants == {"holdout": "popular", "banner": "on"}
    assert answer.content == content and answer.fallback is None
    assert answer.personalized is False
    # The country's popular items as the bundle lists them, less what this customer bought.
    bought = set(bundle.profiles.get(user).bought_items)
    popular = [(i, s) for i, s in bundle.fallback["country=de"] if i not in bought][:5]
    assert [(it.item_id, it.score) for it in answer.items] == popular
    plain = Recommender(bundle).recommend(request)
    assert plain.variants == {} and plain.personalized
    hidden = with_experiments.recommend(RecommendRequest(user_id=user, consent=False))
    assert hidden.variants == {}  # without consent, no experiment either

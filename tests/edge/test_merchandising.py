"""Merchandising (`edge.merchandising`): pins, boosts, buries, filters and allow-lists, from the
bundle and from the request, on every path that emits items; the item table's brands and tags
they read; and the build's side (the catalog's tags, `[merchandising]`, fallback content).

The bundle is the small one (`tests.edge.small_bundle`) with brands and tags added: item i's
brand is "acme" when i % 3 == 0, "bolt" when i % 3 == 1, unknown otherwise; it is tagged "sale"
when i % 4 == 0, "new" when i >= 30 and "eco" when i % 5 == 3. Its category is i % 5 (bags,
books, hats, shoes, toys), it is less popular the larger i is, and i07, i15, i23 are out of
stock. A cold visitor's candidates are the ten most popular items, scored
sigmoid(pop_overall - 2) (`small_bundle.ranker_score`)."""

from __future__ import annotations

import json
import math
from pathlib import Path

import msgspec
import numpy as np
import pytest
from starlette.testclient import TestClient

from edge import arrays
from edge.app import create_app
from edge.bundle import ITEMS, RULES, VISITOR, BundleError, load_bundle, write_bundle
from edge.bundle.codecs import items_from_tree, items_to_tree
from edge.config import Settings
from edge.errors import ValidationError
from edge.merchandising import Merchandising, Vocabulary, member, place_pins
from edge.model import ItemTable
from edge.openapi import build_document
from edge.recommend import Recommender
from edge.rules import DEFAULT_RULES
from edge.schemas import Context, RecommendRequest
from tests.edge import small_bundle as shop

N = shop.N_ITEMS
BRANDS = ["acme" if i % 3 == 0 else "bolt" if i % 3 == 1 else "" for i in range(N)]
TAGS = [
    [tag for tag, has in (("sale", i % 4 == 0), ("new", i >= 30), ("eco", i % 5 == 3)) if has]
    for i in range(N)
]
CATEGORY = [shop.CATEGORY_NAMES[c] for c in shop.CATEGORY]


def index(item_id: str) -> int:
    return shop.IDS.index(item_id)


def policy(**spec: object) -> Merchandising:
    return msgspec.convert(spec, Merchandising)


def write_merchandised_bundle(directory: Path, spec: Merchandising | None = None) -> Path:
    """The small bundle with brands and tags, and `spec` as its own policy."""
    small = load_bundle(shop.write_small_bundle(directory / "plain"))
    trees = shop.array_trees()
    trees[ITEMS] = items_to_tree(
        shop.IDS,
        shop.CATEGORY,
        shop.CATEGORY_NAMES,
        shop.PRICE,
        shop.IN_STOCK,
        shop.AGE_DAYS,
        shop.REPEAT_RATE,
        brands=BRANDS,
        tags=TAGS,
    )
    out = directory / "merchandised"
    write_bundle(
        out,
        trees,
        shop.ranker_graph(),
        shop.ONNX_OPSET,
        shop.fallback_content(),
        shop.PROFILES,
        msgspec.structs.replace(small.manifest.models, merchandising=spec),
        optional_files={
            RULES: msgspec.msgpack.encode(DEFAULT_RULES),
            VISITOR: shop.visitor_graph(),
        },
    )
    return out


@pytest.fixture(scope="module")
def bundle(tmp_path_factory):
    return load_bundle(write_merchandised_bundle(tmp_path_factory.mktemp("merch")))


@pytest.fixture(scope="module")
def recommender(bundle):
    return Recommender(bundle, budget_ms=math.inf)


# A request without a local hour is answered for the hour at the edge now, and the small bundle's
# evening popularity lifts toys: the expected answers are the daytime ones, whenever tests run.
DAYTIME = {"local_hour": 12}


def answer(recommender: Recommender, **request: object) -> list[tuple[str, float]]:
    request.setdefault("context", DAYTIME)
    response = recommender.recommend(msgspec.convert(request, RecommendRequest))
    return [(it.item_id, it.score) for it in response.items]


def ids(items: list[tuple[str, float]]) -> list[str]:
    return [i for i, _ in items]


def cold_score(item_id: str) -> float:
    """A cold visitor's ranker probability for an item, from the bundle's constants."""
    return shop.ranker_score(float(shop.POP_OVERALL[index(item_id)]))


# ---------------------------------------------------------------- the item table
def test_brands_and_tags_come_back_from_the_file_as_codes_into_sorted_names(bundle):
    table = bundle.model.items
    assert table.brand_names == ["acme", "bolt"] and table.tag_names == ["eco", "new", "sale"]
    assert [table.brand_names[c] if c >= 0 else "" for c in table.brand.tolist()] == BRANDS
    for i in range(N):
        row = table.tag_codes[table.tag_indptr[i] : table.tag_indptr[i + 1]].tolist()
        assert sorted(table.tag_names[c] for c in row) == sorted(TAGS[i]), i
    assert table.brand.itemsize == 1 and table.tag_codes.itemsize == 1  # the narrowest ints


def test_a_bundle_without_brands_or_tags_loads_with_every_brand_unknown_and_no_tags(small_bundle):
    table = small_bundle.model.items
    assert table.brand.tolist() == [-1] * N and table.brand_names == []
    assert table.tag_indptr.tolist() == [0] * (N + 1) and table.tag_names == []


def test_an_item_table_built_without_brands_or_tags_has_a_row_for_every_item():
    ones = np.ones(3)
    table = ItemTable(
        np.array([b"a", b"b", b"c"]), np.zeros(3, int), ["x"], ones, ones > 0, ones, ones
    )
    assert table.brand.tolist() == [-1, -1, -1] and table.tag_indptr.tolist() == [0, 0, 0, 0]


def bad_items_tree(change: dict) -> dict:
    tree = items_to_tree(
        ["a", "b"],
        np.zeros(2),
        ["x"],
        np.ones(2),
        np.ones(2, bool),
        np.ones(2),
        np.ones(2),
        brands=["p", ""],
        tags=[["s"], []],
    )
    return arrays.loads(arrays.dumps(tree | change))


@pytest.mark.parametrize(
    ("change", "why"),
    [
        ({"brand": np.array([0, 1], np.int8)}, "brand must be integer codes in -1..0"),
        ({"brand": np.array([-2, 0], np.int8)}, "brand must be integer codes in -1..0"),
        ({"tag_codes": np.array([3], np.uint8)}, "tag_codes must be integer codes in 0..0"),
        ({"tag_lengths": np.array([1, 1], np.uint8)}, "summing to 2 for 2 items and 1 tag codes"),
        ({"tag_lengths": np.array([1], np.uint8)}, "has 1 rows"),
    ],
)
def test_brand_and_tag_codes_out_of_range_are_refused(change, why):
    with pytest.raises(ValueError, match=why):
        items_from_tree(bad_items_tree(change))


# ---------------------------------------------------------------- filters and allow-lists
def test_a_filtered_brand_never_appears_and_the_answer_still_fills(recommender):
    for request in ({}, {"user_id": "u-regular"}, {"context": {"device": "mobile"}}):
        items = answer(
            recommender, k=12, merchandising={"filters": {"brands": ["ACME "]}}, **request
        )
        assert len(items) == 12, request
        assert all(BRANDS[index(i)] != "acme" for i in ids(items)), request


def test_filters_of_categories_and_tags_take_out_every_item_that_has_one(recommender):
    spec = {"filters": {"categories": ["bags"], "tags": ["sale", "new"]}}
    for i in ids(answer(recommender, k=20, merchandising=spec)):
        assert CATEGORY[index(i)] != "bags" and not {"sale", "new"} & set(TAGS[index(i)]), i


def test_a_category_page_shows_that_category_only_by_popularity_and_fills_from_its_best_sellers(
    recommender,
):
    """Hats are items 2, 7, 12...; i07 is out of stock. A cold visitor's only hat among the ten
    popular candidates is i02; the rest come from the hats' best sellers."""
    items = answer(recommender, k=5, merchandising={"only": {"categories": ["hats"]}})
    assert ids(items) == ["i02", "i12", "i17", "i22", "i27"]
    assert items[0][1] == pytest.approx(cold_score("i02"), abs=1e-6)


def test_an_allow_list_of_tags_needs_one_of_them_and_unknown_brands_are_not_in_a_brand_list(
    recommender,
):
    spec = {"only": {"tags": ["eco", "new"], "brands": ["acme", "bolt"]}}
    shown = ids(answer(recommender, k=20, merchandising=spec))
    assert shown and all({"eco", "new"} & set(TAGS[index(i)]) for i in shown)
    assert all(BRANDS[index(i)] in ("acme", "bolt") for i in shown)


def test_fallback_answers_honour_filters_and_pins(bundle):
    """An answer past its budget is precomputed popular items: filtered and pinned all the same."""
    late = Recommender(bundle, budget_ms=50.0)
    request = RecommendRequest(
        k=4,
        context=Context(**DAYTIME),
        merchandising=policy(filters={"brands": ["acme"]}, pins={"i38": 2}),
    )
    response = late.recommend(request, {}, queued_ms=60.0)
    assert response.fallback.startswith("latency_budget")
    # Popular in-stock items but acme's (i00, i03, i06...), with i38 (no brand) second.
    assert [it.item_id for it in response.items] == ["i01", "i38", "i02", "i04"]


def test_an_answer_without_a_bundle_shows_nothing_rather_than_what_a_filter_rules_out():
    content = {"all": [("i00", 2.0), ("i01", 1.0)]}
    empty = Recommender(None, fallback_content=content)
    filtered = empty.recommend(RecommendRequest(merchandising=policy(filters={"brands": ["x"]})))
    assert filtered.items == [] and filtered.fallback.startswith("bundle_unavailable")
    boosted = empty.recommend(RecommendRequest(merchandising=policy(boost={"brands": {"x": 2}})))
    assert [it.item_id for it in boosted.items] == ["i00", "i01"]


def test_accessories_a_rule_offers_honour_filters(recommender):
    """A long look at i00 fires the default long-dwell rule: four of what goes with i00, its
    regression neighbours (i20, i03) then its co-visitation ones (i05, i10, i01, i02). With
    bolt filtered out, i10 and i01 give way to i02."""
    look = {"session": {"events": [{"type": "view", "item_id": "i00", "dwell_ms": 60_000}]}}
    for spec, expected in (
        (None, ["i20", "i03", "i05", "i10"]),
        ({"filters": {"brands": ["bolt"]}}, ["i20", "i03", "i05", "i02"]),
    ):
        request = msgspec.convert(look | {"merchandising": spec}, RecommendRequest)
        [fired] = recommender.recommend(request).rules_fired
        assert fired.rule == "long-dwell" and fired.items == expected


# ---------------------------------------------------------------- boosts and buries
def test_a_boost_multiplies_the_probability_and_orders_the_answer_by_it(recommender):
    items = answer(recommender, k=9, merchandising={"boost": {"brands": {"bolt": 3}}})
    # The nine in-stock of the ten most popular, ranked by probability × 3 for bolt (i % 3 == 1).
    expected = {
        i: cold_score(i) * (3 if BRANDS[index(i)] == "bolt" else 1)
        for i in [f"i{j:02d}" for j in range(10) if shop.IN_STOCK[j]]
    }
    assert ids(items) == sorted(expected, key=lambda i: -expected[i])
    for item_id, score in items:
        assert score == pytest.approx(expected[item_id], abs=1e-6)


def test_a_bury_divides_and_factors_of_an_items_category_brand_and_tags_multiply(recommender):
    spec = {
        "bury": {"categories": {"bags": 4}},
        "boost": {"brands": {"acme": 2}, "tags": {"sale": 1.5, "eco": 3}},
    }
    items = dict(answer(recommender, k=9, merchandising=spec))

    def factor(i: int) -> float:
        f = 0.25 if CATEGORY[i] == "bags" else 1.0
        f *= 2 if BRANDS[i] == "acme" else 1
        return f * (1.5 if "sale" in TAGS[i] else 1) * (3 if "eco" in TAGS[i] else 1)

    # i00: bags, acme, sale: 0.25 × 2 × 1.5; i03: shoes, acme, eco: 2 × 3; i01: none.
    for item_id in ("i00", "i03", "i01", "i08"):
        expected = cold_score(item_id) * factor(index(item_id))
        assert items[item_id] == pytest.approx(expected, abs=1e-6), item_id


def test_a_request_factor_replaces_the_bundles_for_that_name(tmp_path):
    bundle = load_bundle(
        write_merchandised_bundle(tmp_path, policy(boost={"brands": {"bolt": 10, "acme": 2}}))
    )
    recommender = Recommender(bundle, budget_ms=math.inf)
    own = dict(answer(recommender, k=9))
    assert own["i01"] == pytest.approx(cold_score("i01") * 10, abs=1e-6)
    bury = dict(answer(recommender, k=9, merchandising={"bury": {"brands": {"bolt": 2}}}))
    assert bury["i01"] == pytest.approx(cold_score("i01") / 2, abs=1e-6)
    assert bury["i00"] == pytest.approx(cold_score("i00") * 2, abs=1e-6)  # the bundle's stays


# ---------------------------------------------------------------- pins
@pytest.mark.parametrize("size", [10, 5_000])  # pairs under and over the broadcast limit
def test_member_agrees_with_numpys_isin(seed, size):
    rng = np.random.default_rng(seed)
    values, of = rng.integers(0, 2 * size, size), rng.integers(0, 2 * size, 50)
    assert member(values, of).tolist() == np.isin(values, of).tolist()
    assert member(values, of[:0]).tolist() == [False] * size


def test_place_pins_puts_each_pin_at_its_position_and_keeps_k():
    assert place_pins(["a", "b", "c", "d"], [(0, "x"), (2, "c")], 4) == ["x", "a", "c", "b"]
    assert place_pins(["a", "b"], [(3, "x")], 4) == ["a", "b", "x"]  # past a short list: its end
    assert place_pins(["a", "b"], [(1, "x")], 1) == ["a"]  # at or past k: not shown


def test_pinned_items_take_their_positions_and_keep_their_score_when_ranked(recommender):
    plain = answer(recommender, k=6)
    pinned = answer(recommender, k=6, merchandising={"pins": {"i30": 1, "i03": 3}})
    rest = [p for p in plain if p[0] != "i03"]
    assert pinned == [("i30", 0.0), rest[0], plain[3], *rest[1:4]]


def test_a_pin_out_of_stock_bought_excluded_in_the_cart_or_filtered_is_not_shown(recommender):
    """i07 is out of stock, u-regular bought i05, i30 is excluded, i31 in the cart and i33
    tagged eco: pinned, none shows, and the answer is the one without those pins."""
    request = {
        "k": 5,
        "user_id": "u-regular",
        "exclude": ["i30"],
        "context": {"cart": ["i31"]},
    }
    filters = {"filters": {"tags": ["eco"]}}
    pins = {"i07": 1, "i05": 2, "i30": 3, "i31": 4, "i33": 5}
    shown = answer(recommender, **request, merchandising=filters | {"pins": pins})
    assert len(shown) == 5 and not set(pins) & set(ids(shown))
    assert shown == answer(recommender, **request, merchandising=filters)


def test_a_request_pin_replaces_the_bundles_pin_of_its_position_or_item(tmp_path):
    bundle = load_bundle(write_merchandised_bundle(tmp_path, policy(pins={"i30": 1, "i32": 2})))
    recommender = Recommender(bundle, budget_ms=math.inf)
    assert ids(answer(recommender, k=3))[:2] == ["i30", "i32"]
    assert ids(answer(recommender, k=3, merchandising={"pins": {"i34": 1}}))[:2] == ["i34", "i32"]
    # i30's own pin moves it; i32 keeps the bundle's position 2, and i00 (the most popular)
    # takes the first place, which no pin holds now.
    assert ids(answer(recommender, k=3, merchandising={"pins": {"i30": 3}})) == [
        "i00",
        "i32",
        "i30",
    ]


# ---------------------------------------------------------------- validation
def test_an_unknown_name_is_a_422_naming_the_field_and_what_is_allowed(bundle_app):
    cases = [
        (
            {"filters": {"brands": ["acme", "acem"]}},
            "$.merchandising.filters.brands[1]",
            "acme, bolt",
        ),
        (
            {"only": {"categories": ["hat"]}},
            "$.merchandising.only.categories[0]",
            "bags, books, hats",
        ),
        (
            {"boost": {"tags": {"sales": 2}}},
            '$.merchandising.boost.tags["sales"]',
            "eco, new, sale",
        ),
        ({"pins": {"nope": 1}}, '$.merchandising.pins["nope"]', "not in this bundle's catalog"),
        ({"pins": {"i01": 1, "i02": 1}}, '$.merchandising.pins["i02"]', "position 1 is already"),
        (
            {"boost": {"brands": {"acme": 2}}, "bury": {"brands": {"Acme": 2}}},
            '$.merchandising.bury.brands["Acme"]',
            "both boosted and buried",
        ),
    ]
    for spec, field, allowed in cases * 2:  # twice: a refused policy is never kept compiled
        response = bundle_app.post("/v1/recommend", json={"merchandising": spec})
        assert response.status_code == 422, spec
        error = response.json()["error"]
        assert error["field"] == field and allowed in error["message"], error


def test_limits_on_sizes_and_factors_are_422s(bundle_app):
    too_many = {
        "pins": {f"i{i:02d}": i + 1 for i in range(40)} | {f"x{i}": 60 + i for i in range(11)}
    }
    cases = [
        (too_many, "$.merchandising.pins"),
        ({"filters": {"tags": ["sale"] * 101}}, "$.merchandising.filters.tags"),
        ({"boost": {"brands": {"acme": 101}}}, "$.merchandising.boost.brands"),
        ({"bury": {"brands": {"acme": 0.5}}}, "$.merchandising.bury.brands"),
        ({"pins": {"i01": 0}}, "$.merchandising.pins"),
        ({"filters": {"colours": ["red"]}}, "$.merchandising.filters"),
    ]
    for spec, field in cases:
        response = bundle_app.post("/v1/recommend", json={"merchandising": spec})
        assert response.status_code == 422, spec
        assert response.json()["error"]["field"].startswith(field), response.json()


@pytest.fixture(scope="module")
def bundle_app(bundle):
    with TestClient(create_app(Settings(bundle_dir=str(bundle.directory)))) as client:
        yield client


def test_a_catalog_of_thousands_of_names_answers_with_the_closest_few():
    names = sorted(f"brand-{i:04d}" for i in range(3000)) + ["acme", "acne", "zed"]
    table = ItemTable(
        np.array([b"a"]),
        np.zeros(1, int),
        [],
        np.ones(1),
        np.ones(1, bool),
        np.ones(1),
        np.ones(1),
        brand=np.zeros(1, np.int16),
        brand_names=names,
    )
    with pytest.raises(ValidationError) as info:
        Vocabulary(table).code("brands", "acem", "$.b")
    assert info.value.message == (
        "brand 'acem' is not one of this bundle's 3,003 brands; closest: acme, acne"
    )


def test_a_bundle_whose_own_policy_names_what_its_catalog_lacks_is_refused(tmp_path):
    directory = write_merchandised_bundle(tmp_path, policy(filters={"brands": ["nobody"]}))
    with pytest.raises(BundleError) as info:
        load_bundle(directory)
    assert info.value.file == "manifest.json"
    assert "models.merchandising.filters.brands[0]" in info.value.message
    assert "acme, bolt" in info.value.message


def test_the_openapi_document_describes_merchandising_with_its_limits():
    schemas = build_document()["components"]["schemas"]
    assert "merchandising" in schemas["RecommendRequest"]["properties"]
    merchandising = schemas["Merchandising"]["properties"]
    assert set(merchandising) == {"pins", "boost", "bury", "filters", "only"}
    assert merchandising["pins"]["maxProperties"] == 50
    assert schemas["Names"]["properties"]["brands"]["maxItems"] == 100
    factor = schemas["Factors"]["properties"]["tags"]["additionalProperties"]
    assert (factor["minimum"], factor["maximum"]) == (1.0, 100.0)


# ---------------------------------------------------------------- the build's side
def test_catalog_tags_are_split_on_bars_trimmed_lower_cased_and_deduplicated():
    import pandas as pd

    from export.config import BuildConfig
    from export.validate import normalize_catalog

    raw = pd.DataFrame({"item_id": ["1", "2", "3"], "tags": [" Sale | Vegan|sale", None, ""]})
    assert normalize_catalog(raw, BuildConfig())["tags"].tolist() == ["sale|vegan", "", ""]


def test_a_config_with_two_pins_at_one_position_is_refused_naming_it(tmp_path):
    from export.config import load_config
    from export.errors import ConfigError

    path = tmp_path / "build.toml"
    path.write_text('[merchandising]\npins = {"a" = 1, "b" = 1}\n')
    with pytest.raises(ConfigError, match=r'merchandising\.pins\["b"\]: position 1 is already'):
        load_config(path)


@pytest.mark.slow
# After a served app in the same process (the tests above), scipy's OpenBLAS can report two
# threads inside export's own one-thread limit, and implicit warns: a matter of speed only.
@pytest.mark.filterwarnings("ignore:OpenBLAS is configured to use:RuntimeWarning")
def test_an_export_ships_brands_tags_and_its_policy_and_filters_its_fallback_content(
    shop_files, tmp_path
):
    """A build from the simulated shop with tags in its catalog and a [merchandising] section:
    the bundle carries both, and no fallback list names a filtered brand."""
    import pandas as pd

    from export.config import load_config
    from export.pipeline import export_bundle

    catalog = pd.read_parquet(shop_files["catalog"])
    catalog["tags"] = np.where(np.arange(len(catalog)) % 2 == 0, "Even|all", "all")
    catalog.to_csv(tmp_path / "catalog.csv", index=False)
    brand = sorted(set(catalog["brand"].str.strip().str.lower()) - {""})[0]
    config = tmp_path / "build.toml"
    config.write_text(
        f'[merchandising]\nfilters = {{brands = ["{brand}"]}}\nboost = {{tags = {{even = 2.0}}}}\n'
    )
    out = tmp_path / "bundle"
    export_bundle(
        [shop_files["events"]],
        out,
        load_config(config),
        tmp_path / "catalog.csv",
        evaluate=False,
        quiet=True,
        report=False,
    )
    bundle = load_bundle(out)
    table = bundle.model.items
    assert brand in table.brand_names and table.tag_names == ["all", "even"]
    assert bundle.manifest.models.merchandising == load_config(config).merchandising
    filtered = table.brand_names.index(brand)
    fallback = json.loads((out / "fallback.json").read_text())["contexts"]
    for pairs in fallback.values():
        found = table.positions([item for item, _ in pairs])
        assert (table.brand[found] != filtered).all()
    response = Recommender(bundle).recommend(
        RecommendRequest(k=20, context=Context(device="mobile"))
    )
    assert response.items and all(
        table.brand[table.positions([it.item_id])[0]] != filtered for it in response.items
    )

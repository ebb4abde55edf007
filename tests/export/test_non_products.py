"""Non-product items (postage, carriage, fees...): flagged by the catalog, the config's
patterns or the heuristic, reported, kept in the events, and never served."""

import json
import re

import numpy as np
import pandas as pd
import pytest

from edge.bundle import load_bundle
from edge.recommend import Recommender
from edge.schemas import Context, RecommendRequest, Session, SessionEvent
from edge.scoring import accessories
from export.config import BuildConfig, CatalogConfig, load_config
from export.errors import ConfigError
from export.interactions import build_universe, item_facts
from export.io import read_table
from export.non_products import find_non_products, id_shape, withhold
from export.pipeline import export_bundle
from export.stages.read import Sources, read_inputs
from export.validate import QualityReport, normalize_catalog, normalize_events
from tests.conftest import SAMPLE, UCI_CONFIG

NO_PATTERNS = CatalogConfig()


def log(rows):
    """Validated events from (session, item, title) rows, one purchase each, a minute apart."""
    raw = pd.DataFrame(rows, columns=["session_id", "item_id", "title"])
    raw["ts"] = pd.date_range("2026-01-01", periods=len(raw), freq="min", tz="UTC").astype(str)
    raw["type"] = "purchase"
    return normalize_events(raw, BuildConfig(), QualityReport())


def flagged_in(events, catalog, config):
    """`find_non_products` of a validated log."""
    return find_non_products(item_facts(events), events["session_id"].nunique(), catalog, config)


def products(n, first=10_001):
    """UCI-shaped product ids (5 digits), with plain product titles."""
    return [(str(first + i), f"PRODUCT {i}") for i in range(n)]


@pytest.mark.parametrize(
    ("item_id", "shape"),
    [("85123A", "9A"), ("71053", "9"), ("POST", "A"), ("C2", "A9"), ("gift_0001_20", "A_9_9")],
)
def test_an_id_shape_is_its_runs_of_digits_and_letters(item_id, shape):
    assert id_shape(item_id) == shape


def test_the_heuristic_flags_postage_carriage_and_manual_lines_of_the_uci_sample():
    config = load_config(UCI_CONFIG)
    events = normalize_events(read_table(SAMPLE), config, QualityReport())
    found = flagged_in(events, None, NO_PATTERNS)
    assert {"POST", "DOT", "C2", "M"} <= set(found.by["heuristic"])
    # Products, five digits and an optional letter, keep their place, even those sold online
    # under another scheme (DCGS...: party bags, an ashtray)
    assert not [i for i in found.by["heuristic"] if re.fullmatch(r"\d{5}[A-Za-z]*|DCGS.*", i)]
    assert found.by["heuristic"][0] == "POST"  # most events first: the report names it first


def test_the_heuristic_needs_an_odd_id_and_a_service_title_or_a_place_in_most_baskets():
    rows = []
    for s in range(200):
        rows += [(f"s{s}", *products(200)[s]), (f"s{s}", "10999", "POSTAGE STAMP TEA TOWEL")]
        if s % 2:
            rows.append((f"s{s}", "SHIP", ""))  # no title, in half the baskets
    rows += [("s0", "C2", "CARRIAGE"), ("s1", "DCGS0003", "BOXED GLASS ASHTRAY")]
    found = flagged_in(log(rows), None, NO_PATTERNS)
    # 10999: a service word, in every basket, but shaped as the products are
    assert found.by["heuristic"] == ["SHIP", "C2"]


@pytest.mark.parametrize(
    "ids",
    [
        [str(1_000_000 + 37 * i) for i in range(300)] + ["981", "12"],  # OTTO: digits only
        [f"{'ABCP'[i % 4]}{i % 90}" for i in range(300)],  # e-shop clothing: A13, P4...
    ],
    ids=["numbers of any length", "letter and number"],
)
def test_a_log_whose_ids_share_one_shape_has_nothing_flagged(ids):
    rows = [(f"s{i}", item, "") for i, item in enumerate(ids)]
    rows += [(f"s{i}", ids[0], "shipping fee") for i in range(300)]  # in every basket
    found = flagged_in(log(rows), None, NO_PATTERNS)
    assert found.by["heuristic"] == []


def test_the_simulated_shop_has_nothing_flagged(shop):
    events = normalize_events(shop.events, BuildConfig(), QualityReport())
    catalog = normalize_catalog(shop.catalog, BuildConfig())
    assert flagged_in(events, catalog, NO_PATTERNS).ids == set()


def test_config_patterns_flag_by_id_and_by_title_in_any_case():
    rows = [*(("s1", *p) for p in products(5)), ("s1", "POST", ""), ("s2", "POSTER", "")]
    rows += [("s3", "X1", "Carriage"), ("s4", "X1", "Carriage"), ("s5", "X1", "mug")]
    rows += [("s6", "X2", "mug"), ("s7", "X2", "mug"), ("s8", "X2", "carriage")]
    config = CatalogConfig(["^POST$"], ["^carriage$"], non_product_heuristic=False)
    found = flagged_in(log(rows), None, config)
    # X2 is named "carriage" once, but "mug" most often: its title is "mug"
    assert found.by == {"config": ["X1", "POST"]}  # most events first


def test_a_catalog_title_wins_over_what_the_events_call_an_item():
    rows = [("s1", "X1", "Carriage"), ("s2", "X2", "mug")]
    catalog = normalize_catalog(
        pd.DataFrame({"item_id": ["X1", "X2"], "title": ["Carriage clock", "Carriage"]}),
        BuildConfig(),
    )
    config = CatalogConfig(non_product_titles=["^carriage$"], non_product_heuristic=False)
    assert flagged_in(log(rows), catalog, config).by["config"] == ["X2"]


def test_the_catalog_column_flags_true_yes_and_1_in_any_case_and_nothing_else():
    raw = pd.DataFrame(
        {
            "item_id": list("abcdefgh"),
            "non_product": ["true", " Yes", "1", "0", "", "no", None, "FALSE"],
        }
    )
    catalog = normalize_catalog(raw, BuildConfig())
    found = flagged_in(log([("s1", "a", "")]), catalog, NO_PATTERNS)
    assert sorted(found.by["catalog"]) == ["a", "b", "c"]
    no_column = normalize_catalog(raw[["item_id"]], BuildConfig())
    assert "catalog" not in flagged_in(log([("s1", "a", "")]), no_column, NO_PATTERNS).by


@pytest.mark.parametrize("key", ["non_product_ids", "non_product_titles"])
def test_a_pattern_that_is_no_regular_expression_stops_the_build_naming_it(tmp_path, key):
    path = tmp_path / "config.toml"
    path.write_text(f'[catalog]\n{key} = ["^POST$", "(C2"]\n')
    with pytest.raises(ConfigError, match=rf"catalog\.{key}\[1\]: '\(C2' is not a regular"):
        load_config(path)


def test_the_uci_config_flags_every_non_product_it_lists():
    config = load_config(UCI_CONFIG)
    ids = ["POST", "DOT", "C2", "M", "m", "D", "S", "B", "CRUK", "PADS", "AMAZONFEE"]
    ids += ["BANK CHARGES", "gift_0001_20", "85123A", "22423", "POSTAGE", "DCGS0003"]
    rows = [(f"s{i}", item, "") for i, item in enumerate(ids)]
    found = flagged_in(log(rows), None, config.catalog)
    assert set(found.by["config"]) == set(ids[:13])


def test_withheld_items_are_out_of_stock_and_the_rest_unchanged():
    events = log([("s1", "a", ""), ("s1", "POST", ""), ("s2", "b", "")])
    universe = build_universe(events, None)
    flagged = flagged_in(events, None, CatalogConfig(["^POST$"]))
    withheld = withhold(universe, flagged)
    assert dict(zip(withheld.ids, withheld.in_stock.tolist())) == {
        "POST": False,
        "a": True,
        "b": True,
    }
    assert universe.in_stock.all()  # the universe given is not changed


def test_the_build_reports_what_it_flagged_and_keeps_their_events(tmp_path):
    path = tmp_path / "events.csv"
    rows = [f"2026-01-0{1 + s % 9}T10:00:00Z,u{s},{10_001 + s},purchase,s{s}" for s in range(100)]
    rows += [f"2026-01-0{1 + s % 9}T10:00:01Z,u{s},POST,purchase,s{s}" for s in range(0, 100, 2)]
    path.write_text("ts,user_id,item_id,type,session_id\n" + "\n".join(rows) + "\n")
    said = []
    data = read_inputs(Sources((path,)), BuildConfig(), said.append)
    assert "non-products (heuristic)" in said[0] and "never recommended: POST" in said[0]
    assert data.lineage.non_products["heuristic"].items == 1
    assert data.lineage.non_products["heuristic"].examples == ["POST"]
    assert (data.events["item_id"] == "POST").sum() == 50  # kept: real baskets
    assert not data.universe.in_stock[data.universe.ids.index("POST")]


# ------------------------------------------------------------------ nothing serves postage
@pytest.fixture(scope="module")
def postage_bundle(shop, tmp_path_factory):
    """The simulated shop with postage on every German basket and viewed in every German
    session, as UCI has it: the most popular item, flagged by the heuristic alone."""
    events = shop.events.head(4_000).copy()
    events["title"] = ""
    german = events[events["country"] == "de"].drop_duplicates("session_id", keep="last")
    postage = pd.concat([german.assign(type="purchase"), german.assign(type="view")])
    postage = postage.assign(item_id="POST", title="POSTAGE", price=3.0, qty=1)
    events = pd.concat([events, postage]).sort_values("ts", kind="stable")
    directory = tmp_path_factory.mktemp("postage")
    events.to_csv(directory / "events.csv", index=False)
    out = directory / "bundle"
    manifest = export_bundle(
        [directory / "events.csv"], out, BuildConfig(), quiet=True, report=False, evaluate=False
    )
    assert manifest.lineage.non_products["heuristic"].examples == ["POST"]
    return load_bundle(out, scan_in_background=False), german["user_id"].tolist()


def test_postage_would_top_the_popular_lists_without_its_flag(postage_bundle):
    bundle, _ = postage_bundle
    [post] = bundle.model.items.positions(["POST"]).tolist()
    assert post == int(np.argmax(bundle.model.popularity.overall))


def test_postage_is_in_no_fallback_content(postage_bundle):
    bundle, _ = postage_bundle
    contexts = json.loads((bundle.directory / "fallback.json").read_text())["contexts"]
    assert "country=de" in contexts
    assert all(item != "POST" for ranked in contexts.values() for item, _ in ranked)


def test_postage_is_in_no_answer_top_up_or_accessories(postage_bundle):
    bundle, customers = postage_bundle
    recommender = Recommender(bundle)
    model = bundle.model
    [post] = model.items.positions(["POST"]).tolist()
    # An item that postage goes with, by both neighbour graphs: what its accessories would be
    graph = model.regression
    anchor = next(i for i in range(len(model.items)) if post in _neighbours(graph, i) and i != post)
    assert any(post in _neighbours(model.covisitation, i) for i in range(len(model.items)))
    session = Session(
        events=[
            SessionEvent(type="view", item_id="POST"),
            SessionEvent(type="view", item_id=model.items.id_of(anchor), dwell_ms=60_000),
        ]
    )
    all_ids = model.items.ids
    # All but a few popular items excluded: the ranked answer is short and the top-up fills it
    few = {item for item, _ in bundle.fallback["country=de"][:15]}
    everything_but_a_few = [i for i in all_ids if i not in few and i != "POST"]
    requests = [
        RecommendRequest(context=Context(country="de"), k=20),
        *(
            RecommendRequest(user_id=u, session=session, context=Context(country="de"), k=50)
            for u in customers[:20]
        ),
        RecommendRequest(context=Context(country="de"), k=20, exclude=everything_but_a_few),
    ]
    fired = []
    for request in requests:
        answer = recommender.recommend(request)
        assert answer.items and answer.fallback is None
        fired += answer.rules_fired
        shown = [it.item_id for it in answer.items] + [i for f in fired for i in f.items]
        assert "POST" not in shown
    assert answer.items[-1].score == 0.0  # the last request was topped up (popular, scored 0)
    assert any(f.rule == "long-dwell" and f.items for f in fired)  # accessories were offered
    blocked = np.empty(0, dtype=np.int64)
    for item in all_ids:
        assert "POST" not in accessories(model, item, 10, blocked)


def _neighbours(graph, i):
    return graph.indices[graph.indptr[i] : graph.indptr[i + 1]].tolist()

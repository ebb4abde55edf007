"""A small bundle written by hand through `edge.bundle`'s writers: what the edge's unit tests
serve from. It needs the edge's own dependencies plus `onnx` (whose `helper` makes the two
graphs), never the build pipeline or its libraries, so a bug in the build fails the build's
tests and the integration tests, not every edge test.

Everything is a plain, stated function of an item's index, so a test derives what to expect
from the constants here rather than from the code it tests:

- 40 items "i00".."i39"; item i is in category i % 5, costs 5 + i (i39's price is unknown),
  is out of stock when in OUT_OF_STOCK, and is less popular the larger i is;
- co-visitation: i's neighbours are i+5 (score 8), i+10 (4), i+1 (2) and i+2 (1), mod 40;
  item-to-item regression: i+20 (8) and i+3 (1). i39 has no neighbours in either. Scores are
  powers of two from 1 to 8, which one-byte quantization keeps exactly;
- the ranker's purchase probability is sigmoid(pop_overall + 0.1 covis_score - 2) (`ranker_score`);
- the visitor graph: segment "spenders" when monetary > 100, else "browsers" (a shop rule,
  "cart-abandoners", wins over both), and intent sigmoid(1.5 cart_adds + 0.05 dwell_s - 2).
"""

from __future__ import annotations

import math
from pathlib import Path

import msgspec
import numpy as np
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from onnx import TensorProto, helper

from edge.bandits import Bandit, BanditTable
from edge.bundle import (
    BANDITS,
    COVISITATION,
    EMBEDDINGS,
    EXPERIMENTS,
    ITEMS,
    POPULARITY,
    REGRESSION,
    RULES,
    VISITOR,
    write_bundle,
)
from edge.bundle.codecs import (
    embeddings_to_tree,
    graph_to_tree,
    items_to_tree,
    popularity_to_tree,
)
from edge.bundle.manifest import (
    BanditsInfo,
    BanditSlotInfo,
    EmbeddingsInfo,
    ExperimentsInfo,
    IntentInfo,
    Models,
    RankerInfo,
    RankerTraining,
    RulesInfo,
    SegmentsInfo,
    Serving,
)
from edge.experiments import Experiment, ExperimentTable
from edge.intent import INTENT_FEATURES, IntentLabels
from edge.rules import DEFAULT_RULES, RuleBook
from edge.schemas import Profile
from edge.scoring import FEATURES
from edge.segments import SEGMENT_FEATURES, SegmentRule
from edge.visitor import INTENT_INPUT, INTENT_OUTPUT, SEGMENT_INPUT, SEGMENT_OUTPUT

N_ITEMS = 40
IDS = [f"i{i:02d}" for i in range(N_ITEMS)]
INDEX = np.arange(N_ITEMS)
CATEGORY_NAMES = ["bags", "books", "hats", "shoes", "toys"]
CATEGORY = INDEX % len(CATEGORY_NAMES)
PRICE = np.where(INDEX == N_ITEMS - 1, np.nan, 5.0 + INDEX).astype(np.float32)
# Display titles: one unknown (""), one beyond ASCII.
TITLES = ["" if i == 3 else "Écharpe « laine »" if i == 5 else f"Item {i}" for i in INDEX]
OUT_OF_STOCK = frozenset({7, 15, 23})
IN_STOCK = ~np.isin(INDEX, sorted(OUT_OF_STOCK))
AGE_DAYS = (2.0 * INDEX).astype(np.float32)
REPEAT_RATE = ((INDEX % 4) / 4).astype(np.float32)

EVENT_WEIGHTS = {
    "view": 1.0,
    "add_to_cart": 4.0,
    "remove_from_cart": 0.0,
    "purchase": 8.0,
    "click": 1.0,
    "impression": 0.0,
}

# Item factors: a category's items share a direction, with a little of the next category's;
# norms fall with the index, so the rows' storage order is the items' order.
FACTOR_DIM = len(CATEGORY_NAMES)
FACTORS = (
    np.eye(FACTOR_DIM)[CATEGORY] * (2.0 - INDEX / N_ITEMS)[:, None]
    + 0.25 * np.eye(FACTOR_DIM)[(CATEGORY + 1) % FACTOR_DIM]
).astype(np.float32)
REGULARIZATION, ALPHA = 0.05, 2.0

COVISITATION_OFFSETS = {5: 8.0, 10: 4.0, 1: 2.0, 2: 1.0}  # neighbour i + offset: its score
REGRESSION_OFFSETS = {20: 8.0, 3: 1.0}
NO_NEIGHBOURS = N_ITEMS - 1  # the item without neighbours in either graph


def neighbours(offsets: dict[int, float]) -> dict[int, dict[int, float]]:
    """Per item, its neighbours and their scores, as the graphs hold them."""
    return {
        i: {} if i == NO_NEIGHBOURS else {(i + o) % N_ITEMS: s for o, s in offsets.items()}
        for i in range(N_ITEMS)
    }


def neighbour_scores(
    offsets: dict[int, float], weighted: list[tuple[str, float]], decay: float = 1.0
) -> np.ndarray:
    """Each item's summed neighbour score over the `weighted` items (most recent first, each
    weight decayed by `decay` per step of recency), as a graph of `offsets` gives it."""
    table = neighbours(offsets)
    scores = np.zeros(N_ITEMS)
    for rank, (item, weight) in enumerate(weighted):
        for neighbour, score in table[IDS.index(item)].items():
            scores[neighbour] += weight * decay**rank * score
    return scores


def _scaled(raw: np.ndarray) -> np.ndarray:
    """1.0 is an average item, as export scales popularity."""
    return (raw * (raw.size / raw.sum())).astype(np.float32)


_FALLING = (N_ITEMS - INDEX).astype(np.float64)  # 40 .. 1: the first items are the popular ones
POP_OVERALL = _scaled(_FALLING)
CONTEXT_POPULARITY = {
    "device=mobile": _scaled(_FALLING * np.where(INDEX % 2 == 1, 3.0, 1.0)),
    "device=desktop": _scaled(_FALLING * np.where(INDEX % 2 == 0, 3.0, 1.0)),
    "country=de": _scaled(_FALLING * np.where(CATEGORY == 1, 4.0, 1.0)),  # books
    "hour=evening": _scaled(_FALLING * np.where(CATEGORY == 4, 4.0, 1.0)),  # toys
}
POPULAR_PER_SOURCE = 10  # `CandidateSizes().popular`, the default this bundle serves with


def ranked_by(scores: np.ndarray) -> list[int]:
    """Items by descending score, ties by index."""
    return sorted(range(scores.size), key=lambda i: (-float(scores[i]), i))


def fallback_content() -> dict[str, list[tuple[str, float]]]:
    """Per context key, the in-stock items by popularity, as export writes fallback.json."""

    def in_stock(scores: np.ndarray) -> list[tuple[str, float]]:
        return [(IDS[i], round(float(scores[i]), 4)) for i in ranked_by(scores) if IN_STOCK[i]]

    return {"all": in_stock(POP_OVERALL)} | {
        key: in_stock(scores) for key, scores in CONTEXT_POPULARITY.items()
    }


# ---------------------------------------------------------------- the ranker
RANKER_WEIGHTS = {"pop_overall": 1.0, "covis_score": 0.1}
RANKER_BIAS = -2.0


def ranker_score(pop_overall: float, covis_score: float = 0.0) -> float:
    """The purchase probability the ranker graph computes, in float64."""
    z = RANKER_WEIGHTS["pop_overall"] * pop_overall + RANKER_WEIGHTS["covis_score"] * covis_score
    return 1.0 / (1.0 + math.exp(-(z + RANKER_BIAS)))


def _logistic_head(
    nodes: list, source: str, columns: list[int], weights: list[float], bias: float, out: str
) -> list:
    """Nodes computing [1 - p, p] of p = sigmoid(source[:, columns] · weights + bias) into
    `out`. The columns are gathered first: a NaN feature (intent, segment) in another column
    would turn a product with a zero weight into NaN."""
    prefix = out + "_"
    initializers = [
        helper.make_tensor(prefix + "columns", TensorProto.INT64, [len(columns)], columns),
        helper.make_tensor(prefix + "weights", TensorProto.FLOAT, [len(weights), 1], weights),
        helper.make_tensor(prefix + "bias", TensorProto.FLOAT, [1], [bias]),
        helper.make_tensor(prefix + "one", TensorProto.FLOAT, [1], [1.0]),
    ]
    nodes += [
        helper.make_node("Gather", [source, prefix + "columns"], [prefix + "x"], axis=1),
        helper.make_node("MatMul", [prefix + "x", prefix + "weights"], [prefix + "z0"]),
        helper.make_node("Add", [prefix + "z0", prefix + "bias"], [prefix + "z"]),
        helper.make_node("Sigmoid", [prefix + "z"], [prefix + "p"]),
        helper.make_node("Sub", [prefix + "one", prefix + "p"], [prefix + "q"]),
        helper.make_node("Concat", [prefix + "q", prefix + "p"], [out], axis=1),
    ]
    return initializers


def _model(nodes: list, name: str, inputs: list, outputs: list, initializers: list) -> bytes:
    graph = helper.make_graph(nodes, name, inputs, outputs, initializers)
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", ONNX_OPSET)])
    return model.SerializeToString()


ONNX_OPSET = 17


def ranker_graph() -> bytes:
    """features float[N, len(FEATURES)] -> label int64[N], probabilities float[N, 2], as a
    classifier converted for the edge names them."""
    nodes: list = []
    columns = [FEATURES.index(name) for name in RANKER_WEIGHTS]
    initializers = _logistic_head(
        nodes, "features", columns, list(RANKER_WEIGHTS.values()), RANKER_BIAS, "probabilities"
    )
    initializers += [
        helper.make_tensor("half", TensorProto.FLOAT, [1], [0.5]),
        helper.make_tensor("flat", TensorProto.INT64, [1], [-1]),
    ]
    nodes += [
        helper.make_node("Greater", ["probabilities_p", "half"], ["positive"]),
        helper.make_node("Cast", ["positive"], ["label_2d"], to=TensorProto.INT64),
        helper.make_node("Reshape", ["label_2d", "flat"], ["label"]),
    ]
    return _model(
        nodes,
        "small_ranker",
        [helper.make_tensor_value_info("features", TensorProto.FLOAT, [None, len(FEATURES)])],
        [
            helper.make_tensor_value_info("label", TensorProto.INT64, [None]),
            helper.make_tensor_value_info("probabilities", TensorProto.FLOAT, [None, 2]),
        ],
        initializers,
    )


# ---------------------------------------------------------------- the visitor graph
CLUSTERS = ["browsers", "spenders"]  # cluster 1 when monetary > SPENDER_MONETARY
SPENDER_MONETARY = 100.0
SEGMENT_RULES = [SegmentRule("cart-abandoners", {"cart_abandon_share": {"ge": 1.0}})]
INTENT_WEIGHTS = {"cart_adds": 1.5, "dwell_s": 0.05}
INTENT_BIAS = -2.0


def segment_of(monetary: float) -> str:
    """The cluster the visitor graph assigns (before the shop's rules)."""
    return CLUSTERS[int(monetary > SPENDER_MONETARY)]


def intent_probability(cart_adds: float, dwell_s: float) -> float:
    z = INTENT_WEIGHTS["cart_adds"] * cart_adds + INTENT_WEIGHTS["dwell_s"] * dwell_s
    return 1.0 / (1.0 + math.exp(-(z + INTENT_BIAS)))


def visitor_graph() -> bytes:
    """The two heads of `visitor.onnx`, with the input and output names the edge reads."""
    nodes: list = []
    initializers = [
        helper.make_tensor(
            "monetary_column", TensorProto.INT64, [1], [SEGMENT_FEATURES.index("monetary")]
        ),
        helper.make_tensor("spender_monetary", TensorProto.FLOAT, [1], [SPENDER_MONETARY]),
        helper.make_tensor("flat", TensorProto.INT64, [1], [-1]),
    ]
    nodes += [
        helper.make_node("Gather", [SEGMENT_INPUT, "monetary_column"], ["monetary"], axis=1),
        helper.make_node("Greater", ["monetary", "spender_monetary"], ["spends"]),
        helper.make_node("Cast", ["spends"], ["cluster_2d"], to=TensorProto.INT64),
        helper.make_node("Reshape", ["cluster_2d", "flat"], [SEGMENT_OUTPUT]),
    ]
    columns = [INTENT_FEATURES.index(name) for name in INTENT_WEIGHTS]
    initializers += _logistic_head(
        nodes, INTENT_INPUT, columns, list(INTENT_WEIGHTS.values()), INTENT_BIAS, INTENT_OUTPUT
    )
    return _model(
        nodes,
        "small_visitor",
        [
            helper.make_tensor_value_info(
                SEGMENT_INPUT, TensorProto.FLOAT, [None, len(SEGMENT_FEATURES)]
            ),
            helper.make_tensor_value_info(
                INTENT_INPUT, TensorProto.FLOAT, [None, len(INTENT_FEATURES)]
            ),
        ],
        [
            helper.make_tensor_value_info(SEGMENT_OUTPUT, TensorProto.INT64, [None]),
            helper.make_tensor_value_info(INTENT_OUTPUT, TensorProto.FLOAT, [None, 2]),
        ],
        initializers,
    )


# ---------------------------------------------------------------- profiles
LONG_AGO = 1_700_000_000.0  # 2023-11-14: past any quiet period after a purchase
PROFILES = {
    # The most purchases: a bags (category 0) buyer. Their stored segment is not the one the
    # graph would give their spend, so an answer that carries it shows the stored one won.
    "u-regular": Profile(
        recent_items=["i00", "i05", "i10"],
        recent_weights=[8.0, 8.0, 1.0],
        bought_items=["i00", "i05"],
        n_events=12,
        n_purchases=2,
        last_ts=LONG_AGO,
        monetary=15.0,
        mean_price=7.5,
        segment="spenders",
        visits_since_purchase=1,
        last_purchase_ts=LONG_AGO,
    ),
    # Comes back without buying: the loyalty rule's customer.
    "u-loyal": Profile(
        recent_items=["i12", "i17"],
        recent_weights=[1.0, 1.0],
        bought_items=[],
        n_events=6,
        n_purchases=0,
        last_ts=LONG_AGO,
        monetary=0.0,
        mean_price=0.0,
        segment="browsers",
        visits_since_purchase=3,
    ),
    # Known, with no history yet and no segment.
    "u-new": Profile(
        recent_items=[],
        recent_weights=[],
        bought_items=[],
        n_events=0,
        n_purchases=0,
        last_ts=LONG_AGO,
        monetary=0.0,
        mean_price=0.0,
    ),
}


# ---------------------------------------------------------------- the bundle
def array_trees(rows: int | None = None) -> dict[str, dict]:
    """Each array file's tree; `rows`: embedding rows kept (all by default)."""

    def graph(offsets: dict[int, float]) -> dict:
        table = neighbours(offsets)
        lengths = [len(table[i]) for i in range(N_ITEMS)]
        indptr = np.concatenate([[0], np.cumsum(lengths)]).astype(np.int32)
        indices = np.array([j for i in range(N_ITEMS) for j in table[i]], dtype=np.int32)
        scores = np.array([s for i in range(N_ITEMS) for s in table[i].values()], np.float32)
        return graph_to_tree(indptr, indices, scores, quantize=True)  # as export writes them

    return {
        ITEMS: items_to_tree(
            IDS, CATEGORY, CATEGORY_NAMES, PRICE, IN_STOCK, AGE_DAYS, REPEAT_RATE, titles=TITLES
        ),
        EMBEDDINGS: embeddings_to_tree(FACTORS, REGULARIZATION, ALPHA, rows),
        COVISITATION: graph(COVISITATION_OFFSETS),
        REGRESSION: graph(REGRESSION_OFFSETS),
        POPULARITY: popularity_to_tree(
            POP_OVERALL, CONTEXT_POPULARITY, CATEGORY, len(CATEGORY_NAMES)
        ),
    }


def write_small_bundle(
    directory: str | Path,
    *,
    signing_key: Ed25519PrivateKey | None = None,
    rules: RuleBook = DEFAULT_RULES,
    experiments: list[Experiment] | None = None,
    bandits: list[Bandit] | None = None,
    serving: Serving = Serving(),
    visitor: bool = True,
    profiles: dict[str, Profile] | None = None,
) -> Path:
    """Write the small bundle to `directory`; returns it. Rules default to export's defaults;
    experiments and bandits are written only when given; `visitor=False` leaves out the
    segment and intent graph."""
    directory = Path(directory)
    trees = array_trees()
    optional = {RULES: msgspec.msgpack.encode(rules)}
    models = Models(
        event_weights=EVENT_WEIGHTS,
        ranker=RankerInfo(
            features=list(FEATURES),
            training=RankerTraining(
                cases=0,
                cases_with_positive=0,
                rows=0,
                positives=0,
                protocol="none: a fixed logistic function of pop_overall and covis_score",
                label_days=0.0,
                label_cut="1970-01-01T00:00:00+00:00",
                trees=0,
            ),
            estimator="logistic function",
        ),
        embeddings=EmbeddingsInfo(
            method="fixed factors", factors=FACTOR_DIM, dtype="float32", rows=N_ITEMS
        ),
        serving=serving,
        contexts=sorted(CONTEXT_POPULARITY),
        rules=RulesInfo(
            rules=[r.name for r in sorted(rules.rules, key=lambda r: r.priority)],
            guardrails=rules.guardrails,
        ),
    )
    if visitor:
        optional[VISITOR] = visitor_graph()
        models = msgspec.structs.replace(
            models,
            segments=SegmentsInfo(
                clusters=CLUSTERS, rules=SEGMENT_RULES, features=list(SEGMENT_FEATURES)
            ),
            intent=IntentInfo(
                labels=IntentLabels(), features=list(INTENT_FEATURES), estimator="logistic"
            ),
        )
    if experiments:
        optional[EXPERIMENTS] = msgspec.msgpack.encode(ExperimentTable(list(experiments)))
        models = msgspec.structs.replace(
            models,
            experiments=ExperimentsInfo(
                keys=[e.key for e in experiments],
                hash="sha256('<key>:<unit id>')[:4] big-endian / 2**32, by cumulative weight",
            ),
        )
    if bandits:
        optional[BANDITS] = msgspec.msgpack.encode(BanditTable(list(bandits)))
        slots = {
            b.slot: BanditSlotInfo([a.name for a in b.arms], sorted(b.priors)) for b in bandits
        }
        models = msgspec.structs.replace(models, bandits=BanditsInfo(slots))
    write_bundle(
        directory,
        trees,
        ranker_graph(),
        ONNX_OPSET,
        fallback_content(),
        PROFILES if profiles is None else profiles,
        models,
        signing_key=signing_key,
        optional_files=optional,
    )
    return directory

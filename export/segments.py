"""Micro-segments of known customers: per-user features from the event log, K-Means with k
chosen by silhouette (or set in config), a readable label per cluster from its centre, rule
segments that take precedence, and one ONNX graph (log, scaling and K-Means) that becomes the
segment head of the edge's visitor graph."""

from __future__ import annotations

from typing import TypedDict, cast

import numpy as np
import onnx
import pandas as pd
from onnx import NodeProto, TensorProto, helper, numpy_helper
from sklearn.cluster import DBSCAN, KMeans
from sklearn.metrics import adjusted_rand_score, silhouette_score
from sklearn.preprocessing import StandardScaler
from threadpoolctl import threadpool_limits

from edge.segments import LOG_FEATURES, SEGMENT_FEATURES, SegmentRule, matching_rule
from export.errors import CannotTrainError
from export.interactions import ItemUniverse, epoch_seconds, item_codes, most_frequent

WEEK_DAYS = 7.0
SILHOUETTE_SAMPLE = 3_000


def user_features(
    events: pd.DataFrame, universe: ItemUniverse | None = None, end: float | None = None
) -> pd.DataFrame:
    """One row per known customer, `SEGMENT_FEATURES` in real units, plus their preferred
    device and hour bucket (described per segment, not clustered on). An event's category is
    its own, else its item's in `universe`. `end`: the end of the log (epoch seconds) recency
    and tenure are measured to, when `events` are some customers' part of it; else their last
    event."""
    known = (events["user_id"] != "").to_numpy()
    if not known.any():
        return pd.DataFrame(columns=[*SEGMENT_FEATURES, "device", "hour_bucket"])
    # Grouped on integer codes: on the id strings, pandas hashed tens of millions of Python
    # objects per call (at 10 million events, 25 s of each build's segments). User codes
    # follow the ids' order, so rows come in id order, as they did.
    user, user_ids = pd.factorize(events["user_id"].to_numpy()[known], sort=True)
    seconds = epoch_seconds(events["ts"])[known]
    end = seconds.max() if end is None else end
    kind = events["type"]  # categorical after `read_inputs`: compared as codes, not strings
    bought = (kind == "purchase").to_numpy()[known]
    cart = (kind == "add_to_cart").to_numpy()[known]
    viewed = (kind == "view").to_numpy()[known]
    spend = events["qty"].to_numpy(dtype=np.float64)[known]
    spend = spend * events["price"].to_numpy(dtype=np.float64, na_value=np.nan)[known]
    dwell = events["dwell_ms"].to_numpy(dtype=np.float64, na_value=np.nan)[known] / 1000.0
    frame = pd.DataFrame(
        {
            "user": user,
            "session": pd.factorize(events["session_id"].to_numpy()[known])[0],
            "t": seconds,
            "spend": np.where(bought & ~np.isnan(spend), spend, 0.0),
            "category": _category_codes(events, universe, known),
            "cart": cart,
            "bought": bought,
            "dwell": np.where(viewed, dwell, np.nan),
        }
    )
    del spend, dwell, bought, cart, viewed
    by_user = frame.groupby("user", sort=True)
    sessions = frame.groupby(["user", "session"]).agg(
        cart=("cart", "any"), bought=("bought", "any")
    )
    abandoned = (sessions["cart"] & ~sessions["bought"]).groupby(level="user").mean()
    # Over their tenure (first event to the end of the log): two visits long ago are rare.
    span_weeks = ((end - by_user["t"].min()) / 86_400 / WEEK_DAYS).clip(lower=1.0)
    n_sessions = sessions.groupby(level="user").size()
    habits = pd.DataFrame(
        {
            "user": user,
            "device": events["device"].to_numpy()[known],
            "hour_bucket": events["local_hour"].to_numpy()[known] // 6,
        }
    )
    out = pd.DataFrame(
        {
            "recency_days": (end - by_user["t"].max()) / 86_400,
            "sessions": n_sessions.astype(float),
            "monetary": by_user["spend"].sum().clip(lower=0.0),
            "sessions_per_week": n_sessions / span_weeks,
            "categories": frame[frame["category"] >= 0].groupby("user")["category"].nunique(),
            "cart_abandon_share": abandoned,
            "avg_dwell_s": by_user["dwell"].mean(),
            "device": most_frequent(habits, "user", "device"),
            "hour_bucket": most_frequent(habits, "user", "hour_bucket"),
        }
    )
    numeric = list(SEGMENT_FEATURES)
    out[numeric] = out[numeric].fillna(0.0).astype(np.float64)
    out["device"] = out["device"].fillna("").astype(str)
    out.index = pd.Index(user_ids[out.index.to_numpy()], name="user").astype(str)
    return out


def _category_codes(
    events: pd.DataFrame, universe: ItemUniverse | None, rows: np.ndarray
) -> np.ndarray:
    """A category code per event of `rows` (-1 unknown): the event's own label, else its
    item's category in `universe`. Equal names get equal codes, whichever side names them."""
    names = universe.category_names if universe is not None else []
    codes = np.full(int(rows.sum()), -1, dtype=np.int64)
    if universe is not None:
        items = item_codes(events, universe)[rows]
        found = items >= 0
        codes[found] = universe.category[items[found]]
    if "category" in events:
        labels = events["category"].to_numpy()[rows]
        own = labels != ""
        if own.any():
            own_codes, own_names = pd.factorize(labels[own])
            lookup = pd.Index(names).get_indexer(own_names)
            unnamed = lookup < 0  # a label the universe lacks: a new code after its names
            lookup[unnamed] = len(names) + np.arange(int(unnamed.sum()))
            codes[own] = np.where(own_codes >= 0, lookup[own_codes], -1)  # -1: a missing label
    return codes


def nearest_core(z: np.ndarray, cores: np.ndarray, labels: np.ndarray, eps: float) -> np.ndarray:
    """The cluster of each row's nearest core point, or -1 when none is within `eps`."""
    if len(cores) == 0:
        return np.full(len(z), -1)
    out = np.empty(len(z), dtype=np.int64)
    for start in range(0, len(z), 4096):  # bounded memory: 4096 rows × cores at a time
        block = z[start : start + 4096]
        d2 = (block**2).sum(1)[:, None] - 2 * block @ cores.T + (cores**2).sum(1)[None, :]
        nearest = d2.argmin(axis=1)
        within = d2[np.arange(len(block)), nearest] <= eps**2
        out[start : start + len(block)] = np.where(within, labels[nearest], -1)
    return out


def log_transform(x: np.ndarray) -> np.ndarray:
    mask = np.array([name in LOG_FEATURES for name in SEGMENT_FEATURES])
    out = x.astype(np.float64).copy()
    out[:, mask] = np.log1p(np.clip(out[:, mask], 0.0, None))
    return out


NOISE_NAME = "other customers"  # DBSCAN: customers in no dense region
DBSCAN_MAX_CORE_POINTS = 5_000  # kept for the edge's nearest-core lookup


class SegmentRow(TypedDict):
    """One row of `Segmenter.table_`: the fields of the manifest's `SegmentSummary`."""

    segment: str
    size: int
    centre: dict[str, float]
    top_device: str


class Segmenter:
    """K-Means (k by silhouette, or set), or DBSCAN with `method="dbscan"`. Either way the
    edge assigns a visitor to the nearest reference point in standardized space: a K-Means
    centre, or a DBSCAN core point within `eps` (else the noise segment)."""

    def __init__(
        self,
        k: int | None = None,
        k_range: tuple[int, int] = (3, 10),
        seed: int = 0,
        method: str = "kmeans",
        eps: float = 0.5,
        min_samples: int = 10,
    ):
        self.k, self.k_range, self.seed = k, k_range, seed
        self.method, self.eps, self.min_samples = method, eps, min_samples

    def _fit_k(self, z: np.ndarray, k: int, seed: int) -> KMeans:
        with threadpool_limits(1, "openmp"):
            return KMeans(k, n_init=4, random_state=seed).fit(z)

    def fit(self, features: pd.DataFrame) -> Segmenter:
        x = features[list(SEGMENT_FEATURES)].to_numpy(dtype=np.float64)
        if len(x) < 2 * self.k_range[0]:
            raise CannotTrainError(
                f"{len(x)} customers are too few to learn segments (at least "
                f"{2 * self.k_range[0]} are needed); lower segments.k_min, or pass a log with "
                "more known customers"
            )
        logged = log_transform(x)
        self.scaler_ = StandardScaler().fit(logged)
        z = self.scaler_.transform(logged)
        rng = np.random.default_rng(self.seed)
        sample = rng.choice(len(z), min(len(z), SILHOUETTE_SAMPLE), replace=False)
        self.silhouettes_: dict[int, float] = {}
        if self.method == "dbscan":
            return self._fit_dbscan(features, z, rng)
        if self.k is None:
            low, high = self.k_range[0], min(self.k_range[1], len(z) - 1)
            fitted = {k: self._fit_k(z, k, self.seed) for k in range(low, high + 1)}
            for k, kmeans in fitted.items():
                labels = kmeans.labels_[sample]
                if len(set(labels)) > 1:
                    self.silhouettes_[k] = round(float(silhouette_score(z[sample], labels)), 4)
            self.k_ = max(self.silhouettes_, key=lambda k: (self.silhouettes_[k], -k))
            self.kmeans_ = fitted[self.k_]
        else:
            self.k_ = self.k
            self.kmeans_ = self._fit_k(z, self.k_, self.seed)
        self.labels_ = self.kmeans_.labels_
        # Stability: the same k from another seed, and from each half of the customers.
        other = self._fit_k(z, self.k_, self.seed + 1).predict(z)
        half = rng.permutation(len(z))[: len(z) // 2]
        from_half = self._fit_k(z[half], self.k_, self.seed).predict(z)
        self.stability_ = {
            "ari_other_seed": round(float(adjusted_rand_score(self.labels_, other)), 4),
            "ari_half_of_customers": round(float(adjusted_rand_score(self.labels_, from_half)), 4),
        }
        self.names_ = cluster_names(self.kmeans_.cluster_centers_)
        self.references_ = self.kmeans_.cluster_centers_
        self.reference_labels_ = np.arange(self.k_)
        self.table_ = self._describe(features)
        return self

    def _fit_dbscan(
        self, features: pd.DataFrame, z: np.ndarray, rng: np.random.Generator
    ) -> Segmenter:
        labels, cores = self._dbscan(z)
        clusters = int(labels.max()) + 1
        if clusters == 0:
            raise CannotTrainError(
                f"DBSCAN found no dense region among {len(z):,} customers (eps {self.eps}, "
                f"min_samples {self.min_samples}); raise segments.eps or lower "
                "segments.min_samples"
            )
        self.k_ = clusters
        centres = np.array([z[labels == c].mean(axis=0) for c in range(clusters)])
        # Noise is the last segment, so labels index the names directly.
        self.labels_ = np.where(labels < 0, clusters, labels)
        self.names_ = [*cluster_names(centres), NOISE_NAME]
        if len(cores) > DBSCAN_MAX_CORE_POINTS:
            cores = np.sort(rng.choice(cores, DBSCAN_MAX_CORE_POINTS, replace=False))
        self.references_, self.reference_labels_ = z[cores], labels[cores]
        # Stability: DBSCAN has no seed; refit on half of the customers, assign everyone.
        half = rng.permutation(len(z))[: len(z) // 2]
        half_labels, half_cores = self._dbscan(z[half])
        from_half = nearest_core(z, z[half][half_cores], half_labels[half_cores], self.eps)
        self.stability_ = {
            "ari_half_of_customers": round(float(adjusted_rand_score(labels, from_half)), 4)
        }
        self.table_ = self._describe(features)
        return self

    def _dbscan(self, z: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        model = DBSCAN(eps=self.eps, min_samples=self.min_samples).fit(z)
        return model.labels_, model.core_sample_indices_

    def assign(self, x: np.ndarray) -> np.ndarray:
        """Segment index of real-unit rows, as the edge's graph computes it (for tests)."""
        z = self.scaler_.transform(log_transform(x))
        if self.method == "kmeans":
            labels: np.ndarray = self.kmeans_.predict(z)
            return labels
        found = nearest_core(z, self.references_, self.reference_labels_, self.eps)
        return np.where(found < 0, self.k_, found)

    def _describe(self, features: pd.DataFrame) -> list[SegmentRow]:
        """Each cluster: its name, size and centre in real units (the members' medians)."""
        rows: list[SegmentRow] = []
        for cluster, name in enumerate(self.names_):
            members = features[self.labels_ == cluster]
            centre = {f: round(float(members[f].median()), 2) for f in SEGMENT_FEATURES}
            devices = members["device"][members["device"] != ""]
            rows.append(
                {
                    "segment": name,
                    "size": int(len(members)),
                    "centre": centre,
                    "top_device": str(devices.mode().iat[0]) if len(devices) else "",
                }
            )
        return rows

    def _standardizing(self, points: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """(W, b) with l·W + b = -2 z·p + |p|² for each point p in standardized space, where l
        is the row of logged values beside the raw ones (so |z - p|² = that + |z|²)."""
        n = len(SEGMENT_FEATURES)
        logged = np.array([name in LOG_FEATURES for name in SEGMENT_FEATURES])
        mean, scale = self.scaler_.mean_, self.scaler_.scale_
        per_feature = (-2.0 * points / scale).T  # [n, points]
        weights = np.zeros((2 * n, points.shape[0]))
        weights[:n][logged] = per_feature[logged]  # rows 0..n-1 take the logged values
        weights[n:][~logged] = per_feature[~logged]  # rows n..2n-1 the raw ones
        bias = (2.0 * points * (mean / scale)).sum(axis=1) + (points**2).sum(axis=1)
        return weights, bias

    def _noise_nodes(
        self, nodes: list[NodeProto], constants: list[TensorProto]
    ) -> tuple[list[NodeProto], list[TensorProto]]:
        """DBSCAN's tail: the nearest core point's cluster when it is within eps, else the
        noise segment. |z - p|² = distances + |z|², with z itself from one more Gemm."""
        n = len(SEGMENT_FEATURES)
        logged = np.array([name in LOG_FEATURES for name in SEGMENT_FEATURES])
        mean, scale = self.scaler_.mean_, self.scaler_.scale_
        select = np.zeros((2 * n, n))
        columns = np.arange(n)
        select[columns[logged], columns[logged]] = 1.0 / scale[logged]
        select[n + columns[~logged], columns[~logged]] = 1.0 / scale[~logged]
        constants = constants + [
            numpy_helper.from_array(select.astype(np.float32), "standardize"),
            numpy_helper.from_array((-mean / scale).astype(np.float32), "centre"),
            numpy_helper.from_array(self.reference_labels_.astype(np.int64), "core_cluster"),
            helper.make_tensor("eps_squared", TensorProto.FLOAT, [], [self.eps**2]),
            helper.make_tensor("noise", TensorProto.INT64, [], [self.k_]),
        ]
        nodes = nodes + [
            helper.make_node("Gemm", ["both", "standardize", "centre"], ["z"]),
            helper.make_node("ReduceSumSquare", ["z"], ["z_norm"], axes=[1], keepdims=0),
            helper.make_node("ReduceMin", ["distances"], ["closest"], axes=[1], keepdims=0),
            helper.make_node("Add", ["closest", "z_norm"], ["closest_squared"]),
            helper.make_node("LessOrEqual", ["closest_squared", "eps_squared"], ["within"]),
            helper.make_node("Gather", ["core_cluster", "nearest"], ["cluster"]),
            helper.make_node("Where", ["within", "cluster", "noise"], ["label"]),
        ]
        return nodes, constants

    def to_onnx(self) -> bytes:
        """One small graph, real units in, segment index out: log(1 + max(x, 0)) beside the
        raw values, one Gemm to every reference point, ArgMin. The scaler is folded into the
        Gemm (see `_standardizing`): six nodes for K-Means instead of the fourteen of scaler +
        K-Means converters, which is most of its cost at the edge. DBSCAN adds the core
        points' cluster (Gather) and the noise segment past `eps` (|z|² and Where). Parity
        tests check both against scikit-learn."""
        n = len(SEGMENT_FEATURES)
        weights, bias = self._standardizing(self.references_)
        constants = [
            helper.make_tensor("zero", TensorProto.FLOAT, [], [0.0]),
            helper.make_tensor("one", TensorProto.FLOAT, [], [1.0]),
            numpy_helper.from_array(weights.astype(np.float32), "weights"),
            numpy_helper.from_array(bias.astype(np.float32), "bias"),
        ]
        nearest = "label" if self.method == "kmeans" else "nearest"
        nodes = [
            helper.make_node("Max", ["features", "zero"], ["positive"]),
            helper.make_node("Add", ["positive", "one"], ["shifted"]),
            helper.make_node("Log", ["shifted"], ["logs"]),
            helper.make_node("Concat", ["logs", "features"], ["both"], axis=1),
            helper.make_node("Gemm", ["both", "weights", "bias"], ["distances"]),
            helper.make_node("ArgMin", ["distances"], [nearest], axis=1, keepdims=0),
        ]
        if self.method == "dbscan":
            nodes, constants = self._noise_nodes(nodes, constants)
        graph = helper.make_graph(
            nodes,
            "edgeperso_segments",
            [helper.make_tensor_value_info("features", TensorProto.FLOAT, [None, n])],
            [helper.make_tensor_value_info("label", TensorProto.INT64, [None])],
            initializer=constants,
        )
        model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
        model.ir_version = 8
        model.doc_string = "edgeperso segments; input float32 [n, 7]: " + ",".join(SEGMENT_FEATURES)
        onnx.checker.check_model(model)
        serialized: bytes = model.SerializeToString()
        return serialized


# What a centre far from the average says, per feature and direction of its z-score:
# (feature, sign, adjective, noun).
TRAITS = (
    ("monetary", +1, "big-spending", "big spenders"),
    ("cart_abandon_share", +1, "cart-abandoning", "cart abandoners"),
    ("recency_days", +1, "lapsed", "lapsed customers"),
    ("sessions", +1, "loyal", "loyal customers"),
    ("sessions_per_week", +1, "frequent", "frequent visitors"),
    ("categories", +1, "exploring", "explorers"),
    ("avg_dwell_s", +1, "careful", "careful readers"),
    ("recency_days", -1, "recent", "recent customers"),
    ("sessions", -1, "occasional", "occasional customers"),
    ("monetary", -1, "low-spending", "low spenders"),
)
TRAIT_THRESHOLD = 0.3


def _candidates(centre: np.ndarray) -> list[tuple[float, str]]:
    """Names a cluster could take, best first, each with how strongly the centre says it."""
    index = {name: i for i, name in enumerate(SEGMENT_FEATURES)}

    def z(feature: str) -> float:
        return float(centre[index[feature]])

    out = []
    if z("monetary") > TRAIT_THRESHOLD and z("sessions") > 0 and z("recency_days") < 0:
        out.append((z("monetary") + z("sessions") - z("recency_days"), "high-value loyal"))
    if z("monetary") > TRAIT_THRESHOLD and z("recency_days") > TRAIT_THRESHOLD:
        out.append((z("monetary") + z("recency_days"), "lapsed big spenders"))
    traits = sorted(
        ((sign * z(f), adjective, noun) for f, sign, adjective, noun in TRAITS),
        key=lambda t: -t[0],
    )
    strong = [t for t in traits if t[0] > TRAIT_THRESHOLD]
    for first in strong:
        for second in strong:
            if second is not first:
                out.append((first[0] + second[0], f"{second[1]} {first[2]}"))
    out += [(t[0], t[2]) for t in strong]
    return out + [(0.0, "average")]


def cluster_names(centres: np.ndarray) -> list[str]:
    """A readable, unique name per cluster from its standardized centre: the clusters that
    say something most strongly choose first (named combinations shops know, then the adjective
    of one strong trait with the noun of another, then one trait)."""
    options = [_candidates(c) for c in centres]
    order = sorted(range(len(centres)), key=lambda i: -options[i][0][0])
    names: dict[int, str] = {}
    for i in order:
        taken = set(names.values())
        free = [name for _, name in options[i] if name not in taken]
        names[i] = free[0] if free else f"segment {i + 1}"
    return [names[i] for i in range(len(centres))]


def apply_rules(features: pd.DataFrame, rules: list[SegmentRule], clusters: list[str]) -> list[str]:
    """The segment of each customer: the first rule that matches, else their cluster."""
    # Keys are the SEGMENT_FEATURES names, values their floats (pandas types them as Hashable, Any).
    records = cast(list[dict[str, float]], features[list(SEGMENT_FEATURES)].to_dict("records"))
    return [matching_rule(rules, r) or cluster for r, cluster in zip(records, clusters)]

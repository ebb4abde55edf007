"""manifest.json, typed: what a bundle holds and what the build learned. Export encodes these
structures and the edge decodes them strictly: an unknown key or a wrong type refuses the bundle
with msgspec's message, which names the key (``Object contains unknown field `x` - at
`$.models.ranker` ``). The sections the edge acts on (files, models) are typed throughout; the
reports written for people (lineage, metrics) are typed to the depth the edge reads them.

New fields always come with defaults, so older bundles of a supported format still decode."""

from __future__ import annotations

import json
from typing import Annotated, Any, Literal

import msgspec
from msgspec import Meta, Struct

from edge.intent import IntentLabels
from edge.merchandising import Merchandising
from edge.rules import Guardrails
from edge.scoring import CandidateSizes, Scorer
from edge.segments import SegmentRule

# 4: memory-mapped arrays, int8 embeddings, ids searched in place. 5: embeddings may hold fewer
# rows than items (an "items" count), neighbour graphs store row lengths ("lengths") and may
# store one-byte scores ("score_codes", "score_levels"). 6: the manifest is typed throughout
# (`Manifest`): unknown keys are refused, and `models` always has `serving` and `contexts`.
# 7: `signature` is an Ed25519 signature (`Signature`, edge.bundle.signing), no longer an HMAC.
# 8: items.msgpack may hold brands and tags, and `models` a `merchandising` policy.
# 9: items.msgpack may hold display titles (`title_bytes`, `title_offsets`).
# This edge reads 4 and later.
FORMAT_VERSION = 9
SUPPORTED_FORMAT_VERSIONS = frozenset({4, 5, 6, 7, 8, 9})

Sha256 = Annotated[str, Meta(pattern="^[0-9a-f]{64}$")]
Count = Annotated[int, Meta(ge=0)]
Name = Annotated[str, Meta(min_length=1)]


class Strict(Struct, frozen=True, forbid_unknown_fields=True):
    """Every manifest structure refuses keys it does not know.

    Subclasses inherit both options at run time; they repeat `frozen=True` because type
    checkers read each class's own keywords (PEP 681) and would take them as mutable."""


class FileEntry(Strict, frozen=True):
    sha256: Sha256
    bytes: Count


# ---------------------------------------------------------------- models: what the edge runs
class Comparison(Strict, frozen=True):
    """NDCG@k of one model minus another's (the bundle minus a baseline), case by case, with
    its 95% interval."""

    difference: float
    ci95: tuple[float, float] | None = None


class ScorerSelection(Strict, frozen=True):
    """The selection guard (export's `export.selection`): the composite ranker and each
    generator alone, asked the ranker's validation cases (held out of its fit), and what won."""

    chosen: Scorer
    reason: str
    validation_cases: Count
    ndcg: dict[str, float]  # scorer -> mean NDCG@k over the validation cases
    k: Count = 10
    # NDCG@k of the chosen scorer (or of the best generator, when the ranker was kept because
    # that one's advantage was within noise) minus the ranker's, case by case, with its 95%
    # interval
    versus_ranker: Comparison | None = None


class RankerTraining(Strict, frozen=True):
    """How the ranker's training rows were made (export's `training_rows` and `fit_ranking`)."""

    cases: Count
    cases_with_positive: Count
    rows: Count
    positives: Count
    protocol: str
    label_days: float
    label_cut: str  # the first timestamp of the label window (ISO 8601)
    trees: Count
    features_switched_off: list[str] = []
    labels: str = "time"  # how the label part was cut: "time" (a window) or "random"
    labels_chosen_because: str = ""
    selection: ScorerSelection | None = None


class RankerInfo(Strict, frozen=True):
    features: list[Name]  # the ranker's input columns, in order (`edge.scoring.FEATURES`)
    training: RankerTraining
    file: Literal["ranker.onnx"] = "ranker.onnx"
    estimator: str = "HistGradientBoostingClassifier"


class EmbeddingsInfo(Strict, frozen=True):
    """The item factors and how they were stored (export's `ItemEmbeddings.to_tree`)."""

    method: str
    factors: Count
    dtype: Literal["int8", "float32"]
    rows: Count  # rows kept (items beyond them are zero vectors to the edge)
    recall_at_100: float | None = None  # of the int8 rows against float32, when int8 was tried
    users: Count | None = None  # users that recall was measured on
    served_recall_at_100: float | None = None  # what the edge serves (scan + rescore), int8 only
    int8_refused: bool = False  # int8 was tried and lost too much recall
    int8_scan_refused: bool = False


class Serving(Strict, frozen=True):
    """What the edge does with every answer (a request may override the category cap): a build
    config's [serving], as the edge reads it from `models.serving`."""

    max_per_category: Annotated[int, Meta(ge=0, le=100)] = 0  # 0: no cap
    candidates: CandidateSizes = CandidateSizes()
    # What ranks the candidates. A build config leaves it unset: the build's selection guard
    # writes what answered its validation cases best. A manifest without it: the ranker.
    scorer: Scorer | None = None


class SegmentSummary(Strict, frozen=True):
    segment: str
    size: Count
    centre: dict[str, float]  # each segment feature's median over the members, in real units
    top_device: str = ""


class SegmentsInfo(Strict, frozen=True):
    """The segment head of `visitor.onnx`: its clusters (in the graph's output order) and the
    shop's rules, which win over them; then how they were chosen."""

    clusters: list[str]
    rules: list[SegmentRule] = []
    file: Literal["visitor.onnx"] = "visitor.onnx"
    features: list[str] = []
    method: Literal["kmeans", "dbscan"] = "kmeans"
    k: Count = 0
    k_chosen_by: str = ""
    silhouette: dict[int, float] = {}  # by k tried
    stability: dict[str, float] = {}  # adjusted Rand index against refits
    table: list[SegmentSummary] = []
    rule_sizes: dict[str, Count] = {}


class CalibrationBin(Strict, frozen=True):
    low: float = msgspec.field(name="from")
    high: float = msgspec.field(name="to")
    sessions: Count
    predicted: float
    observed: float


class AgainstTruth(Strict, frozen=True):
    """A simulated shop's true purchase probability against the model's (`--truth`)."""

    sessions: Count
    auc_of_true_intent: float | None = None
    auc_of_model: float | None = None
    spearman_with_true_intent: float | None = None


class IntentEvaluation(Strict, frozen=True):
    train_window: tuple[str, str]
    eval_window: tuple[str, str]
    train_sessions: Count
    eval_sessions: Count
    eval_purchase_rate: float
    auc: float
    log_loss: float
    log_loss_of_base_rate: float
    calibration: list[CalibrationBin] = []
    against_truth: AgainstTruth | None = None


class IntentInfo(Strict, frozen=True):
    """The intent head of `visitor.onnx` and the labels its probability is given."""

    labels: IntentLabels
    features: list[str] = []
    file: Literal["visitor.onnx"] = "visitor.onnx"
    estimator: str = "HistGradientBoostingClassifier"
    train_days: float = 0.0
    evaluation: IntentEvaluation | None = None


class RulesInfo(Strict, frozen=True):
    rules: list[str]  # names, by priority
    guardrails: Guardrails
    file: Literal["rules.msgpack"] = "rules.msgpack"


class BanditSlotInfo(Strict, frozen=True):
    arms: list[str]
    segments: list[str] = []  # segments with priors of their own


class BanditsInfo(Strict, frozen=True):
    slots: dict[str, BanditSlotInfo]
    file: Literal["bandits.msgpack"] = "bandits.msgpack"


class ExperimentsInfo(Strict, frozen=True):
    keys: list[str]
    hash: str  # how a unit is bucketed, for a reader
    file: Literal["experiments.msgpack"] = "experiments.msgpack"


class Models(Strict, frozen=True):
    """What the build learned and how the edge serves it."""

    event_weights: dict[Name, float]  # the event types this bundle knows, with their weights
    ranker: RankerInfo
    embeddings: EmbeddingsInfo
    serving: Serving = Serving()
    contexts: list[str] = []  # the contextual popularity tables ("device=mobile", ...)
    segments: SegmentsInfo | None = None
    intent: IntentInfo | None = None
    rules: RulesInfo | None = None
    bandits: BanditsInfo | None = None
    experiments: ExperimentsInfo | None = None
    merchandising: Merchandising | None = None  # pins, boosts, filters (a config's [merchandising])


# ---------------------------------------------------------------- reports: read by people
class InputFile(Strict, frozen=True):
    role: Literal["events", "catalog", "users"]
    name: str
    sha256: Sha256
    rows: Count


class FlaggedItems(Strict, frozen=True):
    """How many items one way of flagging found, and the first few of them."""

    items: Count
    examples: list[str] = []


class Lineage(Strict, frozen=True):
    """Where the data came from and what validation kept (export's `QualityReport`)."""

    files: list[InputFile] = []
    rows_read: Count = 0
    rows_kept: Count = 0
    rows_dropped: Count = 0
    dropped_by_reason: dict[str, Count] = {}
    time_range: tuple[str, str] | None = None
    items: Count = 0
    users: Count = 0
    users_with_attributes: Count = 0
    # Anonymous events given to the customer their session logged in as
    anonymous_events_joined: Count = 0
    # Items never recommended (postage, fees...), by how they were flagged: "catalog", "config"
    # or "heuristic" (export's `export.non_products`)
    non_products: dict[str, FlaggedItems] = {}
    # The build config as export read it (`export.config.BuildConfig`, whose strict decoding
    # checked it): a record for people, never read by the edge, which cannot import its type.
    config: dict[str, Any] = {}


class SplitInfo(Strict, frozen=True):
    split: Literal["time", "leave_last_out", "random", "next_new_item"]
    days: float | None = None  # a time split's test window
    train_events: Count = 0
    test_events: Count = 0
    chosen_because: str = ""  # why `auto` settled on this split


class Evaluation(Strict, frozen=True):
    """The offline evaluation (export's `evaluate_held_out`): every model on the same cases."""

    cases: Count
    note: str | None = None  # why there are no cases, when there are none
    protocol: str = ""
    scorer: str = ""  # what ranked the evaluated bundle's answers (its selection guard's choice)
    validation_cases: Count = 0
    k: Count = 0
    target_types: list[str] = []
    split: SplitInfo | None = None
    # model -> metric ("hr@10", "ndcg@10", ...: the names carry k) -> value
    table: dict[str, dict[str, float]] = {}
    versus: dict[str, Comparison] = {}
    # baseline -> the hyperparameters tried and chosen; their names differ by baseline
    tuning: dict[str, dict[str, Any]] = {}


class Metrics(Strict, frozen=True):
    evaluation: Evaluation | None = None


# ---------------------------------------------------------------- the manifest
class Signature(Strict, frozen=True):
    """An Ed25519 signature of `signed_payload` (edge.bundle.signing makes and checks it)."""

    algorithm: Literal["ed25519"]
    key_id: Annotated[str, Meta(pattern="^[0-9a-f]{16}$")]  # sha256 of the public key, 16 hex
    value: Annotated[str, Meta(min_length=1)]  # the 64-byte signature, base64


class Manifest(Strict, frozen=True):
    format_version: int
    build_id: Name
    created_at: str
    files: dict[str, FileEntry]
    onnx_opset: Count
    models: Models
    lineage: Lineage = Lineage()
    metrics: Metrics = Metrics()
    # The embedded profile store (profiles.msgpack), apart from `files`: a node reading profiles
    # from a key-value store neither needs nor checks it.
    profile_store: dict[str, FileEntry] = {}
    # Ed25519 since format 7. A string is an HMAC-SHA256 of formats 6 and older: read so that
    # such a bundle still loads where no key is configured, never accepted where one is.
    signature: Signature | str | None = None


def signed_payload(manifest: dict[str, Any]) -> bytes:
    """What a signature covers: the manifest without its signature, keys sorted, compact JSON.
    The edge computes it over the manifest as the file holds it, so the bytes signed are the
    bytes read, whatever the types would add."""
    unsigned = {k: v for k, v in manifest.items() if k != "signature"}
    return json.dumps(unsigned, sort_keys=True, separators=(",", ":")).encode()


def manifest_json(manifest: Manifest) -> str:
    """manifest.json's text."""
    return json.dumps(msgspec.to_builtins(manifest, str_keys=True), indent=2, allow_nan=False)

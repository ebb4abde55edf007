"""Build configuration: TOML decoded into strict Structs. An unknown key or a wrong type stops
the build with a message that names the key; every field has a default that works."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Annotated, Literal

import msgspec
import msgspec.inspect
from msgspec import Meta, Struct

from edge.bundle.manifest import Serving
from edge.experiments import Experiment, experiment_errors
from edge.merchandising import Merchandising, policy_errors
from edge.rules import DEFAULT_RULES, RuleBook, rule_book_errors, rule_sets
from edge.schemas import DEFAULT_EVENT_TYPES
from edge.segments import SegmentRule, rule_errors
from export.bandits import BanditConfig, bandit_errors
from export.errors import ConfigError

CANONICAL_EVENT_COLUMNS = (
    "ts",
    "user_id",
    "item_id",
    "type",
    "session_id",
    "qty",
    "price",
    "dwell_ms",
    "device",
    "country",
    "local_hour",
    "title",
    "category",
    "brand",
    # The sender's id of an event (POST /v1/events keeps it): a retried batch shipped twice is
    # dropped by it (`export.validate.drop_repeated_event_ids`).
    "event_id",
)
CATALOG_COLUMNS = (
    "item_id",
    "title",
    "category",
    "price",
    "brand",
    "in_stock",
    "non_product",  # true: postage, a fee, a discount... never recommended (export.non_products)
    "tags",  # labels separated by "|" ("sale|vegan"), for merchandising (edge.merchandising)
)

Fraction = Annotated[float, Meta(ge=0.0, le=1.0)]
Positive = Annotated[float, Meta(gt=0.0)]
PositiveInt = Annotated[int, Meta(ge=1)]
Baseline = Literal["popular", "item_knn", "als", "ease", "lightfm"]


class TypeFromPrefix(Struct, frozen=True, forbid_unknown_fields=True):
    """Rows whose `column` starts with `prefix` get event type `type` (UCI: InvoiceNo 'C…' are
    cancellations)."""

    column: str
    prefix: str
    type: str


class DateColumns(Struct, frozen=True, forbid_unknown_fields=True):
    """A date split over three columns, for logs that have no timestamp column."""

    year: str
    month: str
    day: str


class InputConfig(Struct, frozen=True, forbid_unknown_fields=True):
    columns: dict[str, str] = {}  # canonical name -> the file's column name
    catalog_columns: dict[str, str] = {}
    users_columns: dict[str, str] = {}
    type: str | None = None  # one type for every row, when the file has no type column
    type_map: dict[str, str] = {}  # the file's type labels -> canonical types
    type_from_prefix: list[TypeFromPrefix] = []
    timezone: str = "UTC"  # zone of naive timestamps (and of local_hour when not given)
    date_columns: DateColumns | None = None  # instead of a `ts` column
    # Position of an event within its session (1, 2, ...): orders events that share a timestamp,
    # as those of a log with dates only do. It adds that many seconds to the timestamp.
    order_column: str | None = None
    max_future_skew_minutes: Annotated[float, Meta(ge=0)] = 5.0


class CatalogConfig(Struct, frozen=True, forbid_unknown_fields=True):
    """Items that are not products (postage, fees, discounts): kept in the data, never
    recommended (`export.non_products`)."""

    non_product_ids: list[str] = []  # regular expressions searched in item ids (^POST$)
    non_product_titles: list[str] = []  # searched in titles, in any case (^postage$)
    # Flag oddly shaped ids whose title names a service or that are in most baskets; reported.
    non_product_heuristic: bool = True


class EventsConfig(Struct, frozen=True, forbid_unknown_fields=True):
    # How much one event of each type says about a shopper's taste; a config may add types.
    weights: dict[str, Annotated[float, Meta(ge=0)]] = msgspec.field(
        default_factory=lambda: {
            "view": 1.0,
            "add_to_cart": 4.0,
            "remove_from_cart": 0.0,
            "purchase": 8.0,
            # What POST /v1/events logs besides: a click on a shown item says as much as a view;
            # being shown says nothing of taste (its rows are kept for the experiment report).
            "click": 1.0,
            "impression": 0.0,
        }
    )
    max_drop_share: Fraction = 0.5
    session_gap_minutes: Positive = 30.0  # sessions are cut at gaps this long when not given


class EmbeddingsConfig(Struct, frozen=True, forbid_unknown_fields=True):
    factors: PositiveInt = 64
    # "int8": a quarter of float32's size, kept only when its top-100 keeps 99% of float32's
    # (measured at export on the shop's own users); "none": float32.
    quantize: Literal["int8", "none"] = "int8"
    # "needed": rows by descending norm only as far as the shop's users' top-100 needs them
    # (`export.embeddings.rows_to_keep`); the rest are served as zero vectors. "all": every row.
    rows: Literal["needed", "all"] = "needed"
    regularization: Positive = 0.05
    alpha: Positive = 2.0
    iterations: PositiveInt = 15


class CoVisitationConfig(Struct, frozen=True, forbid_unknown_fields=True):
    window: PositiveInt = 8  # pairs within this many positions of each other in a session
    # Kept per item. 10 against 40: NDCG@10 as good on the simulator, UCI Online Retail and the
    # UCI clickstream (recall@50 of the clickstream's sessions 0.732 against 0.753), and a
    # bundle whose largest file shrinks about threefold.
    neighbours: PositiveInt = 10
    # A pair seen in fewer places than this is dropped as noise. 2 shrinks the 100,000-item
    # simulated shop's file from 5.6 to 2.2 MB at the same NDCG@10 there, but costs UCI Online
    # Retail 5% of its NDCG@10 (seeds 0, 1, 2: -0.0050, -0.0055, -0.0040), where a pair bought
    # together once is signal.
    min_count: PositiveInt = 1


class RegressionConfig(Struct, frozen=True, forbid_unknown_fields=True):
    """Item-to-item regression (EASE), fitted on the most-taken items."""

    regularization: Positive = 300.0
    neighbours: PositiveInt = 40
    max_items: PositiveInt = 5_000  # one dense items × items inversion: cubic in this


class PopularityConfig(Struct, frozen=True, forbid_unknown_fields=True):
    half_life_days: Positive = 21.0
    context_top_n: PositiveInt = 500
    min_context_events: PositiveInt = 50  # rarer context values fall back to overall
    fallback_items: PositiveInt = 50


class RankerConfig(Struct, frozen=True, forbid_unknown_fields=True):
    # How the label part is cut (docs/models.md#training-the-ranker): "window", the last
    # `label_days`; "random", a share of each customer's items; "auto", a window when it asks
    # enough questions, else random.
    labels: Literal["auto", "window", "random"] = "auto"
    label_days: Positive | None = None  # label window before the cut; default: 15% of the span
    max_cases: PositiveInt = 30_000  # training cases (visitors asked a question)
    negatives_per_case: PositiveInt = 40
    # false: train without the context features (device, country, hour), to measure them
    context_features: bool = True
    # The visitor's segment and purchase intent as features. The segment is on: +1.4% NDCG@10
    # on UCI Online Retail, +0.6% on the simulator. Intent is off: -0.9% on the simulator,
    # where intent decides whether a visitor buys, not what; true trains with it.
    segment_feature: bool = True
    intent_feature: bool = False
    max_iter: PositiveInt = 80
    max_leaf_nodes: PositiveInt = 15
    learning_rate: Positive = 0.1


Protocol = Literal[
    "auto", "temporal", "users", "sessions", "leave_last_out", "random", "next_new_item"
]


class SegmentsConfig(Struct, frozen=True, forbid_unknown_fields=True):
    k: Annotated[int, Meta(ge=2, le=50)] | None = None  # None: the best silhouette in k_min..k_max
    k_min: Annotated[int, Meta(ge=2, le=50)] = 3
    k_max: Annotated[int, Meta(ge=2, le=50)] = 10
    # "dbscan": clusters of dense regions, their number found by density (k is then unused);
    # customers in no dense region form one more segment, "other customers".
    method: Literal["kmeans", "dbscan"] = "kmeans"
    eps: Positive = 0.5  # DBSCAN neighbourhood radius, in standardized (log) units
    min_samples: PositiveInt = 10  # DBSCAN: neighbours that make a customer a core point
    rules: list[SegmentRule] = []


class IntentConfig(Struct, frozen=True, forbid_unknown_fields=True):
    """Purchase intent: trained on the last `train_days` of sessions; the manifest reports it
    trained on the window before the last `eval_days` and scored on those days."""

    train_days: Positive = 28.0
    eval_days: Positive = 7.0
    max_sessions: PositiveInt = 50_000  # sampled per window
    high: Fraction = 0.5  # probability at or over which a session is "high intent"
    browsing: Fraction = 0.1  # at or over: "browsing"; below: "lurker"


class EvaluationConfig(Struct, frozen=True, forbid_unknown_fields=True):
    # How the evaluation holds out, and how the ranker's labels are cut (docs/evaluation.md).
    # auto: a time window when it asks enough questions, else `random`; a time window is asked
    # as `users` when most of its events come from known customers, else as `sessions`.
    protocol: Protocol = "auto"
    # `random`: the share of each customer's distinct target items held out
    holdout_share: Annotated[float, Meta(gt=0.0, lt=1.0)] = 0.25
    # Default: the ranker's label window (15% of the span), so the final ranker's history
    # models are the evaluation's, fitted once.
    holdout_days: Positive | None = None
    k: PositiveInt = 10
    target_types: list[str] = msgspec.field(default_factory=lambda: ["purchase"])
    max_cases: PositiveInt = 20_000
    # Baselines `export` evaluates next to the bundle (`edgeperso evaluate` runs them all).
    baselines: list[Baseline] = msgspec.field(default_factory=lambda: ["popular"])
    ease_max_items: PositiveInt = 15_000  # EASE inverts a dense items × items matrix


class BuildConfig(Struct, frozen=True, forbid_unknown_fields=True):
    seed: int = 0
    input: InputConfig = InputConfig()
    events: EventsConfig = EventsConfig()
    catalog: CatalogConfig = CatalogConfig()
    embeddings: EmbeddingsConfig = EmbeddingsConfig()
    covisitation: CoVisitationConfig = CoVisitationConfig()
    regression: RegressionConfig = RegressionConfig()
    popularity: PopularityConfig = PopularityConfig()
    ranker: RankerConfig = RankerConfig()
    serving: Serving = Serving()
    segments: SegmentsConfig = SegmentsConfig()
    intent: IntentConfig = IntentConfig()
    evaluation: EvaluationConfig = EvaluationConfig()
    # [[experiments]]: key, unit ("user" or "session") and variants (name, weight, ranker =
    # "composite" or "popularity", content = {...}); shipped in the bundle in this order.
    experiments: list[Experiment] = []
    # [[bandits]]: slot, arms (name, content = {...}), by_segment, prior_weight; priors come
    # from the feedback log given to export with --bandit-log.
    bandits: list[BanditConfig] = []
    # [merchandising]: pins, boost, bury, filters, only; shipped in the manifest, and every
    # request's own merchandising goes on top (docs/merchandising.md).
    merchandising: Merchandising = Merchandising()

    @property
    def event_types(self) -> tuple[str, ...]:
        return tuple(dict.fromkeys([*DEFAULT_EVENT_TYPES, *self.events.weights]))


def load_rules(path: str | Path | None) -> RuleBook:
    """A rules file (TOML: [[rules]] and [guardrails]), or the default rules without one."""
    if path is None:
        return DEFAULT_RULES
    try:
        book = msgspec.toml.decode(Path(path).read_bytes(), type=RuleBook)
    except OSError as exc:
        raise ConfigError(f"rules {path}: cannot be read ({exc.strerror})") from exc
    except (msgspec.ValidationError, msgspec.DecodeError) as exc:
        raise ConfigError(f"rules {path}: {exc}{_allowed(str(exc), RuleBook)}") from exc
    errors = rule_book_errors(book)
    if errors:
        raise ConfigError(f"rules {path}: " + "; ".join(errors))
    return book


def check_rule_sets(config: BuildConfig, book: RuleBook) -> None:
    """Every rule set an experiment variant names must be one the rules define."""
    known = rule_sets(book)
    errors = [
        f"experiment {e.key!r}, variant {v.name!r}, rules: {v.rules!r} is not a rule set; "
        f"allowed: {', '.join(sorted(known))}"
        for e in config.experiments
        for v in e.variants
        if v.rules is not None and v.rules not in known
    ]
    if errors:
        raise ConfigError("; ".join(errors))


def _allowed(message: str, root: type = BuildConfig) -> str:
    """What is allowed where msgspec's message names an unknown field or an invalid enum value
    (it says what was wrong, not what would be right): "; allowed: ..." or ""."""
    match = re.search(r"- at `\$([^`]*)`$", message)  # absent at the top level
    steps = re.findall(r"\.(\w+)|\[\d+\]", match.group(1)) if match else []
    if message.startswith("Invalid enum value") and steps:
        steps, field = steps[:-1], steps[-1]
    elif message.startswith("Object contains unknown field"):
        field = None
    else:
        return ""
    info: msgspec.inspect.Type | None = msgspec.inspect.type_info(root)
    for step in [*steps, field] if field else steps:
        info = _unwrapped(info)
        if step == "" and isinstance(info, msgspec.inspect.ListType):  # a [n] index
            info = info.item_type
        elif isinstance(info, msgspec.inspect.StructType):
            info = next((f.type for f in info.fields if f.name == step), None)
        else:
            return ""
    info = _unwrapped(info)
    if isinstance(info, msgspec.inspect.LiteralType):
        return "; allowed: " + ", ".join(map(str, info.values))
    if isinstance(info, msgspec.inspect.StructType):
        return "; allowed: " + ", ".join(f.name for f in info.fields)
    return ""


def _unwrapped(info: msgspec.inspect.Type | None) -> msgspec.inspect.Type | None:
    """An optional value's own type."""
    while isinstance(info, msgspec.inspect.UnionType):
        info = next(t for t in info.types if not isinstance(t, msgspec.inspect.NoneType))
    return info


def _pattern_errors(catalog: CatalogConfig) -> list[str]:
    """Each [catalog] pattern that is not a regular expression, with why."""
    errors = []
    for key in ("non_product_ids", "non_product_titles"):
        for i, pattern in enumerate(getattr(catalog, key)):
            try:
                re.compile(pattern)
            except re.error as exc:
                errors.append(
                    f"catalog.{key}[{i}]: {pattern!r} is not a regular expression ({exc}); "
                    "allowed: a Python regular expression, such as '^POST$'"
                )
    return errors


def load_config(path: str | Path | None, column_map: dict[str, str] | None = None) -> BuildConfig:
    """Read a TOML build config (or the defaults), then apply `--map canonical=source` flags."""
    config = BuildConfig()
    if path is not None:
        try:
            config = msgspec.toml.decode(Path(path).read_bytes(), type=BuildConfig)
        except OSError as exc:
            raise ConfigError(f"config {path}: cannot be read ({exc.strerror})") from exc
        except (msgspec.ValidationError, msgspec.DecodeError) as exc:
            raise ConfigError(f"config {path}: {exc}{_allowed(str(exc))}") from exc
    if column_map:
        unknown = sorted(set(column_map) - set(CANONICAL_EVENT_COLUMNS))
        if unknown:
            raise ConfigError(
                f"--map names {unknown}, which are not event columns; allowed: "
                f"{', '.join(CANONICAL_EVENT_COLUMNS)}"
            )
        columns = dict(config.input.columns) | column_map
        config = msgspec.structs.replace(
            config, input=msgspec.structs.replace(config.input, columns=columns)
        )
    errors = [e for r in config.segments.rules for e in rule_errors(r.name, r.when)]
    if config.segments.k_min > config.segments.k_max:
        errors.append(f"segments.k_min ({config.segments.k_min}) is over k_max")
    errors += experiment_errors(config.experiments)
    errors += bandit_errors(config.bandits)
    errors += _pattern_errors(config.catalog)
    errors += [f"merchandising{field}: {why}" for field, why in policy_errors(config.merchandising)]
    if config.intent.browsing > config.intent.high:
        errors.append(
            f"intent.browsing ({config.intent.browsing}) is over intent.high "
            f"({config.intent.high}); allowed: browsing <= high"
        )
    if errors:
        raise ConfigError(f"config {path}: " + "; ".join(errors))
    for name in config.evaluation.target_types:
        if name not in config.event_types:
            raise ConfigError(
                f"evaluation.target_types names {name!r}; known types: {list(config.event_types)}"
            )
    return config

"""The build pipeline, end to end: read and validate, evaluate on a temporal holdout, train on
everything, write a verified bundle. `export_bundle` is the one entry point."""

from __future__ import annotations

import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import msgspec
import pandas as pd
from sklearn.ensemble import HistGradientBoostingClassifier

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
    load_bundle,
    model_from_trees,
    sha256_file,
)
from edge.experiments import ExperimentTable
from edge.intent import IntentLabels
from edge.rules import DEFAULT_RULES, RuleBook
from edge.schemas import Profile
from edge.scoring import CONTEXT_FEATURES, FEATURES, CandidateSizes
from edge.segments import SEGMENT_FEATURES, SegmentRule
from edge.visitor import SegmentHead, VisitorModel
from export.bandits import bandit_priors
from export.baselines import BASELINES, grids
from export.cases import Case, choose_protocol, leave_last_out, make_cases, time_split
from export.config import BuildConfig, check_rule_sets, load_rules
from export.covisitation import CoVisitation
from export.embeddings import ItemEmbeddings, item_metadata
from export.evaluate import evaluate_models, format_table
from export.experiment_report import read_log
from export.intent import fit_intent
from export.interactions import (
    ItemUniverse,
    attach_item_codes,
    build_universe,
    interaction_matrix,
    item_statistics,
)
from export.io import InputError, read_table
from export.item_regression import ItemRegression
from export.popularity import Popularity
from export.profiles import build_profiles
from export.ranker import fit_trees, ranker_to_onnx, training_rows
from export.segments import Segmenter, apply_rules, user_features
from export.validate import (
    QualityReport,
    check_drop_share,
    normalize_catalog,
    normalize_events,
    normalize_users,
    sorted_by_time,
)
from export.visitor import visitor_graph
from export.writer import write_bundle

DAY = pd.Timedelta(days=1)


class Progress:
    """Step-by-step progress on stderr: long steps say what they are doing and how long it took."""

    def __init__(self, total: int, stream: Any = None, quiet: bool = False) -> None:
        self.total, self.stream, self.quiet, self.done = total, stream, quiet, 0
        self.started = time.perf_counter()

    def step(self, name: str) -> _Step:
        self.done += 1
        return _Step(self, name)

    def say(self, text: str) -> None:
        if not self.quiet:
            print(text, file=self.stream or sys.stderr, flush=True)


class _Step:
    def __init__(self, progress: Progress, name: str) -> None:
        self.progress, self.name = progress, name

    def __enter__(self) -> _Step:
        p = self.progress
        p.say(f"[{p.done}/{p.total}] {self.name} …")
        self.t0 = time.perf_counter()
        return self

    def __exit__(self, *exc: object) -> None:
        if exc[0] is None:
            p = self.progress
            p.say(f"[{p.done}/{p.total}] {self.name}: done in {time.perf_counter() - self.t0:.1f}s")


@dataclass
class Trained:
    trees: dict[str, dict[str, Any]]
    ranker_onnx: bytes
    fallback: dict[str, Any]
    profiles: dict[str, Profile]
    ranker_training: dict[str, Any]
    visitor_onnx: bytes | None = None  # the segment and intent heads, when either was learned
    segments: dict[str, Any] | None = None  # what the manifest says of them
    intent: dict[str, Any] | None = None
    segment_features: pd.DataFrame | None = None  # the customers' features segments were fitted on


@dataclass
class LearnedSegments:
    onnx: bytes  # the segment graph (log, scaling, nearest reference point)
    description: dict[str, Any]  # what the manifest says of them
    segmenter: Segmenter
    rules: list[SegmentRule]
    universe: ItemUniverse  # the items' categories, for the customers' features
    fitted: dict[str, str]  # the segment of each customer they were learned from
    features: pd.DataFrame  # the features of those customers (`user_features`)

    def of(self, events: pd.DataFrame) -> dict[str, str]:
        """Each known customer's segment from their events in `events` (rules first), as the
        edge's graph assigns it."""
        return self.assign(user_features(events, self.universe))

    def assign(self, features: pd.DataFrame) -> dict[str, str]:
        """The segment of each customer of `features` (`user_features` of some events)."""
        return _assigned(features, self.segmenter, self.rules)


def _assigned(
    features: pd.DataFrame, segmenter: Segmenter, rules: list[SegmentRule]
) -> dict[str, str]:
    if features.empty:
        return {}
    found = segmenter.assign(features[list(SEGMENT_FEATURES)].to_numpy())
    clusters = [segmenter.names_[c] for c in found]
    return dict(zip(features.index, apply_rules(features, rules, clusters)))


def fit_segments(
    events: pd.DataFrame, universe: ItemUniverse, config: BuildConfig
) -> LearnedSegments | None:
    """Segments of the known customers in `events`; None when there are too few of them to
    cluster (a log of anonymous sessions)."""
    sc = config.segments
    features = user_features(events, universe)
    if len(features) < max(50, 2 * sc.k_max):
        return None
    segmenter = Segmenter(
        sc.k, (sc.k_min, sc.k_max), config.seed, sc.method, sc.eps, sc.min_samples
    ).fit(features)
    rules = [SegmentRule(r.name, r.when) for r in sc.rules]
    fitted = _assigned(features, segmenter, rules)
    sizes = pd.Series(list(fitted.values())).value_counts()
    description = {
        "file": VISITOR,
        "features": list(SEGMENT_FEATURES),
        "clusters": segmenter.names_,
        "method": sc.method,
        "k": segmenter.k_,
        "k_chosen_by": "density" if sc.method == "dbscan" else "config" if sc.k else "silhouette",
        "silhouette": segmenter.silhouettes_,
        "stability": segmenter.stability_,
        "table": segmenter.table_,
        "rules": [{"name": r.name, "when": r.when} for r in sc.rules],
        "rule_sizes": {r.name: int(sizes.get(r.name, 0)) for r in sc.rules},
    }
    onnx = segmenter.to_onnx()
    return LearnedSegments(onnx, description, segmenter, rules, universe, fitted, features)


def present_target_types(events: pd.DataFrame, config: BuildConfig) -> list[str]:
    """The configured target types, or every positively weighted type when the data has none
    of them (a log of views only, say)."""
    wanted = [t for t in config.evaluation.target_types if (events["type"] == t).any()]
    if wanted:
        return wanted
    return [t for t, w in config.events.weights.items() if w > 0 and (events["type"] == t).any()]


def fit_candidate_models(
    events: pd.DataFrame, universe: ItemUniverse, config: BuildConfig
) -> tuple[dict[str, dict[str, Any]], Popularity]:
    weights = config.events.weights
    emb = config.embeddings
    matrix = interaction_matrix(events, universe, weights)
    embeddings = ItemEmbeddings(
        emb.factors, emb.regularization, emb.alpha, emb.iterations, config.seed
    ).fit(matrix, item_metadata(universe))
    rc = config.regression
    regression = ItemRegression(rc.regularization, rc.neighbours, rc.max_items).fit(matrix)
    cv = config.covisitation
    covisitation = CoVisitation(cv.window, cv.neighbours, cv.min_count).fit(
        events, universe, weights
    )
    pc = config.popularity
    popularity = Popularity(
        pc.half_life_days, pc.context_top_n, pc.min_context_events, pc.fallback_items
    ).fit(events, universe, weights)
    trees = {
        ITEMS: universe.to_tree() | item_statistics(events, universe),
        EMBEDDINGS: embeddings.to_tree(emb.quantize, emb.rows),
        COVISITATION: covisitation.to_tree(),
        REGRESSION: regression.to_tree(),
        POPULARITY: popularity.to_tree(),
    }
    return trees, popularity


def cases_for(
    protocol: str,
    history: pd.DataFrame,
    window: pd.DataFrame,
    profiles: dict[str, Profile],
    config: BuildConfig,
    limit: int,
) -> tuple[str, list[Case]]:
    """The questions `window` asks of a model fitted on `history`, under `protocol`."""
    chosen = choose_protocol(protocol, history, window)
    targets = present_target_types(window, config)
    return chosen, make_cases(chosen, window, profiles, targets, limit, config.seed)


def train(
    events: pd.DataFrame,
    universe: ItemUniverse,
    config: BuildConfig,
    users: dict[str, dict[str, str]] | None = None,
    intent_truth: pd.Series | None = None,
    fitted_before: FittedBefore | None = None,
) -> Trained:
    """The ranker on a time split inside `events` (`fit_ranker`), then every model on all of
    `events`. `intent_truth` (true purchase probability by session id, from a simulated shop)
    adds a comparison with the truth to the intent model's evaluation. `fitted_before`: the
    candidate models and segment features of the ranker's history, when the evaluation already
    computed them."""
    weights = config.events.weights
    ic = config.intent
    segments = fit_segments(events, universe, config)
    # Its training data is freed when it returns: the final models have the memory to themselves.
    ranker, stats = fit_ranker(events, universe, config, segments, fitted_before)
    trees, popularity = fit_candidate_models(events, universe, config)
    intent_onnx, intent = fit_intent(
        events,
        universe,
        ic.train_days,
        ic.eval_days,
        ic.max_sessions,
        config.seed,
        intent_truth,
    )
    if intent is not None:
        intent["labels"] = {"high": ic.high, "browsing": ic.browsing}
    segment_of = segments.fitted if segments is not None else {}
    profiles = {
        user: msgspec.structs.replace(profile, segment=segment_of.get(user, ""))
        for user, profile in build_profiles(events, weights, users or {}, universe=universe).items()
    }
    return Trained(
        trees,
        ranker_to_onnx(ranker),
        popularity.fallback(universe),
        profiles,
        stats,
        visitor_graph(segments.onnx if segments else None, intent_onnx),
        segments.description if segments else None,
        intent,
        segments.features if segments else None,
    )


def ranker_label_days(events: pd.DataFrame, config: BuildConfig) -> float:
    """The ranker's label window: the configured days, else the last 15% of the span."""
    span_days = (events["ts"].max() - events["ts"].min()) / DAY
    return config.ranker.label_days or max(1.0, 0.15 * span_days)


@dataclass(frozen=True)
class FittedBefore:
    """Candidate models and customers' segment features of the first `rows` events of a build's,
    in time order (a time split's training part). The evaluation computes them on its training
    part; when that part is the final ranker's history (the default holdout is the label
    window), the ranker reuses them: the same fit on the same events, once instead of twice.
    Two time splits of the same events that keep the same number of rows keep the same rows."""

    rows: int
    trees: dict[str, dict[str, Any]]
    segment_features: pd.DataFrame | None = None


def fit_ranker(
    events: pd.DataFrame,
    universe: ItemUniverse,
    config: BuildConfig,
    segments: LearnedSegments | None,
    fitted_before: FittedBefore | None = None,
) -> tuple[HistGradientBoostingClassifier, dict[str, Any]]:
    """The ranker, and what the manifest says of its training.

    Its visitor features come from models the label window cannot leak into: purchase intent
    from a classifier fitted on the part before it; the segment from the segments learned on
    all of `events` (the ones the bundle serves, so their codes mean the same in training and
    serving), assigned from each customer's history before the window."""
    weights = config.events.weights
    rc, ic = config.ranker, config.intent
    label_days = ranker_label_days(events, config)
    history, labels = time_split(events, label_days)
    reused = None
    if fitted_before is not None and fitted_before.rows == len(history):
        reused = fitted_before
    if reused is not None:
        trees = reused.trees
    else:
        trees, _ = fit_candidate_models(history, universe, config)
    model = model_from_trees(trees, weights, ranker=None)
    history_intent = None
    if rc.intent_feature:
        history_intent, _ = fit_intent(
            history, universe, ic.train_days, ic.eval_days, ic.max_sessions, config.seed
        )
    intent_labels = IntentLabels(ic.high, ic.browsing)
    profiles = build_profiles(history, weights, universe=universe)
    if segments is not None:
        if reused is not None and reused.segment_features is not None:
            segment_before = segments.assign(reused.segment_features)
        else:
            segment_before = segments.of(history)
        profiles = {
            user: msgspec.structs.replace(profile, segment=segment_before.get(user, ""))
            for user, profile in profiles.items()
        }
    visitor = _visitor_model(segments, history_intent, intent_labels)
    # Leave-last-out is an evaluation split; inside the training part, the window is a time one.
    protocol = config.evaluation.protocol.replace("leave_last_out", "users")
    protocol, cases = cases_for(protocol, history, labels, profiles, config, rc.max_cases)
    sizes = CandidateSizes(**msgspec.to_builtins(config.serving.candidates))
    x, y, stats = training_rows(
        model, profiles, cases, rc.negatives_per_case, config.seed, sizes, visitor
    )
    # A constant column is one no tree can split on: how each ablation switch works.
    switched_off = [] if rc.context_features else list(CONTEXT_FEATURES)
    switched_off += [] if rc.intent_feature else ["purchase_intent"]
    switched_off += [] if rc.segment_feature else ["segment"]
    x[:, [FEATURES.index(f) for f in switched_off]] = 0.0
    ranker = fit_trees(x, y, rc.max_iter, rc.max_leaf_nodes, rc.learning_rate, config.seed)
    stats |= {
        "protocol": protocol,
        "label_days": round(label_days, 2),
        "label_cut": labels["ts"].min().isoformat(),
        "trees": int(ranker.n_iter_),
        "features_switched_off": switched_off,
    }
    return ranker, stats


def _visitor_model(
    segments: LearnedSegments | None, intent_onnx: bytes | None, labels: IntentLabels
) -> VisitorModel | None:
    """The visitor graph the ranker's training rows are described with, as the edge runs it."""
    graph = visitor_graph(segments.onnx if segments else None, intent_onnx)
    if graph is None:
        return None
    head = None
    if segments is not None:
        head = SegmentHead(segments.segmenter.names_, segments.rules)
    return VisitorModel(graph, head, labels if intent_onnx else None)


def split_for_evaluation(
    events: pd.DataFrame, config: BuildConfig
) -> tuple[pd.DataFrame, pd.DataFrame, dict[str, Any]]:
    """(train, test, a description of the split) under the configured protocol."""
    ec = config.evaluation
    if ec.protocol == "leave_last_out":
        train_part, test_part = leave_last_out(events, present_target_types(events, config))
        return train_part, test_part, {"split": "leave_last_out"}
    # By default the ranker's label window, so the final ranker's history models are the
    # evaluation's (`FittedBefore`).
    days = ec.holdout_days or ranker_label_days(events, config)
    train_part, test_part = time_split(events, days)
    return train_part, test_part, {"split": "time", "days": round(days, 2)}


def evaluate_split(
    events: pd.DataFrame,
    universe: ItemUniverse,
    users: dict[str, dict[str, str]],
    config: BuildConfig,
    baselines: list[str],
    lineage: dict[str, Any],
    progress: Progress,
) -> tuple[dict[str, Any], FittedBefore | None]:
    """Train a bundle on the training part, write and load it, and score it and the baselines
    on the test part. Baselines are tuned on a validation split carved the same way from the
    training part. Also returns the candidate models fitted on a time split's training part,
    for the final ranker to reuse (`FittedBefore`)."""
    ec = config.evaluation
    train_part, test_part, split = split_for_evaluation(events, config)
    if train_part.empty or test_part.empty:
        raise ValueError(
            f"the {split['split']} split left an empty part ({len(train_part):,} training and "
            f"{len(test_part):,} test events); set evaluation.holdout_days to fit the data"
        )
    weights = config.events.weights
    with progress.step(f"train on {len(train_part):,} events, hold out {len(test_part):,}"):
        held = train(train_part, universe, config, users)
    fitted_before = None
    if split["split"] == "time":
        fitted_before = FittedBefore(len(train_part), held.trees, held.segment_features)
    protocol, test_cases = cases_for(
        ec.protocol, train_part, test_part, held.profiles, config, ec.max_cases
    )
    if not test_cases:
        note = "no visitor in the test part took an item they could be shown"
        return {"cases": 0, "note": note}, fitted_before
    fit_part, validation_cases = train_part, []
    tuned = grids(len(universe.ids), ec.ease_max_items, config.seed)
    if any(len(tuned.get(name, [])) > 1 for name in baselines):  # else nothing is tuned
        fit_part, validation_part, _ = split_for_evaluation(train_part, config)
        _, validation_cases = cases_for(
            ec.protocol,
            fit_part,
            validation_part,
            build_profiles(fit_part, weights, universe=universe),
            config,
            min(ec.max_cases, 5_000),
        )
    with progress.step(f"evaluate through the edge code path, against {', '.join(baselines)}"):
        with tempfile.TemporaryDirectory() as tmp:
            _write(Path(tmp) / "bundle", held, config, lineage, {}, None)
            result = evaluate_models(
                load_bundle(Path(tmp) / "bundle", scan_in_background=False),
                test_cases,
                train_part,
                fit_part,
                validation_cases,
                universe,
                weights,
                baselines,
                ec.k,
                config.seed,
                ec.ease_max_items,
                say=progress.say,
            )
    evaluation = {
        "protocol": protocol,
        "cases": len(test_cases),
        "validation_cases": len(validation_cases),
        "k": ec.k,
        "target_types": present_target_types(test_part, config),
        "split": split | {"train_events": len(train_part), "test_events": len(test_part)},
        **result,
    }
    return evaluation, fitted_before


def _write(
    out_dir: Path,
    trained: Trained,
    config: BuildConfig,
    lineage: dict[str, Any],
    metrics: dict[str, Any],
    signing_key: bytes | None,
    rules: RuleBook = DEFAULT_RULES,
    bandits: list[Bandit] | None = None,
) -> dict[str, Any]:
    models = {
        "event_weights": dict(config.events.weights),
        "ranker": {
            "file": "ranker.onnx",
            "features": list(FEATURES),
            "estimator": "HistGradientBoostingClassifier",
            "training": trained.ranker_training,
        },
        "embeddings": {
            "method": "implicit ALS",
            "factors": config.embeddings.factors,
            **trained.trees[EMBEDDINGS]["quantization"],
        },
        "serving": msgspec.to_builtins(config.serving),
        **({"segments": trained.segments} if trained.segments else {}),
        **({"intent": trained.intent} if trained.intent else {}),
        "contexts": sorted(trained.trees[POPULARITY]["contexts"]),
    }
    optional = {VISITOR: trained.visitor_onnx} if trained.visitor_onnx else {}
    optional[RULES] = msgspec.msgpack.encode(rules)
    models["rules"] = {
        "file": RULES,
        "rules": [r.name for r in sorted(rules.rules, key=lambda r: r.priority)],
        "guardrails": msgspec.to_builtins(rules.guardrails),
    }
    if bandits:
        optional[BANDITS] = msgspec.msgpack.encode(BanditTable(bandits))
        models["bandits"] = {
            "file": BANDITS,
            "slots": {
                b.slot: {"arms": [a.name for a in b.arms], "segments": sorted(b.priors)}
                for b in bandits
            },
        }
    if config.experiments:
        table = ExperimentTable(list(config.experiments))
        optional[EXPERIMENTS] = msgspec.msgpack.encode(table)
        models["experiments"] = {
            "file": EXPERIMENTS,
            "keys": [e.key for e in config.experiments],
            "hash": "sha256('<key>:<unit id>')[:4] big-endian / 2**32, by cumulative weight",
        }
    return write_bundle(
        out_dir,
        trained.trees,
        trained.ranker_onnx,
        trained.fallback,
        trained.profiles,
        models,
        lineage,
        metrics,
        signing_key,
        optional,
    )


def read_inputs(
    events_paths: list[str | Path],
    config: BuildConfig,
    catalog_path: str | Path | None,
    users_path: str | Path | None,
    progress: Progress,
) -> tuple[pd.DataFrame, ItemUniverse, dict[str, dict[str, str]], dict[str, Any]]:
    """Read and validate the inputs: (events, item universe, user attributes, lineage)."""
    report = QualityReport()
    with progress.step("read and validate the input"):

        def read(path: str | Path, role: str) -> pd.DataFrame:
            """Read one input file and record it (name, sha256, rows) in the lineage."""
            path = Path(path)
            raw = read_table(path)
            report.files.append(
                {"role": role, "name": path.name, "sha256": sha256_file(path), "rows": len(raw)}
            )
            return raw

        frames = [normalize_events(read(path, "events"), config, report) for path in events_paths]
        events = sorted_by_time(frames[0] if len(frames) == 1 else pd.concat(frames))
        del frames
        catalog = (
            None
            if catalog_path is None
            else normalize_catalog(read(catalog_path, "catalog"), config)
        )
        users = {} if users_path is None else normalize_users(read(users_path, "users"), config)
        progress.say(report.table())
        check_drop_share(report, config)
    if events.empty:
        raise ValueError("no event rows were kept; nothing to learn from")
    universe = build_universe(events, catalog)
    attach_item_codes(events, universe)
    # A handful of labels: as a categorical, each comparison with one (event weights, targets,
    # purchases; dozens per build) compares small integer codes, not ten million strings.
    events["type"] = events["type"].astype("category")
    t_min, t_max = events["ts"].min(), events["ts"].max()
    lineage: dict[str, Any] = report.to_dict() | {
        "time_range": [t_min.isoformat(), t_max.isoformat()],
        "items": len(universe.ids),
        "users": int(events.loc[events["user_id"] != "", "user_id"].nunique()),
        "users_with_attributes": len(users),
        "config": msgspec.to_builtins(config),
    }
    return events, universe, users, lineage


def read_intent_truth(path: str | Path) -> pd.Series:
    """A simulated shop's true purchase probability per session (session_id, true_intent)."""
    frame = read_table(path)
    missing = {"session_id", "true_intent"} - set(frame.columns)
    if missing:
        raise InputError(
            f"{path}: the truth file lacks {sorted(missing)}; it needs session_id and "
            "true_intent (as `edgeperso simulate` writes it)"
        )
    probability = pd.to_numeric(frame["true_intent"], errors="coerce")
    if probability.isna().any() or not probability.between(0.0, 1.0).all():
        raise InputError(f"{path}: true_intent must be a probability between 0 and 1 everywhere")
    return pd.Series(probability.to_numpy(), index=frame["session_id"].astype(str))


def export_bundle(
    events_paths: list[str | Path],
    out_dir: str | Path,
    config: BuildConfig,
    catalog_path: str | Path | None = None,
    users_path: str | Path | None = None,
    signing_key: bytes | None = None,
    evaluate: bool = True,
    quiet: bool = False,
    truth_path: str | Path | None = None,
    rules_path: str | Path | None = None,
    bandit_log: list[str | Path] | None = None,
) -> dict[str, Any]:
    """Read, validate, evaluate (unless told not to), train and write a bundle. `truth_path`:
    a simulated shop's `truth` file, to measure the intent model against the true intent.
    `rules_path`: the triggered-offer rules (TOML), else the defaults. `bandit_log`: the
    feedback log (directories or segment files) the bandits' priors come from."""
    rules = load_rules(rules_path)  # a bad rules file stops the build before any work
    check_rule_sets(config, rules)
    progress = Progress(5 if evaluate else 3, quiet=quiet)
    events, universe, users, lineage = read_inputs(
        events_paths, config, catalog_path, users_path, progress
    )
    metrics: dict[str, Any] = {}
    fitted_before = None
    if evaluate:
        metrics["evaluation"], fitted_before = evaluate_split(
            events, universe, users, config, list(config.evaluation.baselines), lineage, progress
        )
        progress.say(format_table(metrics["evaluation"]))
    truth = None if truth_path is None else read_intent_truth(truth_path)
    with progress.step("train on all events"):
        trained = train(events, universe, config, users, truth, fitted_before)
    with progress.step(f"write the bundle to {out_dir}"):
        log = read_log([Path(p) for p in bandit_log]) if bandit_log else None
        segment_of = {user: p.segment for user, p in trained.profiles.items() if p.segment}
        bandits = bandit_priors(list(config.bandits), log, segment_of)
        manifest = _write(
            Path(out_dir),
            trained,
            config,
            lineage,
            metrics,
            signing_key,
            rules,
            bandits,
        )
    total = time.perf_counter() - progress.started
    progress.say(
        f"bundle {manifest['build_id']} written to {out_dir} in {total:.1f}s "
        f"({sum(f['bytes'] for f in manifest['files'].values()) / 1e6:.2f} MB, "
        f"{len(trained.profiles):,} profiles)"
    )
    return manifest


def evaluate_events(
    events_paths: list[str | Path],
    config: BuildConfig,
    catalog_path: str | Path | None = None,
    users_path: str | Path | None = None,
    baselines: list[str] | None = None,
    quiet: bool = False,
) -> dict[str, Any]:
    """`edgeperso evaluate`: read, split, train, and compare with the baselines; no bundle is
    kept."""
    progress = Progress(3, quiet=quiet)
    events, universe, users, lineage = read_inputs(
        events_paths, config, catalog_path, users_path, progress
    )
    names = list(BASELINES) if baselines is None else baselines
    evaluation, _ = evaluate_split(events, universe, users, config, names, lineage, progress)
    return evaluation | {"lineage": {k: lineage[k] for k in ("rows_kept", "items", "users")}}

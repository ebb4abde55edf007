"""The build, end to end: read and validate, evaluate on a held-out split, train on
everything, write a verified bundle. `export_bundle` is the one entry point; `edgeperso
evaluate` runs `evaluate_events`. Each step is a stage of `export.stages`, with typed inputs
and outputs; this module only chains them and names the steps it reports."""

from __future__ import annotations

import time
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from datetime import date
from pathlib import Path
from typing import TYPE_CHECKING

import msgspec
import pandas as pd
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from edge.bundle import Bundle
from edge.bundle.manifest import Evaluation, Lineage, Manifest, Metrics, Signature
from edge.rules import RuleBook
from export.baselines import BASELINES
from export.config import BuildConfig, check_rule_sets, load_rules
from export.evaluate import format_selection, format_table
from export.progress import Progress, Say, timed
from export.report.build import write_build_report
from export.sources import local_inputs
from export.stages.candidates import fit_candidates
from export.stages.evaluation import EvaluationInput, evaluate_held_out
from export.stages.ranking import FittedBefore, RankingInput, choose_labels, fit_ranking
from export.stages.read import Dataset, Sources, read_inputs, read_intent_truth
from export.stages.split import Holdout, split_events
from export.stages.visitors import fit_segments, fit_visitors
from export.stages.write import Destination, Trained, write

if TYPE_CHECKING:
    from pyspark.sql import SparkSession


def export_bundle(
    events_paths: list[str | Path],
    out_dir: str | Path,
    config: BuildConfig,
    catalog_path: str | Path | None = None,
    users_path: str | Path | None = None,
    signing_key: Ed25519PrivateKey | None = None,
    evaluate: bool = True,
    quiet: bool = False,
    truth_path: str | Path | None = None,
    rules_path: str | Path | None = None,
    bandit_log: list[str | Path] | None = None,
    compare_with: dict[str, Bundle] | None = None,
    events_since: date | None = None,
    test_after: pd.Timestamp | None = None,
    report: bool = True,
    spark_master: str | None = None,
) -> Manifest:
    """Read, validate, evaluate (unless told not to), train and write a bundle. `truth_path`:
    a simulated shop's `truth` file, to measure the intent model against the true intent.
    `rules_path`: the triggered-offer rules (TOML), else the defaults. `bandit_log`: the
    feedback log (directories or segment files) the bandits' priors come from. `signing_key`:
    the Ed25519 private key the manifest is signed with (`edge.bundle.signing`).
    `compare_with`: bundles the evaluation asks its test cases too, by name (a rebuild's
    published bundle). `events_since`: leave out event files shipped before that day
    (`export.sources`). `test_after`: evaluate on a time split whose test part is the events
    after that moment (what `compare_with`'s bundles have not seen). `report`: write
    report.html into the bundle's directory (`export.report.build`). `spark_master`: read and
    validate the events on Spark there (`export.spark`; None: on this machine)."""
    rules = load_rules(rules_path)  # a bad rules file stops the build before any work
    check_rule_sets(config, rules)
    progress = Progress(5 if evaluate else 3, quiet=quiet)
    with engine(spark_master) as spark:
        data = _read(events_paths, catalog_path, users_path, config, progress, events_since, spark)
        return _evaluate_train_write(
            data, Path(out_dir), config, progress, signing_key, evaluate, truth_path, rules,
            bandit_log, compare_with, test_after, report,
        )  # fmt: skip


def _evaluate_train_write(
    data: Dataset,
    out_dir: Path,
    config: BuildConfig,
    progress: Progress,
    signing_key: Ed25519PrivateKey | None,
    evaluate: bool,
    truth_path: str | Path | None,
    rules: RuleBook,
    bandit_log: list[str | Path] | None,
    compare_with: dict[str, Bundle] | None,
    test_after: pd.Timestamp | None,
    report: bool,
) -> Manifest:
    metrics = Metrics()
    fitted_before = None
    labels = choose_labels(data, config)
    if evaluate:
        baselines = list(config.evaluation.baselines)
        evaluation, fitted_before = _evaluate(
            data, config, baselines, labels, progress, compare_with or {}, test_after
        )
        metrics = Metrics(evaluation=evaluation)
        progress.say(format_table(evaluation))
    truth = None if truth_path is None else read_intent_truth(truth_path)
    with progress.step("train on all events"):
        trained = train(data, config, labels, truth, fitted_before, progress.say)
    progress.say(format_selection(trained.ranker_training))
    destination = Destination(out_dir, signing_key, rules, tuple(bandit_log or ()))
    with progress.step(f"write the bundle to {out_dir}"):
        manifest = write(trained, destination, config, data.lineage, metrics)
        if report:
            progress.say(f"report for people: {write_build_report(out_dir)}")
    total = time.perf_counter() - progress.started
    signed = manifest.signature
    signer = f"signed by key {signed.key_id}" if isinstance(signed, Signature) else "unsigned"
    progress.say(
        f"bundle {manifest.build_id} written to {out_dir} in {total:.1f}s, {signer} "
        f"({sum(f.bytes for f in manifest.files.values()) / 1e6:.2f} MB, "
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
) -> tuple[Evaluation, Lineage]:
    """`edgeperso evaluate`: read, split, train, and compare with the baselines; no bundle is
    kept. The evaluation, and the lineage of the data it was made on."""
    progress = Progress(3, quiet=quiet)
    data = _read(events_paths, catalog_path, users_path, config, progress)
    names = list(BASELINES) if baselines is None else baselines
    evaluation, _ = _evaluate(data, config, names, choose_labels(data, config), progress)
    return evaluation, data.lineage


def train(
    data: Dataset,
    config: BuildConfig,
    labels: Holdout,
    intent_truth: pd.Series | None = None,
    fitted_before: FittedBefore | None = None,
    say: Say = lambda _: None,
) -> Trained:
    """Every model of a bundle, on all of `data`'s events. `labels`: how the ranker's label part
    is cut (`choose_labels`). `fitted_before`: the candidate models and segment features of
    the ranker's history, when the evaluation already computed them. `say`: how long each
    part took."""
    with timed(say, "segments"):
        segments = fit_segments(data, config)
    # The ranker before the final candidate models: its training rows and its history's models
    # are freed before those are fitted, so they have the memory to themselves.
    with timed(say, "ranker (its history's models, label rows, fit)"):
        ranker = fit_ranking(RankingInput(data, segments, fitted_before, labels), config)
    with timed(say, "candidate models"):
        candidates = fit_candidates(data, config)
    with timed(say, "profiles and intent"):
        visitors = fit_visitors(data, segments, config, intent_truth)
    return Trained(
        candidates.trees,
        ranker.onnx,
        candidates.fallback,
        visitors.profiles,
        ranker.training,
        visitors.graph,
        visitors.segments,
        visitors.intent,
        segments.features if segments else None,
    )


def _read(
    events_paths: list[str | Path],
    catalog_path: str | Path | None,
    users_path: str | Path | None,
    config: BuildConfig,
    progress: Progress,
    since: date | None = None,
    spark: SparkSession | None = None,
) -> Dataset:
    where = "" if spark is None else f" on Spark ({spark.sparkContext.master})"
    with (
        progress.step(f"read and validate the input{where}"),
        local_inputs(events_paths, since=since, spark=spark) as events,
    ):
        sources = Sources(
            tuple(events.paths),
            None if catalog_path is None else Path(catalog_path),
            None if users_path is None else Path(users_path),
            events.names,
        )
        return read_inputs(sources, config, progress.say, spark)


@contextmanager
def engine(spark_master: str | None) -> Iterator[SparkSession | None]:
    """The Spark session a build runs in (`export.spark.session.running_session`), or None for
    this machine alone."""
    if spark_master is None:
        yield None
        return
    from export.spark.session import running_session

    with running_session(spark_master) as spark:
        yield spark


def _evaluate(
    data: Dataset,
    config: BuildConfig,
    baselines: Sequence[str],
    labels: Holdout,
    progress: Progress,
    bundles: dict[str, Bundle] | None = None,
    test_after: pd.Timestamp | None = None,
) -> tuple[Evaluation, FittedBefore | None]:
    """Split, train on the training part, and score that bundle and the baselines on the test
    part. Also the models fitted on a time split's training part, for the final ranker, whose
    history that part is by default."""
    if test_after is not None:
        last = data.summary.last
        days = 0.0 if last is None else (last - test_after) / pd.Timedelta(days=1)
        if days <= 0:
            note = f"no event after {test_after.isoformat()}: nothing to compare on"
            return Evaluation(cases=0, note=note), None
        after = msgspec.structs.replace(
            config.evaluation, protocol="temporal", holdout_days=float(days)
        )
        config = msgspec.structs.replace(config, evaluation=after)
    split = split_events(data, config)
    with progress.step(f"train on {len(split.train):,} events, hold out {len(split.test):,}"):
        held = train(split.train, config, labels, say=progress.say)
    with progress.step(f"evaluate through the edge code path, against {', '.join(baselines)}"):
        inputs = EvaluationInput(data, split, held, tuple(baselines), bundles or {})
        evaluation = evaluate_held_out(inputs, config, progress.say)
    fitted_before = None
    if split.description.split in ("time", "random"):
        kind = split.description.split
        fitted_before = FittedBefore(kind, len(split.train), held.trees, held.segment_features)
    return evaluation, fitted_before

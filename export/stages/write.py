"""Write: `Trained` (every learned part of a bundle) + `Destination` (where, signed
with what, with which rules and bandit log) → the bundle directory, and its manifest.

`write_files` describes what the bundle holds in the manifest's typed `models` section;
`edge.bundle.write_bundle` writes the files and the manifest around it. The evaluation stage
writes through it too, so the bundle it scores is the one a build ships."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import msgspec
import onnx
import pandas as pd
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from edge.bandits import Bandit, BanditTable
from edge.bundle import (
    BANDITS,
    EMBEDDINGS,
    EXPERIMENTS,
    ITEMS,
    POPULARITY,
    RULES,
    VISITOR,
    write_bundle,
)
from edge.bundle.codecs import items_from_tree
from edge.bundle.manifest import (
    BanditsInfo,
    BanditSlotInfo,
    EmbeddingsInfo,
    ExperimentsInfo,
    IntentInfo,
    Lineage,
    Manifest,
    Metrics,
    Models,
    RankerInfo,
    RankerTraining,
    RulesInfo,
    SegmentsInfo,
    Serving,
)
from edge.errors import ValidationError
from edge.experiments import ExperimentTable
from edge.merchandising import Merchandiser
from edge.rules import DEFAULT_RULES, RuleBook
from edge.schemas import Profile
from edge.scoring import FEATURES
from export.bandits import bandit_priors
from export.config import BuildConfig
from export.errors import ConfigError
from export.experiment_report import read_log


@dataclass(frozen=True, eq=False)  # eq=False: DataFrames have no truth value to compare
class Trained:
    trees: dict[str, dict[str, Any]]
    ranker_onnx: bytes
    fallback: dict[str, Any]
    profiles: dict[str, Profile]
    ranker_training: RankerTraining
    visitor_onnx: bytes | None = None  # the segment and intent heads, when either was learned
    segments: SegmentsInfo | None = None  # what the manifest says of them
    intent: IntentInfo | None = None
    segment_features: pd.DataFrame | None = None  # the customers' features segments were fitted on


@dataclass(frozen=True)
class Destination:
    out_dir: Path
    signing_key: Ed25519PrivateKey | None = None  # the build's Ed25519 key (edge.bundle.signing)
    rules: RuleBook = DEFAULT_RULES
    bandit_log: tuple[str | Path, ...] = ()  # the feedback log the bandits' priors come from


def write(
    trained: Trained,
    destination: Destination,
    config: BuildConfig,
    lineage: Lineage,
    metrics: Metrics,
) -> Manifest:
    """The bandits' priors from the feedback log, then the bundle; returns its manifest."""
    log = read_log(list(destination.bandit_log)) if destination.bandit_log else None
    segment_of = {user: p.segment for user, p in trained.profiles.items() if p.segment}
    bandits = bandit_priors(list(config.bandits), log, segment_of)
    return write_files(
        destination.out_dir,
        trained,
        config,
        lineage,
        metrics,
        destination.signing_key,
        destination.rules,
        bandits,
    )


def write_files(
    out_dir: Path,
    trained: Trained,
    config: BuildConfig,
    lineage: Lineage,
    metrics: Metrics,
    signing_key: Ed25519PrivateKey | None,
    rules: RuleBook = DEFAULT_RULES,
    bandits: list[Bandit] | None = None,
) -> Manifest:
    """The bundle's files and its manifest, whose `models` says what each file holds."""
    optional = {VISITOR: trained.visitor_onnx} if trained.visitor_onnx else {}
    optional[RULES] = msgspec.msgpack.encode(rules)
    if bandits:
        optional[BANDITS] = msgspec.msgpack.encode(BanditTable(bandits))
    if config.experiments:
        optional[EXPERIMENTS] = msgspec.msgpack.encode(ExperimentTable(list(config.experiments)))
    quantization = trained.trees[EMBEDDINGS]["quantization"]
    models = Models(
        event_weights=dict(config.events.weights),
        ranker=RankerInfo(features=list(FEATURES), training=trained.ranker_training),
        embeddings=EmbeddingsInfo(
            method="implicit ALS", factors=config.embeddings.factors, **quantization
        ),
        serving=_serving(config, trained.ranker_training),
        contexts=sorted(trained.trees[POPULARITY]["contexts"]),
        segments=trained.segments,
        intent=trained.intent,
        rules=RulesInfo(
            rules=[r.name for r in sorted(rules.rules, key=lambda r: r.priority)],
            guardrails=rules.guardrails,
        ),
        bandits=BanditsInfo(
            slots={
                b.slot: BanditSlotInfo(arms=[a.name for a in b.arms], segments=sorted(b.priors))
                for b in bandits
            }
        )
        if bandits
        else None,
        experiments=ExperimentsInfo(
            keys=[e.key for e in config.experiments],
            hash="sha256('<key>:<unit id>')[:4] big-endian / 2**32, by cumulative weight",
        )
        if config.experiments
        else None,
        merchandising=config.merchandising or None,
    )
    return write_bundle(
        out_dir,
        trained.trees,
        trained.ranker_onnx,
        onnx_opset(trained.ranker_onnx),
        merchandised_fallback(trained, config),
        trained.profiles,
        models,
        lineage,
        metrics,
        signing_key,
        optional,
    )


def merchandised_fallback(trained: Trained, config: BuildConfig) -> dict[str, Any]:
    """The fallback content without what the config's [merchandising] filters out, so that
    answers made without the catalog (the gateway's, a refused bundle's) never show it either.
    A policy naming what the catalog lacks stops the build, naming the key."""
    if not config.merchandising:
        return trained.fallback
    items = items_from_tree(trained.trees[ITEMS])
    try:
        policy = Merchandiser(items, config.merchandising).policy
    except ValidationError as exc:
        raise ConfigError(f"config {exc.field}: {exc.message}") from exc
    if policy is None or not policy.restricts:
        return trained.fallback
    out = {}
    for key, pairs in trained.fallback.items():
        keep = policy.allows(items.positions([str(pair[0]) for pair in pairs])).tolist()
        out[key] = [pair for pair, ok in zip(pairs, keep) if ok]
    return out


def onnx_opset(onnx_bytes: bytes) -> int:
    """The default-domain opset a graph was written for, as the manifest records it."""
    model = onnx.load_from_string(onnx_bytes)
    version: int = next(o.version for o in model.opset_import if o.domain in ("", "ai.onnx"))
    return version


def _serving(config: BuildConfig, training: RankerTraining) -> Serving:
    """The config's [serving], with the scorer the selection guard chose."""
    chosen = training.selection.chosen if training.selection else config.serving.scorer
    return msgspec.structs.replace(config.serving, scorer=chosen or "ranker")

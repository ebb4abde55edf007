"""Loading a bundle: read every file into memory once, verify those bytes, decode them into a
`Bundle`. Loading never executes code from the bundle, and the loaded bundle never reads its
directory again: a file truncated, rewritten or deleted there afterwards changes nothing it
serves (the next reload sees it and refuses it)."""

from __future__ import annotations

from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import TypeVar

import msgspec

from edge import arrays
from edge.bandits import Bandit, bandit_table_decoder
from edge.bundle.checks import (
    HASH_THREADS,
    check_file,
    check_manifest,
    raise_first_failure,
    read_manifest,
    start_file_checks,
)
from edge.bundle.codecs import model_from_trees
from edge.bundle.files import (
    ARRAY_FILES,
    BANDITS,
    EXPERIMENTS,
    FALLBACK,
    MANIFEST,
    OPTIONAL_ARRAY_FILES,
    PROFILES,
    RANKER,
    RULES,
    VISITOR,
)
from edge.bundle.manifest import Manifest
from edge.errors import BundleError, ValidationError
from edge.experiments import Experiment, experiment_table_decoder
from edge.merchandising import Merchandiser
from edge.model import Model
from edge.profiles import EmbeddedProfileStore, EmptyProfileStore, ProfileStore
from edge.ranker import Ranker
from edge.rules import RuleBook, rule_book_decoder
from edge.scoring import COLUMN, FEATURES
from edge.visitor import SegmentHead, VisitorModel


class FallbackContent(msgspec.Struct, frozen=True, forbid_unknown_fields=True):
    """fallback.json: popular in-stock items per context key ("all", "country=de", ...)."""

    contexts: dict[str, list[tuple[str, float]]]


fallback_decoder = msgspec.json.Decoder(FallbackContent)
T = TypeVar("T")


@dataclass(frozen=True)
class Bundle:
    directory: Path
    manifest: Manifest
    model: Model
    profiles: ProfileStore
    fallback: dict[str, list[tuple[str, float]]]  # context key -> (item id, popularity), best first
    visitor: VisitorModel | None = None  # when export learned segments or intent
    experiments: tuple[Experiment, ...] = ()  # in the order they apply
    rules: RuleBook | None = None
    bandits: tuple[Bandit, ...] = ()
    # The catalog's names and the bundle's own merchandising policy, checked and compiled once.
    merchandiser: Merchandiser | None = None

    @property
    def build_id(self) -> str:
        return self.manifest.build_id


def load_fallback_only(
    directory: str | Path, *, public_key: bytes | None
) -> dict[str, list[tuple[str, float]]] | None:
    """The fallback content of a bundle that was refused, when fallback.json itself still
    matches the manifest: the page then gets popular items instead of nothing. None otherwise.
    With a public key, the manifest's signature must verify too: nothing of a forged bundle is
    served, not even its fallback (`public_key` has no default so that no caller forgets it)."""
    directory = Path(directory)
    try:
        manifest, _ = read_manifest(directory, public_key)
        return fallback_decoder.decode(
            check_file(directory, FALLBACK, manifest.files[FALLBACK])
        ).contexts
    except (BundleError, KeyError, OSError, msgspec.DecodeError):
        return None


def load_bundle(
    directory: str | Path,
    *,
    public_key: bytes | None = None,
    profiles: ProfileStore | None = None,
    scan_in_background: bool = True,
) -> Bundle:
    """Verify and decode. `profiles` overrides the embedded store (a key-value store, say),
    which is then neither read nor checked. A serving node builds the int8 scan in the
    background; an evaluation waits for it.

    Files are read and hashed in worker threads (hashlib lets go of the GIL) while this one
    decodes each file as soon as its own check has passed, so no byte is decoded, and none
    reaches onnxruntime, before it was verified. The bundle holds the bytes it verified: it
    costs its files' size in memory per process (8.5 MB at 100,000 items), and nothing on
    disk can change what it serves. A bundle with any failed check is refused, and the first
    failure in manifest order is the one reported."""
    directory = Path(directory)
    manifest = check_manifest(directory, public_key)
    with ThreadPoolExecutor(max_workers=HASH_THREADS) as pool:
        checks = start_file_checks(pool, directory, manifest, profile_store=profiles is None)

        def verified(name: str) -> memoryview:
            return checks[name].result()

        try:
            bundle = _decode(directory, manifest, profiles, scan_in_background, verified)
        except Exception:
            raise_first_failure(checks)
            raise
        raise_first_failure(checks)
    return bundle


def _feature_columns(names: list[str]) -> list[int] | None:
    """Where the ranker's features are in the rows the edge computes (`FEATURES`): None when
    they are all of them in order, else their positions (a bundle trained before a feature
    was added ranks on the ones it knows)."""
    if tuple(names) == FEATURES:
        return None
    unknown = [name for name in names if name not in COLUMN]
    if unknown:
        raise BundleError(
            f"{MANIFEST}: models.ranker.features names {unknown}, which this edge does not "
            f"compute; known: {', '.join(FEATURES)}",
            file=MANIFEST,
        )
    return [COLUMN[name] for name in names]


def _decode(
    directory: Path,
    manifest: Manifest,
    profiles: ProfileStore | None,
    scan_in_background: bool,
    verified: Callable[[str], memoryview],
) -> Bundle:
    present = [name for name in OPTIONAL_ARRAY_FILES if name in manifest.files]
    trees = {name: arrays.loads(verified(name), where=name) for name in (*ARRAY_FILES, *present)}
    models = manifest.models
    if not models.event_weights:
        raise BundleError(
            f"{MANIFEST}: models.event_weights is empty; a bundle weighs at least one event type",
            file=MANIFEST,
        )
    ranker = Ranker(
        bytes(verified(RANKER)),
        tuple(models.ranker.features),
        columns=_feature_columns(models.ranker.features),
    )
    model = model_from_trees(trees, models.event_weights, ranker, scan_in_background)
    if profiles is None:
        if PROFILES in manifest.profile_store:
            tree = arrays.loads(verified(PROFILES), where=PROFILES)
            profiles = EmbeddedProfileStore.from_tree(tree, PROFILES)
        else:
            profiles = EmptyProfileStore()
    fallback = _decoded(FALLBACK, verified(FALLBACK), fallback_decoder).contexts
    visitor = _visitor(manifest, verified) if VISITOR in manifest.files else None
    experiments: tuple[Experiment, ...] = ()
    if EXPERIMENTS in manifest.files:
        table = _decoded(EXPERIMENTS, verified(EXPERIMENTS), experiment_table_decoder)
        experiments = tuple(table.experiments)
    rules = None
    if RULES in manifest.files:
        rules = _decoded(RULES, verified(RULES), rule_book_decoder)
    bandits: tuple[Bandit, ...] = ()
    if BANDITS in manifest.files:
        bandits = tuple(_decoded(BANDITS, verified(BANDITS), bandit_table_decoder).bandits)
    try:
        merchandiser = Merchandiser(model.items, models.merchandising)
    except ValidationError as exc:
        raise BundleError(
            f"{MANIFEST}: models.{exc.field}: {exc.message}; re-export with a [merchandising] "
            "section that names what the catalog holds",
            file=MANIFEST,
        ) from exc
    return Bundle(
        directory,
        manifest,
        model,
        profiles,
        fallback,
        visitor,
        experiments,
        rules,
        bandits,
        merchandiser,
    )


def _decoded(
    name: str, data: memoryview, decoder: msgspec.json.Decoder[T] | msgspec.msgpack.Decoder[T]
) -> T:
    """One typed file of the bundle, decoded strictly; a BundleError naming it otherwise."""
    try:
        return decoder.decode(data)
    except msgspec.DecodeError as exc:
        raise BundleError(f"{name} is malformed: {exc}", file=name) from exc


def _visitor(manifest: Manifest, verified: Callable[[str], memoryview]) -> VisitorModel:
    """The heads the manifest describes: models.segments (cluster names and rules) and
    models.intent (label thresholds)."""
    segments, intent = manifest.models.segments, manifest.models.intent
    head = None if segments is None else SegmentHead(segments.clusters, segments.rules)
    labels = None if intent is None else intent.labels
    return VisitorModel(bytes(verified(VISITOR)), head, labels)

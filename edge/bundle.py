"""Load and verify a bundle directory: manifest, checksums, optional signature, format version,
and every file decoded into a `Model` (while the checksums run; nothing decoded is kept unless
they all pass). Loading never executes code from the bundle."""

from __future__ import annotations

import hashlib
import hmac
import json
import mmap
import os
from collections.abc import Callable
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import msgspec
import numpy as np

from edge import arrays
from edge.bandits import Bandit, bandit_table_decoder
from edge.errors import BundleError
from edge.experiments import Experiment, experiment_table_decoder
from edge.ids import is_sorted_and_unique
from edge.int8_scan import Int8Scan
from edge.intent import IntentLabels
from edge.model import Embeddings, ItemGraph, ItemTable, Model, Popularity
from edge.profiles import EmbeddedProfileStore, EmptyProfileStore, ProfileStore
from edge.ranker import Ranker
from edge.rules import RuleBook, rule_book_decoder
from edge.schemas import SUPPORTED_FORMAT_VERSIONS, FileEntry, Manifest, manifest_decoder
from edge.segments import SegmentRule
from edge.visitor import SegmentHead, VisitorModel

MANIFEST = "manifest.json"
ITEMS = "items.msgpack"
EMBEDDINGS = "embeddings.msgpack"
COVISITATION = "covisitation.msgpack"
REGRESSION = "item_regression.msgpack"
POPULARITY = "popularity.msgpack"
RANKER = "ranker.onnx"
# Optional: segments and intent, when export could learn either (enough known customers; some
# purchases to learn from).
VISITOR = "visitor.onnx"
EXPERIMENTS = "experiments.msgpack"  # optional: when the build config defines experiments
RULES = "rules.msgpack"  # triggered offers and their guardrails (export writes the defaults)
BANDITS = "bandits.msgpack"  # optional: when the build config defines bandit slots
FALLBACK = "fallback.json"
PROFILES = "profiles.msgpack"
REQUIRED_FILES = (ITEMS, EMBEDDINGS, COVISITATION, REGRESSION, POPULARITY, RANKER, FALLBACK)
ARRAY_FILES = (ITEMS, EMBEDDINGS, COVISITATION, REGRESSION, POPULARITY)


class FallbackContent(msgspec.Struct, frozen=True):
    """fallback.json: popular in-stock items per context key ("all", "country=de", ...)."""

    contexts: dict[str, list[tuple[str, float]]]


_fallback_decoder = msgspec.json.Decoder(FallbackContent)


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

    @property
    def build_id(self) -> str:
        return self.manifest.build_id


HASH_THREADS = min(4, os.cpu_count() or 1)


def sha256_file(path: Path) -> str:
    """One hashing call over the mapped file: it lets go of the GIL once for the whole file,
    where reading in chunks would take the GIL back for each, in turn with the loading thread."""
    with path.open("rb") as f:
        if os.fstat(f.fileno()).st_size == 0:
            return hashlib.sha256().hexdigest()
        with mmap.mmap(f.fileno(), 0, access=mmap.ACCESS_READ) as mapped:
            return hashlib.sha256(mapped).hexdigest()


def manifest_signature(manifest: dict[str, Any], key: bytes) -> str:
    """HMAC-SHA256 over the manifest without its signature, keys sorted, compact JSON."""
    unsigned = {k: v for k, v in manifest.items() if k != "signature"}
    payload = json.dumps(unsigned, sort_keys=True, separators=(",", ":")).encode()
    return hmac.new(key, payload, hashlib.sha256).hexdigest()


def read_manifest(directory: Path) -> tuple[Manifest, dict[str, Any]]:
    path = directory / MANIFEST
    if not path.is_file():
        raise BundleError(
            f"{path} is missing: is {directory} a bundle made by `edgeperso export`?", file=MANIFEST
        )
    raw = path.read_bytes()
    try:
        as_dict = json.loads(raw)
        version = as_dict.get("format_version") if isinstance(as_dict, dict) else None
    except json.JSONDecodeError as exc:
        raise BundleError(f"{MANIFEST} is not valid JSON: {exc}", file=MANIFEST) from exc
    if version not in SUPPORTED_FORMAT_VERSIONS:
        raise BundleError(
            f"{MANIFEST} has format_version {version!r}; this edge reads "
            f"{sorted(SUPPORTED_FORMAT_VERSIONS)}. Re-export the bundle with a matching edgeperso.",
            file=MANIFEST,
        )
    try:
        return manifest_decoder.decode(raw), as_dict
    except msgspec.ValidationError as exc:
        raise BundleError(f"{MANIFEST} is malformed: {exc}", file=MANIFEST) from exc


def check_file(directory: Path, name: str, entry: FileEntry) -> None:
    """The file is where the manifest says, with its size and sha256; else a BundleError."""
    path = directory / name
    if Path(name).name != name:
        raise BundleError(f"{MANIFEST} lists {name!r}, which is not a plain file name", file=name)
    if not path.is_file():
        raise BundleError(f"{name} is listed in {MANIFEST} but missing from {directory}", file=name)
    size = path.stat().st_size
    if size != entry.bytes:
        raise BundleError(f"{name} has {size} bytes; the manifest says {entry.bytes}", file=name)
    actual = sha256_file(path)
    if actual != entry.sha256:
        raise BundleError(
            f"{name} has sha256 {actual[:16]}…, the manifest says {entry.sha256[:16]}…: "
            "the file was changed or truncated after export",
            file=name,
        )


def check_manifest(directory: Path, signing_key: bytes | None = None) -> Manifest:
    """Format version, the required files listed, and the signature when a key is configured
    (it covers the manifest, whose hashes cover the files)."""
    manifest, as_dict = read_manifest(directory)
    missing = [name for name in REQUIRED_FILES if name not in manifest.files]
    if missing:
        raise BundleError(f"{MANIFEST} does not list {missing}", file=missing[0])
    if signing_key is not None:
        if manifest.signature is None:
            raise BundleError(
                "the bundle is not signed, but this edge requires a signature", file=MANIFEST
            )
        expected = manifest_signature(as_dict, signing_key)
        if not hmac.compare_digest(expected, manifest.signature):
            raise BundleError(
                "the manifest's signature does not match the signing key", file=MANIFEST
            )
    return manifest


def start_file_checks(
    pool: ThreadPoolExecutor, directory: Path, manifest: Manifest, profile_store: bool = True
) -> dict[str, Future[None]]:
    """Every listed file's size and sha256 (the embedded profile store's too, unless
    `profile_store` is false), checked in `pool`: hashlib lets go of the GIL while it hashes.
    The ONNX files start first, as onnxruntime waits for them (they are small); then the
    largest, so the longest hash is not left for last. The futures come back in manifest order,
    the order `raise_first_failure` reports in."""
    entries = dict(manifest.files) | (dict(manifest.profile_store) if profile_store else {})
    order = sorted(entries, key=lambda name: (not name.endswith(".onnx"), -entries[name].bytes))
    started = {name: pool.submit(check_file, directory, name, entries[name]) for name in order}
    return {name: started[name] for name in entries}


def raise_first_failure(checks: dict[str, Future[None]]) -> None:
    for check in checks.values():
        check.result()


def verify(directory: Path, signing_key: bytes | None = None) -> Manifest:
    """Check format version, every file's presence, size and sha256, and the signature when a
    key is configured. Raises BundleError naming the file and the reason."""
    directory = Path(directory)
    manifest = check_manifest(directory, signing_key)
    with ThreadPoolExecutor(max_workers=HASH_THREADS) as pool:
        raise_first_failure(start_file_checks(pool, directory, manifest))
    return manifest


# ------------------------------------------------------------------ trees -> model
def items_from_tree(tree: dict[str, Any]) -> ItemTable:
    ids = tree["ids"]
    if not isinstance(ids, np.ndarray) or ids.dtype.kind != "S":
        raise ValueError("ids must be a byte-string array (format 4 and later)")
    if not is_sorted_and_unique(ids):
        raise ValueError("ids must be unique and sorted")
    return ItemTable(
        id_bytes=ids,
        category=tree["category"],
        category_names=list(tree["category_names"]),
        price=tree["price"],
        in_stock=tree["in_stock"],
        age_days=tree["age_days"],
        repeat_rate=tree["repeat_rate"],
    )


def embeddings_from_tree(
    tree: dict[str, Any],
    scan_in_background: bool = False,
    verified: Callable[[], object] | None = None,
) -> Embeddings:
    """`verified` returns once the file's checksum passed (raising if it failed): the scan's
    graph goes to onnxruntime only after it."""
    factors, scale, order, norms = tree["factors"], tree["scale"], tree["order"], tree["norms"]
    if factors.dtype not in (np.int8, np.float32) or factors.ndim != 2:
        raise ValueError(f"embeddings: factors must be int8 or float32 rows, got {factors.dtype}")
    if not (factors.shape[0] == scale.size == order.size == norms.size):
        raise ValueError(
            f"embeddings: {factors.shape[0]} rows, {scale.size} scales, {order.size} order "
            f"entries and {norms.size} norms should be equal"
        )
    embeddings = Embeddings(
        factors=factors,
        scale=scale,
        order=order,
        norms=norms,
        gram=tree["gram"],
        alpha=float(tree["alpha"]),
        n_items=int(tree.get("items", order.size)),  # fewer rows than items: see Embeddings
    )
    if "scan_onnx" in tree and factors.dtype == np.int8:
        graph = bytes(tree["scan_onnx"])
        if scan_in_background:
            embeddings.build_scan_in_background(graph, verified)
        else:
            if verified is not None:
                verified()
            try:
                embeddings.attach_scan(Int8Scan(graph, factors, scale))
            except Exception as exc:  # onnxruntime raises its own untyped errors
                raise ValueError(
                    f"embeddings: its int8 scan graph cannot be loaded: {exc}"
                ) from exc
    return embeddings


SCORE_LEVELS = 256  # one byte per neighbour score


def graph_to_tree(
    indptr: np.ndarray, indices: np.ndarray, scores: np.ndarray, quantize: bool = False
) -> dict[str, Any]:
    """A neighbour graph as a bundle stores it: each row's length in the narrowest integer dtype
    (the offsets are their running sum, made at load: 0.3 MB less per graph at 100,000 items),
    then the neighbours and their scores. With `quantize`, positive scores travel as one byte
    each (`quantize_scores`), half of float16's size."""
    tree: dict[str, Any] = {"lengths": arrays.narrowest_int(np.diff(indptr)), "indices": indices}
    if quantize and scores.size and np.all(np.isfinite(scores)) and scores.min() > 0:
        tree["score_codes"], tree["score_levels"] = quantize_scores(scores)
    else:
        tree["scores"] = scores
    return tree


def quantize_scores(scores: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Positive scores as uint8 codes into SCORE_LEVELS levels evenly spaced in log between the
    smallest and the largest: each score within half a step of its level (about 2% for a
    range of 10,000), and the order of any two scores kept or tied, never reversed."""
    logs = np.log(scores.astype(np.float64))
    low, high = float(logs.min()), float(logs.max())
    if high == low:
        return np.zeros(scores.size, dtype=np.uint8), np.exp([low]).astype(np.float32)
    steps = SCORE_LEVELS - 1
    codes = np.rint((logs - low) / (high - low) * steps).astype(np.uint8)
    return codes, np.exp(np.linspace(low, high, SCORE_LEVELS)).astype(np.float32)


def graph_from_tree(tree: dict[str, Any]) -> ItemGraph:
    indices = tree["indices"]
    if "score_codes" in tree:  # one byte each: the levels are decoded once, here
        codes, levels = tree["score_codes"], tree["score_levels"]
        if codes.dtype != np.uint8 or (codes.size and int(codes.max()) >= levels.size):
            raise ValueError(f"score codes must be uint8 below {levels.size}, got {codes.dtype}")
        scores = levels.astype(np.float32)[codes]
    else:
        scores = tree["scores"]
    if "indptr" in tree:  # format 4
        return ItemGraph(indptr=tree["indptr"], indices=indices, scores=scores)
    lengths = tree["lengths"]
    if lengths.dtype.kind not in "iu" or (lengths.size and lengths.min() < 0):
        raise ValueError(f"row lengths must be counts, got {lengths.dtype}")
    indptr = np.zeros(lengths.size + 1, dtype=np.int64)
    np.cumsum(lengths, out=indptr[1:])
    if not indptr[-1] == indices.size == scores.size:
        raise ValueError(
            f"rows hold {indptr[-1]} neighbours, but there are {indices.size} indices and "
            f"{scores.size} scores"
        )
    return ItemGraph(indptr=indptr, indices=indices, scores=scores)


def _dense(n_items: int, sparse: dict[str, np.ndarray]) -> np.ndarray:
    dense = np.zeros(n_items, dtype=np.float32)
    dense[sparse["items"]] = sparse["scores"]
    return dense


def popularity_from_tree(tree: dict[str, Any], n_items: int) -> Popularity:
    """Context tables travel sparse (their top items) and are made dense once, at load."""
    contexts = {key: _dense(n_items, sparse) for key, sparse in tree["contexts"].items()}
    top_contexts = {key: sparse["items"] for key, sparse in tree["contexts"].items()}
    return Popularity(
        overall=tree["overall"],
        contexts=contexts,
        top_overall=tree["top_overall"],
        top_contexts=top_contexts,
        category_top=graph_from_tree(tree["category_top"]),
    )


def model_from_trees(
    trees: dict[str, dict[str, Any]],
    event_weights: dict[str, float],
    ranker: Ranker | None,
    scan_in_background: bool = False,
    verified: Callable[[str], object] | None = None,
) -> Model:
    """Decode each file's tree; a missing or malformed field is a BundleError naming the file.
    A serving node builds the int8 scan in the background; export waits for it, so its training
    rows never depend on timing. `verified(name)` returns once that file's checksum passed."""

    def part(name: str, build: Any, *args: Any) -> Any:
        try:
            return build(trees[name], *args)
        except (KeyError, TypeError, ValueError, IndexError, AttributeError) as exc:
            raise BundleError(
                f"{name} is missing or has a malformed field ({exc!r}); was it written by an "
                "edgeperso export of a different version?",
                file=name,
            ) from exc

    items = part(ITEMS, items_from_tree)
    model = Model(
        items=items,
        embeddings=part(
            EMBEDDINGS,
            embeddings_from_tree,
            scan_in_background,
            None if verified is None else lambda: verified(EMBEDDINGS),
        ),
        covisitation=part(COVISITATION, graph_from_tree),
        regression=part(REGRESSION, graph_from_tree),
        popularity=part(POPULARITY, popularity_from_tree, len(items)),
        event_weights=event_weights,
        ranker=ranker,
    )
    check_consistency(model)
    return model


def check_consistency(model: Model) -> None:
    """Every per-item array must have one entry per item, and every index must be in range."""
    n = len(model.items)
    sizes = {
        ITEMS: tuple(
            getattr(model.items, a).size
            for a in ("category", "price", "in_stock", "age_days", "repeat_rate")
        ),
        EMBEDDINGS: (model.embeddings.n_items,),
        COVISITATION: (model.covisitation.indptr.size - 1,),
        REGRESSION: (model.regression.indptr.size - 1,),
        POPULARITY: (model.popularity.overall.size,),
    }
    for name, counts in sizes.items():
        if any(count != n for count in counts):
            raise BundleError(f"{name} has {counts} rows but the bundle has {n} items", file=name)
    indices = [
        (EMBEDDINGS, model.embeddings.order),
        (COVISITATION, model.covisitation.indices),
        (REGRESSION, model.regression.indices),
        (POPULARITY, model.popularity.top_overall),
        *((POPULARITY, top) for top in model.popularity.top_contexts.values()),
    ]
    for name, index in indices:
        if index.size and (index.min() < 0 or index.max() >= n):
            raise BundleError(f"{name} holds an item index outside 0..{n - 1}", file=name)


def load_fallback_only(directory: str | Path) -> dict[str, list[tuple[str, float]]] | None:
    """The fallback content of a bundle that was refused, when fallback.json itself still
    matches the manifest: the page then gets popular items instead of nothing. None otherwise."""
    directory = Path(directory)
    try:
        manifest, _ = read_manifest(directory)
        check_file(directory, FALLBACK, manifest.files[FALLBACK])
        return _fallback_decoder.decode((directory / FALLBACK).read_bytes()).contexts
    except (BundleError, KeyError, OSError, msgspec.DecodeError):
        return None


def load_bundle(
    directory: str | Path,
    *,
    signing_key: bytes | None = None,
    profiles: ProfileStore | None = None,
    scan_in_background: bool = True,
) -> Bundle:
    """Verify and decode. `profiles` overrides the embedded store (a key-value store, say),
    which is then neither read nor checked. A serving node builds the int8 scan in the
    background; an evaluation waits for it.

    Files are hashed in worker threads while this one decodes the arrays (our own msgpack
    reader, safe on any bytes), so the load costs the longer of the two, not their sum. No
    bytes reach onnxruntime before their file's checksum passed, and a bundle with any failed
    check is refused whatever decoded: a changed file is reported before what it broke."""
    directory = Path(directory)
    manifest = check_manifest(directory, signing_key)
    with ThreadPoolExecutor(max_workers=HASH_THREADS) as pool:
        checks = start_file_checks(pool, directory, manifest, profile_store=profiles is None)

        def verified(name: str) -> Path:
            checks[name].result()
            return directory / name

        try:
            bundle = _decode(directory, manifest, profiles, scan_in_background, verified)
        except Exception:
            raise_first_failure(checks)
            raise
        raise_first_failure(checks)
    return bundle


def _decode(
    directory: Path,
    manifest: Manifest,
    profiles: ProfileStore | None,
    scan_in_background: bool,
    verified: Callable[[str], Path],
) -> Bundle:
    trees = {name: arrays.read_file(directory / name) for name in ARRAY_FILES}
    ranker_info = manifest.models.get("ranker", {})
    features = tuple(ranker_info.get("features", ())) if isinstance(ranker_info, dict) else ()
    event_weights = manifest.models.get("event_weights", {})
    if not isinstance(event_weights, dict) or not event_weights:
        raise BundleError(f"{MANIFEST} has no models.event_weights", file=MANIFEST)
    weights = {str(k): float(v) for k, v in event_weights.items()}
    ranker = Ranker(verified(RANKER).read_bytes(), features)
    model = model_from_trees(trees, weights, ranker, scan_in_background, verified)
    if profiles is None:
        if PROFILES in manifest.profile_store:
            profiles = EmbeddedProfileStore.from_file(directory / PROFILES)
        else:
            profiles = EmptyProfileStore()
    try:
        fallback = _fallback_decoder.decode((directory / FALLBACK).read_bytes()).contexts
    except (msgspec.DecodeError, OSError) as exc:
        raise BundleError(f"{FALLBACK} is malformed: {exc}", file=FALLBACK) from exc
    visitor = _visitor(directory, manifest, verified) if VISITOR in manifest.files else None
    experiments = ()
    if EXPERIMENTS in manifest.files:
        try:
            table = experiment_table_decoder.decode((directory / EXPERIMENTS).read_bytes())
        except msgspec.DecodeError as exc:
            raise BundleError(f"{EXPERIMENTS} is malformed: {exc}", file=EXPERIMENTS) from exc
        experiments = tuple(table.experiments)
    rules = None
    if RULES in manifest.files:
        try:
            rules = rule_book_decoder.decode((directory / RULES).read_bytes())
        except msgspec.DecodeError as exc:
            raise BundleError(f"{RULES} is malformed: {exc}", file=RULES) from exc
    bandits = ()
    if BANDITS in manifest.files:
        try:
            bandits = tuple(bandit_table_decoder.decode((directory / BANDITS).read_bytes()).bandits)
        except msgspec.DecodeError as exc:
            raise BundleError(f"{BANDITS} is malformed: {exc}", file=BANDITS) from exc
    return Bundle(
        directory, manifest, model, profiles, fallback, visitor, experiments, rules, bandits
    )


def _visitor(directory: Path, manifest: Manifest, verified: Callable[[str], Path]) -> VisitorModel:
    """The heads the manifest describes: models.segments (cluster names and rules) and
    models.intent (label thresholds)."""
    segments, labels = manifest.models.get("segments"), manifest.models.get("intent")
    try:
        head = None
        if segments is not None:
            names = [str(n) for n in segments["clusters"]]  # type: ignore[index]
            rules = [SegmentRule(str(r["name"]), r["when"]) for r in segments["rules"]]  # type: ignore[index]
            head = SegmentHead(names, rules)
        thresholds = None if labels is None else IntentLabels(**labels["labels"])  # type: ignore[index]
    except (KeyError, TypeError) as exc:
        raise BundleError(
            f"{MANIFEST} lists {VISITOR} but models.segments or models.intent is malformed "
            f"({exc!r})",
            file=MANIFEST,
        ) from exc
    return VisitorModel(verified(VISITOR).read_bytes(), head, thresholds)

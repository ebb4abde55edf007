"""`edgeperso rebuild`: the scheduled build. It reads what the nodes shipped over the last days
(plus the catalog), builds a candidate, and asks the candidate and the bundle published now the
same held-out questions, through the edge's own code; the candidate is published only when it
is not worse.

- **The comparison** is the build's own evaluation with one more contender: the published
  bundle, fetched from the store and verified as a node verifies it (`edge.bundle.remote`),
  answering from its own profiles. The test part is every event after the published bundle's
  last one (a time split there, whatever the config's protocol): a bundle asked about events
  it was built on knows the answers, and its profiles mark what was bought as not to be shown
  again, so any other split would be unfair to one side. The candidate asked is, as in every
  evaluation, the one trained on the events before that cut: the same events the published
  bundle could know, with this build's code and settings. The one shipped is trained on all.
- **Not worse** means the 95% interval of the per-case NDCG@k difference (candidate minus
  published) reaches zero or above: a candidate is refused only when it is worse beyond noise.
  A refresh at equal quality is published, since its profiles know the newest customers.
- Nothing published yet: the candidate is published. A published bundle that cannot be
  fetched or verified stops the rebuild before any work; no event after the published
  bundle's, or a test part with no questions, builds the candidate but does not publish it
  (`--force` publishes without the comparison)."""

from __future__ import annotations

import tempfile
from collections.abc import Callable
from dataclasses import dataclass
from datetime import date, timedelta
from pathlib import Path

import pandas as pd
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from edge.bundle import Bundle, load_bundle
from edge.bundle.manifest import Comparison, Manifest
from edge.bundle.publish import build_directory
from edge.bundle.remote import StoreFollower, publish_to_store
from edge.bundle.signing import raw_public_key
from edge.errors import BundleError
from edge.objectstore import StoreError
from export.config import BuildConfig
from export.errors import InputError
from export.pipeline import export_bundle

PUBLISHED = "published"  # its name in the evaluation table


@dataclass(frozen=True)
class Outcome:
    published: bool
    reason: str
    candidate: str  # the candidate's build id
    incumbent: str | None  # the build published before, if any
    comparison: Comparison | None = None


@dataclass(frozen=True)
class RebuildInputs:
    events: list[str]  # files, directories, s3:// prefixes (export.sources)
    store: str  # s3://bucket/bundles/: where the bundle is published and compared with
    out: Path
    catalog: str | None = None
    users: str | None = None
    days: int | None = None  # only what was shipped over the last `days` days
    force: bool = False


def rebuild(
    inputs: RebuildInputs,
    config: BuildConfig,
    signing_key: Ed25519PrivateKey | None,
    say: Callable[[str], None] = print,
    today: date | None = None,
) -> Outcome:
    public_key = raw_public_key(signing_key) if signing_key is not None else None
    since = None
    if inputs.days is not None:
        since = (today or date.today()) - timedelta(days=inputs.days)
    with tempfile.TemporaryDirectory(prefix="edgeperso-published-") as scratch:
        incumbent = _published(inputs.store, Path(scratch), public_key, inputs.force, say)
        manifest = export_bundle(
            list(inputs.events),
            inputs.out,
            config,
            catalog_path=inputs.catalog,
            users_path=inputs.users,
            signing_key=signing_key,
            compare_with={PUBLISHED: incumbent} if incumbent is not None else None,
            events_since=since,
            test_after=_last_event(incumbent),
        )
        outcome = _decide(manifest, incumbent, inputs.force)
    say(outcome.reason)
    if outcome.published:
        pointer = publish_to_store(inputs.out, inputs.store, public_key)
        say(f"{inputs.store}: now serving {pointer.build} (was {pointer.previous or 'nothing'})")
    return outcome


def _published(
    url: str, scratch: Path, public_key: bytes | None, force: bool, say: Callable[[str], None]
) -> Bundle | None:
    """The bundle the store points to, fetched and verified; None when nothing is published
    (or, with `force`, when it cannot be had)."""
    try:
        follower = StoreFollower(url, scratch, public_key, allow_unsigned=public_key is None)
    except (BundleError, StoreError) as exc:
        raise InputError(f"{url}: {exc}") from exc
    follower.follow_once()
    if follower.error is None and follower.build is not None:
        directory = build_directory(scratch, follower.build)
        return load_bundle(directory, public_key=public_key, scan_in_background=False)
    error = follower.error or "no pointer"
    if "nothing is published there yet" in error:
        say(f"{url}: nothing is published yet; the candidate will be")
        return None
    if force:
        say(f"the published bundle cannot be compared with ({error}); --force: publishing")
        return None
    raise InputError(
        f"the published bundle cannot be compared with: {error}. Nothing was built; fix the "
        "store, or publish without the comparison with --force"
    )


def _last_event(bundle: Bundle | None) -> pd.Timestamp | None:
    """When the events `bundle` was built on end (its lineage's time range)."""
    if bundle is None or bundle.manifest.lineage.time_range is None:
        return None
    return pd.Timestamp(bundle.manifest.lineage.time_range[1])


def _decide(manifest: Manifest, incumbent: Bundle | None, force: bool) -> Outcome:
    build = manifest.build_id
    if incumbent is None:
        return Outcome(True, f"candidate {build}: nothing to compare with; published", build, None)
    evaluation = manifest.metrics.evaluation
    paired = evaluation.versus.get(PUBLISHED) if evaluation is not None else None
    old = incumbent.build_id
    if paired is None:
        note = evaluation.note if evaluation is not None else "no evaluation"
        why = f"candidate {build} could not be compared with {old} ({note})"
        if force:
            return Outcome(True, f"{why}; --force: published", build, old)
        return Outcome(False, f"{why}; not published (--force publishes it)", build, old)
    k = evaluation.k if evaluation is not None else 0
    low, high = paired.ci95 if paired.ci95 is not None else (paired.difference,) * 2
    figures = (
        f"NDCG@{k} {evaluation.table['edgeperso'][f'ndcg@{k}']:.4f} against "
        f"{evaluation.table[PUBLISHED][f'ndcg@{k}']:.4f} on {evaluation.cases:,} cases, "
        f"difference {paired.difference:+.4f} (95% interval {low:+.4f} to {high:+.4f})"
        if evaluation is not None
        else ""
    )
    if high >= 0.0:
        return Outcome(
            True,
            f"candidate {build} is not worse than {old}: {figures}; published",
            build,
            old,
            paired,
        )
    if force:
        return Outcome(
            True,
            f"candidate {build} is worse than {old}: {figures}; --force: published",
            build,
            old,
            paired,
        )
    return Outcome(
        False,
        f"candidate {build} is worse than {old}: {figures}; not published ({old} keeps "
        f"serving; the candidate is in the output directory)",
        build,
        old,
        paired,
    )

"""`serve`, `inspect` and `gateway-content`: the commands an edge node needs, with nothing from
the build pipeline. `python -m edge serve --bundle DIR` works where only the edge runtime is
installed."""

from __future__ import annotations

import argparse
import importlib.util
import json
import os
import secrets
import sys
import tempfile
from pathlib import Path
from typing import Any

import msgspec

from edge.bundle import PROFILES, Bundle, load_bundle
from edge.bundle.manifest import IntentInfo, SegmentsInfo, Signature
from edge.bundle.publish import POINTER, prune, read_pointer
from edge.bundle.publish import publish as publish_bundle
from edge.bundle.publish import rollback as rollback_to
from edge.bundle.signing import SigningKeyError, public_key_from_env
from edge.config import Settings
from edge.context import HOUR_BUCKETS
from edge.errors import BundleError
from edge.objectstore import ObjectStore, StoreError, is_store_url

LOOPS = ("asyncio", "uvloop")


def add_serve_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--bundle",
        required=True,
        help="a publish root (made by `edgeperso publish`; the server follows its pointer) or a "
        "bundle directory made by export",
    )
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=8000)
    parser.add_argument(
        "--budget-ms",
        type=float,
        default=None,
        help="per-request latency budget (default: EDGEPERSO_BUDGET_MS or 50)",
    )
    parser.add_argument(
        "--workers", type=int, default=1, help="server processes (each loads the bundle once)"
    )
    parser.add_argument(
        "--loop",
        choices=LOOPS,
        default="asyncio",
        help="the event loop (default asyncio: a lower p99 than uvloop's at 16 connections in "
        "each run here, and fair under overload; see docs/serving.md, 'The event loop')",
    )
    parser.add_argument(
        "--bundle-url",
        default=os.environ.get("EDGEPERSO_BUNDLE_URL"),
        help="fetch the bundle from this object-store URL (its directory) into --bundle before "
        "serving (default: EDGEPERSO_BUNDLE_URL). It must be https and the bundle signed "
        "(--public-key), unless --allow-unsigned",
    )
    add_public_key_argument(parser)
    parser.add_argument(
        "--allow-unsigned",
        action="store_true",
        help="let --bundle-url fetch a bundle without a public key to check it with, and over "
        "http: for local, unsigned bundles only (default: EDGEPERSO_ALLOW_UNSIGNED)",
    )
    parser.add_argument(
        "--events-dir",
        default=None,
        help="directory for the POST /v1/events log (default: EDGEPERSO_EVENTS_DIR; unset: "
        "feedback is refused with 503)",
    )
    parser.add_argument(
        "--bundle-store",
        default=None,
        metavar="s3://BUCKET/PREFIX/",
        help="follow the bundles `edgeperso publish` puts in this object store: --bundle is then "
        "the local copy, polled every EDGEPERSO_BUNDLE_POLL_SECONDS (10) and swapped in when "
        "the store points to a new build (default: EDGEPERSO_BUNDLE_STORE; needs --public-key "
        "unless --allow-unsigned)",
    )
    parser.add_argument(
        "--events-store",
        default=None,
        metavar="s3://BUCKET/PREFIX/",
        help="ship closed event segments to this object store, deleting each once it is there "
        "(default: EDGEPERSO_EVENTS_STORE; credentials and endpoint from AWS_* variables, "
        "docs/deploy.md)",
    )
    parser.add_argument(
        "--header-timeout",
        type=float,
        default=None,
        help="seconds a connection has to send a request's headers, from its opening or its "
        "last answer; past it, closed (default: EDGEPERSO_HEADER_TIMEOUT_SECONDS or 10)",
    )
    parser.add_argument(
        "--body-timeout",
        type=float,
        default=None,
        help="seconds a request has to send its body after its headers; past it, a 408 "
        "(default: EDGEPERSO_BODY_TIMEOUT_SECONDS or 10)",
    )
    parser.add_argument(
        "--max-connections",
        type=int,
        default=None,
        help="open connections per worker; past it a new one evicts the one that has waited "
        "longest for its headers (default: EDGEPERSO_MAX_CONNECTIONS or 2000)",
    )
    parser.add_argument(
        "--events-per-second",
        type=float,
        default=None,
        help="POST /v1/events quota per client and worker, in events a second (bursts: "
        "EDGEPERSO_EVENTS_BURST, 1000); 0 turns quotas off (default: EDGEPERSO_EVENTS_PER_SECOND "
        "or 50)",
    )
    parser.add_argument(
        "--log-level", default="info", choices=["debug", "info", "warning", "error", "critical"]
    )


def serve(args: argparse.Namespace) -> int:
    import uvicorn

    from edge.app import create_app
    from edge.arrival import ArrivalStampingProtocol

    # Settings travel in the environment so that every worker process reads the same ones.
    os.environ["EDGEPERSO_BUNDLE"] = str(args.bundle)
    if args.budget_ms is not None:
        os.environ["EDGEPERSO_BUDGET_MS"] = str(args.budget_ms)
    if args.events_dir is not None:
        os.environ["EDGEPERSO_EVENTS_DIR"] = str(args.events_dir)
    if args.events_store is not None:
        os.environ["EDGEPERSO_EVENTS_STORE"] = str(args.events_store)
    if args.bundle_store is not None:
        os.environ["EDGEPERSO_BUNDLE_STORE"] = str(args.bundle_store)
    if args.header_timeout is not None:
        os.environ["EDGEPERSO_HEADER_TIMEOUT_SECONDS"] = str(args.header_timeout)
    if args.body_timeout is not None:
        os.environ["EDGEPERSO_BODY_TIMEOUT_SECONDS"] = str(args.body_timeout)
    if args.max_connections is not None:
        os.environ["EDGEPERSO_MAX_CONNECTIONS"] = str(args.max_connections)
    if args.public_key is not None:
        os.environ["EDGEPERSO_PUBLIC_KEY"] = args.public_key
    if args.allow_unsigned:
        os.environ["EDGEPERSO_ALLOW_UNSIGNED"] = "1"
    if args.events_per_second is not None:
        os.environ["EDGEPERSO_EVENTS_PER_SECOND"] = str(args.events_per_second)
    # JSON lines, unless told otherwise, at --log-level; one salt for every worker's pseudonyms.
    os.environ.setdefault("EDGEPERSO_LOG_FORMAT", "json")
    os.environ["EDGEPERSO_LOG_LEVEL"] = args.log_level
    if not os.environ.get("EDGEPERSO_LOG_SALT", "").strip():
        os.environ["EDGEPERSO_LOG_SALT"] = secrets.token_hex(32)
    if not os.environ.get("EDGEPERSO_DECISION_KEY", "").strip():
        # One key for all the workers, so each verifies the others' decision ids; a restart
        # makes a new one (set EDGEPERSO_DECISION_KEY to keep decisions valid across it).
        os.environ["EDGEPERSO_DECISION_KEY"] = secrets.token_hex(32)
    try:
        settings = Settings.from_env()  # fail here, loudly, rather than in each worker
    except (SigningKeyError, ValueError) as exc:
        raise SystemExit(f"serve: {exc}") from None
    if settings.events_store:
        try:  # the client's settings (endpoint, keys): a mistake stops the start, not a worker
            ObjectStore(settings.events_store)
        except StoreError as exc:
            raise SystemExit(f"serve: EDGEPERSO_EVENTS_STORE: {exc}") from None
    if settings.bundle_store:
        follow_at_start(settings)
    elif args.bundle_url:
        fetch_at_start(args.bundle_url, args.bundle, settings)
    if args.workers < 1:
        raise SystemExit(f"--workers must be at least 1, got {args.workers}")
    if args.loop == "uvloop" and importlib.util.find_spec("uvloop") is None:
        raise SystemExit(
            "--loop uvloop needs the uvloop package (pip install uvloop); "
            "the default, --loop asyncio, needs nothing more"
        )
    if settings.log_format == "json":
        from edge.logs import configure

        configure(settings.log_level)  # the supervisor's own lines, with several workers
    if args.workers > 1:
        share_metrics_directory()
    target = "edge.app:create_app" if args.workers > 1 else create_app()
    uvicorn.run(
        target,
        factory=args.workers > 1,
        workers=args.workers,
        host=args.host,
        port=args.port,
        log_level=args.log_level,
        log_config=None if settings.log_format == "json" else uvicorn.config.LOGGING_CONFIG,
        access_log=False,  # the app writes its own (edge.accesslog): ids hashed, no addresses
        ws="none",  # no WebSocket route: not importing a WebSocket library saves 20 ms of start
        loop=args.loop,
        http=ArrivalStampingProtocol,  # the budget counts the time a request waited; slow
        # clients are bounded there too (edge.connections), not by limit_concurrency, whose 503s
        # go to the requests that did complete their headers
    )
    return 0


def share_metrics_directory() -> None:
    """One directory for every worker's metrics (edge.metrics), emptied of a previous run's:
    set before the workers start, which read it when they import prometheus-client."""
    from edge.metrics import MULTIPROC_DIR

    directory = os.environ.get(MULTIPROC_DIR) or tempfile.mkdtemp(prefix="edgeperso-metrics-")
    Path(directory).mkdir(parents=True, exist_ok=True)
    for stale in Path(directory).glob("*.db"):
        stale.unlink(missing_ok=True)
    os.environ[MULTIPROC_DIR] = directory


def follow_at_start(settings: Settings) -> None:
    """The bundle the store points to, before the first request. Settings that cannot work
    (no public key, a bad endpoint) stop the start; a store that fails leaves the server up,
    answering fallback content, and following it again every few seconds."""
    from edge.bundle.remote import StoreFollower

    assert settings.bundle_store is not None and settings.bundle_dir is not None
    try:
        follower = StoreFollower(
            settings.bundle_store, settings.bundle_dir, settings.public_key, settings.allow_unsigned
        )
    except (BundleError, StoreError) as exc:
        raise SystemExit(f"serve: EDGEPERSO_BUNDLE_STORE: {exc}") from None
    follower.follow_once()
    if follower.error is not None:
        print(f"bundle store: {follower.error}", file=sys.stderr)


def fetch_at_start(url: str, directory: str, settings: Settings) -> None:
    """The bundle from the object store. A download the settings do not allow (http, no public
    key) stops the start with what to set; a fetch that fails leaves the server up, answering
    fallback content."""
    from edge.fetch import check_fetch_policy, fetch_bundle

    try:
        check_fetch_policy(url, settings.public_key, settings.allow_unsigned)
    except BundleError as exc:
        raise SystemExit(f"serve: {exc}") from None
    try:
        fetch_bundle(
            url,
            directory,
            public_key=settings.public_key,
            allow_unsigned=settings.allow_unsigned,
        )
    except BundleError as exc:  # serve anyway: fallback answers and /readyz say why
        print(f"bundle fetch failed: {exc}", file=sys.stderr)


def add_public_key_argument(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--public-key",
        default=None,
        help="the Ed25519 public key bundles must be signed with: the base64 line `edgeperso "
        "keygen` prints, or the path of its public.pem (default: EDGEPERSO_PUBLIC_KEY; unset: "
        "unsigned bundles load)",
    )


def trusted_key(option: str | None) -> bytes | None:
    """--public-key, else EDGEPERSO_PUBLIC_KEY; raises SigningKeyError (an old
    EDGEPERSO_SIGNING_KEY included)."""
    env = {**os.environ, "EDGEPERSO_PUBLIC_KEY": option} if option else os.environ
    return public_key_from_env(env)


def verified_bundle(directory: str, key_option: str | None) -> tuple[Bundle, bytes | None] | None:
    """The bundle, verified (its signature too with a public key), and that key; None, said on
    stderr, when it is refused."""
    try:
        key = trusted_key(key_option)
        return load_bundle(Path(directory), public_key=key), key
    except SigningKeyError as exc:
        print(f"cannot check bundle {directory}: {exc}", file=sys.stderr)
    except (BundleError, OSError) as exc:
        print(f"INVALID bundle {directory}: {exc}", file=sys.stderr)
    return None


def signer(signature: Signature | str | None) -> str | None:
    """Who signed: an Ed25519 key id, "hmac" (formats 6 and older, never checked), or None."""
    if isinstance(signature, Signature):
        return signature.key_id
    return "hmac" if signature is not None else None


def inspect(args: argparse.Namespace) -> int:
    verified = verified_bundle(args.directory, args.public_key)
    if verified is None:
        return 1
    bundle, key = verified
    m = bundle.manifest
    model = bundle.model
    summary = {
        "valid": True,
        "build_id": m.build_id,
        "format_version": m.format_version,
        "created_at": m.created_at,
        "signed": m.signature is not None,
        "signed_by": signer(m.signature),
        "signature_verified": key is not None,
        "onnx_opset": m.onnx_opset,
        "items": len(model.items),
        "embedding_dim": int(model.embeddings.factors.shape[1]),
        "contexts": sorted(model.popularity.contexts),
        "profiles": len(bundle.profiles),
        "bundle_bytes": sum(e.bytes for e in m.files.values()),
        "profile_store_bytes": m.profile_store[PROFILES].bytes
        if PROFILES in m.profile_store
        else 0,
        "files": {name: e.bytes for name, e in m.files.items()},
        "metrics": msgspec.to_builtins(m.metrics),
        "data_quality": msgspec.to_builtins(m.lineage),
        "segments": _segments(m.models.segments),
        "intent": _intent(m.models.intent),
    }
    print(json.dumps(summary, indent=2 if args.json else None) if args.json else _human(summary))
    return 0


def _segments(info: SegmentsInfo | None) -> dict[str, int] | None:
    """Each segment's customers, from the manifest's description (None: no segments)."""
    if info is None:
        return None
    return {row.segment: row.size for row in info.table} | info.rule_sizes


def _intent(info: IntentInfo | None) -> dict[str, float] | None:
    """The intent model's scores on its evaluation window (None: no intent model)."""
    if info is None:
        return None
    scores = info.evaluation
    if scores is None:
        return {}
    return {
        "auc": scores.auc,
        "log_loss": scores.log_loss,
        "log_loss_of_base_rate": scores.log_loss_of_base_rate,
    }


def _human(summary: dict[str, Any]) -> str:
    lines = [
        f"bundle {summary['build_id']}: valid (format {summary['format_version']}, "
        f"created {summary['created_at']}, signed: {_signed(summary)})",
        f"  items {summary['items']:,}  embedding dim {summary['embedding_dim']}  "
        f"profiles {summary['profiles']:,}  contexts {len(summary['contexts'])}",
        f"  bundle {summary['bundle_bytes'] / 1e6:.2f} MB + profile store "
        f"{summary['profile_store_bytes'] / 1e6:.2f} MB",
    ]
    for name, size in summary["files"].items():
        lines.append(f"    {name:<24}{size:>12,} B")
    if summary["segments"]:
        lines.append(
            "  segments: " + ", ".join(f"{k} {v:,}" for k, v in summary["segments"].items())
        )
    if summary["intent"]:
        lines.append("  purchase intent: " + json.dumps(summary["intent"]))
    evaluation = summary["metrics"].get("evaluation") if summary["metrics"] else None
    if evaluation:
        lines.append("  offline evaluation: " + json.dumps(evaluation.get("table", evaluation)))
    return "\n".join(lines)


def _signed(summary: dict[str, Any]) -> str:
    if not summary["signed"]:
        return "no"
    if summary["signed_by"] == "hmac":
        return "with an HMAC secret (not checked: formats 6 and older)"
    checked = "verified" if summary["signature_verified"] else "not checked: no public key given"
    return f"by key {summary['signed_by']}, {checked}"


def gateway_content(args: argparse.Namespace) -> int:
    """Write the fallback content the gateway Worker serves (its FALLBACK KV entry) from a
    bundle that passes verification (its signature too, with a public key), so the gateway
    never serves what the edge would refuse."""
    verified = verified_bundle(args.directory, args.public_key)
    if verified is None:
        return 1
    bundle, _ = verified
    content = {
        "bundle": bundle.build_id,
        "hour_buckets": list(HOUR_BUCKETS),  # the gateway checks it buckets hours the same way
        "contexts": bundle.fallback,
    }
    Path(args.out).write_text(json.dumps(content, ensure_ascii=False, separators=(",", ":")))
    items = len({item for ranked in bundle.fallback.values() for item, _ in ranked})
    print(
        f"{args.out}: fallback content of bundle {bundle.build_id}: "
        f"{len(bundle.fallback)} contexts, {items} items"
    )
    return 0


def add_gateway_content_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("directory", help="bundle directory")
    parser.add_argument("--out", required=True, help="JSON file to put in the gateway's KV")
    add_public_key_argument(parser)


def add_inspect_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("directory", help="bundle directory")
    parser.add_argument("--json", action="store_true", help="print the summary as JSON")
    add_public_key_argument(parser)


def publish(args: argparse.Namespace) -> int:
    """Verify a bundle, copy it under the publish root in its own directory, point to it."""
    key = Settings.from_env().public_key
    if is_store_url(args.dest):
        return _publish_to_store(args.bundle, args.dest, key)
    try:
        pointer_file = Path(args.dest) / POINTER
        previous = read_pointer(args.dest).build if pointer_file.is_file() else None
        pointer = publish_bundle(args.bundle, args.dest, key)
        removed = prune(args.dest, args.keep) if args.keep else []
    except (BundleError, OSError) as exc:
        print(f"not published: {exc}", file=sys.stderr)
        return 1
    print(
        f"{args.dest}: now serving {pointer.build} (was {previous or 'nothing'}); "
        f"roll back with `edgeperso rollback {args.dest}`"
    )
    if removed:
        print(f"  removed old builds: {', '.join(removed)}")
    return 0


def _publish_to_store(bundle: str, url: str, key: bytes | None) -> int:
    from edge.bundle.remote import publish_to_store, store_pointer

    try:
        before = store_pointer(ObjectStore(url))
        pointer = publish_to_store(bundle, url, key)
    except (BundleError, StoreError, OSError) as exc:
        print(f"not published: {exc}", file=sys.stderr)
        return 1
    was = before.build if before is not None else "nothing"
    print(
        f"{url}: now serving {pointer.build} (was {was}); nodes following it switch within "
        f"their poll (EDGEPERSO_BUNDLE_POLL_SECONDS); roll back with `edgeperso rollback {url}`"
    )
    return 0


def rollback(args: argparse.Namespace) -> int:
    """Point the publish root back to the previous build (or to --to)."""
    key = Settings.from_env().public_key
    if is_store_url(args.dest):
        from edge.bundle.remote import rollback_in_store, store_pointer

        try:
            before = store_pointer(ObjectStore(args.dest))
            pointer = rollback_in_store(args.dest, args.to, key)
        except (BundleError, StoreError, OSError) as exc:
            print(f"not rolled back: {exc}", file=sys.stderr)
            return 1
        was = before.build if before is not None else "nothing"
        print(f"{args.dest}: now serving {pointer.build} (was {was})")
        return 0
    try:
        was = read_pointer(args.dest).build
        pointer = rollback_to(args.dest, args.to, key)
    except (BundleError, OSError) as exc:
        print(f"not rolled back: {exc}", file=sys.stderr)
        return 1
    print(f"{args.dest}: now serving {pointer.build} (was {was})")
    return 0


def add_publish_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("bundle", help="bundle directory made by export")
    parser.add_argument(
        "dest",
        help="publish root (created if missing), or an object store prefix s3://bucket/prefix/ "
        "that nodes follow (serve --bundle-store; AWS_* variables say where and how)",
    )
    parser.add_argument(
        "--keep",
        type=int,
        default=5,
        help="builds to keep under a local root, the current and previous always among them "
        "(default 5; 0 keeps all; a store keeps every build: expire old ones with its own "
        "lifecycle rules)",
    )


def add_rollback_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("dest", help="publish root, or the object store prefix published to")
    parser.add_argument("--to", default=None, help="build id to serve (default: the previous)")


PUBLISH_HELP = "publish a bundle under a root that servers follow, without a half-seen moment"
ROLLBACK_HELP = "point a publish root back to the build served before"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m edge")
    sub = parser.add_subparsers(dest="command", required=True)
    add_serve_arguments(sub.add_parser("serve", help="serve a bundle over HTTP"))
    add_inspect_arguments(sub.add_parser("inspect", help="verify and summarize a bundle"))
    add_gateway_content_arguments(sub.add_parser("gateway-content", help=GATEWAY_CONTENT_HELP))
    add_publish_arguments(sub.add_parser("publish", help=PUBLISH_HELP))
    add_rollback_arguments(sub.add_parser("rollback", help=ROLLBACK_HELP))
    args = parser.parse_args(argv)
    return COMMANDS[args.command](args)


GATEWAY_CONTENT_HELP = "write the gateway Worker's fallback content from a verified bundle"
COMMANDS = {
    "serve": serve,
    "inspect": inspect,
    "gateway-content": gateway_content,
    "publish": publish,
    "rollback": rollback,
}

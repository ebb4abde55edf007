"""`serve`, `inspect` and `gateway-content`: the commands an edge node needs, with nothing from
the build pipeline. `python -m edge serve --bundle DIR` works where only the edge runtime is
installed."""

from __future__ import annotations

import argparse
import importlib.util
import json
import os
import sys
from pathlib import Path
from typing import Any

import msgspec

from edge.bundle import PROFILES, Bundle, load_bundle
from edge.bundle.manifest import IntentInfo, SegmentsInfo
from edge.config import Settings
from edge.context import HOUR_BUCKETS
from edge.errors import BundleError

LOOPS = ("asyncio", "uvloop")


def add_serve_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--bundle", required=True, help="bundle directory made by export")
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
        "serving (default: EDGEPERSO_BUNDLE_URL)",
    )
    parser.add_argument(
        "--events-dir",
        default=None,
        help="directory for the POST /v1/events log (default: EDGEPERSO_EVENTS_DIR; unset: "
        "feedback is refused with 503)",
    )
    parser.add_argument("--log-level", default="info")


def serve(args: argparse.Namespace) -> int:
    import uvicorn

    from edge.app import create_app
    from edge.arrival import ArrivalStampingProtocol

    if args.bundle_url:
        from edge.fetch import fetch_bundle

        try:
            fetch_bundle(args.bundle_url, args.bundle)
        except BundleError as exc:  # serve anyway: fallback answers and /readyz say why
            print(f"bundle fetch failed: {exc}", file=sys.stderr)
    # Settings travel in the environment so that every worker process reads the same ones.
    os.environ["EDGEPERSO_BUNDLE"] = str(args.bundle)
    if args.budget_ms is not None:
        os.environ["EDGEPERSO_BUDGET_MS"] = str(args.budget_ms)
    if args.events_dir is not None:
        os.environ["EDGEPERSO_EVENTS_DIR"] = str(args.events_dir)
    Settings.from_env()  # fail here, loudly, rather than in each worker
    if args.workers < 1:
        raise SystemExit(f"--workers must be at least 1, got {args.workers}")
    if args.loop == "uvloop" and importlib.util.find_spec("uvloop") is None:
        raise SystemExit(
            "--loop uvloop needs the uvloop package (pip install uvloop); "
            "the default, --loop asyncio, needs nothing more"
        )
    target = "edge.app:create_app" if args.workers > 1 else create_app()
    uvicorn.run(
        target,
        factory=args.workers > 1,
        workers=args.workers,
        host=args.host,
        port=args.port,
        log_level=args.log_level,
        access_log=False,
        ws="none",  # no WebSocket route: not importing a WebSocket library saves 20 ms of start
        loop=args.loop,
        http=ArrivalStampingProtocol,  # the budget counts the time a request waited
    )
    return 0


def verified_bundle(directory: str) -> Bundle | None:
    """The bundle, verified (with EDGEPERSO_SIGNING_KEY when set); None, said on stderr, when
    it is refused."""
    key = os.environ.get("EDGEPERSO_SIGNING_KEY")
    try:
        return load_bundle(Path(directory), signing_key=key.encode() if key else None)
    except (BundleError, OSError) as exc:
        print(f"INVALID bundle {directory}: {exc}", file=sys.stderr)
        return None


def inspect(args: argparse.Namespace) -> int:
    bundle = verified_bundle(args.directory)
    if bundle is None:
        return 1
    key = os.environ.get("EDGEPERSO_SIGNING_KEY")
    m = bundle.manifest
    model = bundle.model
    summary = {
        "valid": True,
        "build_id": m.build_id,
        "format_version": m.format_version,
        "created_at": m.created_at,
        "signed": m.signature is not None,
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
        f"created {summary['created_at']}, signed: {summary['signed']})",
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


def gateway_content(args: argparse.Namespace) -> int:
    """Write the fallback content the gateway Worker serves (its FALLBACK KV entry) from a
    bundle that passes verification, so the gateway never serves what the edge would refuse."""
    bundle = verified_bundle(args.directory)
    if bundle is None:
        return 1
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


def add_inspect_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("directory", help="bundle directory")
    parser.add_argument("--json", action="store_true", help="print the summary as JSON")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m edge")
    sub = parser.add_subparsers(dest="command", required=True)
    add_serve_arguments(sub.add_parser("serve", help="serve a bundle over HTTP"))
    add_inspect_arguments(sub.add_parser("inspect", help="verify and summarize a bundle"))
    add_gateway_content_arguments(sub.add_parser("gateway-content", help=GATEWAY_CONTENT_HELP))
    args = parser.parse_args(argv)
    return COMMANDS[args.command](args)


GATEWAY_CONTENT_HELP = "write the gateway Worker's fallback content from a verified bundle"
COMMANDS = {"serve": serve, "inspect": inspect, "gateway-content": gateway_content}

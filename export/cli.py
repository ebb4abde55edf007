"""The `edgeperso` command: export (build a bundle), evaluate (against public baselines),
simulate (a seeded shop), keygen (the key pair bundles are signed with), serve, inspect and
gateway-content (edge only).

The build pipeline's libraries are imported only by `export`, so `serve` and `inspect` work
where only the edge runtime is installed.

An error the user can fix (an `ExportError`, or a bundle the edge refuses) ends the command
with its message and exit code 2; anything else is a bug, shown with its traceback."""

from __future__ import annotations

import argparse
import json
import logging
import os
import sys
import traceback
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, TypedDict

from edge import cli as edge_cli
from edge.bundle.signing import (
    REPLACED_HMAC_KEY,
    SigningKeyError,
    load_private_key,
    write_key_pair,
)
from edge.errors import BundleError
from export.errors import ConfigError, ExportError, InputError

if TYPE_CHECKING:
    from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

USER_ERROR = 2  # the input, the config or the data needs changing
# export.config's `Protocol` (not imported here: the parser must not load pandas)
EVALUATION_PROTOCOLS = (
    "auto",
    "temporal",
    "users",
    "sessions",
    "leave_last_out",
    "random",
    "next_new_item",
)
BUG = 1
REPORT_BUG = (
    "This is a bug in edgeperso, not a problem with your data or settings: please report it "
    "with the traceback above and the command you ran."
)


def _parse_map(pairs: list[str]) -> dict[str, str]:
    mapping = {}
    for pair in pairs:
        canonical, sep, source = pair.partition("=")
        if not sep or not canonical.strip() or not source.strip():
            raise ConfigError(
                f"--map expects canonical=SOURCE_COLUMN (e.g. user_id=CustomerID), got {pair!r}"
            )
        mapping[canonical.strip()] = source.strip()
    return mapping


def export(args: argparse.Namespace) -> int:
    try:
        from export.config import load_config
        from export.pipeline import export_bundle
    except ImportError as exc:
        print(
            f"edgeperso export needs the build extra: pip install 'edgeperso[build]' ({exc})",
            file=sys.stderr,
        )
        return USER_ERROR
    config = load_config(args.config, _parse_map(args.map))
    signing_key = _signing_key(args.signing_key)  # a bad key stops the build before any work
    export_bundle(
        args.events,
        args.out,
        config,
        catalog_path=args.catalog,
        users_path=args.users,
        signing_key=signing_key,
        evaluate=not args.no_evaluate,
        quiet=args.quiet,
        truth_path=args.truth,
        rules_path=args.rules,
        bandit_log=args.bandit_log,
        report=not args.no_report,
        spark_master=args.spark_master if args.engine == "spark" else None,
    )
    return 0


def report(args: argparse.Namespace) -> int:
    """Write a bundle's report.html again (say, after the build was made with --no-report)."""
    try:
        from export.report.build import write_build_report
    except ImportError as exc:
        print(f"edgeperso report needs the build extra ({exc})", file=sys.stderr)
        return USER_ERROR
    print(write_build_report(args.bundle, args.out))
    return 0


NOT_PUBLISHED = 3  # `rebuild`: built, and refused by its guard (worse than the published one)


def rebuild(args: argparse.Namespace) -> int:
    """Build from what nodes shipped, compare with the published bundle, publish if not worse."""
    try:
        from export.config import load_config
        from export.rebuild import RebuildInputs
        from export.rebuild import rebuild as run_rebuild
    except ImportError as exc:
        print(
            f"edgeperso rebuild needs the build extra: pip install 'edgeperso[build]' ({exc})",
            file=sys.stderr,
        )
        return USER_ERROR
    if args.days is not None and args.days < 1:
        raise ConfigError(f"--days must be at least 1, got {args.days}")
    config = load_config(args.config, _parse_map(args.map))
    signing_key = _signing_key(args.signing_key)
    inputs = RebuildInputs(
        events=list(args.events),
        store=args.store,
        out=Path(args.out),
        catalog=args.catalog,
        users=args.users,
        days=args.days,
        force=args.force,
    )
    outcome = run_rebuild(inputs, config, signing_key)
    return 0 if outcome.published else NOT_PUBLISHED


def _signing_key(option: str | None) -> Ed25519PrivateKey | None:
    """--signing-key, else EDGEPERSO_SIGNING_KEY_FILE: the Ed25519 private key that signs the
    bundle (None: unsigned). The old HMAC secret is refused rather than silently ignored."""
    if os.environ.get("EDGEPERSO_SIGNING_KEY"):
        raise ConfigError(REPLACED_HMAC_KEY)
    path = option or os.environ.get("EDGEPERSO_SIGNING_KEY_FILE")
    if not path:
        return None
    try:
        return load_private_key(path)
    except SigningKeyError as exc:
        raise ConfigError(str(exc)) from exc


def keygen(args: argparse.Namespace) -> int:
    """A new signing key pair in --out; the public key's base64 line alone on stdout."""
    try:
        keys = write_key_pair(args.out)
    except SigningKeyError as exc:
        raise ConfigError(str(exc)) from exc
    except OSError as exc:
        raise ConfigError(f"cannot write the keys to {args.out}: {exc}") from exc
    for line in (
        f"private key: {keys.private} (mode 0600). It signs bundles: keep it for the build "
        "(`edgeperso export --signing-key` or EDGEPERSO_SIGNING_KEY_FILE), never on an edge node",
        f"public key:  {keys.public}, key id {keys.key_id}",
        "Edge nodes check bundles with the public key: set EDGEPERSO_PUBLIC_KEY to the line "
        "below (or to the path of public.pem)",
    ):
        print(line, file=sys.stderr)
    print(keys.public_base64)
    return 0


def evaluate(args: argparse.Namespace) -> int:
    try:
        import msgspec

        from export.config import load_config
        from export.evaluate import format_table
        from export.pipeline import evaluate_events
    except ImportError as exc:
        print(f"edgeperso evaluate needs the build extra ({exc})", file=sys.stderr)
        return USER_ERROR
    config = load_config(args.config, _parse_map(args.map))
    overrides = {
        "protocol": args.protocol and args.protocol.replace("-", "_"),
        "holdout_days": args.holdout_days,
        "holdout_share": args.holdout_share,
        "max_cases": args.max_cases,
    }
    evaluation_config = msgspec.structs.replace(
        config.evaluation, **{k: v for k, v in overrides.items() if v is not None}
    )
    try:
        config = msgspec.convert(
            msgspec.to_builtins(msgspec.structs.replace(config, evaluation=evaluation_config)),
            type(config),
        )
    except msgspec.ValidationError as exc:
        raise ConfigError(f"option out of range: {exc}") from exc
    evaluation, lineage = evaluate_events(
        args.events,
        config,
        catalog_path=args.catalog,
        users_path=args.users,
        baselines=args.baselines,
        quiet=args.quiet,
    )
    print(format_table(evaluation))
    if args.json:
        data = {"rows_kept": lineage.rows_kept, "items": lineage.items, "users": lineage.users}
        result = msgspec.to_builtins(evaluation) | {"lineage": data}
        Path(args.json).write_bytes(msgspec.json.format(msgspec.json.encode(result)))
        print(f"written to {args.json}")
    return 0


def simulate(args: argparse.Namespace) -> int:
    try:
        from simulator import ShopSizeError, simulate_shop
    except ImportError as exc:
        print(f"edgeperso simulate needs the build extra ({exc})", file=sys.stderr)
        return USER_ERROR
    try:
        shop = simulate_shop(
            n_users=args.users,
            n_items=args.items,
            n_events=args.events,
            seed=args.seed,
            days=args.days,
        )
    except ShopSizeError as exc:
        print(f"simulate failed: {exc}", file=sys.stderr)
        return USER_ERROR
    paths = shop.write(args.out, fmt=args.format)
    for name, path in paths.items():
        print(f"{name}: {path}")
    return 0


def experiment_report(args: argparse.Namespace) -> int:
    try:
        from edge.bundle import load_bundle
        from edge.profiles import EmbeddedProfileStore
        from export.experiment_report import (
            bundle_experiments,
            experiment_report,
            format_report,
            ips_estimate,
            read_log,
        )
        from export.report.experiments import experiment_page
        from export.report.page import write_page
    except ImportError as exc:
        print(f"edgeperso experiment-report needs the build extra ({exc})", file=sys.stderr)
        return USER_ERROR
    log = read_log(args.log)
    experiments = bundle_experiments(Path(args.bundle)) if args.bundle else None
    report = experiment_report(log, args.target, experiments) if not args.policy else {}
    if args.policy:
        candidate = _read_policy(Path(args.policy))
        segment_of = {}
        if args.bundle:
            store = load_bundle(Path(args.bundle)).profiles
            # A bundle without an embedded profile store knows no one's segment.
            profiles = store.as_dict() if isinstance(store, EmbeddedProfileStore) else {}
            segment_of = {user: p.segment for user, p in profiles.items() if p.segment}
        report["policy"] = candidate
        report["ips"] = ips_estimate(log, candidate["slot"], candidate["arms"], segment_of)
    if "ips" in report:
        print(
            f"candidate policy for slot {report['policy']['slot']!r}: " + json.dumps(report["ips"])
        )
    else:
        print(format_report(report))
    if args.json:
        Path(args.json).write_text(json.dumps(report, indent=2) + "\n")
    if args.html:
        write_page(Path(args.html), experiment_page(report, ", ".join(args.log)))
        print(f"page: {args.html}")
    return 0


class Policy(TypedDict):
    """A candidate bandit policy: the slot, and the arm shown to each segment."""

    slot: str
    arms: dict[str, str]


def _read_policy(path: Path) -> Policy:
    """A candidate bandit policy: {"slot": ..., "arms": {segment: arm}}."""
    try:
        policy = json.loads(path.read_text())
    except OSError as exc:
        raise InputError(f"policy {path}: cannot be read ({exc.strerror})") from exc
    except json.JSONDecodeError as exc:
        raise InputError(f"policy {path}: not JSON ({exc})") from exc
    if (
        not isinstance(policy, dict)
        or not isinstance(policy.get("slot"), str)
        or not isinstance(policy.get("arms"), dict)
        or not all(isinstance(s, str) and isinstance(a, str) for s, a in policy["arms"].items())
    ):
        raise InputError(
            f'policy {path}: expected {{"slot": "<slot>", "arms": {{"<segment>": "<arm>"}}}}, '
            f"got {policy!r}"
        )
    return Policy(slot=policy["slot"], arms=policy["arms"])


def _add_input_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument(
        "--events",
        required=True,
        nargs="+",
        help="CSV, JSONL or Parquet files (.gz ok), directories of them (what `serve "
        "--events-dir` writes) or object-store prefixes (s3://bucket/prefix/, what `serve "
        "--events-store` ships to; AWS_* variables say where and how, docs/deploy.md)",
    )
    p.add_argument("--catalog", help="item_id, title, category, price, brand, in_stock")
    p.add_argument("--users", help="user_id plus attributes the shop holds")
    p.add_argument(
        "--map",
        nargs="*",
        default=[],
        metavar="CANONICAL=COLUMN",
        help="map a foreign column name, e.g. user_id=CustomerID",
    )
    p.add_argument("--config", help="TOML build config (see configs/)")


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="edgeperso", description=__doc__.splitlines()[0])
    sub = parser.add_subparsers(dest="command", required=True)
    p = sub.add_parser("export", help="build a verified bundle from an event log")
    _add_input_arguments(p)
    p.add_argument("--out", required=True, help="bundle directory to write")
    p.add_argument("--no-evaluate", action="store_true", help="skip the holdout evaluation")
    p.add_argument(
        "--engine",
        choices=["local", "spark"],
        default="local",
        help="where the events are read and validated: this process (local), or Apache Spark "
        "(pip install 'edgeperso[spark]'; docs/build.md, 'On Spark')",
    )
    p.add_argument(
        "--spark-master",
        default="local[*]",
        help="with --engine spark: the Spark master URL (local[*]: every core here; "
        "spark://host:7077, yarn, k8s://...)",
    )
    p.add_argument(
        "--no-report",
        action="store_true",
        help="do not write report.html (what the build learned, for people) into the bundle",
    )
    p.add_argument(
        "--rules",
        help="triggered-offer rules (TOML: [[rules]], [guardrails]); default: the three "
        "built-in ones (abandoned cart, loyalty, long dwell)",
    )
    p.add_argument(
        "--bandit-log",
        nargs="+",
        help="the feedback log (events dir, its store prefix or segment files) the [[bandits]] "
        "priors come from",
    )
    p.add_argument(
        "--truth",
        help="a simulated shop's truth file (from `edgeperso simulate`): measure the intent "
        "model against each session's true purchase probability",
    )
    p.add_argument(
        "--signing-key",
        metavar="PATH",
        help="sign the bundle with this Ed25519 private key (PEM, from `edgeperso keygen`); "
        "default: EDGEPERSO_SIGNING_KEY_FILE, else unsigned",
    )
    p.add_argument("--quiet", action="store_true")
    k = sub.add_parser(
        "keygen", help="make the Ed25519 key pair bundles are signed with (private and public)"
    )
    k.add_argument(
        "--out", required=True, help="directory for private.pem and public.pem (never overwritten)"
    )
    r = sub.add_parser(
        "rebuild",
        help="build from the shipped feedback and publish only when not worse than the bundle "
        "published now (exit 3 when refused)",
    )
    _add_input_arguments(r)
    r.add_argument(
        "--store",
        required=True,
        metavar="s3://BUCKET/PREFIX/",
        help="where bundles are published: the candidate is compared with the one published "
        "there, and published there when not worse",
    )
    r.add_argument(
        "--days",
        type=int,
        default=None,
        help="read only what nodes shipped over the last DAYS days (their dt= folders; "
        "files given by name are read whole)",
    )
    r.add_argument("--out", default="build/rebuild", help="where the candidate is written")
    r.add_argument(
        "--signing-key",
        metavar="PATH",
        help="the Ed25519 private key bundles are signed with; the published bundle is checked "
        "against its public key (default: EDGEPERSO_SIGNING_KEY_FILE)",
    )
    r.add_argument(
        "--force",
        action="store_true",
        help="publish even when the candidate is worse or cannot be compared",
    )
    e = sub.add_parser(
        "evaluate", help="train on a split and compare the bundle with public baselines"
    )
    _add_input_arguments(e)
    e.add_argument(
        "--protocol",
        type=lambda value: value.replace("_", "-"),
        choices=[p.replace("_", "-") for p in EVALUATION_PROTOCOLS],
        help="how the test part is held out (docs/evaluation.md); default: the config's, auto",
    )
    e.add_argument("--holdout-days", type=float, help="test window (time split)")
    e.add_argument(
        "--holdout-share", type=float, help="random: share of each customer's items held out"
    )
    e.add_argument("--max-cases", type=int, help="test cases sampled at most")
    e.add_argument(
        "--baselines",
        nargs="*",
        choices=["popular", "item_knn", "als", "ease", "lightfm"],
        help="default: all that apply",
    )
    e.add_argument("--json", help="also write the full result (tuning included) here")
    e.add_argument("--quiet", action="store_true")
    s = sub.add_parser(
        "simulate", help="write a seeded simulated shop (events, catalog, users, truth)"
    )
    s.add_argument("--out", required=True, help="directory for the files")
    s.add_argument("--users", type=int, default=2_000)
    s.add_argument("--items", type=int, default=1_000)
    s.add_argument("--events", type=int, default=100_000)
    s.add_argument("--days", type=int, default=60)
    s.add_argument("--seed", type=int, default=0)
    s.add_argument("--format", choices=["parquet", "csv"], default="parquet")
    b = sub.add_parser(
        "report", help="write a bundle's report.html: what its build learned, for people"
    )
    b.add_argument("bundle", help="the bundle directory (verified before anything is read)")
    b.add_argument("--out", help="where to write the page (default: report.html in the bundle)")
    r = sub.add_parser(
        "experiment-report",
        help="conversion per experiment variant, with intervals and a sample-ratio check",
    )
    r.add_argument(
        "--log",
        nargs="+",
        required=True,
        help="the events dir (exposures/ inside), its store prefix (s3://bucket/prefix/) or files",
    )
    r.add_argument("--bundle", help="the bundle that ran the experiments (for their weights)")
    r.add_argument("--target", default="purchase", help="the event type that counts as converting")
    r.add_argument(
        "--policy",
        help='JSON {"slot": ..., "arms": {segment: arm, "": arm for the rest}}: estimate the '
        "click rate this candidate bandit policy would have had (inverse propensity scoring)",
    )
    r.add_argument("--json", help="also write the report here")
    r.add_argument("--html", help="also write it as a page (self-contained HTML, with charts)")
    edge_cli.add_serve_arguments(sub.add_parser("serve", help="serve a bundle over HTTP"))
    edge_cli.add_inspect_arguments(sub.add_parser("inspect", help="verify and summarize a bundle"))
    edge_cli.add_publish_arguments(sub.add_parser("publish", help=edge_cli.PUBLISH_HELP))
    edge_cli.add_rollback_arguments(sub.add_parser("rollback", help=edge_cli.ROLLBACK_HELP))
    edge_cli.add_gateway_content_arguments(
        sub.add_parser("gateway-content", help=edge_cli.GATEWAY_CONTENT_HELP)
    )
    return parser


COMMANDS: dict[str, Callable[[argparse.Namespace], int]] = {
    "export": export,
    "keygen": keygen,
    "evaluate": evaluate,
    "simulate": simulate,
    "experiment-report": experiment_report,
    "rebuild": rebuild,
    "report": report,
}


def main(argv: list[str] | None = None) -> int:
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")
    args = build_parser().parse_args(argv)
    command = COMMANDS.get(args.command) or edge_cli.COMMANDS[args.command]
    try:
        return command(args)
    except (ExportError, BundleError) as exc:
        print(f"{args.command} failed: {exc}", file=sys.stderr)
        return USER_ERROR
    except Exception:
        traceback.print_exc()
        print(REPORT_BUG, file=sys.stderr)
        return BUG


if __name__ == "__main__":
    sys.exit(main())

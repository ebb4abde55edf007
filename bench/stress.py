"""`edgeperso evaluate` on every shared data set and the simulator, each as it is and in each
stress shape (bench/stress_shapes.py: bulk timestamps, stray timestamps, purchases only, views
only, a very long tail, many one-event visitors, items that appear only after the cut), under
each evaluation protocol. Not a test: it reports, it does not assert.

Each data set is read and validated once by the build's own reader (its config from configs/),
sampled to at most --max-events events (whole visitors), shaped, and written as a canonical
Parquet; each evaluation runs in a child process, so a build that stops is recorded with its
message (and a crash with its exception) instead of ending the grid.

    python bench/stress.py [--quick] [--max-events 20000] [--protocols temporal random ...]
        [--datasets online_retail simulator ...] [--shapes original long_tail ...] [--jobs 2]

Writes bench/results/stress.json and bench/results/stress.md (one table per protocol).
"""

from __future__ import annotations

import argparse
import json
import os
import re
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Iterator, Sequence
from concurrent.futures import Future, ThreadPoolExecutor, as_completed
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import msgspec
import pandas as pd

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from report import machine, write_report  # noqa: E402
from stress_shapes import SHAPES, apply_shape, sample_visitors  # noqa: E402

from export.config import BuildConfig, InputConfig, load_config  # noqa: E402
from export.stages.read import Sources, read_inputs  # noqa: E402

EDGEPERSO = [sys.executable, "-m", "export.cli"]
DATA = ROOT.parent / "shared" / "data"
RESULTS = ROOT / "bench" / "results"
WORK = ROOT / "build" / "stress"
# The protocols shops meet; the grid runs those `edgeperso evaluate --protocol` offers.
PROTOCOLS = ("temporal", "leave_last_out", "random", "next_new_item")
QUICK_MAX_EVENTS = 3_000
FULL_MAX_EVENTS = 20_000
K = 10

# OTTO's sample has no config in configs/: sessions of clicks, carts and orders, times in
# epoch milliseconds, no customer ids.
OTTO_CONFIG = """
[input]
type_map = { clicks = "view", carts = "add_to_cart", orders = "purchase" }
[input.columns]
session_id = "session"
item_id = "aid"
ts = "ts"
type = "type"
[evaluation]
protocol = "sessions"
"""


@dataclass(frozen=True)
class DataSet:
    """Where a data set's files are and how the build reads them."""

    name: str
    events: str  # under --data, or "simulate"
    config: str | None  # under the repository, or "otto" (OTTO_CONFIG)


DATASETS = {
    d.name: d
    for d in (
        DataSet(
            "online_retail", "online_retail_uci/online_retail.csv.gz", "configs/online_retail.toml"
        ),
        DataSet(
            "eshop_clickstream",
            "eshop_clickstream_uci/eshop_clothing_2008.csv.gz",
            "configs/eshop_clickstream.toml",
        ),
        DataSet("otto_sample", "otto_recsys_sample/otto_train_first20_sessions.csv.gz", "otto"),
        DataSet("simulator", "simulate", None),
    )
}


@dataclass
class Run:
    """One evaluation of the grid, as the tables show it."""

    dataset: str
    shape: str
    protocol: str
    events: int = 0
    status: str = "ok"  # ok | no cases | stopped | crashed | timeout | missing | shape failed
    message: str = ""  # why, in the build's own words (its first line)
    rows_kept: int = 0  # what the build kept of `events` after its validation
    cases: int = 0
    protocol_used: str = ""  # what `auto`/`temporal` chose: users or sessions
    ndcg: dict[str, float] = field(default_factory=dict)  # model -> NDCG@10
    seconds: float = 0.0  # wall
    cpu_seconds: float = 0.0  # user + system, of the evaluation's process


# ------------------------------------------------------------------ configs
def config_toml(config: BuildConfig) -> str:
    """`config` as TOML: every value that differs from the defaults (tables whole when they
    are a dict, like events.weights). Enough for the data sets' configs; an [[array of
    tables]] (experiments, bandits) is refused by name."""
    lines: list[str] = []

    def value(v: Any, where: str) -> str:
        plain = msgspec.to_builtins(v)
        if isinstance(plain, list) and any(isinstance(x, dict) for x in plain):
            raise ValueError(f"config_toml does not write arrays of tables ({where})")
        return json.dumps(plain) if not isinstance(plain, bool) else str(plain).lower()

    def walk(struct: msgspec.Struct, default: msgspec.Struct, path: tuple[str, ...]) -> None:
        scalars, tables = [], []
        for f in msgspec.structs.fields(struct):
            mine, theirs = getattr(struct, f.name), getattr(default, f.name)
            if mine == theirs or mine is None:
                continue
            if isinstance(mine, msgspec.Struct | dict):
                tables.append((f.name, mine, theirs))
            else:
                scalars.append(f"{f.name} = {value(mine, '.'.join((*path, f.name)))}")
        if scalars:
            lines.extend([f"[{'.'.join(path)}]"] if path else [])
            lines.extend(scalars)
        for name, mine, theirs in tables:
            where = (*path, name)
            if isinstance(mine, msgspec.Struct) and isinstance(theirs, msgspec.Struct):
                walk(mine, theirs, where)
            else:  # a dict, or a table whose default is none: written whole
                lines.append(f"[{'.'.join(where)}]")
                lines.extend(
                    f"{json.dumps(k)} = {value(v, '.'.join((*where, k)))}"
                    for k, v in msgspec.to_builtins(mine).items()
                )

    walk(config, BuildConfig(), ())
    return "\n".join(lines) + "\n"


def canonical_config(config: BuildConfig) -> BuildConfig:
    """The data set's config for its canonical Parquet: the same build, the input read as it
    is (no column map, types, date parts), naive times still in the shop's time zone."""
    return msgspec.structs.replace(config, input=InputConfig(timezone=config.input.timezone))


def write_config(config: BuildConfig, path: Path) -> Path:
    path.write_text(config_toml(config))
    if load_config(path) != config:  # a value config_toml cannot say would change the build
        raise RuntimeError(f"{path} does not read back as the config it was written from")
    return path


# ------------------------------------------------------------------ data
@dataclass(frozen=True)
class Prepared:
    """A data set read once: its canonical events (sampled), config and side files."""

    events: pd.DataFrame
    config: BuildConfig
    catalog: Path | None = None
    users: Path | None = None


def prepare(spec: DataSet, data: Path, work: Path, max_events: int, seed: int) -> Prepared:
    """Read and validate `spec` with the build's own reader; whole visitors sampled down to
    `max_events`."""
    catalog = users = None
    if spec.events == "simulate":
        shop = work / f"simulator-shop-{seed}"
        users_n = items_n = max(50, max_events // 40)
        if not (shop / "events.parquet").exists():
            command = [*EDGEPERSO, "simulate", "--users", str(users_n), "--items", str(items_n)]
            command += ["--events", str(max_events), "--seed", str(seed), "--out", str(shop)]
            subprocess.run(command, cwd=ROOT, check=True, stdout=subprocess.DEVNULL)
        events_path, catalog, users = (
            shop / f"{n}.parquet" for n in ("events", "catalog", "users")
        )
        config = BuildConfig(seed=seed)
    else:
        events_path = data / spec.events
        if spec.config == "otto":
            (work / "otto.toml").write_text(OTTO_CONFIG)
            config = load_config(work / "otto.toml")
        else:
            config = load_config(ROOT / str(spec.config))
        config = msgspec.structs.replace(config, seed=seed)
    if not events_path.exists():
        raise FileNotFoundError(f"{events_path} is not there; pass --data DIR")
    dataset = read_inputs(Sources((events_path,), catalog, users), config, lambda _: None)
    events = dataset.events.drop(columns=["item_code"], errors="ignore")
    events["type"] = events["type"].astype(str)
    return Prepared(sample_visitors(events, max_events, seed), config, catalog, users)


# ------------------------------------------------------------------ evaluation
def offered_protocols() -> list[str]:
    """The protocols `edgeperso evaluate --protocol` accepts, from its own help."""
    shown = subprocess.run(
        [*EDGEPERSO, "evaluate", "--help"], cwd=ROOT, capture_output=True, text=True, check=True
    ).stdout
    match = re.search(r"--protocol \{([^}]*)\}", shown)
    return match.group(1).split(",") if match else []


def spelled_as_offered(wanted: str, offered: Sequence[str]) -> str | None:
    """`wanted` as the CLI spells it (leave-last-out or leave_last_out), or None."""
    key = wanted.replace("-", "_")
    return next((p for p in offered if p.replace("-", "_") == key), None)


def why_it_failed(stderr: str, returncode: int) -> tuple[str, str]:
    """(status, message): a stop the build explains (exit 2: its first line), else the crash's
    exception line."""
    lines = [line.strip() for line in stderr.splitlines() if line.strip()]
    if returncode == 2:
        said = next((line for line in lines if " failed: " in line or "error:" in line), None)
        return "stopped", said or (lines[0] if lines else "exit 2")
    exception = [line for line in lines if re.match(r"^[\w.]+(Error|Exception)\b", line)]
    return "crashed", (exception[-1] if exception else f"exit {returncode}")


def child(command: list[str], timeout: float) -> tuple[int | None, str, float]:
    """Run `command`: (exit code, None when killed at `timeout`; its stderr; the processor
    seconds it used, its own, so evaluations that run side by side are each counted apart)."""
    with tempfile.TemporaryFile("w+") as err:
        process = subprocess.Popen(command, cwd=ROOT, stdout=subprocess.DEVNULL, stderr=err)
        killed = threading.Event()

        def kill() -> None:
            killed.set()
            process.kill()

        timer = threading.Timer(timeout, kill)
        timer.start()
        _, status, usage = os.wait4(process.pid, 0)  # waitpid, with the child's own usage
        timer.cancel()
        process.returncode = code = os.waitstatus_to_exitcode(status)
        err.seek(0)
        return (None if killed.is_set() else code), err.read(), usage.ru_utime + usage.ru_stime


def evaluate(
    run: Run,
    events_path: Path,
    config_path: Path,
    prepared: Prepared,
    options: argparse.Namespace,
    protocol_flag: str,
) -> Run:
    """One `edgeperso evaluate` in a child process, its JSON read into `run`."""
    out = events_path.with_name(f"{events_path.stem}-{run.protocol}.json")
    out.unlink(missing_ok=True)
    command = [*EDGEPERSO, "evaluate", "--events", str(events_path), "--config", str(config_path)]
    command += ["--protocol", protocol_flag, "--json", str(out), "--quiet"]
    if prepared.catalog is not None:
        command += ["--catalog", str(prepared.catalog)]
    if prepared.users is not None:
        command += ["--users", str(prepared.users)]
    if options.max_cases:
        command += ["--max-cases", str(options.max_cases)]
    if options.baselines:
        command += ["--baselines", *options.baselines]
    started = time.perf_counter()
    returncode, stderr, cpu = child(command, options.timeout)
    run.seconds = round(time.perf_counter() - started, 1)
    run.cpu_seconds = round(cpu, 1)
    if returncode is None:
        run.status, run.message = "timeout", f"over {options.timeout:.0f} s"
        return run
    if returncode != 0 or not out.exists():
        run.status, run.message = why_it_failed(stderr, returncode)
        return run
    result = json.loads(out.read_text())
    run.rows_kept = int(result.get("lineage", {}).get("rows_kept", 0))
    run.cases = int(result.get("cases", 0))
    run.protocol_used = str(result.get("protocol", ""))
    run.ndcg = {m: float(row[f"ndcg@{K}"]) for m, row in result.get("table", {}).items()}
    if not run.ndcg:
        run.status, run.message = "no cases", str(result.get("note") or "no test case")
    return run


def grid(
    options: argparse.Namespace, protocols: dict[str, str], pool: ThreadPoolExecutor
) -> Iterator[Run | Future[Run]]:
    """Every data set × shape × protocol: a `Run` where there is nothing to evaluate, else the
    evaluation submitted to `pool`. Data sets are read while earlier ones are evaluated."""
    work = Path(options.work)
    for name in options.datasets:
        place = work / name
        place.mkdir(parents=True, exist_ok=True)
        try:
            prepared = prepare(
                DATASETS[name], Path(options.data), place, options.max_events, options.seed
            )
        except Exception as exc:  # a data set that cannot be read is a row, not the end
            for shape in options.shapes:
                for protocol in protocols:
                    yield Run(name, shape, protocol, status="missing", message=str(exc))
            continue
        config_path = write_config(canonical_config(prepared.config), place / "canonical.toml")
        holdout = prepared.config.evaluation.holdout_days
        for shape in options.shapes:
            try:
                shaped = apply_shape(shape, prepared.events, options.seed, holdout)
            except ValueError as exc:
                for protocol in protocols:
                    yield Run(name, shape, protocol, status="shape failed", message=str(exc))
                continue
            events_path = place / f"{shape}.parquet"
            shaped.to_parquet(events_path, index=False)
            for protocol, flag in protocols.items():
                run = Run(name, shape, protocol, events=len(shaped))
                yield pool.submit(evaluate, run, events_path, config_path, prepared, options, flag)


# ------------------------------------------------------------------ report
def best_baseline(ndcg: dict[str, float]) -> tuple[str, float] | None:
    others = {m: v for m, v in ndcg.items() if m != "edgeperso"}
    if not others:
        return None
    name = max(others, key=lambda m: others[m])
    return name, others[name]


def markdown(runs: Sequence[Run], protocols: Sequence[str]) -> str:
    """One table per protocol: rows data set × shape, NDCG@10 of edgeperso, most popular and
    the best baseline, and edgeperso's gap to it (positive: edgeperso ahead)."""
    out = []
    for protocol in protocols:
        out += [
            f"### {protocol}",
            "",
            "| data set | shape | events | cases | edgeperso | popular | best baseline | gap | "
            "status |",
            "|---|---|---:|---:|---:|---:|---|---:|---|",
        ]
        for r in (r for r in runs if r.protocol == protocol):
            best = best_baseline(r.ndcg)
            ours = r.ndcg.get("edgeperso")
            popular = r.ndcg.get("popular")
            cells = [
                r.dataset,
                r.shape,
                f"{r.events:,}",
                f"{r.cases:,}" if r.cases else "",
                "" if ours is None else f"{ours:.4f}",
                "" if popular is None else f"{popular:.4f}",
                "" if best is None else f"{best[1]:.4f} ({best[0]})",
                "" if best is None or ours is None else f"{ours - best[1]:+.4f}",
                r.status if not r.message else f"{r.status}: {r.message}".replace("|", "\\|"),
            ]
            out.append("| " + " | ".join(cells) + " |")
        out.append("")
    return "\n".join(out)


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="small samples, one protocol")
    parser.add_argument(
        "--max-events",
        type=int,
        help=f"sample cap per data set (default {FULL_MAX_EVENTS:,}; --quick {QUICK_MAX_EVENTS:,})",
    )
    parser.add_argument(
        "--protocols", nargs="+", help=f"default: {', '.join(PROTOCOLS)} (--quick: the first)"
    )
    parser.add_argument("--datasets", nargs="+", choices=list(DATASETS), default=list(DATASETS))
    parser.add_argument("--shapes", nargs="+", choices=list(SHAPES), default=list(SHAPES))
    parser.add_argument(
        "--baselines", nargs="+", help="default: every one that applies (--quick: popular)"
    )
    parser.add_argument("--max-cases", type=int, help="test cases per evaluation at most")
    parser.add_argument("--jobs", type=int, default=2, help="evaluations at a time")
    parser.add_argument("--timeout", type=float, default=900.0, help="seconds per evaluation")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--data", default=str(DATA), help="the shared data sets' directory")
    parser.add_argument("--work", help="where the shaped logs go (default: build/stress)")
    parser.add_argument(
        "--out", default=str(RESULTS / "stress.json"), help="JSON; the tables go next to it as .md"
    )
    options = parser.parse_args(argv)
    options.max_events = options.max_events or (
        QUICK_MAX_EVENTS if options.quick else FULL_MAX_EVENTS
    )
    options.work = options.work or str(
        WORK / ("quick" if options.quick else f"max-{options.max_events}")
    )
    if options.quick:  # a minute or two: most of an evaluation's time is fixed cost
        options.max_cases = options.max_cases or 500
        options.baselines = options.baselines or ["popular"]

    offered = offered_protocols()
    wanted = options.protocols or list(PROTOCOLS)
    protocols = {p: flag for p in wanted if (flag := spelled_as_offered(p, offered))}
    missing = [p for p in wanted if p not in protocols]
    if missing and options.protocols:
        parser.error(f"edgeperso evaluate offers no protocol {missing}; it offers {offered}")
    if not protocols:  # an `edgeperso evaluate` older than these protocols
        protocols = {"auto": "auto"}
    if options.quick:
        protocols = dict(list(protocols.items())[:1])

    report: dict[str, Any] = {
        "machine": machine(),
        "started": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
        "command": " ".join(["python bench/stress.py", *(sys.argv[1:] if argv is None else argv)]),
        "max_events": options.max_events,
        "protocols": list(protocols),
        "protocols_not_offered": missing,
    }
    order = {n: i for i, n in enumerate([*options.datasets, *options.shapes, *protocols])}
    started = time.perf_counter()
    runs: list[Run] = []

    def record(run: Run) -> None:
        """Print one result and rewrite the JSON, so a grid cut short keeps what it measured."""
        runs.append(run)
        runs.sort(key=lambda r: (order[r.dataset], order[r.shape], order[r.protocol]))
        scores = " ".join(f"{m}={v:.4f}" for m, v in run.ndcg.items())
        print(
            f"{run.dataset:<18} {run.shape:<17} {run.protocol:<15} {run.status:<8} "
            f"{run.seconds:>6.1f}s {scores or run.message}",
            flush=True,
        )
        report["wall_seconds"] = round(time.perf_counter() - started, 1)
        report["evaluations_cpu_seconds"] = round(sum(r.cpu_seconds for r in runs), 1)
        report["runs"] = [asdict(r) for r in runs]
        write_report(options.out, report)

    with ThreadPoolExecutor(max_workers=options.jobs) as pool:
        pending = []
        for item in grid(options, protocols, pool):
            if isinstance(item, Run):
                record(item)
            else:
                pending.append(item)
        for future in as_completed(pending):
            record(future.result())
    minutes = (time.perf_counter() - started) / 60
    table = markdown(runs, list(protocols))
    header = (
        f"NDCG@{K}, `{report['command']}` ({report['started']}, {machine()['cpus']} cores; "
        f"{minutes:.1f} min wall, {sum(r.cpu_seconds for r in runs) / 60:.1f} min of processor "
        f"time in the evaluations; at most {options.max_events:,} events per data set)\n\n"
    )
    Path(options.out).with_suffix(".md").write_text(header + table)
    print(f"\n{header}{table}")
    print(f"written to {options.out} and {Path(options.out).with_suffix('.md')}")
    return 0


if __name__ == "__main__":
    sys.exit(main())

"""`edgeperso export` on simulated shops of 1 and 10 million events (or any size): wall time, peak
memory and the time of each step of the build (and of each part of its training: segments, the
ranker, the candidate models, profiles and intent), with and without the holdout evaluation, on one
machine and on Spark (`--engine spark` on each `--spark-masters`, local[1] against local[2] to see
which steps shrink with more executors). Peak memory is the largest sum of the resident memory of
the export's whole process tree (Spark's JVM and Python workers included), sampled every 0.2 s.
The shops are made first by `edgeperso simulate` (not timed) and kept under build/bench/. Not a
test: it reports, it does not assert.

    python bench/bench_build.py [--events 1000000 10000000] [--evaluate]
        [--engines local spark] [--spark-masters 'local[1]' 'local[2]']
"""

from __future__ import annotations

import argparse
import os
import re
import resource
import subprocess
import sys
import threading
import time
from pathlib import Path

from report import machine, write_report

ROOT = Path(__file__).resolve().parent.parent
EDGEPERSO = [sys.executable, "-m", "export.cli"]
# Events -> (users, items): a mid-size shop, and a large one with ten times its traffic.
SHOPS = {1_000_000: (20_000, 5_000), 10_000_000: (200_000, 100_000)}


def simulated(events: int, seed: int) -> Path:
    users, items = SHOPS.get(events, (events // 50, events // 200))
    out = ROOT / "build" / "bench" / f"shop-{events}-{seed}"
    if not (out / "events.parquet").exists():
        command = [*EDGEPERSO, "simulate", "--users", str(users), "--items", str(items)]
        command += ["--events", str(events), "--seed", str(seed), "--out", str(out)]
        subprocess.run(command, cwd=ROOT, check=True, stdout=subprocess.DEVNULL)
    return out


STEP = re.compile(r"^\[\d+/\d+\] (.+): done in ([\d.]+)s$")
PART = re.compile(r"^  (.+): ([\d.]+)s$")


def timed_export(shop: Path, evaluate: bool, spark_master: str | None = None) -> dict[str, object]:
    """One export in a child process: wall seconds, the peak memory of its process tree, and the
    seconds of each step it reports."""
    out = shop.parent / f"{shop.name}-bundle"
    command = [*EDGEPERSO, "export", "--events", str(shop / "events.parquet")]
    command += ["--catalog", str(shop / "catalog.parquet"), "--users", str(shop / "users.parquet")]
    command += ["--out", str(out), "--no-report", *([] if evaluate else ["--no-evaluate"])]
    if spark_master is not None:
        command += ["--engine", "spark", "--spark-master", spark_master]
    started = time.perf_counter()
    process = subprocess.Popen(
        command, cwd=ROOT, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True
    )
    peak = [0]
    watcher = threading.Thread(target=_watch_memory, args=(process, peak), daemon=True)
    watcher.start()
    _, stderr = process.communicate()
    wall = time.perf_counter() - started
    watcher.join()
    if process.returncode != 0:
        raise RuntimeError(_failure(stderr))
    steps: dict[str, float] = {}
    parts: dict[str, float] = {}  # "step > part": a part of a step (export.progress.timed)
    done: list[tuple[str, float]] = []  # parts not yet followed by their step's line
    for line in stderr.splitlines():
        part = PART.match(line)
        if part:
            done.append((part[1], float(part[2])))
        found = STEP.match(line.strip())
        if found:
            step = re.sub(r" to /.*$| on Spark \(.*\)$", "", found[1])
            step = re.sub(r"^train on [\d,]+ events, .*$", "train on the training part", step)
            steps[step] = float(found[2])
            for name, seconds in done:
                parts[f"{step} > {name}"] = seconds
            done = []
    return {
        "wall_s": round(wall, 1),
        "peak_memory_gb": round(peak[0] / 1e9, 2),
        "steps_s": steps,
        "parts_s": parts,
    }


def _failure(stderr: str) -> str:
    """What an export that failed said of why: its own error line, else the first lines that
    name an exception (a Java stack trace's cause is at its top, not its end)."""
    lines = stderr.splitlines()
    said = [line for line in lines if line.startswith("export failed:")]
    causes = [line for line in lines if re.search(r"(Error|Exception)\b[^ ]*:", line)]
    return "\n".join(said or causes[:5] or lines[-20:])[:3000]


def _watch_memory(process: subprocess.Popen[str], peak: list[int]) -> None:
    while process.poll() is None:
        peak[0] = max(peak[0], _tree_rss(process.pid))
        time.sleep(0.2)


def _tree_rss(root: int) -> int:
    """Resident bytes of `root` and every process descended from it (Linux /proc)."""
    children: dict[int, list[int]] = {}
    rss: dict[int, int] = {}
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            fields = Path(f"/proc/{entry}/stat").read_text().rsplit(")", 1)[1].split()
            status = Path(f"/proc/{entry}/statm").read_text().split()
        except OSError:
            continue  # gone meanwhile
        pid = int(entry)
        children.setdefault(int(fields[1]), []).append(pid)
        rss[pid] = int(status[1]) * os.sysconf("SC_PAGE_SIZE")
    total, stack = 0, [root]
    while stack:
        pid = stack.pop()
        total += rss.get(pid, 0)
        stack.extend(children.get(pid, []))
    return total


def _self_peak() -> dict[str, float]:
    peak_kb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return {"self_peak_memory_gb": round(peak_kb / 1e6, 2)}


def main() -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("--events", type=int, nargs="+", default=sorted(SHOPS))
    parser.add_argument("--evaluate", action="store_true", help="also time export with evaluation")
    parser.add_argument("--engines", nargs="+", choices=["local", "spark"], default=["local"])
    parser.add_argument("--spark-masters", nargs="+", default=["local[2]"])
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--out", default=str(ROOT / "bench" / "results" / "build.json"))
    args = parser.parse_args()
    runs: list[tuple[str, str | None]] = []
    if "local" in args.engines:
        runs.append(("local", None))
    if "spark" in args.engines:
        runs += [(f"spark {master}", master) for master in args.spark_masters]
    results: dict[str, dict[str, object]] = {}
    report = {"machine": machine(), "started": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())}
    for events in args.events:
        shop = simulated(events, args.seed)
        users, items = SHOPS.get(events, (events // 50, events // 200))
        row: dict[str, object] = {"users": users, "items": items}
        for name, master in runs:
            kinds = [False, True] if args.evaluate else [False]
            for evaluate in kinds:
                key = f"{name}, {'with' if evaluate else 'no'} evaluation"
                try:
                    row[key] = timed_export(shop, evaluate, master)
                except RuntimeError as exc:  # out of memory, say: the figure is that it failed
                    row[key] = {"failed": str(exc)}
                results[str(events)] = row
                # Written after every export, so an interrupted series keeps what it measured.
                write_report(args.out, {**report, "exports": results, **_self_peak()})
    print("edgeperso export on simulated shops (one run each)")
    for events, row in results.items():
        print(f"  {int(events):,} events ({row['users']:,} users, {row['items']:,} items)")
        for key, figures in row.items():
            if not isinstance(figures, dict):
                continue
            if "failed" in figures:
                print(f"    {key:<36} failed")
                continue
            print(f"    {key:<36} {figures['wall_s']:>8.1f} s {figures['peak_memory_gb']:>6.2f} GB")
            for step, seconds in figures["steps_s"].items():
                print(f"      {step:<50} {seconds:>8.1f} s")
                for part, part_seconds in figures["parts_s"].items():
                    if part.startswith(f"{step} > "):
                        print(f"        {part.split(' > ', 1)[1]:<48} {part_seconds:>8.1f} s")
    return 0


if __name__ == "__main__":
    sys.exit(main())

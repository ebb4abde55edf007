"""`edgeperso export` on simulated shops of 1 and 10 million events: wall time and peak memory of
the export process (its resident high-water mark), with and without the holdout evaluation.
The shops are made first by `edgeperso simulate` (not timed) and kept under build/bench/. Not a
test: it reports, it does not assert.

    python bench/bench_build.py [--events 1000000 10000000] [--evaluate]
"""

from __future__ import annotations

import argparse
import resource
import subprocess
import sys
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


def timed_export(shop: Path, evaluate: bool) -> dict[str, float]:
    """One export in a child process: wall seconds and the child's peak resident memory."""
    out = shop.parent / f"{shop.name}-bundle"
    command = [*EDGEPERSO, "export", "--events", str(shop / "events.parquet")]
    command += ["--catalog", str(shop / "catalog.parquet"), "--users", str(shop / "users.parquet")]
    command += ["--out", str(out), "--quiet", *([] if evaluate else ["--no-evaluate"])]
    # A fresh interpreter per run, so ru_maxrss of the children is this export's alone.
    probe = (
        "import resource, subprocess, sys, time\n"
        "t = time.perf_counter()\n"
        "subprocess.run(sys.argv[1:], check=True)\n"
        "print(time.perf_counter() - t, resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss)\n"
    )
    done = subprocess.run(
        [sys.executable, "-c", probe, *command], cwd=ROOT, capture_output=True, text=True
    )
    if done.returncode != 0:
        raise RuntimeError(f"export failed:\n{done.stderr[-3000:]}")
    seconds, peak_kb = done.stdout.split()
    return {"wall_s": round(float(seconds), 1), "peak_memory_gb": round(int(peak_kb) / 1e6, 2)}


def main() -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("--events", type=int, nargs="+", default=sorted(SHOPS))
    parser.add_argument("--evaluate", action="store_true", help="also time export with evaluation")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--out", default=str(ROOT / "bench" / "results" / "build.json"))
    args = parser.parse_args()
    results = {}
    for events in args.events:
        shop = simulated(events, args.seed)
        users, items = SHOPS.get(events, (events // 50, events // 200))
        row = {"users": users, "items": items, "no_evaluation": timed_export(shop, False)}
        if args.evaluate:
            row["with_evaluation"] = timed_export(shop, True)
        results[str(events)] = row
    report = {
        "machine": machine(),
        "started": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
        "exports": results,
        "self_peak_memory_gb": round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1e6, 2),
    }
    write_report(args.out, report)
    print("edgeperso export on simulated shops (one run each)")
    print(f"  {'events':>12}{'users':>9}{'items':>8}{'evaluation':>12}{'wall s':>9}{'peak GB':>9}")
    for events, row in results.items():
        for kind in ("no_evaluation", "with_evaluation"):
            if kind in row:
                r = row[kind]
                label = "yes" if kind == "with_evaluation" else "no"
                print(
                    f"  {int(events):>12,}{row['users']:>9,}{row['items']:>8,}{label:>12}"
                    f"{r['wall_s']:>9.1f}{r['peak_memory_gb']:>9.2f}"
                )
    return 0


if __name__ == "__main__":
    sys.exit(main())

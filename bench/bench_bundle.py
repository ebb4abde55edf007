"""Bundle figures on the simulator bundles of 10,000 and 100,000 items: size on disk (the bundle,
and the profile store beside it), load time (verify + map + decode, in process), peak memory
of a process that loads it, and time from process start to a green /readyz of the real server,
against a bare Starlette app under the same uvicorn started the same way in the same run. Not a
test: it reports, it does not assert.

    python bench/bench_bundle.py [--sizes 10000 100000] [--repeats 5]
"""

from __future__ import annotations

import argparse
import compileall
import json
import statistics
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from bundles import SIZES, build  # noqa: E402
from report import machine, write_report  # noqa: E402
from servers import free_port, wait_ready  # noqa: E402

from edge.bundle import PROFILES, load_bundle  # noqa: E402

# Run in a fresh interpreter: peak resident memory after the imports, then after the load.
PEAK_PROBE = """
import sys
from edge.bundle import load_bundle
from edge.recommend import Recommender
def hwm():
    for line in open("/proc/self/status"):
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) * 1024
before = hwm()
bundle = load_bundle(sys.argv[1])
Recommender(bundle, 50.0).warm_up()
bundle.model.embeddings.wait_for_scan()  # built in the background: its memory counts too
print(before, hwm())
"""


def seconds_to_ready(command: list[str], port: int) -> float:
    """From spawning `command` to its first 200 on /readyz."""
    started = time.perf_counter()
    process = subprocess.Popen(command, cwd=ROOT, stdout=subprocess.DEVNULL)
    try:
        wait_ready(process, port)
        return time.perf_counter() - started
    finally:
        process.terminate()
        process.wait(timeout=15)


def serve_command(bundle: Path | None, port: int) -> list[str]:
    if bundle is None:
        # Served as `edge serve` serves: uvicorn without WebSocket support (whose library,
        # installed here as a dependency of Locust, would cost the bare app 20 ms more).
        app = ["uvicorn", "bench.bare_app:app", "--ws", "none", "--log-level", "warning"]
        return [sys.executable, "-m", *app, "--host", "127.0.0.1", "--port", str(port)]
    edge = ["edge", "serve", "--bundle", str(bundle), "--log-level", "warning"]
    return [sys.executable, "-m", *edge, "--host", "127.0.0.1", "--port", str(port)]


def measure(directory: Path, repeats: int) -> dict[str, float]:
    manifest = json.loads((directory / "manifest.json").read_text())
    bundle_bytes = sum(e["bytes"] for e in manifest["files"].values())
    profile_bytes = sum(e["bytes"] for e in manifest.get("profile_store", {}).values())
    # The page cache holds the files from here on, as on a warm node.
    load_bundle(directory).model.embeddings.wait_for_scan()
    loads = []
    for _ in range(repeats):
        started = time.perf_counter()
        loaded = load_bundle(directory)
        loads.append(time.perf_counter() - started)
        # A node builds the int8 scan after its load: let it finish before the next load.
        loaded.model.embeddings.wait_for_scan()
    probe = subprocess.run(
        [sys.executable, "-c", PEAK_PROBE, str(directory)],
        cwd=ROOT,
        capture_output=True,
        text=True,
        check=True,
    )
    before, after = (int(x) for x in probe.stdout.split())
    # An installed edge runs from compiled bytecode (pip compiles at install, and so does the
    # Dockerfile's image); a checkout under PYTHONDONTWRITEBYTECODE would compile it at every
    # start, some 0.1 s that no deployment pays. The bare app's packages are compiled too.
    compileall.compile_dir(ROOT / "edge", quiet=1)
    ready, bare = [], []
    for _ in range(repeats):  # alternated, so both see the same machine
        ready.append(seconds_to_ready(serve_command(directory, port := free_port()), port))
        bare.append(seconds_to_ready(serve_command(None, port := free_port()), port))
    bundle = load_bundle(directory)
    return {
        "items": len(bundle.model.items),
        "embedding_dtype": str(bundle.model.embeddings.factors.dtype),
        "bundle_mb": round(bundle_bytes / 1e6, 2),
        "profile_store_mb": round(profile_bytes / 1e6, 2),
        "profiles": len(bundle.profiles),
        "files_mb": {n: round(e["bytes"] / 1e6, 3) for n, e in manifest["files"].items()},
        "load_ms_median": round(statistics.median(loads) * 1000, 2),
        "peak_memory_mb_added_by_load": round((after - before) / 1e6, 1),
        "peak_memory_mb_process": round(after / 1e6, 1),
        "readyz_s_median": round(statistics.median(ready), 3),
        "bare_starlette_first_answer_s_median": round(statistics.median(bare), 3),
        "readyz_over_bare": round(statistics.median(ready) / statistics.median(bare), 2),
    }


def main() -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("--sizes", type=int, nargs="+", default=sorted(SIZES))
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--out", default=str(ROOT / "bench" / "results" / "bundle.json"))
    args = parser.parse_args()
    results = {}
    for items in args.sizes:
        events, users = SIZES.get(items, (20 * items, items // 2))
        directory = build(items, events, users, args.seed)
        results[str(items)] = measure(directory, args.repeats)
    report = {
        "machine": machine(),
        "repeats": args.repeats,
        "bundles": results,
    }
    write_report(args.out, report)
    print(f"bundles (median of {args.repeats} runs; {PROFILES} is the profile store beside them)")
    header = f"  {'items':>8}{'dtype':>8}{'bundle MB':>11}{'profiles MB':>13}{'load ms':>9}"
    print(header + f"{'peak MB':>9}{'readyz s':>10}{'bare s':>8}{'ratio':>7}")
    for items, r in results.items():
        print(
            f"  {int(items):>8,}{r['embedding_dtype']:>8}{r['bundle_mb']:>11.2f}"
            f"{r['profile_store_mb']:>13.2f}{r['load_ms_median']:>9.1f}"
            f"{r['peak_memory_mb_added_by_load']:>9.1f}{r['readyz_s_median']:>10.3f}"
            f"{r['bare_starlette_first_answer_s_median']:>8.3f}{r['readyz_over_bare']:>7.2f}"
        )
    print("  peak MB: resident memory a fresh process adds by loading and warming the bundle")
    return 0


if __name__ == "__main__":
    sys.exit(main())

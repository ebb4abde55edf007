"""Mutation testing (mutmut) of the modules whose mistakes would pass quietly: one module at a
time, each run bounded in time, then the score of each. What is mutated and which tests run is
pyproject.toml's [tool.mutmut]; docs/testing.md has the latest figures and the survivors.

    make mutants                       (or: python scripts/mutants.py [MODULE...])
    python scripts/mutants.py rules --max-children 2 --minutes 20

MODULE: rules, recommend, bundle, validate (default: all four). Writes mutants/ (mutmut's own
directory: `mutmut results`, `mutmut show NAME`) and mutants/summary.json. Starts afresh each
time: the test bundle is exported once from the source as it is, before anything is mutated,
and every mutant's tests read it (EDGEPERSO_TEST_BUNDLE_CACHE, tests/conftest.py)."""

from __future__ import annotations

import argparse
import collections
import json
import os
import platform
import shutil
import signal
import subprocess
import sys
import time
from datetime import UTC, datetime
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
MODULES = {
    "rules": "edge.rules.*",
    "recommend": "edge.recommend.*",
    "bundle": "edge.bundle.*",
    "validate": "export.validate.*",
}
MUTANTS = ROOT / "mutants"
BUNDLE_CACHE = ROOT / "build" / "mutants-bundle"
# A test that needs the exported bundle (`bundle_dir`): running it fills the cache.
FILLS_CACHE = "tests/edge/test_bundle_contract.py::test_the_exported_bundle_verifies_and_loads"


def mutmut(*args: str, timeout: float | None = None, log: Path | None = None) -> int:
    """Run mutmut in its own process group, so a run past its time is stopped whole (mutmut
    forks a child per mutant)."""
    env = os.environ | {"EDGEPERSO_TEST_BUNDLE_CACHE": str(BUNDLE_CACHE)}
    out = log.open("w") if log else subprocess.DEVNULL
    process = subprocess.Popen(
        [sys.executable, "-m", "mutmut", *args],
        cwd=ROOT,
        env=env,
        stdout=out,
        stderr=subprocess.STDOUT,
        start_new_session=True,
    )
    try:
        return process.wait(timeout=timeout)
    except subprocess.TimeoutExpired:
        os.killpg(process.pid, signal.SIGTERM)
        try:
            process.wait(timeout=30)
        except subprocess.TimeoutExpired:
            os.killpg(process.pid, signal.SIGKILL)
            process.wait()
        return -1
    finally:
        if log:
            out.close()


def statuses() -> dict[str, str]:
    """Every mutant's status ("killed", "survived", "no tests", "timeout", ...), by name."""
    listed = subprocess.run(
        [sys.executable, "-m", "mutmut", "results", "--all", "true"],
        cwd=ROOT,
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    pairs = (line.strip().rsplit(": ", 1) for line in listed.splitlines() if ": " in line)
    return {name: status for name, status in pairs}


def cpu_model() -> str:
    for line in Path("/proc/cpuinfo").read_text().splitlines():
        if line.startswith("model name"):
            return line.split(":", 1)[1].strip()
    return platform.machine()


def module_of(mutant: str) -> str | None:
    return next((m for m, p in MODULES.items() if mutant.startswith(p.rstrip("*"))), None)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("modules", nargs="*", metavar="MODULE", help=", ".join(MODULES))
    parser.add_argument("--max-children", type=int, default=os.cpu_count() or 2)
    parser.add_argument("--minutes", type=float, default=30.0, help="per module, at most")
    args = parser.parse_args(argv)
    unknown = sorted(set(args.modules) - set(MODULES))
    if unknown:
        parser.error(f"unknown modules {unknown}; allowed: {', '.join(MODULES)}")
    modules = args.modules or list(MODULES)

    started = time.monotonic()
    shutil.rmtree(MUTANTS, ignore_errors=True)
    shutil.rmtree(BUNDLE_CACHE, ignore_errors=True)
    print(f"exporting the test bundle once, into {BUNDLE_CACHE.relative_to(ROOT)}", flush=True)
    subprocess.run(
        [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", FILLS_CACHE],
        cwd=ROOT,
        env=os.environ | {"EDGEPERSO_TEST_BUNDLE_CACHE": str(BUNDLE_CACHE)},
        check=True,
        stdout=subprocess.DEVNULL,
    )
    stopped = []
    for module in modules:
        MUTANTS.mkdir(exist_ok=True)
        log = MUTANTS / f"{module}.log"
        t0 = time.monotonic()
        code = mutmut(
            "run",
            "--max-children",
            str(args.max_children),
            MODULES[module],
            timeout=args.minutes * 60,
            log=log,
        )
        took = time.monotonic() - t0
        if code == -1:
            stopped.append(module)
            print(f"{module}: stopped after {args.minutes:g} min; what ran is counted", flush=True)
        elif code != 0:
            print(f"{module}: mutmut failed with code {code}; see {log}", file=sys.stderr)
            return 1
        else:
            print(f"{module}: {took:.0f} s", flush=True)

    counts: dict[str, collections.Counter] = {m: collections.Counter() for m in modules}
    survivors: dict[str, list[str]] = {m: [] for m in modules}
    for name, status in statuses().items():
        module = module_of(name)
        if module in counts:
            counts[module][status] += 1
            if status in ("survived", "no tests"):
                survivors[module].append(name)
    total_time = time.monotonic() - started
    print(f"\n{'module':<11}{'mutants':>8}{'killed':>8}{'survived':>9}{'no tests':>9}{'score':>8}")
    summary = {}
    for module in modules:
        c = counts[module]
        tried = sum(c[s] for s in ("killed", "survived", "no tests", "timeout", "suspicious"))
        caught = c["killed"] + c["timeout"]
        score = caught / tried if tried else 0.0
        print(
            f"{module:<11}{sum(c.values()):>8}{c['killed']:>8}{c['survived']:>9}"
            f"{c['no tests']:>9}{score:>8.1%}"
        )
        summary[module] = dict(c) | {
            "score": round(score, 4),
            "survivors": sorted(survivors[module]),
        }
    print(
        f"\n{total_time / 60:.1f} min with {args.max_children} workers; survivors: mutmut results"
    )
    (MUTANTS / "summary.json").write_text(
        json.dumps(
            {
                "date": datetime.now(UTC).date().isoformat(),
                "machine": cpu_model(),
                "cores": os.cpu_count(),
                "minutes": round(total_time / 60, 1),
                "stopped": stopped,
                "modules": summary,
            },
            indent=1,
        )
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())

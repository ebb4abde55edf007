"""The benchmarks' latest JSON results as one short table against the targets, written to
bench/results/SUMMARY.md (and printed). Each figure is read from the JSON a benchmark wrote;
one that has not been run yet shows as "not run". Not a test: it reports, it does not assert.

    python bench/summary.py
"""

from __future__ import annotations

import json
import sys
from collections.abc import Callable
from pathlib import Path

RESULTS = Path(__file__).resolve().parent / "results"
LARGE = "100000"


def load(name: str) -> dict:
    path = RESULTS / f"{name}.json"
    return json.loads(path.read_text()) if path.exists() else {}


def figure(read: Callable[[], float]) -> float | None:
    try:
        return float(read())
    except (KeyError, TypeError, ValueError):
        return None


def rows() -> list[tuple[str, str, float | None, float, str]]:
    """(what, command, measured, target, unit): lower is better for every row."""
    recommend = load("recommend").get("bundles", {}).get(LARGE, {}).get("latency_ms", {})
    bundle = load("bundle").get("bundles", {}).get(LARGE, {})
    http = load("http").get("results", {}).get("edgeperso", {})
    build = load("build").get("exports", {}).get("10000000", {})
    # `bench_build.py --evaluate` runs both kinds; the README's command writes them apart.
    evaluated = load("build-10m-evaluate").get("exports", {}).get("10000000", {})
    evaluated = evaluated.get("with_evaluation") or build.get("with_evaluation", {})
    build = build.get("no_evaluation", {})
    mixes = ("known customer", "anonymous session")
    out = []
    for mix in mixes:
        for q, target in (("p50", 0.5), ("p99", 2.0)):
            out.append(
                (
                    f"in process, 100,000 items, {mix}, {q}",
                    "bench_recommend.py",
                    figure(lambda m=mix, q=q: recommend[m][q]),
                    target,
                    "ms",
                )
            )
    out += [
        (
            "over HTTP, 16 connections, p99",
            "bench_http.py",
            figure(lambda: http["16"]["p99_ms"]),
            10.0,
            "ms",
        ),
        (
            "100,000-item bundle on disk",
            "bench_bundle.py",
            figure(lambda: bundle["bundle_mb"]),
            10.0,
            "MB",
        ),
        ("bundle load", "bench_bundle.py", figure(lambda: bundle["load_ms_median"]), 50.0, "ms"),
        (
            "process start to green /readyz",
            "bench_bundle.py",
            figure(lambda: bundle["readyz_s_median"]),
            0.5,
            "s",
        ),
        (
            "export of 10 million events, wall",
            "bench_build.py",
            figure(lambda: build["wall_s"] / 60.0),
            10.0,
            "min",
        ),
        (
            "export of 10 million events, peak memory",
            "bench_build.py",
            figure(lambda: build["peak_memory_gb"]),
            4.0,
            "GB",
        ),
        (
            "the same with the holdout evaluation (the default), wall",
            "bench_build.py --evaluate",
            figure(lambda: evaluated["wall_s"] / 60.0),
            10.0,
            "min",
        ),
        (
            "the same with the holdout evaluation, peak memory",
            "bench_build.py --evaluate",
            figure(lambda: evaluated["peak_memory_gb"]),
            4.0,
            "GB",
        ),
    ]
    return out


def ratios() -> list[str]:
    """The same-run references, so a reader on another machine can compare."""
    notes = []
    recommend = load("recommend").get("bundles", {}).get(LARGE, {}).get("latency_ms", {})
    if "reference" in recommend:
        ref = recommend["reference"]["p50"]
        notes.append(
            f"in-process reference (float32 100,000 × 64 product + top-100, same run): p50 "
            f"{ref:.3f} ms; known customer / reference "
            f"{recommend['known customer'].get('p50_over_reference', float('nan')):.2f}"
        )
    http = load("http").get("results", {})
    if "16" in http.get("bare starlette", {}):
        bare = http["bare starlette"]["16"]
        notes.append(
            f"bare Starlette under the same server at 16 connections: {bare['requests_per_s']:,.0f}"
            f" req/s, p99 {bare['p99_ms']:.1f} ms"
        )
    bundle = load("bundle").get("bundles", {}).get(LARGE, {})
    if "bare_starlette_first_answer_s_median" in bundle:
        notes.append(
            f"bare Starlette's first answer after start: "
            f"{bundle['bare_starlette_first_answer_s_median']:.3f} s"
        )
    return notes


def main() -> int:
    lines = [
        "| figure | measured | target | met | command |",
        "|---|---|---|---|---|",
    ]
    for what, command, measured, target, unit in rows():
        shown = "not run" if measured is None else f"{measured:,.3g} {unit}"
        met = "" if measured is None else ("yes" if measured < target else "no")
        lines.append(f"| {what} | {shown} | < {target:g} {unit} | {met} | `{command}` |")
    lines += ["", *[f"- {note}" for note in ratios()]]
    text = "\n".join(lines) + "\n"
    (RESULTS / "SUMMARY.md").write_text(text)
    print(text, end="")
    return 0


if __name__ == "__main__":
    sys.exit(main())

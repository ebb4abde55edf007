"""The benchmarks' latest JSON results as one short table against the targets, written to
bench/results/SUMMARY.md (and printed). Each figure is read from the JSON a benchmark wrote;
one that has not been run yet shows as "not run". Not a test: it reports, it does not assert.

    python bench/summary.py
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

RESULTS = Path(__file__).resolve().parent / "results"
LARGE = "100000"


def load(name: str) -> dict:
    path = RESULTS / f"{name}.json"
    return json.loads(path.read_text()) if path.exists() else {}


def figure(source: dict, path: tuple[str, ...], scale: float) -> float | None:
    """source[path[0]][path[1]]... × scale, or None when that benchmark has not been run."""
    value: object = source
    for key in path:
        if not isinstance(value, dict) or key not in value:
            return None
        value = value[key]
    return float(value) * scale if isinstance(value, (int, float)) else None


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
    # (what, command, results, path in them, scale, target, unit)
    table = [
        (
            f"in process, 100,000 items, {mix}, {q}",
            "bench_recommend.py",
            recommend,
            (mix, q),
            1,
            t,
            "ms",
        )
        for mix in ("known customer", "anonymous session")
        for q, t in (("p50", 0.5), ("p99", 2.0))
    ]
    table += [
        ("over HTTP, 16 connections, p99", "bench_http.py", http, ("16", "p99_ms"), 1, 10, "ms"),
        ("100,000-item bundle on disk", "bench_bundle.py", bundle, ("bundle_mb",), 1, 10, "MB"),
        ("bundle load", "bench_bundle.py", bundle, ("load_ms_median",), 1, 50, "ms"),
        ("start to green /readyz", "bench_bundle.py", bundle, ("readyz_s_median",), 1, 0.5, "s"),
    ]
    for kind, command, run in (
        ("", "bench_build.py", build),
        (" with evaluation (the default)", "bench_build.py --evaluate", evaluated),
    ):
        table += [
            (f"export of 10M events{kind}, wall", command, run, ("wall_s",), 1 / 60, 10, "min"),
            (f"export of 10M events{kind}, peak", command, run, ("peak_memory_gb",), 1, 4, "GB"),
        ]
    return [(w, c, figure(r, p, k), t, u) for w, c, r, p, k, t, u in table]


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

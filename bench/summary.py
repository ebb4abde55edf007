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


# What each same-run reference took on the machine the latency targets were set for: a target
# divided by one is the ratio the target asks for on any machine.
ISSUE_REFERENCE = {
    "product": 1.0,  # ms: float32 100,000 × 64 matrix · vector plus a top-100
    "bare_start": 0.1,  # s: a bare Starlette app under uvicorn answers after process start
    # ms of one core per request of a bare Starlette JSON endpoint at 16 connections (16,000
    # requests/s with the standard json module)
    "bare_request": 1000.0 / 16_000,
}
FLOOR = "floor: parse + ranker"  # bench_http.py's server that only parses and ranks


def rows() -> list[tuple[str, str, float | None, float, str, float | None, str | None]]:
    """(what, command, measured, target, unit, measured ÷ its same-run reference, which
    reference): lower is better for every row."""
    recommend = load("recommend").get("bundles", {}).get(LARGE, {}).get("latency_ms", {})
    bundle = load("bundle").get("bundles", {}).get(LARGE, {})
    servers = load("http").get("results", {})
    http, floor = servers.get("edgeperso", {}), servers.get(FLOOR, {})
    bare_rps = figure(servers, ("bare starlette", "16", "requests_per_s"), 1)
    # `bench_build.py --evaluate` runs both kinds; docs/benchmarks.md's commands write them apart.
    # Of two runs of a kind, the later one counts.
    runs = sorted(
        (load(name) for name in ("build", "build-10m-evaluate")),
        key=lambda report: report.get("started", ""),
    )
    build, evaluated = {}, {}
    for report in runs:
        export = report.get("exports", {}).get("10000000", {})
        build = export.get("no_evaluation") or build
        evaluated = export.get("with_evaluation") or evaluated
    # (what, command, results, path in them, scale, target, unit, same-run reference's name)
    table: list[tuple[str, str, dict, tuple[str, ...], float, float, str, str | None]] = [
        (
            f"in process, 100,000 items, {mix}, {q}",
            "bench_recommend.py",
            recommend,
            (mix, q),
            1,
            t,
            "ms",
            "product",
        )
        for mix in ("known customer", "anonymous session")
        for q, t in (("p50", 0.5), ("p99", 2.0))
    ]
    table += [
        (
            "over HTTP, 16 connections, p99",
            "bench_http.py",
            http,
            ("16", "p99_ms"),
            1,
            10,
            "ms",
            "bare_request",
        ),
        (
            "the same for the floor (parse + ranker only, not the product)",
            "bench_http.py",
            floor,
            ("16", "p99_ms"),
            1,
            10,
            "ms",
            "bare_request",
        ),
        (
            "100,000-item bundle on disk",
            "bench_bundle.py",
            bundle,
            ("bundle_mb",),
            1,
            10,
            "MB",
            None,
        ),
        ("bundle load", "bench_bundle.py", bundle, ("load_ms_median",), 1, 50, "ms", None),
        (
            "start to green /readyz",
            "bench_bundle.py",
            bundle,
            ("readyz_s_median",),
            1,
            0.5,
            "s",
            "bare_start",
        ),
    ]
    for kind, command, run in (
        ("", "bench_build.py", build),
        (" with evaluation (the default)", "bench_build.py --evaluate", evaluated),
    ):
        table += [
            (
                f"export of 10M events{kind}, wall",
                command,
                run,
                ("wall_s",),
                1 / 60,
                10,
                "min",
                None,
            ),
            (
                f"export of 10M events{kind}, peak",
                command,
                run,
                ("peak_memory_gb",),
                1,
                4,
                "GB",
                None,
            ),
        ]
    references = {
        "product": figure(recommend, ("reference", "p50"), 1),
        "bare_start": figure(bundle, ("bare_starlette_first_answer_s_median",), 1),
        "bare_request": 1000.0 / bare_rps if bare_rps else None,
    }
    out = []
    for what, command, results, path, scale, target, unit, name in table:
        measured = figure(results, path, scale)
        reference = references.get(name) if name else None
        ratio = measured / reference if measured is not None and reference else None
        out.append((what, command, measured, target, unit, ratio, name))
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
        "| figure | measured | target | met | ÷ same-run reference | target ÷ the targets' "
        "reference | met as a ratio | command |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for what, command, measured, target, unit, ratio, name in rows():
        shown = "not run" if measured is None else f"{measured:,.3g} {unit}"
        met = "" if measured is None else ("yes" if measured < target else "no")
        ratio_shown = wanted = met_ratio = ""
        if ratio is not None and name is not None:
            wanted_ratio = target / ISSUE_REFERENCE[name]
            ratio_shown, wanted = f"{ratio:.2f}", f"< {wanted_ratio:g}"
            met_ratio = "yes" if ratio < wanted_ratio else "no"
        lines.append(
            f"| {what} | {shown} | < {target:g} {unit} | {met} | {ratio_shown} | {wanted} | "
            f"{met_ratio} | `{command}` |"
        )
    lines += ["", *[f"- {note}" for note in ratios()]]
    lines += [
        "- The ratio columns divide a figure by a reference measured in the same run (the "
        "float32 product in process, the bare endpoint's time per request at 16 connections "
        "over HTTP, the bare app's start for /readyz), and the target by what that reference "
        f"took on the machine the targets were set for ({ISSUE_REFERENCE['product']:g} ms, "
        f"{ISSUE_REFERENCE['bare_request']:g} ms and {ISSUE_REFERENCE['bare_start']:g} s): a "
        "machine-independent reading of the same target. The absolute columns are what the "
        "benchmarks' machine gave."
    ]
    text = "\n".join(lines) + "\n"
    (RESULTS / "SUMMARY.md").write_text(text)
    print(text, end="")
    return 0


if __name__ == "__main__":
    sys.exit(main())

"""What merchandising adds to the in-process recommend path, on the simulator bundles of 10,000
and 100,000 items: the same known-customer requests answered without a policy, with a request
policy (a brand filtered out, a category boosted, an item pinned) and as a category page
(`only` one category), the three interleaved request by request so that a noisy neighbour hits
them alike. Reports each one's p50 and p99 and their ratios to the plain request's. Not a test:
it reports, it does not assert.

    python bench/bench_merchandising.py [--sizes 10000 100000] [--requests 2000] [--rounds 5]
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
from pathlib import Path

import msgspec
import numpy as np

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from bench_recommend import request_bodies  # noqa: E402
from bundles import SIZES, build  # noqa: E402
from report import machine, write_report  # noqa: E402

from edge.app import _request_decoder, one_blas_thread  # noqa: E402
from edge.bundle import load_bundle  # noqa: E402
from edge.recommend import Recommender  # noqa: E402


def policies(bundle) -> dict[str, dict | None]:
    """The request policies compared, named from the bundle's own catalog."""
    items = bundle.model.items
    categories = items.category_names
    brands = items.brand_names or [""]
    pinned = bundle.fallback["all"][20][0]
    return {
        "no policy": None,
        "filter + boost + pin": {
            "filters": {"brands": brands[:1]} if brands[0] else {},
            "boost": {"categories": {categories[0]: 2.0}},
            "pins": {pinned: 1},
        },
        "category page (only)": {"only": {"categories": categories[1:2]}},
    }


def run(items: int, events: int, users: int, args: argparse.Namespace) -> dict:
    directory = build(items, events, users, args.seed)
    bundle = load_bundle(directory)
    bundle.model.embeddings.wait_for_scan()
    recommender = Recommender(bundle, budget_ms=float("inf"))
    known = request_bodies(bundle, args.requests, args.seed)["known customer"]
    variants = policies(bundle)
    decoded = {
        name: [
            _request_decoder.decode(
                msgspec.json.encode(msgspec.json.decode(b) | {"merchandising": spec})
            )
            for b in known
        ]
        for name, spec in variants.items()
    }
    for requests in decoded.values():  # warm up
        for request in requests[:200]:
            recommender.recommend(request, {})
    rounds: dict[str, list[np.ndarray]] = {name: [] for name in variants}
    for _ in range(args.rounds):
        samples = {name: np.empty(args.requests) for name in variants}
        for i in range(args.requests):
            for name, requests in decoded.items():  # interleaved, request by request
                started = time.perf_counter()
                msgspec.json.encode(recommender.recommend(requests[i], {}))
                samples[name][i] = (time.perf_counter() - started) * 1000.0
        for name, values in samples.items():
            rounds[name].append(values)
    results = {
        name: {
            f"p{q}": round(statistics.median(float(np.percentile(s, q)) for s in samples), 4)
            for q in (50, 99)
        }
        for name, samples in rounds.items()
    }
    plain = results["no policy"]
    for name, r in results.items():
        r["p50_over_no_policy"] = round(r["p50"] / plain["p50"], 3)
        r["p99_over_no_policy"] = round(r["p99"] / plain["p99"], 3)
    print(
        f"merchandising, {len(bundle.model.items):,} items ({len(bundle.model.items.brand_names)} "
        f"brands), known customers, {args.rounds} rounds × {args.requests} requests"
    )
    print(f"  {'policy':<24}{'p50 ms':>9}{'p99 ms':>9}{'p50/none':>10}{'p99/none':>10}")
    for name, r in results.items():
        print(
            f"  {name:<24}{r['p50']:>9.3f}{r['p99']:>9.3f}"
            f"{r['p50_over_no_policy']:>10.3f}{r['p99_over_no_policy']:>10.3f}"
        )
    return {"items": len(bundle.model.items), "policies": variants, "latency_ms": results}


def main() -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("--sizes", type=int, nargs="+", default=sorted(SIZES))
    parser.add_argument("--requests", type=int, default=2_000)
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--out", default=str(ROOT / "bench" / "results" / "merchandising.json"))
    args = parser.parse_args()
    one_blas_thread()  # as the server does
    report = {"requests_per_round": args.requests, "rounds": args.rounds, "machine": machine()}
    report["bundles"] = {}
    for items in args.sizes:
        events, users = SIZES.get(items, (20 * items, items // 2))
        report["bundles"][str(items)] = run(items, events, users, args)
    write_report(args.out, report)
    return 0


if __name__ == "__main__":
    sys.exit(main())

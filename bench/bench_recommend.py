"""Benchmark of the in-process recommend path (parse → context → profile → segment and intent →
experiments → rules → candidates → ranker → answer) on the simulator bundles of 10,000 and
100,000 items. Reports p50, p99 and p99.9 per request mix, and the same-run reference of one
float32 item-matrix · vector product plus top-100 (the biggest single primitive), so figures
compare across noisy machines as ratios. Not a test: it reports, it does not assert.

    python bench/bench_recommend.py [--sizes 10000 100000] [--requests 2000] [--rounds 5]
                                    [--config serving.toml]

`--config` builds the bundles with a TOML build config instead of the default one (from the
same simulated shop), to measure what cheaper serving settings save.
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

from bundles import SIZES, build  # noqa: E402
from report import machine, write_report  # noqa: E402

from edge import scoring  # noqa: E402
from edge.app import _request_decoder, one_blas_thread  # noqa: E402
from edge.bundle import load_bundle  # noqa: E402
from edge.context import resolve_context  # noqa: E402
from edge.recommend import Recommender  # noqa: E402
from edge.visitor import describe_visitor  # noqa: E402


def request_bodies(bundle, n: int, seed: int) -> dict[str, list[bytes]]:
    rng = np.random.default_rng(seed)
    users = list(bundle.profiles.as_dict())
    popular = [i for i, _ in bundle.fallback["all"]]
    ids = bundle.model.items.ids
    contexts = [
        {"device": str(d), "country": str(c), "local_hour": int(h)}
        for d, c, h in zip(
            rng.choice(["mobile", "desktop", "tablet"], n),
            rng.choice(["gb", "de", "us", "pl", "fr"], n),
            rng.integers(0, 24, n),
        )
    ]
    known = [
        {"user_id": users[rng.integers(len(users))], "k": 10, "context": contexts[i]}
        for i in range(n)
    ]
    session = [
        {
            "session": {
                "events": [
                    {"type": "view", "item_id": ids[rng.integers(len(ids))], "dwell_ms": 12000}
                    for _ in range(rng.integers(1, 6))
                ]
                + [{"type": "add_to_cart", "item_id": popular[rng.integers(len(popular))]}]
            },
            "k": 10,
            "context": contexts[i],
        }
        for i in range(n)
    ]
    cold = [{"k": 10, "context": contexts[i]} for i in range(n)]
    encode = msgspec.json.encode
    return {
        name: [encode(b) for b in bodies]
        for name, bodies in (
            ("known customer", known),
            ("anonymous session", session),
            ("cold visitor", cold),
        )
    }


def time_requests(recommender: Recommender, bodies: list[bytes]) -> np.ndarray:
    out = np.empty(len(bodies))
    for i, body in enumerate(bodies):
        started = time.perf_counter()
        response = recommender.recommend(_request_decoder.decode(body), {})
        msgspec.json.encode(response)
        out[i] = time.perf_counter() - started
    return out * 1000.0


def reference(bundle, repeats: int) -> np.ndarray:
    """The targets' reference: one float32 vector against an items × 64 matrix, plus top-100 (a
    matrix of the bundle's item count, not its stored rows, which export may trim)."""
    rng = np.random.default_rng(0)
    dim = bundle.model.embeddings.factors.shape[1]
    factors = rng.normal(size=(len(bundle.model.items), dim)).astype(np.float32)
    out = np.empty(repeats)
    for i in range(repeats):
        v = rng.normal(size=factors.shape[1]).astype(np.float32)
        started = time.perf_counter()
        scores = factors @ v
        np.argpartition(-scores, 100)[:100]
        out[i] = time.perf_counter() - started
    return out * 1000.0


def stage_breakdown(bundle, bodies: list[bytes]) -> dict[str, float]:
    """Median ms of each step of a personalized request, timed one step at a time, and the
    median share of item-matrix rows the exact top-k had to read."""
    model = bundle.model
    sizes = bundle.manifest.models.serving.candidates
    steps: dict[str, list[float]] = {
        name: []
        for name in (
            "parse and context",
            "user state",
            "fold-in",
            "exact top-k",
            "co-visitation + regression",
            "other features",
            "ranker",
        )
    }
    scanned, candidates = [], []
    for body in bodies:
        t0 = time.perf_counter()
        request = _request_decoder.decode(body)
        context = resolve_context(request.context, {})
        t1 = time.perf_counter()
        session = request.session.events if request.session else []
        state = scoring.build_user_state(model, bundle.profiles.get(request.user_id or ""), session)
        t2 = time.perf_counter()
        user = scoring.fold_in(model, state)
        t3 = time.perf_counter()
        if user is None:
            continue
        model.embeddings.top(user, sizes.als)
        t4 = time.perf_counter()
        scoring._neighbour_scores(model.covisitation, state.recent, state.recent_weights)
        scoring._neighbour_scores(model.regression, state.items, np.ones(state.items.size))
        t5 = time.perf_counter()
        found = scoring.candidate_features(model, state, context, sizes)
        t6 = time.perf_counter()
        model.ranker.predict(found.features)
        t7 = time.perf_counter()
        # candidate_features repeats fold-in, top-k and the neighbour lookups: subtract them.
        others = (t6 - t5) - (t5 - t2)
        for name, seconds in zip(
            steps, (t1 - t0, t2 - t1, t3 - t2, t4 - t3, t5 - t4, max(others, 0.0), t7 - t6)
        ):
            steps[name].append(seconds * 1000.0)
        scanned.append(model.embeddings.scan_length(user, sizes.als))
        candidates.append(found.items.size)
    out = {name: round(statistics.median(v), 4) for name, v in steps.items()}
    emb = model.embeddings
    out["top-k rows read (share of items, median)"] = round(
        statistics.median(scanned) / emb.n_items, 4
    )
    if emb.scan is not None:  # searches too long for the exact early stop: the int8 scan
        long = np.asarray(scanned) > emb.EXACT_SCAN_ROWS
        out["top-k searches through the int8 scan (share)"] = round(float(long.mean()), 4)
    out["candidates (median)"] = statistics.median(candidates)
    return out


def visitor_step_costs(
    recommender: Recommender, anonymous: list[bytes], known: list[bytes]
) -> dict[str, float]:
    """Median µs to give a request its segment and intent (one pass over the session, one
    onnxruntime call), for anonymous sessions and for known customers; absent when the bundle
    has neither."""
    bundle = recommender.bundle
    if bundle is None or bundle.visitor is None:
        return {}
    out, now = {}, time.time()
    for name, bodies in (("anonymous session", anonymous), ("known customer", known)):
        samples = []
        for body in bodies:
            request = _request_decoder.decode(body)
            events = request.session.events if request.session else []
            profile = bundle.profiles.get(request.user_id) if request.user_id else None
            context = resolve_context(request.context, {})
            started = time.perf_counter()
            describe_visitor(bundle.visitor, bundle.model.items, profile, events, context, now)
            samples.append((time.perf_counter() - started) * 1e6)
        out[f"segment + intent, {name} (µs)"] = round(statistics.median(samples), 1)
    out["one empty onnxruntime call (µs)"] = round(empty_onnxruntime_call(len(anonymous)), 1)
    return out


def rules_step_costs(recommender: Recommender, mixes: dict[str, list[bytes]]) -> dict[str, float]:
    """Median µs to evaluate the bundle's rules (signals of the visit, then every rule of the
    default set in priority order) for each request mix."""
    bundle = recommender.bundle
    if bundle is None or bundle.rules is None:
        return {}
    out = {}
    for name, bodies in mixes.items():
        samples = []
        for body in bodies:
            request = _request_decoder.decode(body)
            profile = bundle.profiles.get(request.user_id) if request.user_id else None
            events = request.session.events if request.session else []
            state = scoring.build_user_state(bundle.model, profile, events)
            context = resolve_context(request.context, {})
            started = time.perf_counter()
            recommender._rules(bundle, request, profile, state, context, None, None, "default")
            samples.append((time.perf_counter() - started) * 1e6)
        out[f"rules, {name} (µs)"] = round(statistics.median(samples), 1)
    return out


def empty_onnxruntime_call(repeats: int) -> float:
    """Median µs of one call of a one-node (Identity) graph: the fixed cost every onnxruntime
    call pays, a floor for the visitor step measured in the same run."""
    from onnx import TensorProto, helper

    from edge.onnx_session import onnx_session

    x = helper.make_tensor_value_info("x", TensorProto.FLOAT, [None, 7])
    y = helper.make_tensor_value_info("y", TensorProto.FLOAT, [None, 7])
    graph = helper.make_graph([helper.make_node("Identity", ["x"], ["y"])], "empty", [x], [y])
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    session = onnx_session(model.SerializeToString(), "identity.onnx")
    row = np.zeros((1, 7), np.float32)
    samples = []
    for _ in range(repeats):
        started = time.perf_counter()
        session.run(["y"], {"x": row})
        samples.append((time.perf_counter() - started) * 1e6)
    return statistics.median(samples)


def run(items: int, events: int, users: int, args: argparse.Namespace) -> dict:
    directory = build(items, events, users, args.seed, args.config)
    bundle = load_bundle(directory)
    bundle.model.embeddings.wait_for_scan()  # a warm node's state: the int8 scan is built
    recommender = Recommender(bundle, budget_ms=float("inf"))
    mixes = request_bodies(bundle, args.requests, args.seed)
    for bodies in mixes.values():  # warm up caches and onnxruntime
        time_requests(recommender, bodies[:200])
    results: dict[str, dict[str, float]] = {}
    rounds: dict[str, list[np.ndarray]] = {name: [] for name in [*mixes, "reference"]}
    for _ in range(args.rounds):
        for name, bodies in mixes.items():
            rounds[name].append(time_requests(recommender, bodies))
        rounds["reference"].append(reference(bundle, args.requests))
    for name, samples in rounds.items():
        # Median over rounds of each percentile: robust to a noisy neighbour in one round.
        results[name] = {
            f"p{q}": round(statistics.median(float(np.percentile(s, q)) for s in samples), 4)
            for q in (50, 99, 99.9)
        }
    stages = stage_breakdown(bundle, mixes["known customer"])
    stages |= visitor_step_costs(recommender, mixes["anonymous session"], mixes["known customer"])
    stages |= rules_step_costs(recommender, mixes)
    ref = results["reference"]["p50"]
    for name in mixes:
        results[name]["p50_over_reference"] = round(results[name]["p50"] / ref, 2)
    print(
        f"in-process recommend path, {len(bundle.model.items):,} items "
        f"({bundle.model.embeddings.factors.dtype} factors), {args.rounds} rounds × "
        f"{args.requests} requests (median over rounds)"
    )
    print(f"  {'mix':<20}{'p50 ms':>9}{'p99 ms':>9}{'p99.9 ms':>10}{'p50/ref':>9}")
    for name, r in results.items():
        ratio = f"{r['p50_over_reference']:>9.2f}" if "p50_over_reference" in r else ""
        print(f"  {name:<20}{r['p50']:>9.3f}{r['p99']:>9.3f}{r['p99.9']:>10.3f}{ratio}")
    print("  reference = float32 item matrix · vector + top-100 argpartition, same run")
    print("  a known customer's request, step by step (median ms):")
    for name, value in stages.items():
        print(f"    {name:<34}{value:>8}")
    return {
        "bundle": {
            "items": len(bundle.model.items),
            "events": events,
            "embedding_dim": int(bundle.model.embeddings.factors.shape[1]),
            "embedding_dtype": str(bundle.model.embeddings.factors.dtype),
            "build_id": bundle.build_id,
        },
        "latency_ms": results,
        "known_customer_steps_ms": stages,
    }


def main() -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("--sizes", type=int, nargs="+", default=sorted(SIZES))
    parser.add_argument("--requests", type=int, default=2_000)
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--config", type=Path, help="TOML build config (default: the default)")
    parser.add_argument("--out", default=str(ROOT / "bench" / "results" / "recommend.json"))
    args = parser.parse_args()
    one_blas_thread()  # as the server does
    report = {
        "requests_per_round": args.requests,
        "rounds": args.rounds,
        "config": str(args.config) if args.config else "default",
        "machine": machine(),
        "bundles": {},
    }
    for items in args.sizes:
        events, users = SIZES.get(items, (20 * items, items // 2))
        report["bundles"][str(items)] = run(items, events, users, args)
    write_report(args.out, report)
    return 0


if __name__ == "__main__":
    sys.exit(main())

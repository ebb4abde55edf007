"""Ways to find a user's top 100 items among a bundle's item factors, measured in one run against
brute force (numpy float32 matrix · vector + argpartition over the rows the bundle holds): what
the edge does (the norm-ordered exact scan, handing long searches to the int8 scan of every
row, `edge.int8_scan`), each of those two alone, int8 rows through onnxruntime's MatMulInteger
the naive ways, and an IVF index. Reports time ratios and recall@100 against brute force, and
the recall@100 of the bundle's int8 rows against the float32 factors, which export measured
before it wrote them (the bundle holds no float32 copy). Not a test: it reports, it does not
assert.

    python bench/bench_retrieval.py [--bundle DIR] [--users 300]
(default bundle: the one `bench/bench_recommend.py` builds)
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import statistics
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np
from onnx import TensorProto, helper

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from edge import arrays, scoring  # noqa: E402
from edge.app import one_blas_thread  # noqa: E402
from edge.bundle import EMBEDDINGS, load_bundle  # noqa: E402
from edge.int8_scan import Int8Scan  # noqa: E402
from edge.model import Embeddings  # noqa: E402
from edge.onnx_session import onnx_session, session_options  # noqa: E402

K = 100


def int8_scorer(factors: np.ndarray, unsigned_items: bool) -> Callable[[np.ndarray], np.ndarray]:
    """Per-row symmetric int8 items; the user vector quantized to int8 per request."""
    n, dim = factors.shape
    scale = np.abs(factors).max(axis=1) / 127.0
    scale[scale == 0] = 1.0
    rows = np.round(factors / scale[:, None]).astype(np.int8)
    inputs = [helper.make_tensor_value_info("user", TensorProto.INT8, [dim, 1])]
    if unsigned_items:  # onnxruntime's fast path is uint8 × int8, with a zero point of 128
        feed = {
            "items": (rows.astype(np.int16) + 128).astype(np.uint8),
            "zero": np.array(128, np.uint8),
        }
        node = helper.make_node("MatMulInteger", ["items", "user", "zero"], ["acc"])
        inputs += [
            helper.make_tensor_value_info("items", TensorProto.UINT8, [None, dim]),
            helper.make_tensor_value_info("zero", TensorProto.UINT8, []),
        ]
    else:
        feed = {"items": rows}
        node = helper.make_node("MatMulInteger", ["items", "user"], ["acc"])
        inputs.append(helper.make_tensor_value_info("items", TensorProto.INT8, [None, dim]))
    graph = helper.make_graph(
        [node, helper.make_node("Cast", ["acc"], ["scores"], to=TensorProto.FLOAT)],
        "int8",
        inputs,
        [helper.make_tensor_value_info("scores", TensorProto.FLOAT, [None, 1])],
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    session = onnx_session(model.SerializeToString(), "int8 scorer graph")
    scale32 = scale.astype(np.float32)

    def top(user: np.ndarray) -> np.ndarray:
        q = np.round(user / (np.abs(user).max() / 127.0)).astype(np.int8)[:, None]
        (acc,) = session.run(None, feed | {"user": q})
        scores = acc[:, 0] * scale32
        return np.argpartition(-scores, K)[:K]

    return top


def edge_scan(emb: Embeddings) -> Callable[[np.ndarray], np.ndarray]:
    """The edge's int8 scan of every row (`edge.int8_scan`), its 2k best rescored exactly."""
    if emb.scan is None:
        raise SystemExit("this bundle has no int8 scan (float32 factors or an older export)")

    def top(user: np.ndarray) -> np.ndarray:
        rows = emb.scan.top_rows(user, 2 * K)
        exact = emb.rows(emb.order[rows]) @ user
        return rows[np.argpartition(-exact, K)[:K]]

    return top


def scan_nodes(bundle_dir: Path, emb: Embeddings, users: list[np.ndarray]) -> dict[str, float]:
    """Median µs of each node of the int8 scan's graph, from onnxruntime's own profile."""
    tree = arrays.read_file(bundle_dir / EMBEDDINGS)
    if "scan_onnx" not in tree:
        return {}
    options = session_options()
    options.enable_profiling = True
    with tempfile.TemporaryDirectory() as tmp:
        options.profile_file_prefix = str(Path(tmp) / "scan")
        scan = Int8Scan(bytes(tree["scan_onnx"]), emb.factors, emb.scale, options)
        for user in users:
            scan.top_rows(user, 2 * K)
        events = json.loads(Path(scan.session.end_profiling()).read_text())
    durations: dict[str, list[float]] = {}
    for event in events:
        if event.get("cat") == "Node" and event["name"].endswith("_kernel_time"):
            durations.setdefault(event["args"]["op_name"], []).append(event["dur"])
    return {op: statistics.median(times) for op, times in durations.items()}


def ivf_scorer(
    factors: np.ndarray, lists: int, probes: int, seed: int
) -> Callable[[np.ndarray], np.ndarray]:
    from sklearn.cluster import MiniBatchKMeans

    norms = np.linalg.norm(factors, axis=1)
    directions = factors / np.maximum(norms, 1e-12)[:, None]
    labels = (
        MiniBatchKMeans(lists, random_state=seed, n_init=1, batch_size=4096).fit(directions).labels_
    )
    order = np.argsort(labels, kind="stable")
    grouped = np.ascontiguousarray(factors[order])
    offsets = np.searchsorted(labels[order], np.arange(lists + 1))
    centroids = np.stack(
        [
            factors[labels == c].mean(axis=0) if (labels == c).any() else np.zeros(factors.shape[1])
            for c in range(lists)
        ]
    ).astype(np.float32)

    def top(user: np.ndarray) -> np.ndarray:
        probe = np.argpartition(-(centroids @ user), probes)[:probes]
        rows = np.concatenate([np.arange(offsets[c], offsets[c + 1]) for c in probe])
        scores = grouped[rows] @ user
        return order[rows[np.argpartition(-scores, K)[:K]]]

    return top


def main() -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("--bundle", default=str(ROOT / "build" / "bench" / "sim-100000-2000000-0"))
    parser.add_argument("--users", type=int, default=300)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--out", default=str(ROOT / "bench" / "results" / "retrieval.json"))
    args = parser.parse_args()
    one_blas_thread()  # as the server does
    bundle = load_bundle(args.bundle)
    bundle.model.embeddings.wait_for_scan()
    model = bundle.model
    emb = model.embeddings
    factors = np.ascontiguousarray(emb.rows(emb.order))  # storage order, as float32
    rng = np.random.default_rng(args.seed)
    profiles = list(bundle.profiles.as_dict().values())
    users = []
    while len(users) < args.users:
        profile = profiles[rng.integers(len(profiles))]
        user = scoring.fold_in(model, scoring.build_user_state(model, profile))
        if user is not None:
            users.append(user)

    def brute(user: np.ndarray) -> np.ndarray:
        return np.argpartition(-(factors @ user), K)[:K]

    exact_only = dataclasses.replace(emb, scan=None)
    methods = {
        "brute force float32 (reference)": brute,
        "edge: norm-ordered scan, int8 scan when long": lambda u: emb.row_of_item[emb.top(u, K)[0]],
        "norm-ordered exact scan only": lambda u: exact_only.row_of_item[exact_only.top(u, K)[0]],
        "int8 MatMulInteger, int8 x int8": int8_scorer(factors, unsigned_items=False),
        "int8 MatMulInteger, uint8 x int8": int8_scorer(factors, unsigned_items=True),
        "int8 scan of every row (edge's), 2k rescored": edge_scan(emb),
        "IVF 256 lists, 32 probes": ivf_scorer(factors, 256, 32, args.seed),
        "IVF 256 lists, 48 probes": ivf_scorer(factors, 256, 48, args.seed),
    }
    truth = [set(brute(u).tolist()) for u in users]
    results: dict[str, dict[str, float]] = {}
    for name, method in methods.items():
        for user in users[:20]:  # warm up
            method(user)
        times, recalls = [], []
        for user, expected in zip(users, truth):
            started = time.perf_counter()
            found = method(user)
            times.append((time.perf_counter() - started) * 1000.0)
            recalls.append(len(expected & set(np.asarray(found).tolist())) / K)
        results[name] = {
            "p50_ms": round(statistics.median(times), 4),
            "p99_ms": round(float(np.percentile(times, 99)), 4),
            "recall@100": round(float(np.mean(recalls)), 4),
        }
    reference = results["brute force float32 (reference)"]["p50_ms"]
    stored = bundle.manifest.models.embeddings
    print(
        f"top-{K} retrieval over {factors.shape[0]:,} x {factors.shape[1]} item factors "
        f"({emb.factors.dtype}), {len(users)} folded-in users"
    )
    if stored.recall_at_100 is not None:
        print(
            f"  int8 rows against float32 (export, {stored.users} users): recall@100 "
            f"{stored.recall_at_100}; stored as {stored.dtype}"
        )
    print(f"  {'method':<48}{'p50 ms':>9}{'p99 ms':>9}{'p50 ratio':>10}{'recall@100':>12}")
    for name, r in results.items():
        r["p50_over_reference"] = round(r["p50_ms"] / reference, 2)
        print(
            f"  {name:<48}{r['p50_ms']:>9.3f}{r['p99_ms']:>9.3f}{r['p50_over_reference']:>10.2f}"
            f"{r['recall@100']:>12.4f}"
        )
    nodes = scan_nodes(Path(args.bundle), emb, users)
    if nodes:
        print("  the int8 scan by graph node (median µs, onnxruntime's profile): ", end="")
        print(", ".join(f"{op} {us:.0f}" for op, us in nodes.items()))
    report = {"stored": stored, "methods": results, "int8_scan_nodes_us": nodes}
    Path(args.out).write_text(json.dumps(report, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())

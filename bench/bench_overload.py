"""The server past its capacity, seen by a second load generator: an asyncio client on the other
core holding N kept-alive connections (default 64), each posting the bench mix back to back for
a bounded time. Reports latency percentiles and the maximum, the share of answers that were
fallback content because the latency budget ran out (the server sheds what waited too long in
its queue: `edge/arrival.py`), and the fewest and most requests one connection got through
(whether service was fair). A cross-check of bench_http.py's wrk at 64 connections, whose tail
(about a second) this client has not seen. Not a test: it reports, it does not assert.

    python bench/bench_overload.py [--connections 64] [--seconds 5] [--rounds 2] [--loop asyncio]
"""

from __future__ import annotations

import argparse
import asyncio
import os
import statistics
import sys
import time
from pathlib import Path

import msgspec
import numpy as np

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from bench_http import bundle_and_bodies, product, start  # noqa: E402
from report import machine, write_report  # noqa: E402
from servers import free_port  # noqa: E402

from edge.cli import LOOPS  # noqa: E402


class Answer(msgspec.Struct):
    fallback: str | None = None


_decode = msgspec.json.Decoder(Answer).decode


async def connection(port: int, bodies: list[bytes], first: int, step: int, until: float):
    """One kept-alive connection's requests: (seconds, answered late) each."""
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    out, i = [], first
    try:
        while time.perf_counter() < until:
            body = bodies[i % len(bodies)]
            i += step
            head = (
                f"POST /v1/recommend HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\n"
                f"content-type: application/json\r\ncontent-length: {len(body)}\r\n\r\n"
            )
            started = time.perf_counter()
            writer.write(head.encode() + body)
            headers = await reader.readuntil(b"\r\n\r\n")
            status = int(headers.split(b" ", 2)[1])
            length = next(
                int(line.split(b":", 1)[1])
                for line in headers.split(b"\r\n")
                if line.lower().startswith(b"content-length:")
            )
            payload = await reader.readexactly(length)
            seconds = time.perf_counter() - started
            if status != 200:
                raise RuntimeError(f"status {status}: {payload[:200]!r}")
            fallback = _decode(payload).fallback or ""
            out.append((seconds, fallback.startswith("latency_budget")))
    finally:
        writer.close()
    return out


async def load(port: int, bodies: list[bytes], connections: int, seconds: float):
    until = time.perf_counter() + seconds
    return await asyncio.gather(
        *(connection(port, bodies, c, connections, until) for c in range(connections))
    )


def summarize(per_connection: list[list[tuple[float, bool]]], seconds: float) -> dict:
    latencies = np.array([s for requests in per_connection for s, _ in requests]) * 1000.0
    late = sum(is_late for requests in per_connection for _, is_late in requests)
    counts = [len(requests) for requests in per_connection]
    return {
        "requests_per_s": round(latencies.size / seconds, 1),
        "p50_ms": round(float(np.percentile(latencies, 50)), 2),
        "p99_ms": round(float(np.percentile(latencies, 99)), 2),
        "max_ms": round(float(latencies.max()), 2),
        "late_share": round(late / latencies.size, 4),
        "fewest_per_connection": min(counts),
        "most_per_connection": max(counts),
    }


def main() -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("--items", type=int, default=100_000)
    parser.add_argument("--connections", type=int, default=64)
    parser.add_argument("--seconds", type=float, default=5.0)
    parser.add_argument("--rounds", type=int, default=2)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--loop", default="asyncio", choices=LOOPS, help="the server's event loop")
    parser.add_argument("--out", default=str(ROOT / "bench" / "results" / "overload.json"))
    args = parser.parse_args()
    if hasattr(os, "sched_setaffinity") and (os.cpu_count() or 1) > 1:
        os.sched_setaffinity(0, {1})  # the server is pinned to core 0 (bench_http.start)
    bundle_dir, bodies = bundle_and_bodies(args.items, args.seed)
    port = free_port()
    process = start([*product(bundle_dir, args.loop), "--port", str(port)], port, {})
    try:
        asyncio.run(load(port, bodies, 16, 1.0))  # warm up
        runs = [
            summarize(asyncio.run(load(port, bodies, args.connections, args.seconds)), args.seconds)
            for _ in range(args.rounds)
        ]
    finally:
        process.terminate()
        process.wait(timeout=15)
    result = {key: round(statistics.median(run[key] for run in runs), 4) for key in runs[0]}
    report = {
        "machine": machine(),
        "items": args.items,
        "connections": args.connections,
        "loop": args.loop,
        "seconds_per_run": args.seconds,
        "rounds": args.rounds,
        "result": result,
        "runs": runs,
    }
    write_report(args.out, report)
    print(
        f"{args.connections} kept-alive connections from an asyncio client, {args.items:,} items "
        f"(median of {args.rounds} runs of {args.seconds:g} s)"
    )
    for key, value in result.items():
        print(f"  {key:<24}{value:>10}")
    return 0


if __name__ == "__main__":
    sys.exit(main())

"""The server past its capacity, seen by a second load generator: an asyncio client on the other
core, for a bounded time. Two ways to load it:
- a closed loop (default): N kept-alive connections (default 64), each posting the bench mix
  back to back, as wrk and Locust do; the fewest and most requests one connection got through
  say whether service was fair;
- an open loop (`--rate R`): R requests a second whatever the answers, as visitors arrive, over
  at most N connections; a request's time counts from when it was due.
Reports latency percentiles and the maximum, the answers per second and the personalized ones,
and the share of answers that were fallback content because the latency budget ran out (the
server sheds what waited too long: `edge/arrival.py`, `edge/turns.py`). Not a test: it
reports, it does not assert.

    python bench/bench_overload.py [--connections 64] [--seconds 5] [--rounds 2]
                                   [--loop asyncio] [--rate 0]
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


async def post(reader, writer, port: int, body: bytes) -> bool:
    """One recommendation on a kept-alive connection; whether it was answered late."""
    head = (
        f"POST /v1/recommend HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\n"
        f"content-type: application/json\r\ncontent-length: {len(body)}\r\n\r\n"
    )
    writer.write(head.encode() + body)
    headers = await reader.readuntil(b"\r\n\r\n")
    status = int(headers.split(b" ", 2)[1])
    length = next(
        int(line.split(b":", 1)[1])
        for line in headers.split(b"\r\n")
        if line.lower().startswith(b"content-length:")
    )
    payload = await reader.readexactly(length)
    if status != 200:
        raise RuntimeError(f"status {status}: {payload[:200]!r}")
    return (_decode(payload).fallback or "").startswith("latency_budget")


async def connection(port: int, bodies: list[bytes], first: int, step: int, until: float):
    """One kept-alive connection's requests, each sent when the last was answered (a closed
    loop): (seconds, answered late) each."""
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    out, i = [], first
    try:
        while time.perf_counter() < until:
            body = bodies[i % len(bodies)]
            i += step
            started = time.perf_counter()
            late = await post(reader, writer, port, body)
            out.append((time.perf_counter() - started, late))
    finally:
        writer.close()
    return out


async def open_loop(
    port: int, bodies: list[bytes], rate: float, seconds: float, max_connections: int
) -> list[list[tuple[float, bool]]]:
    """Requests sent at `rate` a second whatever the answers, as visitors arrive (an open
    loop), each on an idle kept-alive connection, or a new one while fewer than
    `max_connections` are open. A request's time counts from when it was due, so one that
    waited for a connection is not left out of the figures (no coordinated omission)."""
    idle: list[tuple[asyncio.StreamReader, asyncio.StreamWriter]] = []
    slots = asyncio.Semaphore(max_connections)
    out: list[tuple[float, bool]] = []

    async def send(body: bytes, due: float) -> None:
        async with slots:
            streams = idle.pop() if idle else await asyncio.open_connection("127.0.0.1", port)
            late = await post(*streams, port, body)
            out.append((time.perf_counter() - due, late))
            idle.append(streams)

    started = time.perf_counter()
    sent = []
    for i in range(int(rate * seconds)):
        due = started + i / rate
        await asyncio.sleep(max(0.0, due - time.perf_counter()))
        sent.append(asyncio.create_task(send(bodies[i % len(bodies)], due)))
    await asyncio.wait_for(asyncio.gather(*sent), timeout=60)  # bounded, whatever the server does
    for _, writer in idle:
        writer.close()
    return [out]


async def load(port: int, bodies: list[bytes], connections: int, seconds: float):
    until = time.perf_counter() + seconds
    return await asyncio.gather(
        *(connection(port, bodies, c, connections, until) for c in range(connections))
    )


def summarize(per_connection: list[list[tuple[float, bool]]], seconds: float) -> dict:
    """Figures of one run; with one list of requests (the open loop), per connection counts
    say nothing and are left out."""
    latencies = np.array([s for requests in per_connection for s, _ in requests]) * 1000.0
    late = sum(is_late for requests in per_connection for _, is_late in requests)
    counts = [len(requests) for requests in per_connection]
    out = {
        "requests_per_s": round(latencies.size / seconds, 1),
        "personalized_per_s": round((latencies.size - late) / seconds, 1),
        "p50_ms": round(float(np.percentile(latencies, 50)), 2),
        "p99_ms": round(float(np.percentile(latencies, 99)), 2),
        "max_ms": round(float(latencies.max()), 2),
        "late_share": round(late / latencies.size, 4),
    }
    if len(counts) > 1:
        out |= {"fewest_per_connection": min(counts), "most_per_connection": max(counts)}
    return out


def main() -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("--items", type=int, default=100_000)
    parser.add_argument("--connections", type=int, default=64)
    parser.add_argument("--seconds", type=float, default=5.0)
    parser.add_argument("--rounds", type=int, default=2)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--loop", default="asyncio", choices=LOOPS, help="the server's event loop")
    parser.add_argument(
        "--rate",
        type=float,
        default=0.0,
        help="requests a second in an open loop, at most --connections at a time (0: the "
        "closed loop of --connections, each sending when answered)",
    )
    parser.add_argument("--out", default=str(ROOT / "bench" / "results" / "overload.json"))
    args = parser.parse_args()
    if hasattr(os, "sched_setaffinity") and (os.cpu_count() or 1) > 1:
        os.sched_setaffinity(0, {1})  # the server is pinned to core 0 (bench_http.start)
    bundle_dir, bodies = bundle_and_bodies(args.items, args.seed)
    port = free_port()
    process = start([*product(bundle_dir, args.loop), "--port", str(port)], port, {})
    try:
        asyncio.run(load(port, bodies, 16, 1.0))  # warm up
        runs = []
        for _ in range(args.rounds):
            if args.rate > 0:
                sent = open_loop(port, bodies, args.rate, args.seconds, args.connections)
            else:
                sent = load(port, bodies, args.connections, args.seconds)
            runs.append(summarize(asyncio.run(sent), args.seconds))
    finally:
        process.terminate()
        process.wait(timeout=15)
    result = {key: round(statistics.median(run[key] for run in runs), 4) for key in runs[0]}
    report = {
        "machine": machine(),
        "items": args.items,
        "connections": args.connections,
        "open_loop_rate": args.rate or None,
        "loop": args.loop,
        "seconds_per_run": args.seconds,
        "rounds": args.rounds,
        "result": result,
        "runs": runs,
    }
    write_report(args.out, report)
    how = (
        f"{args.rate:g} requests/s sent in an open loop over at most {args.connections}"
        if args.rate > 0
        else f"{args.connections}"
    )
    print(
        f"{how} kept-alive connections from an asyncio client, {args.items:,} items "
        f"(median of {args.rounds} runs of {args.seconds:g} s)"
    )
    for key, value in result.items():
        print(f"  {key:<24}{value:>10}")
    return 0


if __name__ == "__main__":
    sys.exit(main())

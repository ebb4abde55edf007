"""Slow clients against the product: a crowd of "slowloris" connections, each sending one header
byte every few seconds and never finishing its headers, while steady normal clients measure
`POST /v1/recommend`, first alone and then inside the crowd, in the same run (the ratio is the
figure). The server runs as shipped (`edge serve`, its default header timeout, body timeout and
connection cap: edge/connections.py) on one core; this process, on the other core, opens the
crowd from asyncio on 127.0.0.1 only, bounded in count (--slow) and in time, and reopens each
slow connection the server closes at its next byte (a persistent attacker).

The normal clients run in a process of their own on the same core as the crowd, so that the
crowd's callbacks do not delay their reads: a kept-alive connection, and a new connection per
request (which must be admitted at the cap). Reports, per run, their median and p99 alone and
in the crowd, and every second: the slow connections this side holds open, how many the server
answered with a 408 (header timeout) or closed without an answer (evicted at the cap), the
server's RSS and open fds. `--no-reopen` opens each slow connection once; `--max-connections`
and `--header-timeout` pass serve's flags (a very large value lifts a limit, as the server was
without them). Not a test: it reports, it does not assert.

    python bench/bench_slow_clients.py [--slow 4000] [--interval 2] [--seconds 20] [--rounds 3]
                                       [--no-reopen] [--linger 0] [--max-connections N]
                                       [--header-timeout S]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import resource
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from bench_http import bundle_and_bodies, product, start  # noqa: E402
from report import machine, write_report  # noqa: E402
from servers import free_port  # noqa: E402

SLOW_HEAD = b"POST /v1/recommend HTTP/1.1\r\nHost: 127.0.0.1\r\nX-Slow: "


class Crowd:
    """Up to `size` slow connections, each sending one byte every `interval` seconds; one the
    server closes is opened again at its next byte, until `stop`."""

    def __init__(self, port: int, size: int, interval: float, reopen: bool) -> None:
        self.port, self.size, self.interval, self.reopen = port, size, interval, reopen
        self.open: set[SlowClient] = set()
        self.opened = self.timed_out = self.evicted = self.reset = self.failed = 0
        self.stopped = False

    async def run(self, ramp: float) -> None:
        """Opens the crowd over `ramp` seconds."""
        loop = asyncio.get_running_loop()
        for i in range(self.size):
            loop.call_later(i * ramp / self.size, self.connect)
        await asyncio.sleep(ramp)

    def connect(self) -> None:
        if not self.stopped:
            asyncio.ensure_future(self._connect())

    async def _connect(self) -> None:
        loop = asyncio.get_running_loop()
        try:
            await loop.create_connection(lambda: SlowClient(self), "127.0.0.1", self.port)
        except OSError:
            self.failed += 1
            if self.reopen:
                loop.call_later(self.interval, self.connect)

    def closed(self, client: SlowClient, exc: Exception | None) -> None:
        self.open.discard(client)
        if client.answered:
            self.timed_out += 1
        elif exc is not None:
            self.reset += 1
        else:
            self.evicted += 1
        if self.reopen:
            asyncio.get_running_loop().call_later(self.interval, self.connect)

    def stop(self) -> None:
        self.stopped = True
        for client in list(self.open):
            client.transport.abort()

    def sample(self) -> dict[str, int]:
        return {
            "held_here": len(self.open),
            "opened": self.opened,
            "answered_408": self.timed_out,
            "closed_without_answer": self.evicted,
            "reset": self.reset,
            "connect_failed": self.failed,
        }


class SlowClient(asyncio.Protocol):
    def __init__(self, crowd: Crowd) -> None:
        self.crowd = crowd
        self.answered = False
        self.drip: asyncio.TimerHandle | None = None

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        assert isinstance(transport, asyncio.Transport)
        self.transport = transport
        if self.crowd.stopped:
            transport.abort()
            return
        self.crowd.opened += 1
        self.crowd.open.add(self)
        transport.write(SLOW_HEAD)
        self.drip = asyncio.get_running_loop().call_later(self.crowd.interval, self.send_byte)

    def send_byte(self) -> None:
        if not self.transport.is_closing():
            self.transport.write(b"x")
            self.drip = asyncio.get_running_loop().call_later(self.crowd.interval, self.send_byte)

    def data_received(self, data: bytes) -> None:
        self.answered = self.answered or data.startswith(b"HTTP/1.1 408")

    def connection_lost(self, exc: Exception | None) -> None:
        if self.drip is not None:
            self.drip.cancel()
        if not self.crowd.stopped:
            self.crowd.closed(self, exc)


async def answer(reader: asyncio.StreamReader) -> int:
    head = await reader.readuntil(b"\r\n\r\n")
    length = next(
        int(line.split(b":", 1)[1])
        for line in head.split(b"\r\n")
        if line.lower().startswith(b"content-length:")
    )
    await reader.readexactly(length)
    return int(head.split(b" ", 2)[1])


def request(port: int, body: bytes) -> bytes:
    head = (
        f"POST /v1/recommend HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\n"
        f"content-type: application/json\r\ncontent-length: {len(body)}\r\n\r\n"
    )
    return head.encode() + body


async def steady(port: int, bodies: list[bytes], rate: float, seconds: float, kept: bool):
    """Requests at `rate` a second for `seconds`, on one kept-alive connection or a new one
    each (its connect counted in its time): (seconds, status) each; status 0 when the
    connection failed or was closed before the answer."""
    out: list[tuple[float, int]] = []
    streams = None
    started = time.perf_counter()
    for i in range(int(rate * seconds)):
        due = started + i / rate
        await asyncio.sleep(max(0.0, due - time.perf_counter()))
        sent = time.perf_counter()
        try:
            if streams is None:
                streams = await asyncio.open_connection("127.0.0.1", port)
            streams[1].write(request(port, bodies[i % len(bodies)]))
            status = await asyncio.wait_for(answer(streams[0]), 10.0)
        except (OSError, asyncio.IncompleteReadError, TimeoutError):
            status = 0
        out.append((time.perf_counter() - sent, status))
        if streams is not None and (not kept or status == 0):
            streams[1].close()
            streams = None
    if streams is not None:
        streams[1].close()
    return out


def latency(requests: list[tuple[float, int]]) -> dict[str, float]:
    ms = np.array([s for s, status in requests if status == 200]) * 1000.0
    return {
        "p50_ms": round(float(np.percentile(ms, 50)), 2),
        "p99_ms": round(float(np.percentile(ms, 99)), 2),
        "answered_200": len(ms),
        "failed": len(requests) - len(ms),
    }


def server_usage(pid: int) -> dict[str, float]:
    """The server's resident memory (MB) and open fds, from /proc."""
    status = Path(f"/proc/{pid}/status").read_text()
    rss_kb = next(int(line.split()[1]) for line in status.splitlines() if line.startswith("VmRSS"))
    return {"rss_mb": round(rss_kb / 1024, 1), "fds": len(os.listdir(f"/proc/{pid}/fd"))}


async def normal_clients(port: int, bodies: list[bytes], rate: float, seconds: float):
    kept, new = await asyncio.gather(
        steady(port, bodies, rate, seconds, kept=True),
        steady(port, bodies, rate, seconds, kept=False),
    )
    return {"kept_alive": latency(kept), "new_connection": latency(new)}


async def normal_process(port: int, bodies: Path, rate: float, seconds: float) -> dict:
    """The normal clients in a process of their own (on this core too), so that the crowd's
    callbacks in this process's loop do not delay their reads: their figures are the
    server's."""
    child = await asyncio.create_subprocess_exec(
        sys.executable,
        __file__,
        "--normal-client",
        str(port),
        str(bodies),
        str(rate),
        str(seconds),
        stdout=asyncio.subprocess.PIPE,
    )
    out, _ = await child.communicate()
    if child.returncode != 0:
        raise RuntimeError(f"the normal clients failed ({child.returncode})")
    return json.loads(out)


def normal_client_main(argv: list[str]) -> int:
    port, bodies, rate, seconds = int(argv[0]), Path(argv[1]), float(argv[2]), float(argv[3])
    decoded = [body.encode() for body in json.loads(bodies.read_text())]
    print(json.dumps(asyncio.run(normal_clients(port, decoded, rate, seconds))))
    return 0


async def one_run(port: int, pid: int, bodies: Path, args: argparse.Namespace) -> dict:
    alone = await normal_process(port, bodies, args.rate, args.seconds)
    usage_alone = server_usage(pid)
    crowd = Crowd(port, args.slow, args.interval, args.reopen)
    timeline: list[dict[str, float]] = []
    started = time.perf_counter()

    async def sample() -> None:
        while True:
            timeline.append(
                {"s": round(time.perf_counter() - started, 1)} | crowd.sample() | server_usage(pid)
            )
            await asyncio.sleep(1.0)

    sampler = asyncio.ensure_future(sample())
    await crowd.run(args.ramp)
    inside = await normal_process(port, bodies, args.rate, args.seconds)
    in_crowd = len(timeline)
    await asyncio.sleep(args.linger)  # the timeline goes on: what the server closes later
    crowd.stop()
    sampler.cancel()
    steady_state = timeline[int(args.ramp) + 1 : in_crowd]  # while the normal clients ran
    return {
        "alone": alone,
        "in_crowd": inside,
        "ratio": {
            kind: {
                key: round(inside[kind][key] / alone[kind][key], 2) for key in ("p50_ms", "p99_ms")
            }
            for kind in alone
        },
        "server_alone": usage_alone,
        "server_in_crowd_max": {
            key: max(row[key] for row in steady_state) for key in ("rss_mb", "fds")
        },
        "server_in_crowd_median": {
            key: statistics.median(row[key] for row in steady_state) for key in ("rss_mb", "fds")
        },
        "held_here_median": statistics.median(row["held_here"] for row in steady_state),
        "crowd_totals": crowd.sample(),
        "timeline": timeline,
    }


def main() -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("--items", type=int, default=100_000)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--slow", type=int, default=4000, help="slow connections attempted")
    parser.add_argument("--interval", type=float, default=2.0, help="seconds between bytes")
    parser.add_argument("--ramp", type=float, default=4.0, help="seconds to open the crowd")
    parser.add_argument("--rate", type=float, default=20.0, help="normal requests/s per client")
    parser.add_argument("--seconds", type=float, default=20.0, help="normal clients' time")
    parser.add_argument("--rounds", type=int, default=3, help="runs, each on a new server")
    parser.add_argument(
        "--linger", type=float, default=0.0, help="seconds the crowd stays after the clients"
    )
    parser.add_argument(
        "--max-connections",
        type=int,
        default=None,
        help="serve's --max-connections (default: the product's own)",
    )
    parser.add_argument(
        "--header-timeout",
        type=float,
        default=None,
        help="serve's --header-timeout (default: the product's own)",
    )
    parser.add_argument(
        "--no-reopen",
        dest="reopen",
        action="store_false",
        help="open each slow connection once (default: open it again when the server closes it)",
    )
    parser.add_argument("--out", default=str(ROOT / "bench" / "results" / "slow-clients.json"))
    args = parser.parse_args()
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    wanted = args.slow + 256
    if soft < wanted:
        if hard != resource.RLIM_INFINITY and hard < wanted:
            raise SystemExit(f"--slow {args.slow} needs {wanted} fds here; ulimit -n is {hard}")
        resource.setrlimit(resource.RLIMIT_NOFILE, (wanted, hard))
    if hasattr(os, "sched_setaffinity") and (os.cpu_count() or 1) > 1:
        os.sched_setaffinity(0, {1})  # the server is pinned to core 0 (bench_http.start)
    bundle_dir, bodies = bundle_and_bodies(args.items, args.seed)
    runs = []
    with tempfile.TemporaryDirectory() as tmp:
        bodies_file = Path(tmp) / "bodies.json"
        bodies_file.write_text(json.dumps([body.decode() for body in bodies]))
        for _ in range(args.rounds):
            port = free_port()
            command = [*product(bundle_dir, "asyncio"), "--port", str(port)]
            for flag in ("max_connections", "header_timeout"):
                if getattr(args, flag) is not None:
                    command += [f"--{flag.replace('_', '-')}", str(getattr(args, flag))]
            process = start(command, port, {})
            try:
                asyncio.run(normal_clients(port, bodies, args.rate, 1.0))  # warm up
                runs.append(asyncio.run(one_run(port, process.pid, bodies_file, args)))
                alive = process.poll() is None
            finally:
                process.terminate()
                try:
                    process.wait(timeout=30)
                except subprocess.TimeoutExpired:
                    process.kill()
            runs[-1]["server_alive_after"] = alive
    result = median_of(runs)
    report = {
        "machine": machine(),
        "items": args.items,
        "slow_connections": args.slow,
        "seconds_between_bytes": args.interval,
        "reopened": args.reopen,
        "serve_max_connections": args.max_connections,
        "serve_header_timeout": args.header_timeout,
        "normal_rate_per_client": args.rate,
        "seconds": args.seconds,
        "rounds": args.rounds,
        "result": result,
        "runs": runs,
    }
    write_report(args.out, report)
    limits = " ".join(
        f"--{flag.replace('_', '-')} {getattr(args, flag):g}"
        for flag in ("max_connections", "header_timeout")
        if getattr(args, flag) is not None
    )
    print(
        f"{args.slow:,} slow connections (a byte every {args.interval:g} s, "
        f"{'opened again when closed' if args.reopen else 'opened once'}) against the product "
        f"({'serve ' + limits if limits else 'as shipped'}), {args.items:,} items; normal "
        f"clients at {args.rate:g} requests/s each (median of {args.rounds} runs of "
        f"{args.seconds:g} s)"
    )
    for key, value in result.items():
        print(f"  {key:<44}{value:>10}")
    return 0


def median_of(runs: list[dict]) -> dict[str, float]:
    """Each headline figure's median over the runs, flat."""
    flat: dict[str, list[float]] = {}
    for run in runs:
        for phase in ("alone", "in_crowd", "ratio"):
            for kind, figures in run[phase].items():
                for key, value in figures.items():
                    flat.setdefault(f"{phase}.{kind}.{key}", []).append(value)
        for group in (
            "server_alone",
            "server_in_crowd_max",
            "server_in_crowd_median",
            "crowd_totals",
        ):
            for key, value in run[group].items():
                flat.setdefault(f"{group}.{key}", []).append(value)
        flat.setdefault("held_here_median", []).append(run["held_here_median"])
        flat.setdefault("server_alive_after", []).append(float(run["server_alive_after"]))
    return {key: round(statistics.median(values), 2) for key, values in flat.items()}


if __name__ == "__main__":
    if sys.argv[1:2] == ["--normal-client"]:
        sys.exit(normal_client_main(sys.argv[2:]))
    sys.exit(main())

"""The product over HTTP against a bare Starlette JSON endpoint (bench/bare_app.py), each served by
uvicorn with httptools on one core and loaded by wrk on the other core, in the same run:
requests/s and latency percentiles at 1, 16 and 64 connections, reported as ratios to the bare
endpoint. The bare endpoint runs on uvloop, as it did for the reference figures the latency
targets were set against; the product on its default event loop, and once more on each other
loop `--loops` names. The product gets a mix of known customers, anonymous sessions and cold
visitors on the 100,000-item simulator bundle. A last server, the floor (bench/floor_app.py),
gets the same bodies but only parses each, runs the ranker over its precomputed candidates and
answers: what any server that ranks with the trained model pays per request. Not a test: it
reports, it does not assert.

    python bench/bench_http.py [--items 100000] [--seconds 10] [--connections 1 16 64]
                               [--loops asyncio uvloop]

Needs wrk (`make bench` installs Debian's package) and taskset (util-linux).
"""

from __future__ import annotations

import argparse
import os
import re
import shutil
import statistics
import subprocess
import sys
import tempfile
from pathlib import Path

import msgspec

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from bench_recommend import request_bodies  # noqa: E402
from bundles import SIZES, build  # noqa: E402
from report import machine, write_report  # noqa: E402
from servers import free_port, wait_ready  # noqa: E402

from edge.bundle import load_bundle  # noqa: E402
from edge.cli import LOOPS  # noqa: E402

# wrk's Lua: POST each body in turn (one list per thread, the same order in each run), and
# count the answers that were fallback content because the latency budget ran out: a server
# that sheds load that way must say how much it shed, next to the latency it gained by it.
WRK_SCRIPT = """
wrk.method = "POST"
wrk.headers["content-type"] = "application/json"
local bodies = {%s}
local i = 0
request = function()
  i = i %% #bodies + 1
  return wrk.format(nil, "/v1/recommend", nil, bodies[i])
end
local threads = {}
function setup(thread) table.insert(threads, thread) end
answers, late = 0, 0
function response(status, headers, body)
  answers = answers + 1
  if string.find(body, '"fallback":"latency_budget', 1, true) then late = late + 1 end
end
function done(summary, latency, requests)
  local a, l = 0, 0
  for _, t in ipairs(threads) do a = a + t:get("answers"); l = l + t:get("late") end
  io.write(string.format("Budget fallbacks: %%d of %%d\\n", l, a))
end
"""
UNITS = {"us": 1e-3, "ms": 1.0, "s": 1000.0}
PRODUCT = "edgeperso"
FLOOR = "floor: parse + ranker"


def lua_string(body: bytes) -> str:
    return "[==[" + body.decode() + "]==]"


def parse_wrk(output: str) -> dict[str, float]:
    """Requests/s, errors and latency percentiles (ms) from `wrk --latency`."""
    out: dict[str, float] = {"errors": 0.0}
    rps = re.search(r"Requests/sec:\s+([\d.]+)", output)
    if rps is None:
        raise RuntimeError(f"wrk printed no Requests/sec:\n{output}")
    out["requests_per_s"] = float(rps.group(1))
    for pct, value, unit in re.findall(r"^\s+(50|75|90|99)%\s+([\d.]+)(us|ms|s)\s*$", output, re.M):
        out[f"p{pct}_ms"] = round(float(value) * UNITS[unit], 3)
    for kind in re.findall(r"(?:Non-2xx or 3xx responses|Socket errors):\s*(.*)", output):
        out["errors"] += sum(int(n) for n in re.findall(r"\d+", kind))
    late = re.search(r"Budget fallbacks: (\d+) of (\d+)", output)
    if late is not None and int(late.group(2)):
        out["budget_fallback_share"] = round(int(late.group(1)) / int(late.group(2)), 4)
    return out


def run_wrk(port: int, script: Path, connections: int, seconds: float) -> dict[str, float]:
    duration = f"-d{max(1, round(seconds))}s"  # wrk takes whole seconds
    command = ["taskset", "-c", "1", "wrk", "-t1", f"-c{connections}", duration]
    command += ["--latency", "-s", str(script), f"http://127.0.0.1:{port}"]
    done = subprocess.run(command, capture_output=True, text=True, timeout=seconds + 60)
    if done.returncode != 0:
        raise RuntimeError(f"wrk failed: {done.stderr or done.stdout}")
    return parse_wrk(done.stdout)


def start(
    command: list[str], port: int, env: dict[str, str], log: Path | None = None
) -> subprocess.Popen:
    # One core for the server, the other for wrk: the server's own ceiling, not a shared one.
    with open(log or os.devnull, "ab") as stderr:  # a container's log goes to a file or a pipe
        process = subprocess.Popen(
            ["taskset", "-c", "0", *command], cwd=ROOT, env=os.environ | env, stderr=stderr
        )
    try:
        wait_ready(process, port)
    except RuntimeError:
        process.kill()
        raise
    return process


def bundle_and_bodies(items: int, seed: int) -> tuple[Path, list[bytes]]:
    """The simulator bundle of `items` items, and the request bodies of the HTTP benchmarks:
    known customers, anonymous sessions and cold visitors, interleaved."""
    events, users = SIZES.get(items, (20 * items, items // 2))
    bundle_dir = build(items, events, users, seed)
    mixes = request_bodies(load_bundle(bundle_dir), 300, seed)
    return bundle_dir, [b for trio in zip(*mixes.values()) for b in trio]


COMMON = ["--host", "127.0.0.1", "--log-level", "warning"]


def product(bundle_dir: Path, loop: str) -> list[str]:
    """The command that serves the product."""
    return [
        sys.executable,
        "-m",
        "edge",
        "serve",
        "--bundle",
        str(bundle_dir),
        "--loop",
        loop,
        *COMMON,
    ]


def servers(
    bundle_dir: Path, bodies: Path, loops: list[str]
) -> dict[str, tuple[list[str], dict[str, str]]]:
    """Each server's command and the environment it adds. The product runs once per event loop
    in `loops` (the first is its default's row); the bare endpoint runs as it did for the targets'
    reference figures (uvloop, httptools); the floor runs as the product does by default."""
    uvicorn = [sys.executable, "-m", "uvicorn", "--ws", "none", *COMMON]  # no WebSocket support,
    # as `edge serve` serves
    floor_env = {"EDGEPERSO_BUNDLE": str(bundle_dir), "EDGEPERSO_FLOOR_BODIES": str(bodies)}
    out = {
        PRODUCT if i == 0 else f"{PRODUCT} (--loop {loop})": (product(bundle_dir, loop), {})
        for i, loop in enumerate(loops)
    }
    out["bare starlette"] = ([*uvicorn, "--loop", "uvloop", "bench.bare_app:app"], {})
    out[FLOOR] = ([*uvicorn, "--loop", loops[0], "bench.floor_app:app"], floor_env)
    return out


def main() -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("--items", type=int, default=100_000)
    parser.add_argument("--seconds", type=int, default=10)
    parser.add_argument("--connections", type=int, nargs="+", default=[1, 16, 64])
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument(
        "--loops",
        nargs="+",
        default=["asyncio"],
        choices=LOOPS,
        help="event loops to serve the product with (the first one is the headline row)",
    )
    parser.add_argument("--out", default=str(ROOT / "bench" / "results" / "http.json"))
    args = parser.parse_args()
    for tool in ("wrk", "taskset"):
        if shutil.which(tool) is None:
            raise SystemExit(f"{tool} is missing: `make bench` installs it (Debian's {tool})")
    bundle_dir, bodies = bundle_and_bodies(args.items, args.seed)
    with tempfile.TemporaryDirectory() as tmp:
        script = Path(tmp) / "post.lua"
        script.write_text(WRK_SCRIPT % ",".join(lua_string(b) for b in bodies))
        bodies_file = Path(tmp) / "bodies.msgpack"
        bodies_file.write_bytes(msgspec.msgpack.encode(bodies))
        samples: dict[str, dict[int, list[dict[str, float]]]] = {}
        serving = servers(bundle_dir, bodies_file, args.loops)
        for name, (command, env) in serving.items():
            port = free_port()
            log = Path(tmp) / f"{len(samples)}.log"
            process = start([*command, "--port", str(port)], port, env, log)
            try:
                run_wrk(port, script, 16, 2)  # warm up
                per = samples.setdefault(name, {})
                for _ in range(args.rounds):
                    for c in args.connections:
                        per.setdefault(c, []).append(run_wrk(port, script, c, args.seconds))
            finally:
                process.terminate()
                process.wait(timeout=15)
    results: dict[str, dict[str, dict[str, float]]] = {}
    for name, per in samples.items():
        results[name] = {
            str(c): {key: round(statistics.median(run[key] for run in runs), 3) for key in runs[0]}
            for c, runs in per.items()
        }
    for c in map(str, args.connections):
        bare = results["bare starlette"][c]
        for server in [name for name in results if name != "bare starlette"]:
            run = results[server][c]
            run["requests_per_s_over_bare"] = round(
                run["requests_per_s"] / bare["requests_per_s"], 3
            )
            run["p99_over_bare"] = round(run["p99_ms"] / bare["p99_ms"], 2)
    report = {
        "machine": machine(),
        "items": args.items,
        "seconds_per_run": args.seconds,
        "rounds": args.rounds,
        "results": results,
    }
    write_report(args.out, report)
    print(
        f"HTTP, {args.items:,} items, server on one core, wrk on the other "
        f"(median of {args.rounds} runs of {args.seconds:g} s)"
    )
    print(
        f"  {'server':<16}{'conns':>6}{'req/s':>10}{'p50 ms':>9}{'p99 ms':>9}{'errors':>8}"
        f"{'late':>8}{'rps ratio':>11}{'p99 ratio':>11}"
    )
    for name, per in results.items():
        for c, r in per.items():
            ratios = (
                f"{r['requests_per_s_over_bare']:>11.3f}{r['p99_over_bare']:>11.2f}"
                if "p99_over_bare" in r
                else ""
            )
            print(
                f"  {name:<16}{c:>6}{r['requests_per_s']:>10.0f}{r['p50_ms']:>9.3f}"
                f"{r['p99_ms']:>9.3f}{r['errors']:>8.0f}"
                f"{r.get('budget_fallback_share', 0.0):>8.1%}{ratios}"
            )
    return 0


if __name__ == "__main__":
    sys.exit(main())

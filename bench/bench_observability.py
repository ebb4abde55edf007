"""What observability costs a request over HTTP: the product as `serve` runs it (metrics on, its
JSON access log written to a file at level info) against the same server with one of them
switched off (EDGEPERSO_METRICS=0, EDGEPERSO_ACCESS_LOG=0). Each pair runs alternately, round
after round, so that a shared machine's drift falls on both sides; reported: the median
requests/s of each side and their ratio. Not a test: it reports, it does not assert.

    python bench/bench_observability.py [--connections 1 16] [--rounds 3] [--seconds 8]

Needs wrk and taskset, as bench/bench_http.py (`make bench` installs them).
"""

from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(Path(__file__).resolve().parent))

from bench_http import WRK_SCRIPT, bundle_and_bodies, lua_string, product, run_wrk, start  # noqa: E402
from report import machine, write_report  # noqa: E402
from servers import free_port  # noqa: E402

SWITCHES = {"metrics": "EDGEPERSO_METRICS", "access log": "EDGEPERSO_ACCESS_LOG"}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--items", type=int, default=100_000)
    parser.add_argument("--connections", type=int, nargs="+", default=[1, 16])
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--seconds", type=int, default=8)
    parser.add_argument("--out", default=str(ROOT / "bench" / "results" / "observability.json"))
    args = parser.parse_args()
    bundle, bodies = bundle_and_bodies(args.items, 0)
    served = [*product(bundle, "asyncio")[:-1], "info"]  # as serve runs: at level info
    results: dict[str, dict[str, dict[str, object]]] = {}
    with tempfile.TemporaryDirectory() as tmp:
        script = Path(tmp) / "post.lua"
        script.write_text(WRK_SCRIPT % ",".join(lua_string(b) for b in bodies))
        for name, variable in SWITCHES.items():
            for connections in args.connections:
                runs: dict[str, list[float]] = {"on": [], "off": []}
                for n in range(args.rounds):
                    for side, env in (("on", {}), ("off", {variable: "0"})):
                        port = free_port()
                        log = Path(tmp) / f"{variable}-{connections}-{side}-{n}.log"
                        server = start([*served, "--port", str(port)], port, env, log)
                        try:
                            run_wrk(port, script, 16, 2)  # warm up
                            measured = run_wrk(port, script, connections, args.seconds)
                            runs[side].append(measured["requests_per_s"])
                        finally:
                            server.terminate()
                            server.wait(timeout=15)
                on, off = statistics.median(runs["on"]), statistics.median(runs["off"])
                results.setdefault(name, {})[str(connections)] = {
                    "requests_per_s": runs,
                    "median_on": round(on, 1),
                    "median_off": round(off, 1),
                    "on_over_off": round(on / off, 3),
                }
                print(
                    f"{name} at {connections} connections: {on:.0f} req/s on, {off:.0f} off, "
                    f"on/off {on / off:.3f} (runs on {runs['on']}, off {runs['off']})",
                    flush=True,
                )
    write_report(
        args.out,
        {"machine": machine(), "items": args.items, "rounds": args.rounds, "results": results},
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())

"""The load test in the box: serve a bundle on 127.0.0.1, run Locust headless against it for a
bounded time, stop the server, and summarize Locust's CSV with the CPU each side used.

    python loadtest/run.py [--bundle DIR] [--seconds 20] [--users 8] [--rate 300]
                           [--spawn-rate 8] [--p99-budget-ms 50] [--workers 1]
                           [--out build/loadtest]

Without --bundle it builds one from the shipped sample once (build/loadtest-bundle) and reuses
it. Writes <out>/summary.json, Locust's CSV (<out>/locust_*.csv), <out>/report.html and the two
logs, and exits 1, saying why, when a request failed unexpectedly or the aggregated p99 is over
the budget. The load is --rate requests a second (the users share it; 0: each user as fast as
its think time allows, which finds the server's ceiling, where the p99 is the queue's). Traffic
goes to 127.0.0.1 only; to load a deployment of your own, run Locust itself
with loadtest/locustfile.py and --host.
"""

from __future__ import annotations

import argparse
import csv
import http.client
import json
import os
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from edge.ports import free_port

ROOT = Path(__file__).resolve().parent.parent
LOCUSTFILE = ROOT / "loadtest" / "locustfile.py"
SAMPLE = ROOT / "examples" / "online_retail_sample.csv.gz"
CONFIG = ROOT / "configs" / "online_retail.toml"
DEFAULT_BUNDLE = ROOT / "build" / "loadtest-bundle"
DEFAULT_OUT = ROOT / "build" / "loadtest"

# Bounds, so that a typo cannot start an hour-long run or thousands of users.
MAX_SECONDS, MAX_USERS, MAX_WORKERS, MAX_RATE = 600, 2000, 32, 100_000
BUSY = 0.85  # share of one core above which a process counts as CPU-bound
LOCUST_GRACE_SECONDS = 60  # start-up and report writing on top of the run time
SAMPLE_SECONDS = 0.25  # how often the CPU counters are read during the run
UNDERSHOOT = 0.9  # a run that made less of its offered rate than this says so


def bounded(kind: type, low: float, high: float):
    def parse(text: str):
        value = kind(text)
        if not low <= value <= high:
            raise argparse.ArgumentTypeError(f"{text} is out of range; allowed: {low} to {high}")
        return value

    return parse


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--bundle", help=f"bundle to serve (default: built at {DEFAULT_BUNDLE})")
    parser.add_argument("--seconds", type=bounded(float, 1, MAX_SECONDS), default=20.0)
    # Few users, each busy: Locust's client adds 10-30 ms of its own to a request on a
    # connection idle for a while (a bare Starlette endpoint measured a median of 12 ms from 32
    # users at 100 requests/s, 5 ms at 640), so many slow users would measure the client.
    parser.add_argument("--users", type=bounded(int, 1, MAX_USERS), default=8)
    parser.add_argument(
        "--spawn-rate",
        type=bounded(float, 0.1, MAX_USERS),
        help="users started per second (default: all of them in the first second)",
    )
    parser.add_argument(
        "--rate",
        type=bounded(float, 0, MAX_RATE),
        default=300.0,
        help="requests a second offered in all (0: unpaced users); the default is about half "
        "of what one server process answered on the shipped sample on our 2-core machine",
    )
    parser.add_argument("--p99-budget-ms", type=bounded(float, 0, 60_000), default=50.0)
    parser.add_argument(
        "--workers",
        type=bounded(int, 1, MAX_WORKERS),
        default=1,
        help="Locust processes making the load (above 1: a master and this many workers)",
    )
    parser.add_argument("--out", default=str(DEFAULT_OUT), help="directory for the results")
    return parser.parse_args(argv)


def ensure_bundle(path: str | None) -> Path:
    """The bundle to serve. The default one is built from the shipped sample the first time,
    and again when this edge no longer loads it (`python -m edge inspect` fails)."""
    if path:
        if not (Path(path) / "manifest.json").exists():
            raise SystemExit(
                f"--bundle {path} has no manifest.json: give a bundle directory written by "
                "edgeperso export, or leave --bundle out to use the shipped sample's"
            )
        return Path(path).resolve()
    if (DEFAULT_BUNDLE / "manifest.json").exists():
        inspect = [sys.executable, "-m", "edge", "inspect", str(DEFAULT_BUNDLE)]
        checked = subprocess.run(inspect, cwd=ROOT, capture_output=True, text=True)
        if checked.returncode == 0:
            return DEFAULT_BUNDLE
        print(f"rebuilding: {checked.stderr.strip()}")
    print(f"building {DEFAULT_BUNDLE} from {SAMPLE.name} (once; later runs reuse it)")
    command = [sys.executable, "-m", "export.cli", "export", "--events", str(SAMPLE)]
    command += ["--config", str(CONFIG), "--out", str(DEFAULT_BUNDLE), "--no-evaluate", "--quiet"]
    subprocess.run(command, check=True, cwd=ROOT)
    return DEFAULT_BUNDLE


def get(port: int, path: str) -> tuple[int, str] | None:
    connection = http.client.HTTPConnection("127.0.0.1", port, timeout=2)
    try:
        connection.request("GET", path)
        response = connection.getresponse()
        return response.status, response.read().decode(errors="replace")
    except OSError:
        return None
    finally:
        connection.close()


def last_line(log: Path) -> str:
    lines = [line for line in log.read_text(errors="replace").splitlines() if line.strip()]
    return lines[-1] if lines else "(empty)"


def wait_ready(port: int, server: subprocess.Popen, log: Path, seconds: float = 60.0) -> None:
    """Until /readyz is 200; a refused bundle is a 503 saying why, reported at the deadline."""
    deadline, last = time.monotonic() + seconds, None
    while time.monotonic() < deadline:
        if server.poll() is not None:
            raise SystemExit(
                f"the edge server exited with code {server.returncode}; {log}: {last_line(log)}"
            )
        last = get(port, "/readyz")
        if last is not None and last[0] == 200:
            return
        time.sleep(0.1)
    why = f"/readyz said {last[0]}: {last[1]}" if last else "nothing answered"
    raise SystemExit(f"the edge server was not ready in {seconds:.0f} s ({why})")


def stop(process: subprocess.Popen) -> None:
    """SIGTERM to the process group we started, SIGKILL if it does not go within 10 s."""
    if process.poll() is not None:
        return
    try:
        os.killpg(process.pid, signal.SIGTERM)
        process.wait(timeout=10)
    except subprocess.TimeoutExpired:
        os.killpg(process.pid, signal.SIGKILL)
        process.wait()
    except ProcessLookupError:  # it exited in the meantime
        process.wait()


# ---------------------------------------------------------------- CPU time
def proc_stats() -> dict[int, tuple[int, float]]:
    """pid -> (parent pid, CPU seconds of the process and its reaped children), from
    /proc/<pid>/stat (utime, stime, cutime, cstime)."""
    stats = {}
    tick = os.sysconf("SC_CLK_TCK")
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            text = (entry / "stat").read_text()
        except OSError:  # gone in the meantime
            continue
        fields = text.rpartition(")")[2].split()  # after "pid (comm)", which may hold spaces
        stats[int(entry.name)] = int(fields[1]), sum(int(f) for f in fields[11:15]) / tick
    return stats


def tree_cpu_seconds(stats: dict[int, tuple[int, float]], root: int) -> float:
    """CPU seconds used so far by `root` and its descendants (Locust's workers, say)."""
    total, todo = 0.0, [root]
    while todo:
        pid = todo.pop()
        if pid in stats:
            total += stats[pid][1]
            todo += [child for child, (parent, _) in stats.items() if parent == pid]
    return total


def machine_cpu_seconds() -> float:
    """CPU seconds all cores have been busy since boot (/proc/stat: all but idle and iowait),
    to tell a busy machine from a slow server."""
    fields = [int(f) for f in Path("/proc/stat").read_text().split("\n")[0].split()[1:9]]
    return (sum(fields) - fields[3] - fields[4]) / os.sysconf("SC_CLK_TCK")


class CpuMeter:
    """CPU seconds used so far by the server, Locust and the machine, sampled while Locust runs,
    so that the load's own window can be cut out afterwards (without Locust's start-up and
    shutdown, seconds long with workers)."""

    def __init__(self, server_pid: int, locust_pid: int) -> None:
        self.pids = server_pid, locust_pid
        self.samples: list[tuple[float, float, float, float]] = []

    def sample(self) -> None:
        stats = proc_stats()
        server, locust = (tree_cpu_seconds(stats, pid) for pid in self.pids)
        if self.samples:  # once a process is gone it reads 0: keep its last reading
            server, locust = max(server, self.samples[-1][1]), max(locust, self.samples[-1][2])
        self.samples.append((time.time(), server, locust, machine_cpu_seconds()))

    def cores(self, start: float, end: float, locust_processes: int) -> dict:
        """Cores used on average from the last sample before `start` to the first after `end`."""
        before = [s for s in self.samples if s[0] <= start] or self.samples[:1]
        after = [s for s in self.samples if s[0] >= end] or self.samples[-1:]
        wall, server, locust, machine = (b - a for a, b in zip(before[-1], after[0]))
        return {
            "wall_seconds": round(wall, 3),
            "server_cores": round(server / wall, 3),
            "locust_cores": round(locust / wall, 3),
            "locust_processes": locust_processes,
            "other_cores": round(max(0.0, machine - server - locust) / wall, 3),
            "machine_cores": os.cpu_count() or 1,
        }


def load_window(history: Path, seconds: float) -> tuple[float, float] | None:
    """When Locust's users ran: from the first row of locust_stats_history.csv (written each
    second, whole seconds) with users, for the run time."""
    for row in read_csv(history):
        if row["Name"] == "Aggregated" and int(row["User Count"]) > 0:
            start = float(row["Timestamp"]) - 0.5  # the row is up to a second late
            return start, start + seconds
    return None


# ---------------------------------------------------------------- Locust
def locust_command(args: argparse.Namespace, bundle: Path, port: int, out: Path) -> list[str]:
    users = args.users
    spawn_rate = args.spawn_rate or users
    command = [sys.executable, "-m", "locust", "-f", str(LOCUSTFILE), "--headless"]
    command += ["-u", str(users), "-r", f"{spawn_rate:g}", "-t", f"{args.seconds:g}s"]
    command += ["--visitor-rate", f"{args.rate / users:g}"]
    command += ["--host", f"http://127.0.0.1:{port}", "--bundle", str(bundle)]
    command += ["--csv", str(out / "locust"), "--html", str(out / "report.html"), "--only-summary"]
    if args.workers > 1:
        # The master listens for its workers: on 127.0.0.1 and a free port, never on "*:5557".
        master = str(free_port())
        command += ["--processes", str(args.workers), "--master-bind-host", "127.0.0.1"]
        command += ["--master-bind-port", master, "--master-host", "127.0.0.1"]
        command += ["--master-port", master]
    return command


def locust_env() -> dict[str, str]:
    """Our environment without LOCUST_* settings (they could add a host or change the run),
    with the project importable for the locustfile's bundle reading."""
    env = {k: v for k, v in os.environ.items() if not k.startswith(("LOCUST_", "EDGEPERSO_LOAD"))}
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(ROOT), env.get("PYTHONPATH")]))
    return env


def number(text: str) -> float | None:
    try:
        return float(text)
    except ValueError:  # "N/A" when a row has no requests
        return None


def read_stats(path: Path) -> tuple[list[dict], dict]:
    """Per-endpoint rows and the "Aggregated" row of locust_stats.csv."""
    rows = []
    with path.open(newline="") as f:
        for row in csv.DictReader(f):
            rows.append(
                {
                    "method": row["Type"],
                    "name": row["Name"],
                    "requests": int(row["Request Count"]),
                    "failures": int(row["Failure Count"]),
                    "requests_per_s": number(row["Requests/s"]),
                    "p50_ms": number(row["50%"]),
                    "p99_ms": number(row["99%"]),
                    "mean_ms": number(row["Average Response Time"]),
                    "max_ms": number(row["Max Response Time"]),
                }
            )
    aggregated = [r for r in rows if r["name"] == "Aggregated"]
    if not aggregated:
        raise SystemExit(f"{path} has no Aggregated row; is it Locust's stats CSV?")
    return [r for r in rows if r["name"] != "Aggregated"], aggregated[0]


def read_csv(path: Path) -> list[dict]:
    if not path.exists():
        return []
    with path.open(newline="") as f:
        return list(csv.DictReader(f))


# ---------------------------------------------------------------- verdict
def bottleneck(cpu: dict) -> tuple[str, str]:
    """Which side ran out of CPU: the server runs one process, Locust `locust_processes` that
    make the load; each is CPU-bound near 100% of a core. Or the machine, when every core was
    busy (other work included) and neither got a full one."""
    server, per_locust = cpu["server_cores"], cpu["locust_cores"] / cpu["locust_processes"]
    busy = cpu["server_cores"] + cpu["locust_cores"] + cpu["other_cores"]
    if per_locust >= BUSY and per_locust >= server:
        return "locust", (
            f"Locust used {per_locust:.0%} of a core per process: it cannot make more load, so "
            f"the figures understate the server; run with --workers "
            f"{cpu['locust_processes'] + 1} or more"
        )
    if server >= BUSY:
        return "server", f"the server used {server:.0%} of its one core"
    if busy >= BUSY * cpu["machine_cores"]:
        return "machine", (
            f"the machine's {cpu['machine_cores']} cores were {busy / cpu['machine_cores']:.0%} "
            f"busy ({cpu['other_cores']:.2f} core by other processes): the server could not get "
            "a full core; the latencies include waiting for one"
        )
    return "none", (
        "neither side was near a full core: the load is the rate offered (--rate), or with "
        "--rate 0 what the users and their think time make"
    )


def problems(summary: dict, budget_ms: float) -> list[str]:
    """Why the run fails: unexpected failures, errors in the locustfile, p99 over budget."""
    found = []
    aggregated = summary["aggregated"]
    if aggregated["requests"] == 0:
        found.append("Locust made no requests; see locust.log")
    for failure in summary["failures"]:
        found.append(
            f"{failure['occurrences']} unexpected failure(s) of {failure['method']} "
            f"{failure['name']}: {failure['error']}"
        )
    for exception in summary["exceptions"]:
        found.append(f"the locustfile raised {exception['count']}x: {exception['message']}")
    p99 = aggregated["p99_ms"]
    if p99 is not None and p99 > budget_ms:
        found.append(
            f"the aggregated p99 of {p99:g} ms is over the budget of {budget_ms:g} ms "
            "(--p99-budget-ms)"
        )
    # Locust exits 1 on failures; any other way it fails is named here.
    returncode = summary["locust_returncode"]
    if returncode != 0 and not (summary["failures"] or summary["exceptions"]):
        found.append(f"Locust exited with code {returncode}; see locust.log")
    return found


def fmt(value: float | None, spec: str) -> str:
    return "-" if value is None else format(value, spec)


def print_table(summary: dict) -> None:
    rows = [*summary["endpoints"], summary["aggregated"]]
    width = max(len(r["name"]) for r in rows) + 2
    print(
        f"\n{'endpoint':<{width}}{'requests':>9}{'req/s':>9}{'failures':>9}{'p50 ms':>8}"
        f"{'p99 ms':>8}"
    )
    for r in rows:
        print(
            f"{r['name']:<{width}}{r['requests']:>9}{fmt(r['requests_per_s'], '.1f'):>9}"
            f"{r['failures']:>9}{fmt(r['p50_ms'], 'g'):>8}{fmt(r['p99_ms'], 'g'):>8}"
        )
    cpu = summary["cpu"]
    print(
        f"\nCPU over {cpu['wall_seconds']:.1f} s, in cores: server {cpu['server_cores']:.2f} "
        f"(1 process), Locust {cpu['locust_cores']:.2f} ({cpu['locust_processes']} load "
        f"process(es)), other processes {cpu['other_cores']:.2f}, of {cpu['machine_cores']}"
    )
    if summary["locust_cpu_warning"]:
        print("Locust warned that its own CPU was above 90% (see locust.log)")
    print(f"bottleneck: {summary['bottleneck']}: {summary['bottleneck_why']}")
    offered, made = summary["offered_requests_per_s"], summary["aggregated"]["requests_per_s"]
    if offered and made is not None and made < UNDERSHOOT * offered:
        print(
            f"only {made:.0f} of the {offered:g} requests/s offered were made: the "
            f"{summary['bottleneck']} could not keep up, so the latencies include its queue"
        )


def serve_and_load(args: argparse.Namespace, bundle: Path, out: Path) -> dict:
    """Start the server, run Locust against it, stop both; what ran and the CPU it took."""
    port = free_port()
    locust_cmd = locust_command(args, bundle, port, out)
    with (
        tempfile.TemporaryDirectory(prefix="edgeperso-loadtest-") as events_dir,
        (out / "server.log").open("w") as server_log,
        (out / "locust.log").open("w") as locust_log,
    ):
        server_cmd = [sys.executable, "-m", "edge", "serve", "--bundle", str(bundle)]
        server_cmd += ["--host", "127.0.0.1", "--port", str(port), "--events-dir", events_dir]
        # Every Locust user comes from 127.0.0.1, one client to the per-client event quota.
        server_cmd += ["--events-per-second", "0", "--log-level", "warning"]
        # Own process groups, so that stopping one reaches its children too.
        server = subprocess.Popen(
            server_cmd,
            cwd=ROOT,
            stdout=server_log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
        try:
            wait_ready(port, server, out / "server.log")
            print(f"server on 127.0.0.1:{port} (bundle {bundle}); Locust for {args.seconds:g} s")
            locust = subprocess.Popen(
                locust_cmd,
                cwd=out,  # not the repository: Locust would read a pyproject.toml or locust.conf
                env=locust_env(),
                stdout=locust_log,
                stderr=subprocess.STDOUT,
                start_new_session=True,
            )
            meter = CpuMeter(server.pid, locust.pid)
            deadline = time.monotonic() + args.seconds + LOCUST_GRACE_SECONDS
            while locust.poll() is None:
                meter.sample()
                if time.monotonic() > deadline:
                    stop(locust)
                    raise SystemExit(
                        f"Locust did not finish {LOCUST_GRACE_SECONDS} s after its run time; "
                        f"stopped it (see {out / 'locust.log'})"
                    )
                time.sleep(SAMPLE_SECONDS)
            meter.sample()
        finally:
            stop(server)
    window = load_window(out / "locust_stats_history.csv", args.seconds)
    start, end = window or (meter.samples[0][0], meter.samples[-1][0])
    return {
        "locust_command": locust_cmd,
        "server_command": server_cmd,
        "locust_returncode": locust.returncode,
        "cpu": meter.cores(start, end, args.workers),
    }


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    out = Path(args.out).resolve()
    out.mkdir(parents=True, exist_ok=True)
    # A run that writes nothing must not be read as the last one's figures.
    for old in [*out.glob("locust_*.csv"), out / "summary.json"]:
        old.unlink(missing_ok=True)
    bundle = ensure_bundle(args.bundle)
    ran = serve_and_load(args, bundle, out)
    if not (out / "locust_stats.csv").exists():
        raise SystemExit(
            f"Locust wrote no statistics (exit code {ran['locust_returncode']}); "
            f"{out / 'locust.log'}: {last_line(out / 'locust.log')}"
        )
    endpoints, aggregated = read_stats(out / "locust_stats.csv")
    failures = read_csv(out / "locust_failures.csv")
    exceptions = read_csv(out / "locust_exceptions.csv")
    name, why = bottleneck(ran["cpu"])
    summary = {
        "bundle": str(bundle),
        "users": args.users,
        "offered_requests_per_s": args.rate or None,  # None: as fast as the users go
        "seconds": args.seconds,
        "workers": args.workers,
        **ran,
        "endpoints": endpoints,
        "aggregated": aggregated,
        "failures": [
            {"method": f["Method"], "name": f["Name"], "error": f["Error"]}
            | {"occurrences": int(f["Occurrences"])}
            for f in failures
        ],
        "exceptions": [{"count": int(e["Count"]), "message": e["Message"]} for e in exceptions],
        # Locust says "CPU usage above 90%!" (or "... exceeded on workers") when it is the limit.
        "locust_cpu_warning": "CPU usage" in (out / "locust.log").read_text(),
        "bottleneck": name,
        "bottleneck_why": why,
        "p99_budget_ms": args.p99_budget_ms,
    }
    summary["problems"] = problems(summary, args.p99_budget_ms)
    summary["ok"] = not summary["problems"]
    (out / "summary.json").write_text(json.dumps(summary, indent=2) + "\n")
    print_table(summary)
    print(f"\n{out / 'summary.json'}, {out / 'report.html'}")
    for problem in summary["problems"]:
        print(f"FAILED: {problem}", file=sys.stderr)
    return 0 if summary["ok"] else 1


if __name__ == "__main__":
    sys.exit(main())

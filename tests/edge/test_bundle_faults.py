"""The bundle fault matrix: whatever is done to a bundle's files, a running server never dies,
never answers from bytes it did not verify, and says on /readyz what it refused and why.

Every file of a bundle (the manifest, every file it lists, the profile store) meets five faults:
emptied, truncated to half, its middle byte flipped, overwritten by another file of the bundle,
deleted. Each is done two ways to a real `python -m edge serve` with two worker processes, while
a client sends recommendations one after another and compares every answer with the one
recorded before any fault:

- in place, to the build being served: every answer stays as recorded, /readyz stays 200 naming
  the same build, and its `reload_error` names the damaged file; put back, the error clears;
- as a new build that the publish pointer names (written by hand: `publish` refuses a broken
  bundle, which is checked too): the previous build keeps serving, /readyz names it and why.

The publish pointer meets the same faults in place. Then: a build copied in file by file (and a
bundle directory overwritten file by file) is served within a reload interval of its last file;
a server started on a broken build answers fallbacks, never a 500, and serves the build once it
is fixed; `publish` and `rollback` are followed; the verified bytes stay resident and reloads do
not add up in memory.

The figures docs/security.md quotes ("Bundle faults") are printed at the end with `-s`:

    pytest tests/edge/test_bundle_faults.py -s -q
    EDGEPERSO_FAULTS_MEMORY_BUNDLE=build/bench/sim-100000-2000000-0 \
        pytest tests/edge/test_bundle_faults.py -k memory -s -q
"""

from __future__ import annotations

import base64
import contextlib
import http.client
import json
import os
import shutil
import statistics
import subprocess
import sys
import threading
import time
from collections import Counter
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import msgspec
import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from edge.bandits import Arm, Bandit
from edge.bundle.publish import POINTER, publish, published_builds
from edge.bundle.signing import raw_public_key
from edge.errors import BundleError
from edge.experiments import Experiment, Variant
from tests.edge import small_bundle as shop
from tests.servers import free_port, get_json, wait_for

RELOAD_SECONDS = 0.2
# Time a server may take past one reload interval to have loaded a bundle whose last file landed
# (a load of the small bundle takes some 0.1 s; the margin is for a busy, shared 2-core machine).
MARGIN_SECONDS = 1.0
# A budget no answer runs out of, on a machine this busy: an answer that fell back on its budget
# would differ from the one recorded, and the matrix is about files, not latency.
BUDGET_MS = 10_000
UNTIL_SECONDS = 15.0  # the longest any expected change may take before a test fails
ANSWERS_PER_FAULT = 12  # answers checked while a fault is named on /readyz, at least
# Every server here checks signatures, as a production node does: then any change to the
# manifest, wherever it falls, is refused as the manifest's.
SIGNING_KEY = Ed25519PrivateKey.generate()
PUBLIC_KEY = raw_public_key(SIGNING_KEY)

# Every file of the bundle, written out here rather than read from the package, so that a file
# the format gains is noticed (test_the_matrix_covers_every_file_of_the_bundle).
MANIFEST = "manifest.json"
PROFILE_STORE = "profiles.msgpack"
LISTED = (
    "items.msgpack",
    "embeddings.msgpack",
    "covisitation.msgpack",
    "item_regression.msgpack",
    "popularity.msgpack",
    "ranker.onnx",
    "fallback.json",
    "visitor.onnx",
    "rules.msgpack",
    "experiments.msgpack",
    "bandits.msgpack",
)
FILES = (MANIFEST, *LISTED, PROFILE_STORE)
# What the "replaced" fault copies over each file: another file of the same bundle. The
# manifest gets valid JSON of another shape, and every other file the next one in the list.
OTHER = {MANIFEST: "fallback.json"} | {
    name: (*LISTED, PROFILE_STORE)[(i + 1) % (len(FILES) - 1)]
    for i, name in enumerate((*LISTED, PROFILE_STORE))
}


# ---------------------------------------------------------------- the faults
def emptied(path: Path, bundle: Path) -> None:
    with path.open("r+b") as f:
        f.truncate(0)


def halved(path: Path, bundle: Path) -> None:
    with path.open("r+b") as f:
        f.truncate(path.stat().st_size // 2)


def byte_flipped(path: Path, bundle: Path) -> None:
    """Every bit of the middle byte inverted, in place: same size, same inode."""
    with path.open("r+b") as f:
        middle = path.stat().st_size // 2
        f.seek(middle)
        byte = f.read(1)[0]
        f.seek(middle)
        f.write(bytes([byte ^ 0xFF]))


def replaced(path: Path, bundle: Path) -> None:
    shutil.copyfile(bundle / OTHER[path.name], path)


def deleted(path: Path, bundle: Path) -> None:
    path.unlink()


FAULTS: dict[str, Callable[[Path, Path], None]] = {
    "emptied": emptied,
    "halved": halved,
    "byte-flipped": byte_flipped,
    "replaced": replaced,
    "deleted": deleted,
}
CASES = [(name, fault) for name in FILES for fault in FAULTS]
CASE_IDS = [f"{name}-{fault}" for name, fault in CASES]


# ---------------------------------------------------------------- the shop and its traffic
# An experiment and a bandit slot, so that every file of the bundle shapes some answer. The
# unit's hash (docs/experiments.md) puts session s-1 in "popular" (bucket 0.32 of 1) and
# u-regular (0.88) and s-2 (0.60) in "personal".
SPLIT = Experiment(
    key="strip",
    variants=[
        Variant("popular", ranker="popularity", content={"banner": "top-sellers"}),
        Variant("personal", content={"banner": "for-you"}),
    ],
)
# Priors a million to one: the bandit always draws "spring" (with propensity 1.0), so its
# choice is as reproducible as the rest of the answer.
HERO = Bandit(
    slot="hero",
    arms=[Arm("spring", {"image": "spring.jpg"}), Arm("summer", {"image": "summer.jpg"})],
    priors={"": [(1e6, 1.0), (1.0, 1e6)]},
)
REQUESTS: dict[str, dict[str, Any]] = {
    # A known customer: profile store, fold-in, every candidate source, ranker, visitor graph,
    # rules (the cart), experiment, bandit.
    "known": {
        "user_id": "u-regular",
        "context": {"device": "mobile", "local_hour": 9, "cart": ["i03"]},
        "slots": ["hero"],
        "k": 8,
    },
    "anonymous": {
        "session_id": "s-2",
        "session": {
            "events": [
                {"type": "view", "item_id": "i03", "dwell_ms": 40_000},
                {"type": "add_to_cart", "item_id": "i08"},
                {"type": "view", "item_id": "i13"},
            ]
        },
        "context": {"country": "de", "local_hour": 20},
        "slots": ["hero"],
    },
    # The experiment's popularity arm: the bundle's fallback content.
    "holdout": {
        "session_id": "s-1",
        "session": {"events": [{"type": "view", "item_id": "i01"}]},
        "context": {"device": "desktop", "local_hour": 14},
        "k": 6,
    },
    "loyal": {"user_id": "u-loyal", "context": {"local_hour": 22, "visits": 4}, "k": 5},
    "no consent": {"user_id": "u-regular", "consent": False, "context": {"local_hour": 3}},
}
# The parts of an answer that depend on the request and the bundle only (not took_ms, not the
# decision id, not the build's name, which the tests check apart).
STABLE = (
    "items",
    "fallback",
    "personalized",
    "context",
    "segment",
    "intent",
    "variants",
    "content",
    "rules_fired",
    "rules_held_back",
    "slots",
)


def write_shop(directory: Path, tag: str | None = None) -> Path:
    """The small bundle with the experiment and the bandit, signed. A `tag` makes another
    build with the same answers: a bandit slot nobody asks for (the build id covers the listed
    files) and a profile nobody asks for (so the profile store differs too)."""
    bandits, profiles = [HERO], dict(shop.PROFILES)
    if tag is not None:
        bandits.append(msgspec.structs.replace(HERO, slot=f"unused-{tag}"))
        profiles[f"u-{tag}"] = shop.PROFILES["u-new"]
    extras = {"experiments": [SPLIT], "bandits": bandits, "profiles": profiles}
    return shop.write_small_bundle(directory, signing_key=SIGNING_KEY, **extras)


def build_id(bundle: Path) -> str:
    return str(json.loads((bundle / MANIFEST).read_text())["build_id"])


def stable(answer: dict[str, Any]) -> str:
    return json.dumps({key: answer[key] for key in STABLE}, sort_keys=True)


def files_named(text: str) -> set[str]:
    """The bundle's files a message names ("the manifest says" is no mention of manifest.json)."""
    return {name for name in FILES if name in text}


def point_at(root: Path, build: str, previous: str | None = None) -> None:
    """Rewrite the pointer by hand, as a deploy script might, at once (rename over it)."""
    pointer = {"build": build, "published_at": "2026-12-06T00:00:00+00:00", "previous": previous}
    temporary = root / ".current.json.by-hand"
    temporary.write_text(json.dumps(pointer))
    os.replace(temporary, root / POINTER)


def recommend(port: int, body: dict[str, Any]) -> tuple[int, bytes]:
    connection = http.client.HTTPConnection("127.0.0.1", port, timeout=10)
    try:
        data = json.dumps(body).encode()
        connection.request("POST", "/v1/recommend", data, {"content-type": "application/json"})
        response = connection.getresponse()
        return response.status, response.read()
    finally:
        connection.close()


@dataclass
class Counts:
    requests: int = 0
    server_errors: int = 0  # 5xx
    other_statuses: int = 0  # anything but 200 and 5xx
    mismatches: int = 0  # a 200 whose stable parts differ from the recorded answer
    transport_errors: int = 0  # refused, reset, timed out: a server that died or hung
    readyz: int = 0
    readyz_wrong: int = 0  # not 200, or naming a build not allowed

    def minus(self, other: Counts) -> Counts:
        return Counts(*(a - b for a, b in zip(vars(self).values(), vars(other).values())))


class Client:
    """Recommendations sent one after another, each checked against the answer recorded for
    it, and /readyz polled alongside. Both loops stop by themselves after `seconds`."""

    def __init__(self, port: int, expected: dict[str, str], builds: set[str], seconds: float):
        self.port, self.expected, self.builds = port, expected, builds
        self.counts = Counts()
        self.problems: list[str] = []  # the first few, for the failure message
        self.answered_by: Counter[str] = Counter()
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._deadline = time.monotonic() + seconds
        self._threads = [
            threading.Thread(target=self._recommend, daemon=True),
            threading.Thread(target=self._readyz, daemon=True),
        ]

    def __enter__(self) -> Client:
        for thread in self._threads:
            thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        for thread in self._threads:
            thread.join(timeout=30)

    def _running(self) -> bool:
        return not self._stop.is_set() and time.monotonic() < self._deadline

    def _problem(self, what: str) -> None:
        if len(self.problems) < 20:
            self.problems.append(what)

    def snapshot(self) -> Counts:
        with self._lock:
            return Counts(**vars(self.counts))

    def wait_for_answers(self, n: int) -> None:
        """Until `n` more answers came back (the traffic went on through a fault)."""
        target = self.snapshot().requests + n
        deadline = time.monotonic() + UNTIL_SECONDS
        while self.snapshot().requests < target:
            assert time.monotonic() < deadline, f"fewer than {n} answers in {UNTIL_SECONDS} s"
            time.sleep(0.01)

    def _recommend(self) -> None:
        while self._running():
            for name, body in REQUESTS.items():
                try:
                    status, raw = recommend(self.port, body)
                except (OSError, http.client.HTTPException) as exc:
                    self._count(transport_errors=1, what=f"{name}: {exc!r}")
                    continue
                self._check(name, status, raw)

    def _check(self, name: str, status: int, raw: bytes) -> None:
        if status >= 500:
            self._count(server_errors=1, what=f"{name}: {status} {raw[:300]!r}")
        elif status != 200:
            self._count(other_statuses=1, what=f"{name}: {status} {raw[:300]!r}")
        else:
            answer = json.loads(raw)
            with self._lock:
                self.answered_by[answer["bundle"]] += 1
            if stable(answer) != self.expected[name] or answer["bundle"] not in self.builds:
                self._count(mismatches=1, what=f"{name}: {raw[:300]!r}")
            else:
                self._count()

    def _count(self, what: str | None = None, **increments: int) -> None:
        with self._lock:
            self.counts.requests += 1
            for key, n in increments.items():
                setattr(self.counts, key, getattr(self.counts, key) + n)
            if what is not None:
                self._problem(what)

    def _readyz(self) -> None:
        while self._running():
            try:
                status, body = get_json(self.port, "/readyz")
                wrong = status != 200 or body.get("bundle") not in self.builds
                what = f"/readyz {status} {body}"
            except (OSError, http.client.HTTPException, ValueError) as exc:
                wrong, what = True, f"/readyz: {exc!r}"
            with self._lock:
                self.counts.readyz += 1
                self.counts.readyz_wrong += wrong
                if wrong:
                    self._problem(what)
            time.sleep(0.05)


# ---------------------------------------------------------------- a real server
@dataclass
class Server:
    process: subprocess.Popen[bytes]
    port: int
    log: Path
    workers: list[int] = field(default_factory=list)

    def readyz(self) -> tuple[int, dict[str, Any]]:
        return get_json(self.port, "/readyz")

    def until(
        self, wanted: Callable[[int, dict[str, Any]], bool], what: str, in_a_row: int = 1
    ) -> dict[str, Any]:
        """Poll /readyz until `in_a_row` readings in a row are `wanted` (with two workers, each
        reading may come from either); the last reading."""
        deadline = time.monotonic() + UNTIL_SECONDS
        row, last = 0, (0, {})
        while row < in_a_row:
            self.check_alive()
            assert time.monotonic() < deadline, f"/readyz never {what}; last: {last}"
            last = self.readyz()
            row = row + 1 if wanted(*last) else 0
            if row < in_a_row:
                time.sleep(0.01)
        return last[1]

    def worker_pids(self) -> list[int]:
        """The uvicorn workers (children of the supervisor); the server itself with one."""
        pid = self.process.pid
        children = Path(f"/proc/{pid}/task/{pid}/children").read_text().split()
        workers = [int(c) for c in children if _is_worker(int(c))]
        return sorted(workers) or [pid]

    def rss_bytes(self) -> int:
        """Resident memory of the serving processes, added up."""
        return sum(_rss(pid) for pid in self.worker_pids())

    def check_alive(self) -> None:
        """The process runs and no worker was replaced (a worker killed by a signal, SIGBUS
        say, is restarted by uvicorn's supervisor under a new pid)."""
        assert self.process.poll() is None, (
            f"the server exited with {self.process.returncode}: {self.log_since(0)[-3000:]}"
        )
        if self.workers:
            assert self.worker_pids() == self.workers, "a worker died and was replaced"

    def log_since(self, offset: int) -> str:
        return self.log.read_bytes()[offset:].decode(errors="replace")

    def stop(self) -> None:
        self.process.terminate()
        try:
            self.process.wait(timeout=15)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait()


def _is_worker(pid: int) -> bool:
    """A uvicorn worker, not the multiprocessing resource tracker the supervisor also starts."""
    try:
        command = Path(f"/proc/{pid}/cmdline").read_bytes()
    except OSError:
        return False
    return b"resource_tracker" not in command


def _rss(pid: int) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) * 1024
    raise AssertionError(f"no VmRSS for {pid}")


def edge_env(public_key: bytes | None = PUBLIC_KEY) -> dict[str, str]:
    """The environment of the servers and commands here: signatures checked, quick reloads."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("EDGEPERSO_")}
    env["EDGEPERSO_RELOAD_SECONDS"] = str(RELOAD_SECONDS)
    if public_key is not None:
        env["EDGEPERSO_PUBLIC_KEY"] = base64.b64encode(public_key).decode()
    return env


def edge_command(*args: str) -> subprocess.CompletedProcess[str]:
    """`python -m edge ARGS`, as an operator runs it."""
    command = [sys.executable, "-m", "edge", *args]
    return subprocess.run(command, env=edge_env(), capture_output=True, text=True, timeout=120)


def start_server(
    bundle: Path,
    log: Path,
    workers: int = 1,
    ready: tuple[int, ...] = (200,),
    public_key: bytes | None = PUBLIC_KEY,
) -> Server:
    """`python -m edge serve` on 127.0.0.1, polling its bundle every RELOAD_SECONDS, its log in
    `log`; returned once /readyz answers one of `ready` and every worker has started."""
    port = free_port()
    command = [sys.executable, "-m", "edge", "serve", "--bundle", str(bundle), "--host"]
    command += ["127.0.0.1", "--port", str(port), "--workers", str(workers)]
    command += ["--budget-ms", str(BUDGET_MS), "--log-level", "warning"]
    with log.open("ab") as out:
        env = edge_env(public_key)
        process = subprocess.Popen(command, env=env, stdout=out, stderr=subprocess.STDOUT)
    server = Server(process, port, log)
    try:
        wait_for(port, "/readyz", process, want=ready, seconds=60)
        deadline = time.monotonic() + 60
        while len(server.worker_pids()) < workers or not _all_answer(server, ready):
            assert time.monotonic() < deadline, "the workers did not all start"
            time.sleep(0.1)
        server.workers = server.worker_pids()
    except BaseException:
        server.stop()
        raise
    return server


def _all_answer(server: Server, ready: tuple[int, ...]) -> bool:
    """Twenty readings of /readyz in a row answer as wanted: both workers are up."""
    return all(server.readyz()[0] in ready for _ in range(20))


def record_answers(port: int) -> dict[str, str]:
    """Each request's answer, asked twice: it must be reproducible to be compared later."""
    recorded = {}
    for name, body in REQUESTS.items():
        answers = [recommend(port, body) for _ in range(2)]
        assert [status for status, _ in answers] == [200, 200], answers
        first, again = (json.loads(raw) for _, raw in answers)
        assert stable(first) == stable(again), f"{name}: the answer is not reproducible"
        recorded[name] = stable(first)
    return recorded


def fault_named(name: str, build: str) -> Callable[[int, dict[str, Any]], bool]:
    """/readyz green on `build`, its reload_error naming `name` and no other file."""

    def wanted(status: int, body: dict[str, Any]) -> bool:
        error = body.get("reload_error") or ""
        named = files_named(error) - ({MANIFEST} if name != MANIFEST else set())
        return (
            status == 200
            and body["bundle"] == build
            and named == {name}
            and f"still serving {build}" in error
        )

    return wanted


def serving(build: str) -> Callable[[int, dict[str, Any]], bool]:
    """/readyz green on `build`, with no reload error."""
    return lambda status, body: (
        status == 200 and body.get("bundle") == build and "reload_error" not in body
    )


# ---------------------------------------------------------------- figures for the docs
FIGURES: dict[str, list[float]] = {
    "cases": [],
    "requests": [],
    "server_errors": [],
    "mismatches": [],
    "transport_errors": [],
    "deaths": [],
    "seconds_to_name_the_fault": [],
    "seconds_last_file_to_served": [],
    "seconds_to_follow_publish_and_rollback": [],
}


NOTES: list[str] = []  # figures said in a sentence (memory)


@pytest.fixture(scope="module", autouse=True)
def report_figures() -> Iterator[None]:
    yield
    f = FIGURES
    lines = []
    if f["cases"]:
        lines.append(
            f"bundle faults: {len(f['cases'])} cases, {int(sum(f['requests']))} requests checked, "
            f"{int(sum(f['server_errors']))} 5xx, {int(sum(f['mismatches']))} mismatched, "
            f"{int(sum(f['transport_errors']))} transport errors, {int(sum(f['deaths']))} "
            "workers died"
        )
    for key, what in [
        ("seconds_to_name_the_fault", "fault named on /readyz after"),
        ("seconds_last_file_to_served", "last file landed -> new build served"),
        ("seconds_to_follow_publish_and_rollback", "publish or rollback -> followed"),
    ]:
        if f[key]:
            lines.append(
                f"  {what} (median, max of {len(f[key])}): {statistics.median(f[key]):.2f} s, "
                f"{max(f[key]):.2f} s (reload interval {RELOAD_SECONDS} s)"
            )
    lines += [f"  {note}" for note in NOTES]
    if lines:
        print("\n" + "\n".join(lines))


# ---------------------------------------------------------------- the matrix
class Shop:
    """A publish root serving the shop's bundle, one server (two workers) following it for the
    whole matrix, and a client that keeps asking it. Every case puts back what it damaged; a
    case that fails stops the server, and the next case starts a new one, so that one failure
    shows as one failure."""

    def __init__(self, tmp: Path) -> None:
        self.tmp = tmp
        good = write_shop(tmp / "good")
        self.spare = write_shop(tmp / "spare", tag="spare")  # to damage and point at
        self.root = tmp / "root"
        publish(good, self.root, PUBLIC_KEY)
        self.build, self.spare_build = build_id(good), build_id(self.spare)
        self.served = self.root / "builds" / self.build
        self.expected: dict[str, str] = {}
        self.server: Server | None = None
        self.client: Client | None = None
        self.starts = 0

    def running(self) -> tuple[Server, Client]:
        if self.server is None or self.client is None:
            self.starts += 1
            self.server = start_server(self.root, self.tmp / f"server-{self.starts}.log", 2)
            # Each worker loads the bundle itself: one still loading when a case damages a file
            # would refuse it, rightly. Cases start once both answer from the build.
            self.server.until(serving(self.build), "every worker serving", in_a_row=12)
            recorded = record_answers(self.server.port)
            assert recorded == (self.expected or recorded), "the same bundle answers otherwise"
            self.expected = recorded
            self.client = Client(self.server.port, recorded, {self.build}, seconds=900)
            self.client.__enter__()
        return self.server, self.client

    @contextlib.contextmanager
    def case(self, what: str) -> Iterator[tuple[Server, Client]]:
        """One case on a running server, checked as every case is (`check_case`)."""
        server, client = self.running()
        before, log_offset = client.snapshot(), server.log.stat().st_size
        try:
            yield server, client
            check_case(server, client, client.snapshot().minus(before), log_offset, what)
        except BaseException:
            self.stop()
            raise

    def stop(self) -> None:
        if self.client is not None:
            self.client.__exit__()
        if self.server is not None:
            self.server.stop()
        self.server, self.client = None, None


@pytest.fixture(scope="module")
def shop_server(tmp_path_factory) -> Iterator[Shop]:
    shop_ = Shop(tmp_path_factory.mktemp("faults"))
    try:
        yield shop_
        if shop_.server is not None:
            rss = shop_.server.rss_bytes() / 1e6
            NOTES.append(f"two workers' RSS after the matrix: {rss:.1f} MB")
    finally:
        shop_.stop()


def check_case(server: Server, client: Client, delta: Counts, log_offset: int, case: str) -> None:
    """What every case must leave: the same worker processes, no 5xx, no answer but the
    recorded one, /readyz green on the served build throughout, no traceback in the log."""
    FIGURES["cases"].append(1)
    FIGURES["requests"].append(delta.requests)
    FIGURES["server_errors"].append(delta.server_errors)
    FIGURES["mismatches"].append(delta.mismatches + delta.other_statuses + delta.readyz_wrong)
    FIGURES["transport_errors"].append(delta.transport_errors)
    try:
        server.check_alive()
    except AssertionError:
        FIGURES["deaths"].append(1)
        raise
    wrong = {k: v for k, v in vars(delta).items() if k not in ("requests", "readyz") and v}
    assert not wrong, f"{case}: {wrong}; first problems: {client.problems}"
    enough = delta.requests >= ANSWERS_PER_FAULT and delta.readyz >= 2
    assert enough, f"{case}: too little traffic: {delta}"
    log = server.log_since(log_offset)
    assert "Traceback" not in log, log


def test_the_matrix_covers_every_file_of_the_bundle(tmp_path):
    bundle = write_shop(tmp_path / "shop")
    manifest = json.loads((bundle / MANIFEST).read_text())
    assert set(FILES) == {MANIFEST, *manifest["files"], *manifest["profile_store"]}
    assert sorted(p.name for p in bundle.iterdir()) == sorted(FILES)
    assert all(OTHER[name] != name for name in FILES)


def test_every_request_of_the_traffic_draws_on_the_bundle_as_intended(shop_server):
    """What the recorded answers show, so that a fault anywhere would show in some answer."""
    shop_server.running()
    answers = {name: json.loads(shop_server.expected[name]) for name in REQUESTS}
    assert all(a["fallback"] is None for a in answers.values())
    known = answers["known"]
    assert known["segment"] == "spenders"  # stored in the profile (its spend says "browsers")
    assert known["personalized"] and known["variants"] == {"strip": "personal"}
    assert known["slots"] == {
        "hero": {"arm": "spring", "content": {"image": "spring.jpg"}, "propensity": 1.0}
    }
    assert answers["anonymous"]["intent"] is not None and answers["anonymous"]["personalized"]
    holdout = answers["holdout"]
    assert holdout["variants"] == {"strip": "popular"} and not holdout["personalized"]
    content = dict(shop.fallback_content()["device=desktop"])
    assert [it["item_id"] for it in holdout["items"]] == [i for i in content if i != "i01"][:6]
    assert answers["no consent"]["segment"] is None and answers["no consent"]["variants"] == {}


@pytest.mark.slow
@pytest.mark.parametrize(("name", "fault"), CASES, ids=CASE_IDS)
def test_a_file_damaged_under_the_server_changes_no_answer_and_is_named(shop_server, name, fault):
    s = shop_server
    with s.case(f"{name} {fault} in place") as (server, client):
        path = s.served / name
        original = path.read_bytes()
        started = time.monotonic()
        FAULTS[fault](path, s.served)
        try:
            server.until(fault_named(name, s.build), f"naming {name}", in_a_row=6)
            FIGURES["seconds_to_name_the_fault"].append(time.monotonic() - started)
            client.wait_for_answers(ANSWERS_PER_FAULT)
        finally:
            path.write_bytes(original)
        server.until(serving(s.build), "clear of its reload error", in_a_row=8)


@pytest.mark.slow
@pytest.mark.parametrize(("name", "fault"), CASES, ids=CASE_IDS)
def test_a_damaged_build_the_pointer_names_is_refused_and_the_previous_keeps_serving(
    shop_server, name, fault
):
    s = shop_server
    damaged = s.tmp / "damaged"
    shutil.rmtree(damaged, ignore_errors=True)
    shutil.copytree(s.spare, damaged)
    FAULTS[fault](damaged / name, damaged)
    pointer = (s.root / POINTER).read_bytes()
    with pytest.raises(BundleError) as refused:
        publish(damaged, s.root, PUBLIC_KEY)
    assert refused.value.file == name, refused.value
    assert (s.root / POINTER).read_bytes() == pointer and published_builds(s.root) == [s.build]

    with s.case(f"{name} {fault} published") as (server, client):
        target = s.root / "builds" / s.spare_build
        damaged.rename(target)
        point_at(s.root, s.spare_build, previous=s.build)
        try:
            server.until(fault_named(name, s.build), f"naming {name}", in_a_row=6)
            client.wait_for_answers(ANSWERS_PER_FAULT)
        finally:
            point_at(s.root, s.build)
            shutil.rmtree(target)
        server.until(serving(s.build), "clear of its reload error", in_a_row=8)


POINTER_FAULTS = ("emptied", "halved", "byte-flipped", "deleted")


@pytest.mark.slow
@pytest.mark.parametrize("fault", POINTER_FAULTS)
def test_a_damaged_pointer_changes_no_answer_and_is_named(shop_server, fault):
    """Not a file of the bundle, but what says which bundle: damaged or deleted, the build it
    named keeps serving and /readyz names the pointer."""
    s = shop_server
    with s.case(f"{POINTER} {fault}") as (server, client):
        path = s.root / POINTER
        original = path.read_bytes()
        FAULTS[fault](path, s.root)
        named = POINTER

        def wanted(status: int, body: dict[str, Any]) -> bool:
            error = body.get("reload_error") or ""
            return status == 200 and body["bundle"] == s.build and named in error

        try:
            server.until(wanted, f"naming {named}", in_a_row=6)
            client.wait_for_answers(ANSWERS_PER_FAULT)
        finally:
            path.write_bytes(original)
        server.until(serving(s.build), "clear of its reload error", in_a_row=8)


# ---------------------------------------------------------------- publishing file by file
PAUSE_SECONDS = 0.3  # between two files: longer than a reload interval, so each is seen
COPIES = 3  # builds copied in per layout: the figure is their median


def copy_order(bundle: Path) -> list[str]:
    """As a naive copier goes: the manifest first, then the files it lists, then the store."""
    manifest = json.loads((bundle / MANIFEST).read_text())
    return [MANIFEST, *manifest["files"], *manifest["profile_store"]]


@pytest.mark.slow
@pytest.mark.parametrize("layout", ["publish root", "bundle directory"])
def test_a_bundle_copied_in_file_by_file_is_served_once_its_last_file_lands(tmp_path, layout):
    """The pointer flipped before the build is there (publish root), or the manifest written
    before the files it lists (bundle directory): the old build serves, /readyz says so and
    why, and the new one is served within a reload interval of its last file."""
    old = write_shop(tmp_path / "old")
    news = [write_shop(tmp_path / f"new-{i}", tag=f"new-{i}") for i in range(COPIES)]
    if layout == "publish root":
        target = tmp_path / "root"
        publish(old, target, PUBLIC_KEY)
    else:
        target = shutil.copytree(old, tmp_path / "live")
    server = start_server(target, tmp_path / "server.log")
    try:
        builds = {build_id(old), *map(build_id, news)}
        with Client(server.port, record_answers(server.port), builds, seconds=120) as client:
            served = build_id(old)
            for new in news:
                if layout == "publish root":
                    point_at(target, build_id(new), previous=served)
                    directory = target / "builds" / build_id(new)
                    directory.mkdir()
                else:
                    directory = target
                refusals = 0
                for name in copy_order(new):
                    time.sleep(PAUSE_SECONDS)
                    status, body = server.readyz()  # honest: the old build, and why not the new
                    assert status == 200 and body["bundle"] == served, body
                    refusals += "reload_error" in body
                    shutil.copyfile(new / name, directory / name)
                landed = time.monotonic()
                server.until(serving(build_id(new)), f"serving {build_id(new)}")
                elapsed = time.monotonic() - landed
                FIGURES["seconds_last_file_to_served"].append(elapsed)
                assert elapsed <= RELOAD_SECONDS + MARGIN_SECONDS
                assert refusals >= len(copy_order(new)) - 2, "/readyz did not say it refused"
                served = build_id(new)
            client.wait_for_answers(ANSWERS_PER_FAULT)
        delta = client.snapshot()
        wrong = {k: v for k, v in vars(delta).items() if k not in ("requests", "readyz") and v}
        assert not wrong, f"{wrong}; first problems: {client.problems}"
        assert client.answered_by[served] > 0 and client.answered_by[build_id(old)] > 0
        server.check_alive()
    finally:
        server.stop()


# ---------------------------------------------------------------- start-up, publish, rollback
STARTUP_CASES = [
    ("items.msgpack", "halved"),
    ("manifest.json", "byte-flipped"),
    ("fallback.json", "deleted"),
    (PROFILE_STORE, "replaced"),
]
STARTUP_IDS = [f"{name}-{fault}" for name, fault in STARTUP_CASES]


@pytest.mark.slow
@pytest.mark.parametrize(("name", "fault"), STARTUP_CASES, ids=STARTUP_IDS)
def test_a_server_started_on_a_broken_build_answers_fallbacks_and_serves_it_once_fixed(
    tmp_path, name, fault
):
    good = write_shop(tmp_path / "good")
    root = tmp_path / "root"
    publish(good, root, PUBLIC_KEY)
    served = root / "builds" / build_id(good)
    FAULTS[fault](served / name, served)
    server = start_server(root, tmp_path / "server.log", ready=(503,))
    try:
        status, body = server.readyz()
        named = files_named(body["reason"]) - ({MANIFEST} if name != MANIFEST else set())
        assert status == 503 and body["status"] == "not ready" and named == {name}, body
        # Popular items while fallback.json itself verifies; no items, but an answer, when not.
        ranked = shop.fallback_content()["country=de"]
        usable = name not in (MANIFEST, "fallback.json")
        for request in REQUESTS.values():
            status, raw = recommend(server.port, request)
            answer = json.loads(raw)
            assert status == 200 and answer["fallback"].startswith("bundle_unavailable")
            assert answer["bundle"] is None and not answer["personalized"]
        status, raw = recommend(server.port, {"k": 4, "context": {"country": "de"}})
        items = [it["item_id"] for it in json.loads(raw)["items"]]
        assert items == ([item for item, _ in ranked[:4]] if usable else [])
        shutil.copyfile(good / name, served / name)
        fixed = time.monotonic()
        server.until(serving(build_id(good)), "serving the fixed build")
        assert time.monotonic() - fixed <= RELOAD_SECONDS + MARGIN_SECONDS
        server.check_alive()  # the same process: no restart
        for answer in map(json.loads, record_answers(server.port).values()):
            assert answer["fallback"] is None, answer
    finally:
        server.stop()


@pytest.mark.slow
def test_publish_and_rollback_are_followed_and_a_broken_bundle_is_not_published(tmp_path):
    a, b = write_shop(tmp_path / "a"), write_shop(tmp_path / "b", tag="b")
    root = tmp_path / "root"
    assert edge_command("publish", str(a), str(root)).returncode == 0
    server = start_server(root, tmp_path / "server.log", workers=2)
    try:
        damaged = shutil.copytree(b, tmp_path / "damaged")
        halved(damaged / "covisitation.msgpack", damaged)
        pointer = (root / POINTER).read_bytes()
        refused = edge_command("publish", str(damaged), str(root))
        assert refused.returncode == 1
        assert refused.stderr.startswith("not published: covisitation.msgpack has "), refused
        assert (root / POINTER).read_bytes() == pointer and published_builds(root) == [build_id(a)]

        for command, build in [
            (("publish", str(b), str(root)), build_id(b)),
            (("rollback", str(root)), build_id(a)),
            (("rollback", str(root), "--to", build_id(b)), build_id(b)),
        ]:
            done = edge_command(*command)
            assert done.returncode == 0, done.stderr
            ran = time.monotonic()
            server.until(serving(build), f"serving {build}", in_a_row=6)
            elapsed = time.monotonic() - ran
            FIGURES["seconds_to_follow_publish_and_rollback"].append(elapsed)
            assert elapsed <= RELOAD_SECONDS + MARGIN_SECONDS, command
        server.check_alive()
    finally:
        server.stop()


# ---------------------------------------------------------------- memory
# Another bundle to measure (the 100,000-item one of the benchmarks, say); the small one else.
MEMORY_BUNDLE = os.environ.get("EDGEPERSO_FAULTS_MEMORY_BUNDLE")


@pytest.mark.slow
def test_a_server_holds_its_verified_bundle_in_memory_and_reloads_do_not_add_up(tmp_path):
    """Serving a bundle keeps at least its bytes resident (read once, verified, held). Reloads,
    refused or not, do not add up: over twenty more cycles of a refused reload followed by a
    good one, after ten to warm up, the memory stays within two bundles' worth."""
    source = Path(MEMORY_BUNDLE) if MEMORY_BUNDLE else write_shop(tmp_path / "shop")
    bundle = shutil.copytree(source, tmp_path / "bundle")
    manifest = json.loads((bundle / MANIFEST).read_text())
    entries = manifest["files"] | manifest.get("profile_store", {})
    files = sum(entry["bytes"] for entry in entries.values())
    empty = tmp_path / "nothing"
    empty.mkdir()
    refused = start_server(empty, tmp_path / "refused.log", ready=(503,))
    try:
        time.sleep(1.0)  # settled
        without = refused.rss_bytes()
    finally:
        refused.stop()
    public_key = PUBLIC_KEY if manifest.get("signature") else None
    server = start_server(bundle, tmp_path / "server.log", public_key=public_key)
    try:
        time.sleep(1.0)
        serving_rss = server.rss_bytes()
        largest = max(entries, key=lambda name: entries[name]["bytes"])
        original = (bundle / largest).read_bytes()
        build = manifest["build_id"]
        after = []
        for cycle in range(1, 31):
            halved(bundle / largest, bundle)
            server.until(fault_named(largest, build), f"naming {largest}")
            (bundle / largest).write_bytes(original)
            server.until(serving(build), "clear of its reload error")
            if cycle in (10, 30):
                time.sleep(1.0)
                after.append(server.rss_bytes())
        server.check_alive()
    finally:
        server.stop()
    held = serving_rss - without
    NOTES.append(
        f"RSS serving {build} ({files / 1e6:.2f} MB of files): {serving_rss / 1e6:.1f} MB, "
        f"{held / 1e6:.1f} MB more than with no bundle loaded ({without / 1e6:.1f} MB); "
        f"after 10 and 30 cycles of a refused and a good reload: "
        f"{after[0] / 1e6:.1f} MB, {after[1] / 1e6:.1f} MB"
    )
    assert held >= files  # the verified bytes are resident (a mapped file's would not all be)
    # The allocator keeps some of what each load freed (RSS settles at two to three times what
    # it was before the first reload), but a reload that kept its bundle, or only its files'
    # bytes, would add twenty of them here.
    assert after[1] - after[0] <= 2 * held + 64e6

"""The demo: build a bundle from the shipped UCI Online Retail sample, serve it on 127.0.0.1,
send a few requests (a known customer, an anonymous session, a visitor without consent, a
malformed request), print the answers with their timings, and stop the server.

    make demo          (or: python scripts/demo.py [--out build/demo-bundle])
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import time
import urllib.error
import urllib.request
from pathlib import Path

from edge.ports import free_port

ROOT = Path(__file__).resolve().parent.parent
SAMPLE = ROOT / "examples" / "online_retail_sample.csv.gz"
CONFIG = ROOT / "configs" / "online_retail.toml"


def call(
    base: str, path: str, body: bytes | None = None, content_type: str = "application/json"
) -> tuple[int, dict, float]:
    request = urllib.request.Request(
        base + path,
        data=body,
        method="POST" if body else "GET",
        headers={"content-type": content_type},
    )
    started = time.perf_counter()
    try:
        with urllib.request.urlopen(request, timeout=10) as response:
            status, payload = response.status, response.read()
    except urllib.error.HTTPError as error:
        status, payload = error.code, error.read()
    return status, json.loads(payload), (time.perf_counter() - started) * 1000.0


def wait_ready(base: str, server: subprocess.Popen, timeout: float = 30.0) -> float:
    started = time.perf_counter()
    while time.perf_counter() - started < timeout:
        if server.poll() is not None:
            raise SystemExit(f"the server exited with code {server.returncode}")
        try:
            status, body, _ = call(base, "/readyz")
            if status == 200:
                return time.perf_counter() - started
        except (urllib.error.URLError, ConnectionError):
            pass
        time.sleep(0.05)
    raise SystemExit(f"the server was not ready within {timeout:.0f}s")


def show(title: str, request: object, status: int, answer: dict, client_ms: float) -> None:
    print(f"\n=== {title}")
    print(f"request : {json.dumps(request) if not isinstance(request, str) else request}")
    print(
        f"status  : {status}   round trip {client_ms:.1f} ms"
        + (f"   server {answer['took_ms']:.2f} ms" if "took_ms" in answer else "")
    )
    if "items" in answer:
        items = ", ".join(f"{i['item_id']} ({i['score']:.3f})" for i in answer["items"])
        print(f"items   : {items}")
        print(
            f"fallback: {answer['fallback']}   personalized: {answer['personalized']}   "
            f"context: {answer['context']}"
        )
    else:
        print(f"answer  : {json.dumps(answer)}")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", default=str(ROOT / "build" / "demo-bundle"))
    args = parser.parse_args()
    out = Path(args.out)
    print(f"building a bundle from {SAMPLE.name} (a subset of UCI Online Retail, CC BY 4.0)")
    subprocess.run(
        [
            sys.executable,
            "-m",
            "export.cli",
            "export",
            "--events",
            str(SAMPLE),
            "--config",
            str(CONFIG),
            "--out",
            str(out),
        ],
        check=True,
    )

    from edge.bundle import load_bundle

    bundle = load_bundle(out)
    profiles = bundle.profiles.as_dict()  # the embedded store: pick a regular customer
    customer = max(profiles, key=lambda u: (profiles[u].n_purchases, u))
    popular = [item for item, _ in bundle.fallback["all"][:3]]

    port = free_port()
    base = f"http://127.0.0.1:{port}"
    server = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "edge",
            "serve",
            "--bundle",
            str(out),
            "--port",
            str(port),
            "--log-level",
            "warning",
        ]
    )
    try:
        ready_s = wait_ready(base, server)
        print(f"\nserver on {base}, /readyz green {ready_s:.2f}s after start")
        requests = [
            (
                "a known customer",
                {
                    "user_id": customer,
                    "k": 5,
                    "context": {"device": "desktop", "country": "united kingdom", "local_hour": 10},
                },
            ),
            (
                "an anonymous session that viewed a few products",
                {
                    "session": {"events": [{"type": "view", "item_id": i} for i in popular]},
                    "context": {"device": "mobile", "local_hour": 21},
                    "k": 5,
                },
            ),
            (
                "a visitor who did not consent to personalization",
                {"user_id": customer, "consent": False, "k": 5},
            ),
            ("a malformed request (negative k)", {"user_id": customer, "k": -3}),
        ]
        for title, body in requests:
            status, answer, ms = call(base, "/v1/recommend", json.dumps(body).encode())
            show(title, body, status, answer, ms)
        raw = b'{"user_id": "12347", "k": 5'
        status, answer, ms = call(base, "/v1/recommend", raw)
        show("a malformed request (broken JSON)", raw.decode(), status, answer, ms)
    finally:
        server.terminate()
        server.wait(timeout=10)
    print("\nserver stopped")
    return 0


if __name__ == "__main__":
    sys.exit(main())

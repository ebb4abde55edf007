"""What can be checked of the container image without a Docker engine: it installs exactly the
edge runtime, pinned; it holds only edge/; it runs as a user; its command is the one the tests
start (tests/edge/test_sink.py), and edge's own argument parser accepts it."""

import argparse
import json
import re
import tomllib
from pathlib import Path

from edge.cli import add_serve_arguments
from tests.servers import edge_app_command

ROOT = Path(__file__).resolve().parent.parent
DOCKERFILE = (ROOT / "Dockerfile").read_text()


def instructions(name: str) -> list[str]:
    """The arguments of every `name` instruction, continuation lines joined."""
    joined = re.sub(r"\\\n\s*", " ", DOCKERFILE)
    return [line.split(None, 1)[1] for line in joined.splitlines() if line.startswith(name + " ")]


def name_of(requirement: str) -> str:
    return re.split(r"[=<>!~\[;]", requirement, maxsplit=1)[0].strip().lower()


def test_the_image_installs_the_edge_runtime_and_nothing_else_pinned():
    [run] = [r for r in instructions("RUN") if "pip install" in r]
    assert re.search(r"pip install -c constraints\.txt \.(\s|$)", run)  # no [build] extras
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    pins = {
        re.split(r"[=<>!~\[;]", line, maxsplit=1)[0].strip().lower()
        for line in (ROOT / "constraints.txt").read_text().splitlines()
        if line.strip() and not line.startswith("#")
    }
    runtime = {
        re.split(r"[=<>!~\[;]", d, maxsplit=1)[0].strip().lower() for d in project["dependencies"]
    }
    server = {"uvicorn", "httptools"}  # the ASGI server, with its fast parser (stdlib loop)
    signatures = {"cryptography"}  # Ed25519: the container checks the bundle it downloads
    store = {"obstore"}  # feedback shipped to, and bundles followed from, an object store
    metrics = {"prometheus-client"}  # GET /metrics
    assert runtime == {
        "numpy",
        "msgspec",
        "starlette",
        "onnxruntime",
        "threadpoolctl",
        *server,
        *signatures,
        *store,
        *metrics,
    }
    assert runtime <= pins  # every runtime dependency is pinned


def test_the_image_holds_only_the_edge_package_and_runs_as_a_user():
    copied = {part for c in instructions("COPY") for part in c.split()[:-1]}
    assert copied == {"pyproject.toml", "constraints.txt", "README.md", "edge"}
    ignore = (ROOT / ".dockerignore").read_text().splitlines()
    allowed = {line for line in ignore if line.startswith("!")}
    assert "*" in ignore and allowed == {
        "!pyproject.toml",
        "!constraints.txt",
        "!README.md",
        "!edge/",
    }
    [user] = instructions("USER")
    assert user.strip() not in ("root", "0")


def test_the_start_command_is_the_one_the_tests_run():
    [cmd] = instructions("CMD")
    argv = json.loads(cmd)
    assert argv[:4] == ["python", "-m", "edge", "serve"]
    parser = argparse.ArgumentParser()
    add_serve_arguments(parser)
    args = parser.parse_args(argv[4:])
    assert (args.bundle, args.host, args.port, args.events_dir) == (
        "/srv/bundle",
        "0.0.0.0",
        8080,
        "/srv/events",
    )
    # The tests that run the server (the SIGTERM burst, the gateway) start it with these flags.
    tested = edge_app_command(Path("/b"), Path("/e"), 8000)
    assert tested[1:4] == argv[1:4]
    flags = [a for a in argv[4:] if a.startswith("--")]
    assert flags == [a for a in tested[4:] if a.startswith("--")]

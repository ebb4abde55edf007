"""Shared fixtures: one small simulated shop and its bundle, built once per test session.

Randomness is seeded; the seed is printed in the report header and can be changed with
EDGEPERSO_TEST_SEED to reproduce a failure."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

SEED = int(os.environ.get("EDGEPERSO_TEST_SEED", "0"))
ROOT = Path(__file__).resolve().parent.parent
SAMPLE = ROOT / "examples" / "online_retail_sample.csv.gz"
UCI_CONFIG = ROOT / "configs" / "online_retail.toml"
# Set by `make mutants` only: the bundle is exported there once, from unmutated source, and each
# of the hundreds of runs after it (one per mutant) reads it instead of exporting it again.
BUNDLE_CACHE = os.environ.get("EDGEPERSO_TEST_BUNDLE_CACHE")


def pytest_report_header(config: pytest.Config) -> str:
    return f"edgeperso test seed: {SEED} (set EDGEPERSO_TEST_SEED to change)"


@pytest.fixture(scope="session")
def seed() -> int:
    return SEED


@pytest.fixture(scope="session")
def shop():
    from simulator import simulate_shop

    return simulate_shop(n_users=800, n_items=400, n_events=40_000, seed=SEED, days=40)


@pytest.fixture(scope="session")
def shop_files(shop, tmp_path_factory) -> dict[str, Path]:
    return shop.write(tmp_path_factory.mktemp("shop"), fmt="parquet")


@pytest.fixture(scope="session")
def bundle_dir(request, tmp_path_factory) -> Path:
    """A real bundle exported from the simulated shop (evaluation included)."""
    from export.config import BuildConfig
    from export.pipeline import export_bundle

    if BUNDLE_CACHE:
        out = Path(BUNDLE_CACHE) / f"seed-{SEED}"
        if (out / "manifest.json").is_file():
            return out
    else:
        out = tmp_path_factory.mktemp("bundles") / "shop"
    shop_files = request.getfixturevalue("shop_files")
    export_bundle(
        [shop_files["events"]],
        out,
        BuildConfig(seed=SEED),
        catalog_path=shop_files["catalog"],
        users_path=shop_files["users"],
        quiet=True,
    )
    return out


@pytest.fixture(scope="session")
def bundle(bundle_dir):
    from edge.bundle import load_bundle

    return load_bundle(bundle_dir)


@pytest.fixture(scope="session")
def seaweedfs(tmp_path_factory):
    """A real S3-compatible store on 127.0.0.1, shared by the tests that only use it (tests
    that stop it start their own `tests.servers.SeaweedFS`)."""
    from tests.servers import SeaweedFS

    store = SeaweedFS(tmp_path_factory.mktemp("seaweedfs"))
    store.start()
    yield store
    store.stop()


@pytest.fixture
def store_url(seaweedfs, monkeypatch, request) -> str:
    """A bucket prefix of its own on the shared store, with the store's variables set."""
    import re

    for name, value in seaweedfs.env.items():
        monkeypatch.setenv(name, value)
    test = re.sub(r"[^a-z0-9-]+", "-", request.node.name.lower()).strip("-")[:40]
    return f"s3://edgeperso-tests/{test}-{os.getpid()}/"


@pytest.fixture(autouse=True)
def _environment_and_logging_restored():
    """Each test leaves the process as it found it: `serve` run in process (uvicorn.run
    replaced) sets variables its workers would inherit, and sets up JSON logging."""
    import logging

    environ = dict(os.environ)
    root = logging.getLogger()
    handlers, level = list(root.handlers), root.level
    uvicorn_loggers = {
        name: (list(logging.getLogger(name).handlers), logging.getLogger(name).propagate)
        for name in ("uvicorn", "uvicorn.error", "uvicorn.access")
    }
    yield
    os.environ.clear()
    os.environ.update(environ)
    root.handlers[:] = handlers
    root.setLevel(level)
    for name, (kept, propagate) in uvicorn_loggers.items():
        logging.getLogger(name).handlers[:] = kept
        logging.getLogger(name).propagate = propagate

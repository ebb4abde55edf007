"""The edge's own fixtures: a small bundle written by hand (`tests.edge.small_bundle`), built
once per test session without the build pipeline. The full export's bundle (`bundle_dir`,
`bundle` in tests/conftest.py) is for the integration tests."""

from __future__ import annotations

from pathlib import Path

import pytest

from edge.bundle import Bundle, load_bundle
from tests.edge.small_bundle import write_small_bundle


@pytest.fixture(scope="session")
def small_bundle_dir(tmp_path_factory) -> Path:
    return write_small_bundle(tmp_path_factory.mktemp("small") / "bundle")


@pytest.fixture(scope="session")
def small_bundle(small_bundle_dir) -> Bundle:
    return load_bundle(small_bundle_dir)

"""edgeperso's edge half: load a verified bundle once, answer recommendation requests locally.

The names below are imported on first use (PEP 562), so `python -m edge serve` can configure
the process (edge/__main__.py) before numpy is loaded."""

from __future__ import annotations

import importlib
from typing import Any

_EXPORTS = {
    "create_app": "edge.app",
    "Bundle": "edge.bundle",
    "load_bundle": "edge.bundle",
    "verify": "edge.bundle",
    "Settings": "edge.config",
    "BundleError": "edge.errors",
    "EdgepersoError": "edge.errors",
    "RequestError": "edge.errors",
    "ValidationError": "edge.errors",
    "Recommender": "edge.recommend",
}
__all__ = sorted(_EXPORTS)


def __getattr__(name: str) -> Any:
    if name not in _EXPORTS:
        raise AttributeError(f"module 'edge' has no attribute {name!r}")
    return getattr(importlib.import_module(_EXPORTS[name]), name)

"""edgeperso's build pipeline: from a shop's event log to a verified edge bundle.

The names below are imported on first use (PEP 562): `edgeperso serve` and `inspect` run
through `export.cli` where only the edge runtime is installed, without pandas or scikit-learn."""

from __future__ import annotations

import importlib
from typing import Any

_EXPORTS = {
    "BuildConfig": "export.config",
    "load_config": "export.config",
    "export_bundle": "export.pipeline",
    "evaluate_events": "export.pipeline",
    "ExportError": "export.errors",
}
__all__ = sorted(_EXPORTS)


def __getattr__(name: str) -> Any:
    if name not in _EXPORTS:
        raise AttributeError(f"module 'export' has no attribute {name!r}")
    return getattr(importlib.import_module(_EXPORTS[name]), name)

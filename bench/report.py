"""The benchmarks' JSON reports: each one's figures, with the machine they ran on."""

from __future__ import annotations

import json
import os
import platform
from pathlib import Path
from typing import Any


def machine() -> dict[str, Any]:
    return {"cpus": os.cpu_count(), "python": platform.python_version()}


def write_report(out: str | Path, report: dict[str, Any]) -> None:
    """`report` as indented JSON at `out` (its directory made when missing)."""
    Path(out).parent.mkdir(parents=True, exist_ok=True)
    Path(out).write_text(json.dumps(report, indent=2) + "\n")

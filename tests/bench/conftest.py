"""The benchmarks' scripts import each other as top-level modules (`python bench/x.py` puts
bench/ on the path); their tests import them the same way."""

from __future__ import annotations

import sys
from pathlib import Path

BENCH = Path(__file__).resolve().parent.parent.parent / "bench"
if str(BENCH) not in sys.path:
    sys.path.insert(0, str(BENCH))

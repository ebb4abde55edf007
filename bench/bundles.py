"""The simulator bundles the benchmarks run on, built once and reused until the bundle format or
the default build config changes (the 100,000-item one takes a few minutes to build)."""

from __future__ import annotations

import json
import sys
import time
from pathlib import Path

import msgspec

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from edge.schemas import FORMAT_VERSION  # noqa: E402

# Items -> (events, users): a small shop and a large one.
SIZES = {10_000: (400_000, 10_000), 100_000: (2_000_000, 50_000)}


def build(items: int, events: int, users: int, seed: int) -> Path:
    out = ROOT / "build" / "bench" / f"sim-{items}-{events}-{seed}"
    from export.config import BuildConfig
    from export.pipeline import export_bundle
    from export.simulate import simulate_shop

    manifest = out / "manifest.json"
    # Rebuilt when the format or the default config changed since it was built.
    if manifest.exists():
        built = json.loads(manifest.read_text())
        current = msgspec.to_builtins(BuildConfig(seed=seed))
        if built["format_version"] == FORMAT_VERSION and built["lineage"]["config"] == current:
            return out

    started = time.perf_counter()
    shop = simulate_shop(n_users=users, n_items=items, n_events=events, seed=seed, days=60)
    files = shop.write(out.parent / f"{out.name}-input")
    export_bundle(
        [files["events"]],
        out,
        BuildConfig(seed=seed),
        catalog_path=files["catalog"],
        evaluate=False,
    )
    print(f"built {out} in {time.perf_counter() - started:.0f}s", file=sys.stderr)
    return out

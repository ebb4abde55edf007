"""The simulator bundles the benchmarks run on, built once and reused until the bundle format or
its build config changes (the 100,000-item one takes a minute or two to build)."""

from __future__ import annotations

import json
import sys
import time
from pathlib import Path

import msgspec

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from edge.bundle import FORMAT_VERSION  # noqa: E402

# Items -> (events, users): a small shop and a large one.
SIZES = {10_000: (400_000, 10_000), 100_000: (2_000_000, 50_000)}


def build(items: int, events: int, users: int, seed: int, config: Path | None = None) -> Path:
    """The bundle of the default build config, or of the TOML `config` (say, cheaper serving
    settings, to measure what they save), built from the same simulated shop."""
    from export.config import BuildConfig, load_config
    from export.pipeline import export_bundle
    from simulator import simulate_shop

    name = f"sim-{items}-{events}-{seed}"
    wanted = BuildConfig(seed=seed)
    if config is not None:
        wanted = msgspec.structs.replace(load_config(config), seed=seed)
        name += f"-{config.stem}"
    out = ROOT / "build" / "bench" / name
    inputs = ROOT / "build" / "bench" / f"sim-{items}-{events}-{seed}-input"

    manifest = out / "manifest.json"
    # Rebuilt when the format or the config changed since it was built.
    if manifest.exists():
        built = json.loads(manifest.read_text())
        current = msgspec.to_builtins(wanted)
        if built["format_version"] == FORMAT_VERSION and built["lineage"]["config"] == current:
            return out

    started = time.perf_counter()
    shop = simulate_shop(n_users=users, n_items=items, n_events=events, seed=seed, days=60)
    files = shop.write(inputs)
    export_bundle([files["events"]], out, wanted, catalog_path=files["catalog"], evaluate=False)
    print(f"built {out} in {time.perf_counter() - started:.0f}s", file=sys.stderr)
    return out

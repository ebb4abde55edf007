"""A simulated shop: the frames it exports (events, catalog, users) and the sessions' ground
truth, and writing them as the files `edgeperso export` reads."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import pandas as pd


@dataclass(frozen=True, eq=False)  # eq=False: DataFrames have no truth value to compare
class SimulatedShop:
    events: pd.DataFrame
    catalog: pd.DataFrame
    users: pd.DataFrame
    sessions: pd.DataFrame  # ground truth, never an input of the product

    def write(self, directory: str | Path, fmt: str = "parquet") -> dict[str, Path]:
        """Write events, catalog and users as `<name>.parquet` or `<name>.csv`, and the
        sessions' ground truth (true purchase intent) as `truth.<fmt>`, to measure against."""
        if fmt not in ("parquet", "csv"):
            raise ValueError(f"fmt must be 'parquet' or 'csv', not {fmt!r}")
        out = Path(directory)
        out.mkdir(parents=True, exist_ok=True)
        paths: dict[str, Path] = {}
        for name, frame in (
            ("events", self.events),
            ("catalog", self.catalog),
            ("users", self.users),
            ("truth", self.sessions),
        ):
            path = out / f"{name}.{fmt}"
            if fmt == "parquet":
                frame.to_parquet(path, index=False)
            else:
                frame.to_csv(path, index=False)
            paths[name] = path
        return paths

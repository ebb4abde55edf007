"""Reading input tables: CSV (also .gz, any delimiter), JSON Lines or Parquet, every column as
text so ids keep their leading zeros; `validate` decides what each column means."""

from __future__ import annotations

import csv
import gzip
from pathlib import Path, PurePath

import pandas as pd

from export.errors import InputError

SUFFIXES = {
    ".csv": "csv",
    ".tsv": "csv",
    ".txt": "csv",
    ".jsonl": "jsonl",
    ".ndjson": "jsonl",
    ".json": "jsonl",
    ".parquet": "parquet",
    ".pq": "parquet",
}


def file_format(path: PurePath) -> str:
    suffixes = [s.lower() for s in path.suffixes]
    if suffixes and suffixes[-1] in (".gz", ".gzip"):
        suffixes = suffixes[:-1]
    fmt = SUFFIXES.get(suffixes[-1]) if suffixes else None
    if fmt is None:
        raise InputError(
            f"{path.name}: cannot tell the format from its name; use .csv, .jsonl or .parquet "
            "(optionally .gz)"
        )
    return fmt


def first_line(path: Path) -> str:
    opener = gzip.open if path.suffix.lower() in (".gz", ".gzip") else open
    with opener(path, "rt", encoding="utf-8", errors="replace") as f:
        return str(f.readline())


def delimiter_of(header: str) -> str:
    """A CSV file's delimiter, told from its header line (a comma when nothing else fits)."""
    try:
        return csv.Sniffer().sniff(header, delimiters=",;\t|").delimiter
    except csv.Error:
        return ","


def read_table(path: str | Path) -> pd.DataFrame:
    path = Path(path)
    if not path.is_file():
        raise InputError(f"{path}: no such file")
    fmt = file_format(path)
    try:
        if fmt == "csv":
            frame = pd.read_csv(
                path,
                sep=delimiter_of(first_line(path)),
                dtype=str,
                keep_default_na=False,
                engine="pyarrow",
            )
        elif fmt == "jsonl":
            frame = pd.read_json(path, lines=True, dtype=False)
        else:
            frame = pd.read_parquet(path)
    except (ValueError, OSError, UnicodeDecodeError) as exc:
        raise InputError(f"{path.name}: cannot be read as {fmt}: {exc}") from exc
    frame.columns = [str(c).strip() for c in frame.columns]
    return frame

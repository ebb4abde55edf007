"""Where a build's input tables come from: files, a directory of log segments (what `serve
--events-dir` writes), or a prefix of an object store (`s3://bucket/prefix/`, where serving
nodes ship those segments, `edge.shipping`).

A directory or a prefix stands for every table file under it (.jsonl, .ndjson, .csv, .tsv,
.parquet, optionally .gz), in name order, leaving out `exposures/` folders unless asked for
(they are the experiment report's input, not the build's) and hidden names ("_" or "." first:
what Spark's writers leave, `_SUCCESS`, `_temporary/`, `.crc` files). Its plain JSON-lines files are
joined into one local file, so a day of segments (thousands of small files) is parsed once
rather than file by file; the lineage names the directory or prefix and how many files it
held. Objects are downloaded into a temporary directory that is deleted after reading.

A build on Spark also takes URLs Spark reads itself (`hdfs://`, `s3a://`, `file:`, ...,
`export.spark.files`), chosen the same way but listed and read where they are."""

from __future__ import annotations

import contextlib
import re
import shutil
import tempfile
from collections.abc import Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from datetime import date
from pathlib import Path, PurePosixPath
from typing import TYPE_CHECKING, BinaryIO

from edge.objectstore import ObjectStore, StoreError, is_store_url
from export.errors import InputError
from export.io import SUFFIXES

if TYPE_CHECKING:
    from pyspark.sql import SparkSession

    from export.spark.files import UrlInput

EXPOSURES = "exposures"
OPEN_SEGMENT = ".jsonl.open"  # edge.sink's name for a segment still written to
DAY_FOLDER = re.compile(r"dt=(\d{4}-\d{2}-\d{2})")  # edge.shipping's day folders
DOWNLOADS_AT_ONCE = 8  # small objects: the time is in round trips, not bytes


@dataclass
class LocalInputs:
    paths: list[Path | UrlInput] = field(default_factory=list)  # URLs on Spark only
    # What the lineage calls a file made here, in a temporary directory: one joined from many,
    # or one downloaded.
    names: dict[Path, str] = field(default_factory=dict)

    def local_paths(self) -> list[Path]:
        """`paths`, when none is a URL (only a build on Spark is given those)."""
        local = [p for p in self.paths if isinstance(p, Path)]
        assert len(local) == len(self.paths), "a URL among inputs read on this machine"
        return local


def _is_url(source: str | Path) -> bool:
    from export.spark.files import is_url  # no PySpark import: it is a pattern

    return isinstance(source, str) and is_url(source)


def is_table(name: str) -> bool:
    """A table file's name; not a hidden one ("_" or "." first, as Spark's writers mark theirs:
    `_SUCCESS`, `.crc` files)."""
    if name.startswith(("_", ".")):
        return False
    suffixes = [s.lower() for s in PurePosixPath(name).suffixes]
    if suffixes and suffixes[-1] in (".gz", ".gzip"):
        suffixes = suffixes[:-1]
    return bool(suffixes) and suffixes[-1] in SUFFIXES


def is_plain_jsonl(name: str) -> bool:
    return name.lower().endswith((".jsonl", ".ndjson"))


@contextlib.contextmanager
def local_inputs(
    given: Sequence[str | Path],
    exposures: bool = False,
    since: date | None = None,
    open_segments: bool = False,
    spark: SparkSession | None = None,
) -> Iterator[LocalInputs]:
    """Local files for `given` (files, directories, `s3://` prefixes), kept until the block
    ends; with `spark`, also URLs Spark reads itself, as `UrlInput`s. `exposures`: also read
    `exposures/` folders. `since`: leave out what lies in a `dt=YYYY-MM-DD` folder of an
    earlier day (what nodes shipped before it). `open_segments`: also the segments a running
    server still writes (`*.jsonl.open`), up to their last whole line (what the experiment
    report reads while the server runs; a build takes closed ones)."""
    scratch: Path | None = None
    inputs = LocalInputs()
    on_cluster = spark is not None and is_cluster(str(spark.sparkContext.master))
    try:
        for source in given:
            if is_store_url(source):  # before other URLs: this store's own client fetches it
                if on_cluster:
                    raise InputError(_unreachable(str(source)))
                scratch = scratch or Path(tempfile.mkdtemp(prefix="edgeperso-inputs-"))
                _from_store(str(source), exposures, since, scratch, inputs)
            elif _is_url(source):
                if spark is None:
                    raise InputError(
                        f"{source}: only a build on Spark (--engine spark) reads URLs like this "
                        "one; this machine reads local files and directories, and s3:// "
                        "prefixes"
                    )
                from export.spark.files import url_inputs

                inputs.paths += url_inputs(spark, str(source), exposures, since)
            elif Path(source).is_dir():
                scratch = scratch or Path(tempfile.mkdtemp(prefix="edgeperso-inputs-"))
                _from_directory(
                    Path(source), exposures, since, scratch, inputs, open_segments, on_cluster
                )
            else:
                inputs.paths.append(Path(source))
        yield inputs
    finally:
        if scratch is not None:
            shutil.rmtree(scratch, ignore_errors=True)


def wanted(parts: Sequence[str], exposures: bool, since: date | None) -> bool:
    """Whether a table file in these folders is read: not in a hidden one (`_temporary/`)."""
    if any(part.startswith(("_", ".")) for part in parts):
        return False
    if not exposures and EXPOSURES in parts:
        return False
    if since is not None:
        for part in parts:
            day = DAY_FOLDER.fullmatch(part)
            if day and date.fromisoformat(day.group(1)) < since:
                return False
    return True


def _from_directory(
    root: Path,
    exposures: bool,
    since: date | None,
    scratch: Path,
    inputs: LocalInputs,
    open_segments: bool = False,
    on_cluster: bool = False,
) -> None:
    files = sorted(
        p
        for p in root.rglob("*")
        if p.is_file()
        and (is_table(p.name) or (open_segments and p.name.endswith(OPEN_SEGMENT)))
        and wanted(p.relative_to(root).parts[:-1], exposures, since)
    )
    if not files:
        raise InputError(
            f"{root}: no table files (.jsonl, .csv, .parquet, optionally .gz) in this directory; "
            "pass files, or the directory `serve --events-dir` writes"
        )
    joined = [p for p in files if is_plain_jsonl(p.name) or p.name.endswith(OPEN_SEGMENT)]
    inputs.paths += [p for p in files if p not in joined]
    if joined and on_cluster:
        raise InputError(_unreachable(f"{root}/ (its JSON-lines files, joined here)"))
    if joined:
        target = scratch / f"{len(inputs.paths)}-{root.name or 'events'}.jsonl"
        with target.open("wb") as out:
            for path in joined:
                data = path.read_bytes()
                if path.name.endswith(OPEN_SEGMENT):  # a line being written is not one yet
                    data = data[: data.rfind(b"\n") + 1]
                _append_lines(out, data)
        inputs.paths.append(target)
        inputs.names[target] = f"{root}/ ({len(joined):,} JSON-lines files)"


def _from_store(
    url: str, exposures: bool, since: date | None, scratch: Path, inputs: LocalInputs
) -> None:
    try:
        store = ObjectStore(url)
        keys = sorted(
            o.key
            for o in store.list()
            if is_table(o.key) and wanted(o.key.split("/")[:-1], exposures, since)
        )
    except StoreError as exc:
        raise InputError(str(exc)) from exc  # it names the object
    if not keys:
        raise InputError(
            f"{url}: no table files (.jsonl, .csv, .parquet, optionally .gz) under this prefix; "
            "`serve --events-store` ships a node's feedback to <prefix>events/"
        )
    joined = [k for k in keys if is_plain_jsonl(k)]
    others = [k for k in keys if not is_plain_jsonl(k)]
    with ThreadPoolExecutor(DOWNLOADS_AT_ONCE) as pool:
        try:
            for n, key in enumerate(others):
                path = scratch / f"{len(inputs.paths)}-{n}-{PurePosixPath(key).name}"
                path.write_bytes(store.get(key))
                inputs.paths.append(path)
                inputs.names[path] = f"{url}{key}"
            if joined:
                target = scratch / f"{len(inputs.paths)}-store.jsonl"
                with target.open("wb") as out:
                    for data in pool.map(store.get, joined):  # in key order
                        _append_lines(out, data)
                inputs.paths.append(target)
                inputs.names[target] = f"{url} ({len(joined):,} JSON-lines objects)"
        except StoreError as exc:
            raise InputError(str(exc)) from exc  # it names the object


def is_cluster(master: str) -> bool:
    """Whether a Spark master's executors run elsewhere, reading files on their own disks (not
    in this machine's scratch directory)."""
    return not master.startswith("local")


def _unreachable(source: str) -> str:
    return (
        f"{source}: on a cluster, Spark's executors cannot read what this driver "
        "downloads or joins into its temporary directory. Give the events as URLs Spark "
        "reads itself (s3a://bucket/prefix/, hdfs://..., gs://..., abfss://...), or as files "
        "on storage every executor mounts at the same path"
    )


def _append_lines(out: BinaryIO, data: bytes) -> None:
    """`data` as whole lines: a file without a final newline does not run into the next."""
    out.write(data)
    if data and not data.endswith(b"\n"):
        out.write(b"\n")

"""Input files that Spark reads itself, named by URL (`hdfs://`, `s3a://`, `gs://`, `abfss://`,
`file:`; whatever file systems the cluster has connectors for): listed, peeked at and hashed
through Spark's Hadoop file system, so that the driver never downloads the log. On a cluster,
a path on the driver's own disk is not one its executors can read; a URL is.

A URL names a file, a directory or a glob. A directory or a glob stands for the table files
under it as a local directory does (`export.sources`): in name order, hidden names,
`exposures/` folders and days before `since` left out, and its plain JSON-lines files (the
segments serving nodes write) read together as one file."""

from __future__ import annotations

import hashlib
import re
import zlib
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import date
from pathlib import PurePosixPath
from typing import TYPE_CHECKING, Any

from export.errors import InputError

if TYPE_CHECKING:
    import pyarrow as pa
    from pyspark.sql import SparkSession

# A scheme of two letters or more, then ":/" (one letter would be a Windows drive).
URL = re.compile(r"^[A-Za-z][A-Za-z0-9+.-]+:/")
GLOB = re.compile(r"[*?\[{]")
HEAD_BYTES = 65_536  # enough for a CSV's header line, even gzipped
PARQUET_MAGIC = b"PAR1"


def is_url(source: object) -> bool:
    return bool(URL.match(str(source)))


@dataclass(frozen=True)
class UrlInput:
    """One input file of a build as Spark reads it: one URL, or a directory's JSON-lines
    files read together (in this order) as the one file a local directory's are joined into."""

    urls: tuple[str, ...]
    name: str  # what the lineage calls it


def url_inputs(
    spark: SparkSession, url: str, exposures: bool = False, since: date | None = None
) -> list[UrlInput]:
    """The inputs `url` stands for: itself when it names a file, else the table files under
    it, chosen as under a local directory, each its own input but the plain JSON-lines ones,
    which are one input together."""
    from export.sources import is_plain_jsonl, is_table, wanted

    fs, path = _file_system(spark, url)
    statuses = _statuses(fs, path, url)
    if len(statuses) == 1 and not statuses[0].isDirectory():
        return [UrlInput((statuses[0].getPath().toString(),), _base_name(url))]
    found: list[tuple[str, str]] = []  # (path under the root, URL)
    for status in statuses:
        root = status.getPath().toString().rstrip("/")
        if not status.isDirectory():
            found.append((PurePosixPath(root).name, root))
            continue
        listing = fs.listFiles(status.getPath(), True)
        while listing.hasNext():
            full = listing.next().getPath().toString()
            found.append((full[len(root) :].lstrip("/"), full))
    files = sorted(
        (relative, full)
        for relative, full in found
        if is_table(PurePosixPath(relative).name)
        and wanted(PurePosixPath(relative).parts[:-1], exposures, since)
    )
    if not files:
        raise InputError(
            f"{url}: no table files (.jsonl, .csv, .parquet, optionally .gz) under it; pass "
            "a file, a directory or a glob that holds some"
        )
    joined = tuple(full for relative, full in files if is_plain_jsonl(relative))
    inputs = [UrlInput((full,), full) for _, full in files if full not in joined]
    if joined:
        inputs.append(UrlInput(joined, f"{url} ({len(joined):,} JSON-lines files)"))
    return inputs


def head(spark: SparkSession, url: str) -> str:
    """The first line of a text file (gunzipped for a .gz name)."""
    fs, path = _file_system(spark, url)
    size = int(fs.getFileStatus(path).getLen())
    data = _read_at(spark, fs, path, 0, min(size, HEAD_BYTES))
    if url.lower().endswith((".gz", ".gzip")):
        try:
            data = zlib.decompressobj(wbits=zlib.MAX_WBITS | 16).decompress(data)
        except zlib.error as exc:
            raise InputError(f"{url}: not gzip, as its name says ({exc})") from exc
    return data.split(b"\n", 1)[0].decode("utf-8", errors="replace")


def parquet_schema(spark: SparkSession, url: str) -> pa.Schema:
    """A Parquet file's schema, from its footer alone (the file's last bytes)."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    fs, path = _file_system(spark, url)
    size = int(fs.getFileStatus(path).getLen())
    tail = _read_at(spark, fs, path, max(0, size - 8), min(size, 8))
    if len(tail) < 8 or tail[4:] != PARQUET_MAGIC:
        raise InputError(f"{url}: not a Parquet file (it does not end in {PARQUET_MAGIC!r})")
    footer_size = int.from_bytes(tail[:4], "little")
    if footer_size > size - 12:
        raise InputError(f"{url}: not a Parquet file (its footer is longer than the file)")
    footer = _read_at(spark, fs, path, size - 8 - footer_size, footer_size)
    # The footer between the two magic numbers reads as a file whose row groups are elsewhere;
    # only the schema is asked of it.
    schema: pa.Schema = pq.read_schema(
        pa.BufferReader(PARQUET_MAGIC + footer + tail[:4] + PARQUET_MAGIC)
    )
    return schema


def sha256s(spark: SparkSession, urls: Sequence[str]) -> dict[str, str]:
    """Each file's sha256, computed where the files are (Spark's `binaryFile` source reads a
    file of up to 2 GiB whole)."""
    from pyspark.sql import functions as F

    try:
        rows = (
            spark.read.format("binaryFile")
            .load(list(urls))
            .select("path", F.sha2("content", 256).alias("sha256"))
            .collect()
        )
    except Exception as exc:  # PySpark's and py4j's errors (the latter carry the Java one)
        raise InputError(
            f"could not hash the input files for the lineage ({_java_message(exc)}); each file "
            "Spark reads by URL must be at most 2 GiB (split larger ones, as Spark's writers "
            "do)"
        ) from exc
    by_path = {str(row["path"]): str(row["sha256"]) for row in rows}
    return {url: by_path[_qualified(spark, url)] for url in urls}


def input_sha256s(spark: SparkSession, sources: Sequence[object]) -> dict[UrlInput, str]:
    """The lineage's sha256 of each `UrlInput` among `sources`: its file's, or for files read
    as one, `combined_sha256` of theirs."""
    inputs = [s for s in sources if isinstance(s, UrlInput)]
    if not inputs:
        return {}
    each = sha256s(spark, [url for source in inputs for url in source.urls])
    return {
        source: each[source.urls[0]]
        if len(source.urls) == 1
        else combined_sha256([(url, each[url]) for url in source.urls])
        for source in inputs
    }


def combined_sha256(named: Sequence[tuple[str, str]]) -> str:
    """The sha256 of several files read as one: of their `sha256  name` lines, in order (as
    `sha256sum` lists them)."""
    text = "".join(f"{sha}  {name}\n" for name, sha in named)
    return hashlib.sha256(text.encode()).hexdigest()


def _file_system(spark: SparkSession, url: str) -> tuple[Any, Any]:
    jvm = spark.sparkContext._jvm
    assert jvm is not None  # a classic session's driver
    path = jvm.org.apache.hadoop.fs.Path(url)
    try:
        fs = path.getFileSystem(spark.sparkContext._jsc.hadoopConfiguration())
    except Exception as exc:
        raise InputError(
            f"{url}: Spark has no file system for this URL ({_java_message(exc)}); a cluster "
            "reads the schemes it has connectors for (hdfs://, s3a://, gs://, abfss://, file:)"
        ) from exc
    return fs, path


def _qualified(spark: SparkSession, url: str) -> str:
    """`url` as Spark's file sources name it ("file:/x" for "file:///x")."""
    fs, path = _file_system(spark, url)
    return str(fs.makeQualified(path).toString())


def _statuses(fs: Any, path: Any, url: str) -> list[Any]:
    try:
        if GLOB.search(url):
            found = fs.globStatus(path)
            statuses = list(found) if found is not None else []
        else:
            statuses = [fs.getFileStatus(path)]
    except Exception as exc:
        raise InputError(f"{url}: cannot read it ({_java_message(exc)})") from exc
    if not statuses:
        raise InputError(f"{url}: nothing matches this glob")
    return sorted(statuses, key=lambda s: str(s.getPath().toString()))


def _read_at(spark: SparkSession, fs: Any, path: Any, position: int, length: int) -> bytes:
    jvm = spark.sparkContext._jvm
    assert jvm is not None
    stream = fs.open(path)
    try:
        stream.seek(position)
        data = jvm.org.apache.commons.io.IOUtils.toByteArray(stream, length)
    finally:
        stream.close()
    return bytes(data)


def _base_name(url: str) -> str:
    return PurePosixPath(url.rstrip("/")).name or url


def _java_message(exc: BaseException) -> str:
    """The first line of a Java exception's message, without py4j's wrapping."""
    java = getattr(exc, "java_exception", None)
    text = str(java.toString()) if java is not None else str(exc)
    return text.strip().splitlines()[0][:300] if text.strip() else type(exc).__name__

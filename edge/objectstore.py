"""A prefix of a bucket on an S3-compatible object store (S3, R2, GCS's S3 API, MinIO,
SeaweedFS...), named `s3://bucket/prefix/`: where nodes ship their feedback, where builds read it
and where bundles are published.

The client is obstore (Rust's `object_store` underneath): one wheel with no Python dependencies,
request signing, retries and timeouts included. Its settings come from the usual variables:
AWS_ACCESS_KEY_ID, AWS_SECRET_ACCESS_KEY (and AWS_SESSION_TOKEN), AWS_REGION, and
AWS_ENDPOINT_URL for any store but AWS's own. An endpoint over plain http is refused unless it
is this machine, or EDGEPERSO_STORE_ALLOW_HTTP=1 says the network is trusted: feedback and
bundles would cross it in the clear.

Every failure is a `StoreError` saying which object and why, never a bare client exception."""

from __future__ import annotations

import contextlib
import ipaddress
import os
import re
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from datetime import timedelta
from typing import TYPE_CHECKING, cast
from urllib.parse import urlsplit

import obstore
from obstore.exceptions import BaseError, NotFoundError, NotModifiedError
from obstore.store import S3Store

if TYPE_CHECKING:
    from obstore.store import S3Config  # a TypedDict of its stubs only

SCHEME = "s3://"
# Bucket names as S3 allows them (R2 and GCS allow a subset): 3 to 63 lower-case letters,
# digits, dots and hyphens, starting and ending with a letter or digit.
BUCKET = re.compile(r"[a-z0-9][a-z0-9.-]{1,61}[a-z0-9]")
ALLOW_HTTP = "EDGEPERSO_STORE_ALLOW_HTTP"
CONNECT_TIMEOUT = "5s"
REQUEST_TIMEOUT = "60s"  # a bundle's largest file is tens of MB
RETRIES = 2  # within a call; callers that must not give up (shipping) retry with their own backoff


CREDENTIALS = (
    ("AWS_ACCESS_KEY_ID", "access_key_id"),
    ("AWS_SECRET_ACCESS_KEY", "secret_access_key"),
    ("AWS_SESSION_TOKEN", "session_token"),
)
TOKEN = re.compile(r"[\x21-\x7e]{1,4096}")  # printable ASCII without spaces


class StoreError(Exception):
    """The object store could not be used: what was asked, of which object, and why."""


class StoreConfigError(StoreError):
    """The store's URL or settings are wrong; nothing was sent."""


def is_store_url(text: str | os.PathLike[str]) -> bool:
    return str(text).startswith(SCHEME)


@dataclass(frozen=True)
class StoreLocation:
    bucket: str
    prefix: str  # "" or a path ending in "/"

    @property
    def url(self) -> str:
        return f"{SCHEME}{self.bucket}/{self.prefix}"

    def key(self, name: str) -> str:
        """The full key of `name` under this prefix."""
        return self.prefix + name


def parse_store_url(url: str) -> StoreLocation:
    """`s3://bucket/prefix/` (the prefix may be empty; a missing final "/" is added)."""
    if not is_store_url(url):
        raise StoreConfigError(f"{url!r} is not an object store URL; write s3://bucket/prefix/")
    bucket, _, prefix = url[len(SCHEME) :].partition("/")
    if not BUCKET.fullmatch(bucket):
        raise StoreConfigError(
            f"{url!r}: {bucket!r} is not a bucket name (3 to 63 lower-case letters, digits, "
            "'.' and '-', starting and ending with a letter or digit)"
        )
    parts = [p for p in prefix.split("/") if p]
    if any(p in (".", "..") for p in parts) or "\\" in prefix:
        raise StoreConfigError(f"{url!r}: the prefix may not hold '.', '..' or '\\' parts")
    return StoreLocation(bucket, "".join(p + "/" for p in parts))


@dataclass(frozen=True)
class StoredObject:
    key: str  # relative to the store's prefix
    size: int
    etag: str | None


class ObjectStore:
    """The objects under one `s3://bucket/prefix/`; keys are relative to the prefix."""

    def __init__(self, url: str, env: Mapping[str, str] | None = None) -> None:
        env = os.environ if env is None else env
        self.location = parse_store_url(url)
        self.url = self.location.url
        self._store = S3Store(
            self.location.bucket,
            config=cast("S3Config", _client_config(env)),
            client_options={"connect_timeout": CONNECT_TIMEOUT, "timeout": REQUEST_TIMEOUT},
            retry_config={
                "max_retries": RETRIES,
                "backoff": {
                    "init_backoff": timedelta(milliseconds=100),
                    "max_backoff": timedelta(seconds=2),
                    "base": 2.0,
                },
                "retry_timeout": timedelta(seconds=20),
            },
        )

    def put(self, key: str, data: bytes | memoryview) -> None:
        """Store `data` under `key` (replacing what was there); returns once the store holds it."""
        full = self.location.key(key)
        with self._calling("upload", full):
            obstore.put(self._store, full, data)

    def get(self, key: str, max_bytes: int | None = None) -> bytes:
        """The object's bytes; a StoreError when it is missing, cannot be read, or is larger
        than `max_bytes` (checked before its body is read: a store cannot fill the memory)."""
        full = self.location.key(key)
        with self._calling("download", full):
            result = obstore.get(self._store, full)
            self._check_size(full, int(result.meta["size"]), max_bytes)
            return bytes(result.bytes())

    def get_if_changed(
        self, key: str, etag: str | None, max_bytes: int | None = None
    ) -> tuple[bytes, str | None] | None:
        """The object and its ETag, or None when its ETag is still `etag` (a cheap poll: the
        store answers 304 and sends nothing)."""
        full = self.location.key(key)
        options = {"if_none_match": etag} if etag else None
        with self._calling("download", full):
            try:
                result = obstore.get(self._store, full, options=options)  # type: ignore[arg-type]
            except NotModifiedError:
                return None
            self._check_size(full, int(result.meta["size"]), max_bytes)
            return bytes(result.bytes()), result.meta.get("e_tag")

    def exists(self, key: str) -> bool:
        full = self.location.key(key)
        with self._calling("look up", full):
            try:
                obstore.head(self._store, full)
            except (NotFoundError, FileNotFoundError):
                return False
            return True

    def list(self, prefix: str = "") -> Iterator[StoredObject]:
        """Every object whose key starts with `prefix` (relative), in the store's order."""
        full = self.location.key(prefix)
        start = len(self.location.prefix)
        with self._calling("list", full):
            for chunk in obstore.list(self._store, prefix=full):
                for meta in chunk:
                    yield StoredObject(meta["path"][start:], int(meta["size"]), meta.get("e_tag"))

    def delete(self, key: str) -> None:
        full = self.location.key(key)
        with self._calling("delete", full):
            try:
                obstore.delete(self._store, full)
            except (NotFoundError, FileNotFoundError):
                return

    def _check_size(self, full_key: str, size: int, max_bytes: int | None) -> None:
        if max_bytes is not None and size > max_bytes:
            raise StoreError(
                f"{SCHEME}{self.location.bucket}/{full_key} has {size:,} bytes, more than the "
                f"{max_bytes:,} expected"
            )

    @contextlib.contextmanager
    def _calling(self, action: str, full_key: str) -> Iterator[None]:
        """The client's errors as StoreErrors; a panic of its Rust core (a value it cannot put
        in a request) too, which Python sees as a BaseException."""
        try:
            yield
        except StoreError:
            raise
        except (BaseError, FileNotFoundError, ValueError) as exc:  # ValueError: a refused key
            raise self._error(action, full_key, exc) from exc
        except BaseException as exc:
            if type(exc).__name__ != "PanicException":
                raise
            where = f"{SCHEME}{self.location.bucket}/{full_key}"
            raise StoreError(
                f"could not {action} {where}: the store client failed ({exc})"
            ) from None

    def _error(self, action: str, full_key: str, exc: Exception) -> StoreError:
        # The client's message carries a long debug trail; its first line says what happened.
        first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        where = f"{SCHEME}{self.location.bucket}/{full_key}"
        if "NoSuchBucket" in str(exc):
            return StoreError(f"could not {action} {where}: the bucket does not exist")
        if isinstance(exc, NotFoundError | FileNotFoundError):
            return StoreError(f"could not {action} {where}: no such object")
        return StoreError(f"could not {action} {where}: {first}")


def _client_config(env: Mapping[str, str]) -> dict[str, str]:
    """The client's settings from the AWS_* variables, read here rather than by the client so
    that what is used is what this module documents (and a test can pass its own)."""
    config: dict[str, str] = {}
    for name, option in CREDENTIALS:
        if env.get(name):
            config[option] = env[name]
    endpoint = env.get("AWS_ENDPOINT_URL_S3") or env.get("AWS_ENDPOINT_URL") or ""
    region = env.get("AWS_REGION") or env.get("AWS_DEFAULT_REGION")
    # R2 and most self-hosted stores take any region; "auto" is R2's word for it.
    config["region"] = region or ("auto" if endpoint else "us-east-1")
    if endpoint:
        config["endpoint"] = _checked_endpoint(endpoint, env)
        config["virtual_hosted_style_request"] = "false"  # path style: any endpoint serves it
        if endpoint.startswith("http://"):
            config["allow_http"] = "true"
    if ("access_key_id" in config) != ("secret_access_key" in config):
        raise StoreConfigError(
            "set both AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY, or neither (a public bucket)"
        )
    if "access_key_id" not in config:
        # Unsigned requests, rather than the client's search for credentials elsewhere (an
        # instance metadata address a container should not be asking).
        config["skip_signature"] = "true"
    for name, option in (*CREDENTIALS, ("AWS_REGION", "region")):
        if option in config and not TOKEN.fullmatch(config[option]):
            raise StoreConfigError(
                f"{name} holds a space or a control character; it must be printable text "
                "(the value is not repeated here)"
            )
    return config


def _checked_endpoint(endpoint: str, env: Mapping[str, str]) -> str:
    parts = urlsplit(endpoint)
    if not TOKEN.fullmatch(endpoint) or parts.scheme not in ("http", "https") or not parts.hostname:
        raise StoreConfigError(
            f"AWS_ENDPOINT_URL {endpoint!r} must be an http(s) URL with a host, e.g. "
            "https://<account>.r2.cloudflarestorage.com"
        )
    if parts.scheme == "http" and not _is_loopback(parts.hostname):
        if env.get(ALLOW_HTTP, "").strip().lower() not in ("1", "true", "yes"):
            raise StoreConfigError(
                f"AWS_ENDPOINT_URL {endpoint!r} is plain http to another machine: feedback and "
                f"bundles would cross the network in the clear. Use https, or set {ALLOW_HTTP}=1 "
                "on a network you trust"
            )
    return endpoint.rstrip("/")


def _is_loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False

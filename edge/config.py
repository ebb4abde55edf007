"""Edge settings, read once from the environment, typed, failing loudly."""

from __future__ import annotations

from dataclasses import dataclass, field

from starlette.config import Config, Environ, environ


@dataclass(frozen=True)
class Settings:
    bundle_dir: str | None = None
    profiles_path: str | None = None
    budget_ms: float = 50.0  # per-request latency budget; past it the answer is fallback content
    max_body_bytes: int = 64 * 1024
    # The Ed25519 public key bundles must be signed with (raw 32 bytes, edge.bundle.signing;
    # None: unsigned bundles load), and whether a bundle may be downloaded without one, or over
    # http (edge.fetch: only for local, unsigned bundles).
    public_key: bytes | None = None
    allow_unsigned: bool = False
    reload_seconds: float = 5.0  # how often to look for a new bundle; 0 turns it off
    events_dir: str | None = None  # where POST /v1/events appends its log; None: not accepted
    max_events_body_bytes: int = 1024 * 1024  # a batch of up to 1,000 events
    # Decision ids (edge.decisions): the HMAC key, shared by the nodes that verify each other's
    # decisions (None: a random one per process; `serve` makes one for all its workers), and
    # how long feedback may quote a decision.
    decision_key: bytes | None = field(default=None, repr=False)
    decision_ttl_seconds: float = 24 * 3600.0
    # Quotas on POST /v1/events per client and worker process (edge.quota): events a second,
    # sustained (0 turns quotas off), and the burst; the client is the x-edgeperso-client
    # header when it is trusted (the gateway sets it), else the connecting address.
    events_per_second: float = 50.0
    events_burst: int = 1000
    trust_client_header: bool = False
    # The events directory (edge.eventlog): a cap on all its files, the free space to leave on
    # its disk, and how long closed segments are kept (None: for ever, nothing is deleted).
    events_max_bytes: int = 1024**3
    events_min_free_bytes: int = 64 * 1024**2
    events_retention_days: float | None = None
    # Shipping (edge.shipping): the s3://bucket/prefix/ closed segments are uploaded to (None:
    # they stay on this disk), how old a segment may get before it is closed (None: 10 s with a
    # store, an hour without), the seconds left to ship at shutdown, and this node's name in
    # the store's keys (None: the one kept in the events directory, made on first use).
    events_store: str | None = None
    # Following bundles published to an object store (edge.bundle.remote): its s3:// prefix
    # (None: the bundle directory or publish root is all there is), and how often its pointer
    # is polled (a request of a few hundred bytes, answered 304 while nothing changed).
    bundle_store: str | None = None
    bundle_poll_seconds: float = 10.0
    # GET /metrics and what every request adds to it (edge.metrics); off: neither.
    metrics: bool = True
    # The log (edge.logs, edge.accesslog): JSON lines or Python's plain text (`serve` writes
    # JSON), a line per request or none, its level, and the salt visitors' ids are hashed with
    # in it (None: a random one per process; `serve` makes one for all its workers).
    log_format: str = "text"
    access_log: bool = True
    log_level: str = "info"
    log_salt: bytes | None = field(default=None, repr=False)
    events_rotate_seconds: float | None = None
    ship_grace_seconds: float = 10.0
    node_id: str | None = None
    # Slow clients (edge.connections): seconds to send a request's headers, from the connection's
    # opening or its last answer; seconds to send the body after them; open connections per
    # server process (each costs an fd and 5 to 10 KB; a slow crowd past the cap is evicted).
    header_timeout_seconds: float = 10.0
    body_timeout_seconds: float = 10.0
    max_connections: int = 2000

    @property
    def rotate_seconds(self) -> float:
        """How old a segment may get: shipped logs rotate often, local ones hourly."""
        if self.events_rotate_seconds is not None:
            return self.events_rotate_seconds
        return 10.0 if self.events_store else 3600.0

    @classmethod
    def from_env(cls, env: Environ | dict[str, str] = environ) -> Settings:
        config = Config(environ=env)
        settings = cls(
            bundle_dir=config("EDGEPERSO_BUNDLE", default=None),
            profiles_path=config("EDGEPERSO_PROFILES", default=None),
            budget_ms=config("EDGEPERSO_BUDGET_MS", cast=float, default=50.0),
            max_body_bytes=config("EDGEPERSO_MAX_BODY_BYTES", cast=int, default=64 * 1024),
            public_key=_public_key(env),
            allow_unsigned=config("EDGEPERSO_ALLOW_UNSIGNED", cast=bool, default=False),
            reload_seconds=config("EDGEPERSO_RELOAD_SECONDS", cast=float, default=5.0),
            events_dir=config("EDGEPERSO_EVENTS_DIR", default=None),
            max_events_body_bytes=config(
                "EDGEPERSO_MAX_EVENTS_BODY_BYTES", cast=int, default=1024 * 1024
            ),
            # Parsed here, not by `cast`: Config's own error would print the key.
            decision_key=_decision_key(config("EDGEPERSO_DECISION_KEY", default="")),
            decision_ttl_seconds=config(
                "EDGEPERSO_DECISION_TTL_SECONDS", cast=float, default=24 * 3600.0
            ),
            events_per_second=config("EDGEPERSO_EVENTS_PER_SECOND", cast=float, default=50.0),
            events_burst=config("EDGEPERSO_EVENTS_BURST", cast=int, default=1000),
            trust_client_header=config("EDGEPERSO_TRUST_CLIENT_HEADER", cast=bool, default=False),
            events_max_bytes=config("EDGEPERSO_EVENTS_MAX_BYTES", cast=int, default=1024**3),
            events_min_free_bytes=config(
                "EDGEPERSO_EVENTS_MIN_FREE_BYTES", cast=int, default=64 * 1024**2
            ),
            events_retention_days=config(
                "EDGEPERSO_EVENTS_RETENTION_DAYS", cast=_optional_float, default=None
            ),
            events_store=config("EDGEPERSO_EVENTS_STORE", default=None) or None,
            bundle_store=config("EDGEPERSO_BUNDLE_STORE", default=None) or None,
            metrics=config("EDGEPERSO_METRICS", cast=bool, default=True),
            log_format=config("EDGEPERSO_LOG_FORMAT", default="text").strip().lower(),
            access_log=config("EDGEPERSO_ACCESS_LOG", cast=bool, default=True),
            log_level=config("EDGEPERSO_LOG_LEVEL", default="info").strip().lower(),
            log_salt=_salt(config("EDGEPERSO_LOG_SALT", default="")),
            bundle_poll_seconds=config("EDGEPERSO_BUNDLE_POLL_SECONDS", cast=float, default=10.0),
            events_rotate_seconds=config(
                "EDGEPERSO_EVENTS_ROTATE_SECONDS", cast=_optional_float, default=None
            ),
            ship_grace_seconds=config("EDGEPERSO_SHIP_GRACE_SECONDS", cast=float, default=10.0),
            node_id=config("EDGEPERSO_NODE_ID", default=None) or None,
            header_timeout_seconds=config(
                "EDGEPERSO_HEADER_TIMEOUT_SECONDS", cast=float, default=10.0
            ),
            body_timeout_seconds=config("EDGEPERSO_BODY_TIMEOUT_SECONDS", cast=float, default=10.0),
            max_connections=config("EDGEPERSO_MAX_CONNECTIONS", cast=int, default=2000),
        )
        positive = (settings.budget_ms, settings.max_body_bytes, settings.max_events_body_bytes)
        if min(positive) <= 0 or settings.reload_seconds < 0:
            raise ValueError(
                "EDGEPERSO_BUDGET_MS, EDGEPERSO_MAX_BODY_BYTES and "
                "EDGEPERSO_MAX_EVENTS_BODY_BYTES must be positive and EDGEPERSO_RELOAD_SECONDS "
                f"not negative; got {positive} and {settings.reload_seconds}"
            )
        slow = (
            settings.header_timeout_seconds,
            settings.body_timeout_seconds,
            settings.max_connections,
        )
        if min(slow) <= 0:
            raise ValueError(
                "EDGEPERSO_HEADER_TIMEOUT_SECONDS, EDGEPERSO_BODY_TIMEOUT_SECONDS and "
                f"EDGEPERSO_MAX_CONNECTIONS must be positive; got {slow}"
            )
        _check_event_settings(settings)
        return settings


def _decision_key(text: str) -> bytes | None:
    from edge.decisions import parse_key  # edge.decisions imports the schemas, not the settings

    return parse_key(text) if text.strip() else None


def _public_key(env: Environ | dict[str, str]) -> bytes | None:
    """EDGEPERSO_PUBLIC_KEY; an old EDGEPERSO_SIGNING_KEY is refused, saying what replaced it."""
    from edge.bundle.signing import public_key_from_env  # not at import: it loads edge.bundle

    return public_key_from_env(env)


def _salt(text: str) -> bytes | None:
    """EDGEPERSO_LOG_SALT: hex, 16 bytes or more (the value is never repeated in an error)."""
    if not text.strip():
        return None
    try:
        salt = bytes.fromhex(text.strip())
    except ValueError:
        salt = b""
    if len(salt) < 16:
        raise ValueError("EDGEPERSO_LOG_SALT must be hex of 16 bytes or more (32 hex digits)")
    return salt


def _optional_float(text: str) -> float | None:
    return float(text) if text.strip() else None


def _check_event_settings(settings: Settings) -> None:
    """The decision, quota and event-log settings, each named when it is out of range."""
    problems = []
    if settings.decision_ttl_seconds <= 0:
        problems.append(
            f"EDGEPERSO_DECISION_TTL_SECONDS must be positive, got {settings.decision_ttl_seconds}"
        )
    if settings.events_per_second < 0:
        problems.append(
            "EDGEPERSO_EVENTS_PER_SECOND must not be negative (0 turns quotas off), got "
            f"{settings.events_per_second}"
        )
    if settings.events_burst < 1:
        problems.append(f"EDGEPERSO_EVENTS_BURST must be at least 1, got {settings.events_burst}")
    if settings.events_max_bytes <= 0 or settings.events_min_free_bytes < 0:
        problems.append(
            "EDGEPERSO_EVENTS_MAX_BYTES must be positive and EDGEPERSO_EVENTS_MIN_FREE_BYTES not "
            f"negative, got {settings.events_max_bytes} and {settings.events_min_free_bytes}"
        )
    days = settings.events_retention_days
    if days is not None and days <= 0:
        problems.append(
            "EDGEPERSO_EVENTS_RETENTION_DAYS must be positive (unset keeps every segment), got "
            f"{days}"
        )
    problems += _shipping_problems(settings)
    if settings.log_format not in ("json", "text"):
        problems.append(f"EDGEPERSO_LOG_FORMAT must be json or text, got {settings.log_format!r}")
    levels = ("debug", "info", "warning", "error", "critical")
    if settings.log_level not in levels:
        problems.append(
            f"EDGEPERSO_LOG_LEVEL must be one of {', '.join(levels)}, got {settings.log_level!r}"
        )
    if problems:
        raise ValueError("; ".join(problems))


def _shipping_problems(settings: Settings) -> list[str]:
    from edge.objectstore import StoreConfigError, parse_store_url
    from edge.shipping import check_node_id

    problems = []
    rotate = settings.events_rotate_seconds
    if rotate is not None and rotate <= 0:
        problems.append(f"EDGEPERSO_EVENTS_ROTATE_SECONDS must be positive, got {rotate}")
    if settings.ship_grace_seconds < 0:
        problems.append(
            f"EDGEPERSO_SHIP_GRACE_SECONDS must not be negative, got {settings.ship_grace_seconds}"
        )
    if settings.node_id is not None:
        try:
            check_node_id(settings.node_id)
        except ValueError as exc:
            problems.append(str(exc))
    if settings.bundle_store is not None:
        try:
            parse_store_url(settings.bundle_store)
        except StoreConfigError as exc:
            problems.append(f"EDGEPERSO_BUNDLE_STORE: {exc}")
        poll = settings.bundle_poll_seconds
        if poll <= 0:
            problems.append(f"EDGEPERSO_BUNDLE_POLL_SECONDS must be positive, got {poll}")
        if settings.reload_seconds <= 0:
            problems.append(
                "EDGEPERSO_BUNDLE_STORE needs EDGEPERSO_RELOAD_SECONDS above 0: a build fetched "
                "from the store is swapped in by the reload watcher"
            )
    if settings.events_store is None:
        return problems
    try:
        parse_store_url(settings.events_store)
    except StoreConfigError as exc:
        problems.append(f"EDGEPERSO_EVENTS_STORE: {exc}")
    if settings.events_dir is None:
        problems.append(
            "EDGEPERSO_EVENTS_STORE needs EDGEPERSO_EVENTS_DIR: events are written there first, "
            "and shipped once their segment closes"
        )
    if settings.events_retention_days is not None:
        problems.append(
            "EDGEPERSO_EVENTS_RETENTION_DAYS would delete segments not shipped yet; with "
            "EDGEPERSO_EVENTS_STORE set, each segment is deleted once the store has it: unset it"
        )
    return problems

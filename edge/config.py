"""Edge settings, read once from the environment, typed, failing loudly."""

from __future__ import annotations

from dataclasses import dataclass

from starlette.config import Config, Environ, environ


@dataclass(frozen=True)
class Settings:
    bundle_dir: str | None = None
    profiles_path: str | None = None
    budget_ms: float = 50.0  # per-request latency budget; past it the answer is fallback content
    max_body_bytes: int = 64 * 1024
    signing_key: bytes | None = None
    reload_seconds: float = 5.0  # how often to look for a new bundle; 0 turns it off
    events_dir: str | None = None  # where POST /v1/events appends its log; None: not accepted
    max_events_body_bytes: int = 1024 * 1024  # a batch of up to 1,000 events

    @classmethod
    def from_env(cls, env: Environ | dict[str, str] = environ) -> Settings:
        config = Config(environ=env)
        key = config("EDGEPERSO_SIGNING_KEY", default=None)
        settings = cls(
            bundle_dir=config("EDGEPERSO_BUNDLE", default=None),
            profiles_path=config("EDGEPERSO_PROFILES", default=None),
            budget_ms=config("EDGEPERSO_BUDGET_MS", cast=float, default=50.0),
            max_body_bytes=config("EDGEPERSO_MAX_BODY_BYTES", cast=int, default=64 * 1024),
            signing_key=key.encode() if key else None,
            reload_seconds=config("EDGEPERSO_RELOAD_SECONDS", cast=float, default=5.0),
            events_dir=config("EDGEPERSO_EVENTS_DIR", default=None),
            max_events_body_bytes=config(
                "EDGEPERSO_MAX_EVENTS_BODY_BYTES", cast=int, default=1024 * 1024
            ),
        )
        positive = (settings.budget_ms, settings.max_body_bytes, settings.max_events_body_bytes)
        if min(positive) <= 0 or settings.reload_seconds < 0:
            raise ValueError(
                "EDGEPERSO_BUDGET_MS, EDGEPERSO_MAX_BODY_BYTES and "
                "EDGEPERSO_MAX_EVENTS_BODY_BYTES must be positive and EDGEPERSO_RELOAD_SECONDS "
                f"not negative; got {positive} and {settings.reload_seconds}"
            )
        return settings

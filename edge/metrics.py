"""What a node does, as Prometheus metrics (GET /metrics), with prometheus-client.

`serve` gives its worker processes one PROMETHEUS_MULTIPROC_DIR (emptied at start): each writes
its samples there, memory-mapped, and whichever worker answers /metrics sums them, so a scrape
sees the whole server. Without it (the app in a test, one process), the process's own registry.

Every label takes values from a small set fixed by the code or by the bundle's own config
(routes, fallback reason codes, rule names, experiments and their variants, bandit slots and
arms): never an id, a path or free text a client could vary."""

from __future__ import annotations

import time
from collections.abc import Awaitable, Callable, MutableMapping
from datetime import datetime
from typing import Any

from prometheus_client import (
    CONTENT_TYPE_LATEST,
    REGISTRY,
    CollectorRegistry,
    Counter,
    Gauge,
    Histogram,
    generate_latest,
    multiprocess,
    values,
)

from edge.arrival import queued_ms
from edge.bundle import Bundle
from edge.routes import route_label
from edge.schemas import RecommendResponse

MULTIPROC_DIR = "PROMETHEUS_MULTIPROC_DIR"
# Whether this process's metrics live in that directory: settled when prometheus-client was
# imported (its value class), not by the variable as it is later.
MULTIPROCESS = values.ValueClass is not values.MutexValue
# Seconds: the budget is 50 ms, and an answer past a second is a problem whatever its size.
SECONDS = (0.0005, 0.001, 0.002, 0.005, 0.01, 0.02, 0.05, 0.1, 0.2, 0.5, 1.0, 2.0, 5.0)

REQUESTS = Counter(
    "edgeperso_requests", "Requests answered, by route and status", ["route", "status"]
)
ANSWER_SECONDS = Histogram(
    "edgeperso_answer_seconds",
    "Time from the handler's start to the answer's last byte, by route",
    ["route"],
    buckets=SECONDS,
)
QUEUED_SECONDS = Histogram(
    "edgeperso_queued_seconds",
    "Time a request waited in the server, from its headers to its handler",
    ["route"],
    buckets=SECONDS,
)
FALLBACKS = Counter("edgeperso_fallbacks", "Answers from fallback content, by reason", ["reason"])
PERSONALIZED = Counter("edgeperso_personalized_answers", "Answers the visitor's state shaped")
RULES = Counter(
    "edgeperso_rules",
    "Triggered rules, by rule and outcome (fired, held_back)",
    ["rule", "outcome"],
)
VARIANTS = Counter(
    "edgeperso_variants_served", "Answers by experiment and variant", ["experiment", "variant"]
)
ARMS = Counter("edgeperso_bandit_arms_served", "Bandit choices by slot and arm", ["slot", "arm"])
FEEDBACK = Counter(
    "edgeperso_feedback_events", "Feedback events by outcome (accepted, refused)", ["outcome"]
)
SHIPPED = Counter("edgeperso_shipped_segments", "Event segments the object store confirmed")
SHIP_FAILURES = Counter("edgeperso_shipping_failures", "Shipping rounds stopped by a failure")
SHIP_WAITING = Gauge(
    "edgeperso_shipping_oldest_waiting_seconds",
    "Age of the oldest closed segment not shipped yet (0: none)",
    multiprocess_mode="max",
)
BUNDLE = Gauge(
    "edgeperso_bundle_info",
    "1 for each build a worker serves, 0 once none does",
    ["build_id"],
    multiprocess_mode="max",
)
BUNDLE_BUILT = Gauge(
    "edgeperso_bundle_built_timestamp_seconds",
    "When the newest build served was built (Unix time)",
    multiprocess_mode="max",
)
RELOAD_ERRORS = Counter("edgeperso_reload_errors", "Bundles refused on reload")
EVENT_LOG_BYTES = Gauge(
    "edgeperso_event_log_bytes", "Bytes in the events directory", multiprocess_mode="max"
)
EVENT_LOG_CAP = Gauge(
    "edgeperso_event_log_cap_bytes", "The events directory's cap", multiprocess_mode="max"
)


def observe_answer(response: RecommendResponse) -> None:
    """What one recommendation answer did."""
    if response.fallback is not None:
        # The reason's code, before its first colon: latency_budget, error, bundle_unavailable.
        FALLBACKS.labels(response.fallback.split(":", 1)[0]).inc()
    if response.personalized:
        PERSONALIZED.inc()
    for fired in response.rules_fired:
        RULES.labels(fired.rule, "fired").inc()
    for held in response.rules_held_back:
        RULES.labels(held.rule, "held_back").inc()
    for experiment, variant in response.variants.items():
        VARIANTS.labels(experiment, variant).inc()
    for slot, choice in response.slots.items():
        ARMS.labels(slot, choice.arm).inc()


def serving(bundle: Bundle | None, replaced: Bundle | None = None) -> None:
    """A worker now serves `bundle` (None: fallback content only), instead of `replaced`."""
    if replaced is not None and (bundle is None or replaced.build_id != bundle.build_id):
        BUNDLE.labels(replaced.build_id).set(0)
    if bundle is None:
        return
    BUNDLE.labels(bundle.build_id).set(1)
    try:
        BUNDLE_BUILT.set(datetime.fromisoformat(bundle.manifest.created_at).timestamp())
    except ValueError:
        pass  # a manifest's created_at is checked at load; nothing to say here if not


def exposition() -> tuple[bytes, str]:
    """The metrics in Prometheus's text format: every worker's, when they share a directory."""
    if MULTIPROCESS:
        registry = CollectorRegistry()
        multiprocess.MultiProcessCollector(registry)  # type: ignore[no-untyped-call]
        return generate_latest(registry), CONTENT_TYPE_LATEST
    return generate_latest(REGISTRY), CONTENT_TYPE_LATEST


Scope = MutableMapping[str, Any]
Message = MutableMapping[str, Any]
ASGIApp = Callable[
    [Scope, Callable[[], Awaitable[Message]], Callable[[Message], Awaitable[None]]], Awaitable[None]
]


class MetricsMiddleware:
    """Counts every HTTP request by route and status, and times it, around the whole app (an
    error answered by an exception handler included)."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(
        self,
        scope: Scope,
        receive: Callable[[], Awaitable[Message]],
        send: Callable[[Message], Awaitable[None]],
    ) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        path = scope.get("path", "")
        route = route_label(path)
        started = time.perf_counter()
        QUEUED_SECONDS.labels(route).observe(queued_ms(scope) / 1000.0)
        status = "500"

        async def counted(message: Message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = str(message["status"])
            await send(message)

        try:
            await self.app(scope, receive, counted)
        finally:
            REQUESTS.labels(route, status).inc()
            ANSWER_SECONDS.labels(route).observe(time.perf_counter() - started)

"""The Starlette application: `POST /v1/recommend`, `POST /v1/events`, `GET /healthz`,
`GET /readyz`.

The bundle is loaded and verified once, in the lifespan, and handed to the routes as state.
A bundle that fails verification is refused with its reason (shown by /readyz and logged);
the service still answers every request, flagged as a fallback. A new bundle written over the
old one is picked up without a restart (`edge.reload`)."""

from __future__ import annotations

import contextlib
import logging
import secrets
import time
from collections.abc import AsyncIterator, Callable
from datetime import UTC, datetime
from typing import get_args

import anyio
import msgspec
import threadpoolctl
from starlette.applications import Starlette
from starlette.datastructures import State
from starlette.exceptions import HTTPException
from starlette.middleware import Middleware
from starlette.requests import ClientDisconnect, Request
from starlette.responses import Response
from starlette.routing import Route

from edge import logs, metrics
from edge.accesslog import AccessLogMiddleware, BufferedLines, note, pseudonym, through_logging
from edge.arrival import queued_ms
from edge.bandits import BanditPolicy
from edge.bundle.remote import StoreFollower
from edge.config import Settings
from edge.context import resolve_context
from edge.decisions import DecisionSigner, FeedbackGate, new_key
from edge.errors import (
    EdgepersoError,
    EventLogFull,
    EventLogUnavailable,
    MalformedJSON,
    PayloadTooLarge,
    RequestError,
    RequestTimeout,
    SinkUnavailable,
    TooManyEvents,
    UnsupportedMediaType,
    ValidationError,
)
from edge.eventlog import EventLog, LogStatus
from edge.exposures import ExposureLog
from edge.feedback import feedback_records
from edge.json_text import check_json_text
from edge.objectstore import ObjectStore
from edge.openapi import PATH as OPENAPI_PATH
from edge.openapi import openapi_json
from edge.quota import EventQuota, client_key
from edge.recommend import Recommender
from edge.reload import initial_recommender, watch_bundle
from edge.schemas import FeedbackAccepted, FeedbackBatch, ItemField, RecommendRequest
from edge.shipping import Shipper, new_node_id, node_id_of
from edge.sink import EventSink, LogFull, SinkError
from edge.turns import Turns

log = logging.getLogger("edgeperso.app")

_request_decoder = msgspec.json.Decoder(RecommendRequest)
_feedback_decoder = msgspec.json.Decoder(FeedbackBatch)
BANDIT_FEEDBACK = ("impression", "click")
_encoder = msgspec.json.Encoder()


def json_response(body: object, status_code: int = 200) -> Response:
    return Response(_encoder.encode(body), status_code=status_code, media_type="application/json")


def decode_error(exc: msgspec.DecodeError) -> RequestError:
    """msgspec says ``Expected `int` >= 1 - at `$.k` ``: keep the message, lift the path."""
    message = str(exc)
    field = "$"
    if " - at `" in message:
        message, _, path = message.rpartition(" - at `")
        field = path.rstrip("`")
    if isinstance(exc, msgspec.ValidationError):
        if message in ("Number out of range", "Integer value out of range"):  # 1e400, 10**30
            message += "; /openapi.json gives each field's limits"
        if message.startswith("Invalid enum value") and field.startswith("$.fields["):
            message += f"; allowed: {', '.join(get_args(ItemField))}"
        return ValidationError(message, field=field)
    if message == "Input data was truncated":
        message = "it ends early (an empty body, one cut short, or a lone \\ud800 escape)"
    return MalformedJSON(
        f"the body is not valid JSON: {message}; send one UTF-8 JSON object", field=field
    )


async def read_body(request: Request, limit: int) -> bytes:
    content_type = request.headers.get("content-type", "")
    if content_type.split(";")[0].strip().lower() != "application/json":
        raise UnsupportedMediaType(
            f"content-type is {content_type or 'missing'!r}; send 'application/json'",
            field="content-type",
        )
    declared = request.headers.get("content-length")
    if declared is not None and declared.isdigit() and int(declared) > limit:
        raise PayloadTooLarge(f"the body has {declared} bytes; the limit is {limit}")
    chunks, size = [], 0
    # The whole body has `body_timeout_seconds` from the end of the headers: a client trickling
    # it would otherwise hold its connection (never evicted while a request is in progress).
    timeout = request.app.state.settings.body_timeout_seconds
    try:
        with anyio.fail_after(max(0.0, timeout - queued_ms(request.scope) / 1000.0)):
            async for chunk in request.stream():
                size += len(chunk)
                if size > limit:
                    raise PayloadTooLarge(f"the body is over the limit of {limit} bytes")
                chunks.append(chunk)
    except TimeoutError:
        raise RequestTimeout(
            f"the body did not arrive within {timeout:g} s of the headers "
            f"(EDGEPERSO_BODY_TIMEOUT_SECONDS; {size} bytes came); send it at once",
            field="body",
        ) from None
    except ClientDisconnect:  # nobody reads the answer: what matters is no traceback logged
        raise RequestError(
            f"the connection closed after {size} bytes of the body; send the whole body",
            field="body",
        ) from None
    body = b"".join(chunks)
    check_json_text(body)  # UTF-8, each key once, no control characters (edge.json_text)
    return body


async def recommend(request: Request) -> Response:
    recommender: Recommender = request.app.state.recommender
    body = await read_body(request, request.app.state.settings.max_body_bytes)
    try:
        parsed = _request_decoder.decode(body)
    except msgspec.DecodeError as exc:
        raise decode_error(exc) from None
    async with request.app.state.turns.turn():  # the wait for a turn counts in queued_ms
        response = recommender.recommend(parsed, request.headers, queued_ms(request.scope))
    response = request.app.state.decisions.stamp(parsed, response)
    if request.app.state.settings.metrics:
        metrics.observe_answer(response)
    salt: bytes = request.app.state.log_salt
    note(
        request.scope,
        user=pseudonym(salt, parsed.user_id),
        session=pseudonym(salt, parsed.session_id),
        fallback=response.fallback.split(":", 1)[0] if response.fallback else None,
        personalized=response.personalized,
        items=len(response.items),
    )
    exposures: ExposureLog | None = request.app.state.exposures
    if exposures is not None:
        exposures.add(parsed, response)
    return json_response(response)


async def events(request: Request) -> Response:
    """Store a feedback batch durably, then say how many events were accepted."""
    sink: EventSink | None = request.app.state.sink
    settings: Settings = request.app.state.settings
    if sink is None:
        raise SinkUnavailable(
            "this service keeps no event log; start it with EDGEPERSO_EVENTS_DIR (serve "
            "--events-dir) set to a directory"
        )
    body = await read_body(request, settings.max_events_body_bytes)
    quota: EventQuota | None = request.app.state.quota
    client = client_key(request.headers, request.client, settings.trust_client_header)
    try:
        batch = _feedback_decoder.decode(body)
    except msgspec.DecodeError as exc:
        if quota is not None:
            quota.charge(client, 1)  # a refused body costs one event
        metrics.FEEDBACK.labels("refused").inc()
        raise decode_error(exc) from None
    if quota is not None:
        quota.charge(client, len(batch.events))
    recommender: Recommender = request.app.state.recommender
    bundle = recommender.bundle
    context = resolve_context(None, request.headers)
    build = bundle.build_id if bundle else None
    records = feedback_records(batch, recommender.feedback_types, context, datetime.now(UTC), build)
    try:
        await anyio.to_thread.run_sync(sink.write, records)
    except SinkError as exc:
        log.error("%s", exc)
        metrics.FEEDBACK.labels("refused").inc(len(records))
        refused = EventLogFull if isinstance(exc, LogFull) else EventLogUnavailable
        raise refused(
            f"{exc}; nothing of this batch was kept: send it again in {exc.retry_after} s",
            retry_after=exc.retry_after,
        ) from None
    metrics.FEEDBACK.labels("accepted").inc(len(records))
    note(request.scope, events=len(records))
    if recommender.bandits is not None:
        learn_from(recommender.bandits, request.app.state.feedback_gate, batch, time.time())
    return json_response(FeedbackAccepted(len(records)))


def learn_from(policy: BanditPolicy, gate: FeedbackGate, batch: FeedbackBatch, now: float) -> int:
    """Impressions and clicks of bandit arms teach this node only when they quote a decision
    the gate admits (`edge.decisions`), under the segment that decision chose for; how many
    did. The others are in the log all the same."""
    learned = 0
    for event in batch.events:
        if event.slot is None or event.variant is None or event.type not in BANDIT_FEEDBACK:
            continue
        decision = gate.admit(event, now)
        clicked = event.type == "click"
        if decision is not None and policy.record(
            event.slot, event.variant, decision.segment, clicked
        ):
            learned += 1
    return learned


def events_status(state: State) -> LogStatus:
    """/readyz's `events`: whether feedback can be stored now, and why not."""
    if state.event_log is not None:
        status: LogStatus = state.event_log.status()
        return status
    if state.sink is not None:
        return LogStatus("ok")
    return LogStatus("disabled", "no events directory is set (EDGEPERSO_EVENTS_DIR)")


async def store_status(state: State) -> dict[str, object]:
    """/readyz's `shipping` and `bundle_store`, for the stores that are set (the first lists the
    events directory: off the loop)."""
    said: dict[str, object] = {}
    if state.shipper is not None:
        said["shipping"] = await anyio.to_thread.run_sync(state.shipper.status)
    if state.follower is not None:
        said["bundle_store"] = state.follower.status()
    return said


async def metrics_text(request: Request) -> Response:
    """GET /metrics: Prometheus's text format, summed over the server's workers."""
    body, content_type = await anyio.to_thread.run_sync(metrics.exposition)
    return Response(body, media_type=content_type)


async def healthz(request: Request) -> Response:
    return json_response({"status": "ok"})


async def readyz(request: Request) -> Response:
    recommender: Recommender = request.app.state.recommender
    if recommender.bundle is None:
        reason = request.app.state.reload_error or recommender.unavailable_reason
        events = events_status(request.app.state)
        refusal: dict[str, object] = {"status": "not ready", "reason": reason, "events": events}
        refusal.update(await store_status(request.app.state))
        return json_response(refusal, status_code=503)
    body: dict[str, object] = {"status": "ready", "bundle": recommender.bundle.build_id}
    body["events"] = events_status(request.app.state)
    body.update(await store_status(request.app.state))
    if request.app.state.reload_error:
        body["reload_error"] = request.app.state.reload_error
    return json_response(body)


async def handle_error(request: Request, exc: Exception) -> Response:
    if isinstance(exc, EdgepersoError):
        response = json_response(exc.to_dict(), exc.status_code)
        if isinstance(exc, TooManyEvents | EventLogUnavailable):
            response.headers["retry-after"] = str(exc.retry_after)
        return response
    if isinstance(exc, HTTPException):
        body = {"error": {"code": "http_error", "message": exc.detail}}
        return json_response(body, exc.status_code)
    log.exception("unhandled error on %s", request.url.path)
    body = {"error": {"code": "internal_error", "message": "the server failed; see its log"}}
    return json_response(body, 500)


def _shipper(settings: Settings) -> Shipper | None:
    """The events directory's shipper, when a store is set. A store the settings cannot reach
    (a bad endpoint, half a key pair) stops the start; a store that is down does not."""
    if settings.events_store is None or settings.events_dir is None:
        return None
    store = ObjectStore(settings.events_store)
    try:
        node = settings.node_id or node_id_of(settings.events_dir)
    except (OSError, ValueError) as exc:  # unusable for now (edge.eventlog says why), or edited
        node = new_node_id()
        log.error(
            "the node id in %s cannot be used (%s); this run ships as %s",
            settings.events_dir,
            exc,
            node,
        )
    return Shipper(settings.events_dir, store, node)


def _follower(settings: Settings) -> StoreFollower | None:
    """The bundle store's follower, when one is set: it keeps the publish root EDGEPERSO_BUNDLE
    in step with the store, whose reload watcher swaps the bundle in."""
    if settings.bundle_store is None or settings.bundle_dir is None:
        return None
    return StoreFollower(
        settings.bundle_store, settings.bundle_dir, settings.public_key, settings.allow_unsigned
    )


def one_blas_thread() -> None:
    """One BLAS thread in a serving process: a request's products are small, the server scales
    by processes, and OpenBLAS's own threads spinning against a busy neighbour made a
    100,000-row matrix · vector product five times slower (8 ms against 1.6 ms) on 2 cores."""
    threadpoolctl.threadpool_limits(1, user_api="blas")


def create_app(
    settings: Settings | None = None,
    sink: EventSink | None = None,
    exposure_sink: EventSink | None = None,
) -> Starlette:
    """The app. Feedback goes to `sink`, else to segment files in `settings.events_dir`;
    exposures to `exposure_sink`, else to its `exposures/` folder (kept apart, so the feedback
    log stays the next build's input as it is)."""
    settings = settings or Settings.from_env()
    if settings.log_format == "json":
        logs.configure(settings.log_level)
    # The access log: JSON lines buffered and written a few times a second (edge.accesslog), or
    # through `logging` when the log is plain text; none below level info.
    access_lines: Callable[[dict[str, object]], None] | None = None
    if settings.access_log and settings.log_level in ("debug", "info"):
        access_lines = BufferedLines() if settings.log_format == "json" else through_logging

    @contextlib.asynccontextmanager
    async def lifespan(app: Starlette) -> AsyncIterator[None]:
        one_blas_thread()
        app.state.turns = Turns()
        app.state.recommender = initial_recommender(settings)
        metrics.serving(app.state.recommender.bundle)
        app.state.reload_error = None
        app.state.sink, exposures_to = sink, exposure_sink
        app.state.event_log = None
        if settings.events_dir:
            # A directory that cannot be used now does not stop the server: the log says why
            # (/v1/events, /readyz) and is tried again every few seconds (edge.eventlog).
            event_log = app.state.event_log = EventLog.from_settings(settings)
            await anyio.to_thread.run_sync(event_log.open)
            app.state.sink = app.state.sink or event_log.feedback
            exposures_to = exposures_to or event_log.exposures
        app.state.exposures = ExposureLog(exposures_to) if exposures_to else None
        app.state.shipper = shipper = _shipper(settings)
        app.state.follower = follower = _follower(settings)
        try:
            async with anyio.create_task_group() as tasks:
                if settings.reload_seconds > 0:
                    tasks.start_soon(watch_bundle, app, settings)
                if follower is not None:
                    tasks.start_soon(follower.run, settings.bundle_poll_seconds)
                if isinstance(access_lines, BufferedLines):
                    tasks.start_soon(access_lines.run)
                if app.state.exposures is not None:
                    tasks.start_soon(app.state.exposures.run)
                if app.state.event_log is not None:
                    tasks.start_soon(app.state.event_log.run)
                    if shipper is not None:
                        tasks.start_soon(shipper.run, app.state.event_log.close_due_segments)
                yield
                tasks.cancel_scope.cancel()
        finally:
            # Server shutdown (SIGTERM included) comes here after the last request is answered.
            if app.state.exposures is not None:
                app.state.exposures.close()
            if app.state.sink is not None:
                app.state.sink.close()
            if isinstance(access_lines, BufferedLines):
                access_lines.flush()
            if shipper is not None:  # the segments just closed, and any left from before
                with anyio.CancelScope(shield=True):
                    await anyio.to_thread.run_sync(shipper.drain, settings.ship_grace_seconds)

    app = Starlette(
        routes=[
            Route("/v1/recommend", recommend, methods=["POST"]),
            Route("/v1/events", events, methods=["POST"]),
            Route("/healthz", healthz, methods=["GET"]),
            Route("/readyz", readyz, methods=["GET"]),
            Route(OPENAPI_PATH, openapi_json, methods=["GET"]),  # built from edge.schemas
            *([Route("/metrics", metrics_text, methods=["GET"])] if settings.metrics else []),
        ],
        exception_handlers={
            Exception: handle_error,
            HTTPException: handle_error,
            EdgepersoError: handle_error,
        },
        lifespan=lifespan,
        middleware=[
            *([Middleware(metrics.MetricsMiddleware)] if settings.metrics else []),
            *([Middleware(AccessLogMiddleware, write=access_lines)] if access_lines else []),
        ],
    )
    app.state.settings = settings
    app.state.log_salt = settings.log_salt or secrets.token_bytes(32)
    app.state.shipper = app.state.follower = None  # set in the lifespan when stores are set
    # Decision ids (edge.decisions); without a key set, one for this process only.
    signer = DecisionSigner(settings.decision_key or new_key(), settings.decision_ttl_seconds)
    app.state.decisions, app.state.feedback_gate = signer, FeedbackGate(signer)
    rate, burst = settings.events_per_second, settings.events_burst
    app.state.quota = EventQuota(rate, burst) if rate > 0 else None
    return app

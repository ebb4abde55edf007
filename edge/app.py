"""The Starlette application: `POST /v1/recommend`, `POST /v1/events`, `GET /healthz`,
`GET /readyz`.

The bundle is loaded and verified once, in the lifespan, and handed to the routes as state.
A bundle that fails verification is refused with its reason (shown by /readyz and logged);
the service still answers every request, flagged as a fallback. A new bundle written over the
old one is picked up without a restart (`edge.reload`)."""

from __future__ import annotations

import contextlib
import logging
from collections.abc import AsyncIterator
from datetime import UTC, datetime
from pathlib import Path

import anyio
import msgspec
import threadpoolctl
from starlette.applications import Starlette
from starlette.exceptions import HTTPException
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from edge.arrival import queued_ms
from edge.bandits import BanditPolicy
from edge.bundle import Bundle, load_fallback_only
from edge.config import Settings
from edge.context import resolve_context
from edge.errors import (
    BundleError,
    EdgepersoError,
    MalformedJSON,
    PayloadTooLarge,
    RequestError,
    SinkUnavailable,
    UnsupportedMediaType,
    ValidationError,
)
from edge.exposures import ExposureLog
from edge.feedback import feedback_records
from edge.recommend import Recommender
from edge.reload import load_recommender, watch_bundle
from edge.schemas import FeedbackAccepted, FeedbackBatch, RecommendRequest
from edge.sink import EventSink, JsonlSegmentSink, SinkError
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
        return ValidationError(message, field=field)
    return MalformedJSON(f"the body is not valid JSON: {message}", field=field)


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
    async for chunk in request.stream():
        size += len(chunk)
        if size > limit:
            raise PayloadTooLarge(f"the body is over the limit of {limit} bytes")
        chunks.append(chunk)
    return b"".join(chunks)


async def recommend(request: Request) -> Response:
    recommender: Recommender = request.app.state.recommender
    body = await read_body(request, request.app.state.settings.max_body_bytes)
    try:
        parsed = _request_decoder.decode(body)
    except msgspec.DecodeError as exc:
        raise decode_error(exc) from None
    async with request.app.state.turns.turn():  # the wait for a turn counts in queued_ms
        response = recommender.recommend(parsed, request.headers, queued_ms(request.scope))
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
    try:
        batch = _feedback_decoder.decode(body)
    except msgspec.DecodeError as exc:
        raise decode_error(exc) from None
    recommender: Recommender = request.app.state.recommender
    bundle = recommender.bundle
    context = resolve_context(None, request.headers)
    build = bundle.build_id if bundle else None
    records = feedback_records(batch, recommender.feedback_types, context, datetime.now(UTC), build)
    try:
        await anyio.to_thread.run_sync(sink.write, records)
    except SinkError as exc:
        log.error("%s", exc)
        raise SinkUnavailable(f"{exc}; nothing of this batch was kept: send it again") from None
    if recommender.bandits is not None and bundle is not None:
        learn_from(recommender.bandits, bundle, batch)
    return json_response(FeedbackAccepted(len(records)))


def learn_from(policy: BanditPolicy, bundle: Bundle, batch: FeedbackBatch) -> None:
    """Impressions and clicks of bandit arms (`slot` and `variant` set) update this node."""
    for event in batch.events:
        if event.slot is None or event.variant is None or event.type not in BANDIT_FEEDBACK:
            continue
        profile = bundle.profiles.get(event.user_id) if event.user_id else None
        segment = profile.segment if profile is not None else None
        policy.record(event.slot, event.variant, segment, clicked=event.type == "click")


async def healthz(request: Request) -> Response:
    return json_response({"status": "ok"})


async def readyz(request: Request) -> Response:
    recommender: Recommender = request.app.state.recommender
    if recommender.bundle is None:
        return json_response(
            {"status": "not ready", "reason": recommender.unavailable_reason}, status_code=503
        )
    body = {"status": "ready", "bundle": recommender.bundle.build_id}
    if request.app.state.reload_error:
        body["reload_error"] = request.app.state.reload_error
    return json_response(body)


async def handle_error(request: Request, exc: Exception) -> Response:
    if isinstance(exc, EdgepersoError):
        return json_response(exc.to_dict(), exc.status_code)
    if isinstance(exc, HTTPException):
        body = {"error": {"code": "http_error", "message": exc.detail}}
        return json_response(body, exc.status_code)
    log.exception("unhandled error on %s", request.url.path)
    body = {"error": {"code": "internal_error", "message": "the server failed; see its log"}}
    return json_response(body, 500)


def initial_recommender(settings: Settings) -> Recommender:
    """The bundle at start-up; when it is refused, a recommender that answers with fallbacks."""
    try:
        return load_recommender(settings)
    except (BundleError, OSError) as exc:
        reason = f"bundle refused: {exc}" if settings.bundle_dir else str(exc)
        log.error("%s", reason)
        content = load_fallback_only(settings.bundle_dir) if settings.bundle_dir else None
        return Recommender(None, settings.budget_ms, reason, content)


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

    @contextlib.asynccontextmanager
    async def lifespan(app: Starlette) -> AsyncIterator[None]:
        one_blas_thread()
        app.state.turns = Turns()
        app.state.recommender = initial_recommender(settings)
        app.state.reload_error = None
        app.state.sink, exposures_to = sink, exposure_sink
        if settings.events_dir:
            root = Path(settings.events_dir)
            app.state.sink = app.state.sink or JsonlSegmentSink(root)
            exposures_to = exposures_to or JsonlSegmentSink(root / "exposures")
        app.state.exposures = ExposureLog(exposures_to) if exposures_to else None
        try:
            async with anyio.create_task_group() as tasks:
                if settings.reload_seconds > 0:
                    tasks.start_soon(watch_bundle, app, settings)
                if app.state.exposures is not None:
                    tasks.start_soon(app.state.exposures.run)
                yield
                tasks.cancel_scope.cancel()
        finally:
            # Server shutdown (SIGTERM included) comes here after the last request is answered.
            if app.state.exposures is not None:
                app.state.exposures.close()
            if app.state.sink is not None:
                app.state.sink.close()

    app = Starlette(
        routes=[
            Route("/v1/recommend", recommend, methods=["POST"]),
            Route("/v1/events", events, methods=["POST"]),
            Route("/healthz", healthz, methods=["GET"]),
            Route("/readyz", readyz, methods=["GET"]),
        ],
        exception_handlers={
            Exception: handle_error,
            HTTPException: handle_error,
            EdgepersoError: handle_error,
        },
        lifespan=lifespan,
    )
    app.state.settings = settings
    return app

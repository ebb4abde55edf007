"""`GET /openapi.json`: the HTTP API as an OpenAPI 3.1 document, generated from the msgspec types
the app decodes and encodes with (`msgspec.json.schema_components`), so it cannot drift from
what is validated. Built once, on the first request for it.

The document also says what the types alone cannot: every string of a request holds no
control character (`edge.json_text`), an event's `ts` falls in the log's window
(`edge.feedback`), and which error statuses each route answers, all with one error shape.
`tests/edge/test_openapi.py` checks the routes against the app's own, and the fuzz tests
check every answer against this document."""

from __future__ import annotations

import copy
import functools
from importlib.metadata import PackageNotFoundError, version
from typing import Annotated, Any, Literal

import msgspec
from msgspec import Meta, Struct
from starlette.requests import Request
from starlette.responses import Response

from edge.bundle.remote import FollowStatus
from edge.eventlog import LogStatus
from edge.feedback import TS_WINDOW
from edge.json_text import ALLOWED_IN_WORDS, ALLOWED_STRING_PATTERN
from edge.schemas import FeedbackAccepted, FeedbackBatch, RecommendRequest, RecommendResponse
from edge.shipping import ShippingStatus

PATH = "/openapi.json"
REF = "#/components/schemas/{name}"


# ---------------------------------------------------------------- answers not in edge.schemas
# Their descriptions are the document's: msgspec carries docstrings and `Meta` descriptions.
class ErrorDetail(Struct, frozen=True):
    """What was refused, and why."""

    code: Annotated[
        str, Meta(description="Machine-readable: invalid_request, malformed_json, and so on.")
    ]
    message: Annotated[
        str, Meta(description="What was received, what is allowed, and what to do next.")
    ]
    field: (
        Annotated[
            str,
            Meta(description="Where: a JSON path into the body ($.events[0].ts), or a header."),
        ]
        | None
    ) = None


class ErrorResponse(Struct, frozen=True):
    """The body of every refusal, 404 and 405 included."""

    error: ErrorDetail


class Health(Struct, frozen=True):
    """The process answers."""

    status: Literal["ok"]


class Readiness(Struct, frozen=True):
    """Whether a verified bundle serves, and whether the event log can store a batch."""

    status: Literal["ready", "not ready"]
    bundle: str | None = None  # the bundle's build id, when one is loaded
    reason: str | None = None  # why not ready
    reload_error: str | None = None  # why the newest bundle was refused (the old one serves)
    events: LogStatus | None = None  # whether POST /v1/events can store a batch now
    shipping: ShippingStatus | None = None  # with an object store: what waits to be shipped
    bundle_store: FollowStatus | None = None  # with a bundle store: what it points to


# ---------------------------------------------------------------- the statuses a route answers
ERRORS = {
    400: "The body is not UTF-8 JSON, or holds a key twice (`malformed_json`).",
    408: "The body did not arrive in time (`request_timeout`).",
    413: "The body, or the batch, is over its limit (`payload_too_large`).",
    415: "The content-type is not application/json (`unsupported_media_type`).",
    422: "A field is missing, of the wrong type, out of its range, or holds a control "
    "character; `field` says which (`invalid_request`).",
    429: "This client sent more events than its quota; retry after `Retry-After` seconds "
    "(`too_many_events`).",
    503: "The event log cannot store a batch now (none is configured, or it is full or failing); "
    "nothing was kept: retry after `Retry-After` seconds when it is given.",
}
BODY_ERRORS = (400, 408, 413, 415, 422)
RETRY_AFTER = {
    "Retry-After": {
        "description": "Seconds to wait before sending the batch again.",
        "schema": {"type": "integer", "minimum": 0},
    }
}


def _json(schema: dict[str, Any]) -> dict[str, Any]:
    return {"application/json": {"schema": schema}}


def _errors(statuses: tuple[int, ...], error: dict[str, Any]) -> dict[str, Any]:
    answers: dict[str, Any] = {}
    for status in statuses:
        answers[str(status)] = {"description": ERRORS[status], "content": _json(error)}
        if status in (429, 503):
            answers[str(status)]["headers"] = RETRY_AFTER
    return answers


def _reachable(roots: list[dict[str, Any]], components: dict[str, Any]) -> set[str]:
    """Names of the components the `roots` refer to, directly or not."""
    names: set[str] = set()
    stack: list[object] = list(roots)
    while stack:
        node = stack.pop()
        if isinstance(node, dict):
            ref = node.get("$ref")
            if isinstance(ref, str):
                name = ref.rsplit("/", 1)[-1]
                if name not in names:
                    names.add(name)
                    stack.append(components[name])
            stack.extend(node.values())
        elif isinstance(node, list):
            stack.extend(node)
    return names


def _forbid_control_characters(node: object) -> None:
    """Give every plain string of a request schema the pattern `edge.json_text` enforces."""
    if isinstance(node, dict):
        if node.get("type") == "string" and "format" not in node and "enum" not in node:
            node["pattern"] = ALLOWED_STRING_PATTERN
        for value in node.values():
            _forbid_control_characters(value)
    elif isinstance(node, list):
        for value in node:
            _forbid_control_characters(value)


def build_document() -> dict[str, Any]:
    """The document, as a JSON-ready dict."""
    types = [
        RecommendRequest,
        RecommendResponse,
        FeedbackBatch,
        FeedbackAccepted,
        ErrorResponse,
        Health,
        Readiness,
    ]
    refs, components = msgspec.json.schema_components(types, ref_template=REF)
    components = copy.deepcopy(components)
    recommend, answer, batch, accepted, error, health, readiness = refs
    for name in _reachable([recommend, batch], components):
        _forbid_control_characters(components[name])
    ts = components["FeedbackEvent"]["properties"]["ts"]
    ts["description"] = (
        f"When the event happened, RFC 3339 with its offset, {TS_WINDOW}; left out: when the "
        "batch arrives."
    )
    strings = f"Every string may hold {ALLOWED_IN_WORDS}."
    paths = {
        "/v1/recommend": {
            "post": {
                "operationId": "recommend",
                "summary": "Recommendations, offers and variants for one visitor.",
                "description": "Answered locally from the bundle; when anything is late or "
                "wrong, popular items flagged as a fallback. " + strings,
                "requestBody": {"required": True, "content": _json(recommend)},
                "responses": {
                    "200": {"description": "The answer.", "content": _json(answer)},
                    **_errors(BODY_ERRORS, error),
                },
            }
        },
        "/v1/events": {
            "post": {
                "operationId": "events",
                "summary": "Feedback: impressions, clicks and shop events, stored durably.",
                "description": "A batch is stored whole or refused whole; 200 comes after "
                "it is on disk. " + strings,
                "requestBody": {"required": True, "content": _json(batch)},
                "responses": {
                    "200": {"description": "Stored.", "content": _json(accepted)},
                    **_errors((*BODY_ERRORS, 429, 503), error),
                },
            }
        },
        "/healthz": {
            "get": {
                "operationId": "healthz",
                "summary": "The process answers.",
                "responses": {"200": {"description": "Alive.", "content": _json(health)}},
            }
        },
        "/readyz": {
            "get": {
                "operationId": "readyz",
                "summary": "Whether a verified bundle is loaded, and the event log's state.",
                "responses": {
                    "200": {"description": "A bundle serves.", "content": _json(readiness)},
                    "503": {
                        "description": "No bundle serves (answers are fallbacks); `reason` "
                        "says why.",
                        "content": _json(readiness),
                    },
                },
            }
        },
        "/metrics": {
            "get": {
                "operationId": "metrics",
                "summary": "Prometheus metrics, summed over the server's workers.",
                "responses": {
                    "200": {
                        "description": "Prometheus's text exposition format.",
                        "content": {"text/plain": {"schema": {"type": "string"}}},
                    }
                },
            }
        },
        PATH: {
            "get": {
                "operationId": "openapi",
                "summary": "This document.",
                "responses": {
                    "200": {"description": "OpenAPI 3.1.", "content": _json({"type": "object"})}
                },
            }
        },
    }
    return {
        "openapi": "3.1.0",
        "info": {
            "title": "edgeperso edge",
            "version": _package_version(),
            "description": "Personalization answered at the edge from a verified bundle. "
            'Every refusal is JSON: `{"error": {"code", "message", "field"?}}`.',
        },
        "paths": paths,
        "components": {"schemas": components},
    }


def _package_version() -> str:
    try:
        return version("edgeperso")
    except PackageNotFoundError:  # run from a source tree that was never installed
        return "0+unknown"


@functools.cache
def document_bytes() -> bytes:
    return msgspec.json.encode(build_document())


async def openapi_json(request: Request) -> Response:
    return Response(document_bytes(), media_type="application/json")

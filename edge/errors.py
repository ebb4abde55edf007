"""The edge's error tree. Every error carries its HTTP status and a message that says what was
received, what is allowed, and what to do next; one handler in `app.py` maps them to JSON."""

from __future__ import annotations


class EdgepersoError(Exception):
    """Base of every error this package raises on purpose."""

    status_code = 500
    code = "internal_error"

    def __init__(self, message: str, *, field: str | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.field = field

    def to_dict(self) -> dict[str, object]:
        body: dict[str, object] = {"code": self.code, "message": self.message}
        if self.field is not None:
            body["field"] = self.field
        return {"error": body}


class RequestError(EdgepersoError):
    """The client sent something we cannot accept (4xx)."""

    status_code = 400
    code = "bad_request"


class MalformedJSON(RequestError):
    code = "malformed_json"


class ValidationError(RequestError):
    status_code = 422
    code = "invalid_request"


class PayloadTooLarge(RequestError):
    status_code = 413
    code = "payload_too_large"


class UnsupportedMediaType(RequestError):
    status_code = 415
    code = "unsupported_media_type"


class RequestTimeout(RequestError):
    """The request's headers or body came too slowly (`edge.connections`, `app.read_body`)."""

    status_code = 408
    code = "request_timeout"


class BundleError(EdgepersoError):
    """A bundle that cannot be trusted or read: wrong checksum, missing file, unknown version."""

    status_code = 503
    code = "bundle_unavailable"

    def __init__(self, message: str, *, file: str | None = None) -> None:
        super().__init__(message)
        self.file = file


class SinkUnavailable(EdgepersoError):
    """Feedback could not be stored: no sink is configured, or it failed. Nothing of the batch
    was kept, so the client may send it again."""

    status_code = 503
    code = "event_sink_unavailable"


class BudgetExceeded(EdgepersoError):
    """The per-request latency budget ran out; the caller answers with fallback content."""

    code = "latency_budget"


class TooManyEvents(RequestError):
    """A client sent more events than its quota allows; `retry_after` says when it may again."""

    status_code = 429
    code = "too_many_events"

    def __init__(self, message: str, *, retry_after: int) -> None:
        super().__init__(message)
        self.retry_after = retry_after


class EventLogUnavailable(SinkUnavailable):
    """The event log cannot take a batch now (failing or unreachable directory, a write that
    failed); nothing of the batch was kept. `retry_after` says when to try again."""

    def __init__(self, message: str, *, retry_after: int) -> None:
        super().__init__(message)
        self.retry_after = retry_after


class EventLogFull(EventLogUnavailable):
    """The event log reached its size cap, or its disk its free-space reserve or its end."""

    code = "event_log_full"

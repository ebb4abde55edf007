"""Hostile requests get a JSON 4xx that names the problem, never a 5xx, and the server lives on.

Three layers: the known attacks one by one (several were 500s, or stored as they came);
Hypothesis through the app in process, with requests shaped by the schemas and bytes nobody
should send; Schemathesis, from the app's own /openapi.json, against a real server on
127.0.0.1, whose checks also hold every answer to the document. The big runs are `slow`; the
counts they reach are asserted, so a run that quietly generated nothing would fail."""

from __future__ import annotations

import json
import logging
import os
import socket
import subprocess
import time
from collections import Counter
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

import msgspec
import pytest
import requests
import schemathesis
from hypothesis import HealthCheck, Phase, given, seed, settings
from hypothesis import strategies as st
from schemathesis import GenerationMode
from schemathesis.checks import not_a_server_error
from schemathesis.specs.openapi.checks import (
    content_type_conformance,
    negative_data_rejection,
    response_headers_conformance,
    response_schema_conformance,
    status_code_conformance,
)
from starlette.testclient import TestClient

from edge.app import create_app
from edge.config import Settings
from edge.openapi import build_document
from edge.schemas import FEEDBACK_TYPES, FeedbackAccepted, RecommendResponse
from tests.conftest import SEED
from tests.edge import small_bundle as shop
from tests.servers import answers, edge_app_command, free_port, wait_for

JSON = {"content-type": "application/json"}
ERROR_KEYS = {"code", "message", "field"}


@pytest.fixture(scope="module")
def client(small_bundle_dir, tmp_path_factory) -> Iterator[TestClient]:
    """The app with a real event log; quotas off, so generated batches reach the log's checks."""
    settings = Settings(
        bundle_dir=str(small_bundle_dir),
        events_dir=str(tmp_path_factory.mktemp("fuzz-events")),
        reload_seconds=0,
        events_per_second=0,
    )
    with TestClient(create_app(settings), raise_server_exceptions=False) as client:
        yield client


def check_answer(response: Any, path: str) -> int:
    """The invariant: no 5xx; JSON always; a refusal is `{"error": {code, message, field?}}`
    with a message, and a field for what the body got wrong; an answer has its documented type.
    Returns the status."""
    status: int = response.status_code
    assert status < 500, (status, response.text)
    content_type = response.headers["content-type"]  # Schemathesis gives each header a list
    content_type = content_type[0] if isinstance(content_type, list) else content_type
    assert content_type.startswith("application/json"), response.headers
    body = json.loads(response.content)
    if status >= 400:
        assert set(body) == {"error"} and set(body["error"]) <= ERROR_KEYS, body
        error = body["error"]
        assert isinstance(error["code"], str) and error["code"], body
        assert isinstance(error["message"], str) and len(error["message"]) > 10, body
        if status in (400, 422):
            assert isinstance(error.get("field"), str) and error["field"], body
    elif path == "/v1/recommend":
        msgspec.convert(body, RecommendResponse)
    else:
        msgspec.convert(body, FeedbackAccepted)
    return status


def tracebacks(caplog: pytest.LogCaptureFixture) -> list[logging.LogRecord]:
    return [r for r in caplog.records if r.exc_info is not None]


# ---------------------------------------------------------------- the known attacks, one by one
def event(**fields: object) -> dict[str, object]:
    return {"events": [{"type": "click", "item_id": "i01", "session_id": "s", **fields}]}


def raw_event(value: bytes) -> bytes:
    """A batch whose item_id is `value`, as raw bytes (what no JSON encoder would write)."""
    return b'{"events":[{"type":"click","session_id":"s","item_id":' + value + b"}]}"


DEEP = 10_000
KNOWN = [
    # (name, path, body, headers, status, field, words the message must hold)
    ("invalid UTF-8 in a string", "/v1/recommend", b'{"user_id":"\xff"}', {}, 400, "$", "UTF-8"),
    ("invalid UTF-8 in a batch", "/v1/events", raw_event(b'"\xff"'), {}, 400, "$", "UTF-8"),
    ("UTF-8 of a surrogate", "/v1/recommend", b'{"user_id":"\xed\xa0\x80"}', {}, 400, "$", "UTF-8"),
    (
        "ts that overflows turning into UTC",
        "/v1/events",
        event(ts="9999-12-31T23:59:59-14:00"),
        {},
        422,
        "$.events[0].ts",
        "from 2000-01-01T00:00:00Z to one day past the server's clock",
    ),
    (
        "ts before the window",
        "/v1/events",
        event(ts="1999-12-31T23:59:59Z"),
        {},
        422,
        "$.events[0].ts",
        "outside the window",
    ),
    (
        "ts underflowing",
        "/v1/events",
        event(ts="0001-01-01T00:00:00+14:00"),
        {},
        422,
        "$.events[0].ts",
        "outside the window",
    ),
    ("1e400", "/v1/recommend", b'{"k":1e400}', {}, 422, "$.k", "out of range"),
    (
        "2**70 in an int field",
        "/v1/events",
        event(qty=2**70),
        {},
        422,
        "$.events[0].qty",
        "<= 100000",
    ),
    (
        "a 5,000-digit integer",
        "/v1/recommend",
        b'{"k":' + b"9" * 5000 + b"}",
        {},
        422,
        "$.k",
        "out of range",
    ),
    (
        "1e400 as a price",
        "/v1/events",
        json.dumps(event(price=1)).encode().replace(b'"price": 1', b'"price": 1e400'),
        {},
        422,
        "$.events[0].price",
        "out of range",
    ),
    (
        "10,000 nested arrays",
        "/v1/recommend",
        b'{"exclude":' + b"[" * DEEP + b"]" * DEEP + b"}",
        {},
        422,
        "$.exclude[0]",
        "Expected `str`",
    ),
    (
        "10,000 nested objects",
        "/v1/events",
        raw_event(b'{"a":' * DEEP + b"1" + b"}" * DEEP),
        {},
        422,
        "$.events[0].item_id",
        "Expected `str`",
    ),
    (
        "10,000 nested at the top",
        "/v1/recommend",
        b"[" * DEEP + b"]" * DEEP,
        {},
        422,
        "$",
        "Expected `object`",
    ),
    ("NUL in an id", "/v1/recommend", {"user_id": "a\x00b"}, {}, 422, "$.user_id", "U+0000"),
    (
        "NUL in a logged id",
        "/v1/events",
        event(item_id="i\x00"),
        {},
        422,
        "$.events[0].item_id",
        "control characters",
    ),
    (
        "BEL in a label",
        "/v1/recommend",
        {"context": {"device": "a\x07"}},
        {},
        422,
        "$.context.device",
        "U+0007",
    ),
    ("DEL in a label", "/v1/events", event(slot="a\x7f"), {}, 422, "$.events[0].slot", "U+007F"),
    (
        "C1 control in an id",
        "/v1/events",
        event(user_id="u\x85"),
        {},
        422,
        "$.events[0].user_id",
        "U+0085",
    ),
    (
        "line separator in an id",
        "/v1/events",
        event(event_id="e\u2028"),
        {},
        422,
        "$.events[0].event_id",
        "U+2028",
    ),
    ("newline in a slot", "/v1/recommend", {"slots": ["a\nb"]}, {}, 422, "$.slots[0]", "U+000A"),
    ("control character in a key", "/v1/recommend", {"\x01": 1}, {}, 422, "$", "a key"),
    ("lone high surrogate", "/v1/recommend", b'{"user_id":"\\ud800"}', {}, 400, "$", "ud800"),
    ("lone low surrogate", "/v1/events", raw_event(b'"\\udc00"'), {}, 400, "$", "surrogate"),
    ("duplicate key", "/v1/recommend", b'{"k":1,"k":2}', {}, 400, "$", "'k' appears twice"),
    ("duplicate key, escaped", "/v1/recommend", b'{"k":1,"\\u006b":2}', {}, 400, "$", "twice"),
    (
        "duplicate key in an event",
        "/v1/events",
        b'{"events":[{"type":"click","item_id":"a","item_id":"b","session_id":"s"}]}',
        {},
        400,
        "$.events[0]",
        "'item_id' appears twice",
    ),
    ("an array at the top", "/v1/events", b"[1,2]", {}, 422, "$", "Expected `object`"),
    ("a string at the top", "/v1/recommend", b'"hi"', {}, 422, "$", "Expected `object`"),
    ("an empty body", "/v1/recommend", b"", {}, 400, "$", "ends early"),
    ("an empty batch body", "/v1/events", b"", {}, 400, "$", "ends early"),
    ("whitespace only", "/v1/recommend", b" \n\t ", {}, 400, "$", "ends early"),
    ("a byte-order mark", "/v1/recommend", b"\xef\xbb\xbf{}", {}, 400, "$", "malformed"),
    ("a long id", "/v1/recommend", {"user_id": "u" * 50_000}, {}, 422, "$.user_id", "<= 128"),
    ("a long label", "/v1/events", event(type="t" * 500), {}, 422, "$.events[0].type", "<= 64"),
    ("trailing garbage", "/v1/recommend", b"{} {}", {}, 400, "$", "trailing"),
    (
        "NaN",
        "/v1/events",
        b'{"events":[{"type":"click","item_id":"a","session_id":"s","price":NaN}]}',
        {},
        400,
        "$",
        "malformed",
    ),
    (
        "text/plain",
        "/v1/recommend",
        {},
        {"content-type": "text/plain"},
        415,
        "content-type",
        "application/json",
    ),
    (
        "no content-type",
        "/v1/events",
        event(),
        {"content-type": ""},
        415,
        "content-type",
        "application/json",
    ),
    (
        "a JSON-like media type",
        "/v1/recommend",
        {},
        {"content-type": "application/json-seq"},
        415,
        "content-type",
        "application/json",
    ),
    (
        "a content-length past the limit",
        "/v1/recommend",
        {},
        {"content-length": "10" * 12},
        413,
        None,
        "limit",
    ),
]


@pytest.mark.parametrize(
    ("path", "body", "headers", "status", "field", "needle"),
    [pytest.param(*case[1:], id=case[0]) for case in KNOWN],
)
def test_a_known_attack_gets_a_json_4xx_naming_the_problem_and_logs_no_traceback(
    client, caplog, path, body, headers, status, field, needle
):
    data = body if isinstance(body, bytes) else json.dumps(body).encode()
    response = client.post(path, content=data, headers={**JSON, **headers})
    assert response.status_code == status, response.text
    check_answer(response, path)
    error = response.json()["error"]
    assert error.get("field") == field and needle in error["message"], error
    assert not tracebacks(caplog)


@pytest.mark.parametrize(
    ("name", "value"),
    [
        ("cf-ipcountry", "Ü".encode("latin-1")),
        ("cf-ipcountry", "日本".encode()),
        ("x-edgeperso-country", b"de\tx" * 100),
        ("x-edgeperso-device", b"\x7f\x85"),
        ("user-agent", b"\xff\xfe" * 2000),
        ("user-agent", b"Mozilla/5.0 (iPhone) " * 400),
        ("x-edgeperso-timezone", b"../../etc/passwd"),
        ("cf-timezone", b"Europe/\x7f"),
        ("content-type", b"application/json; charset=\xff"),
    ],
)
def test_odd_context_headers_are_served_and_no_odd_label_reaches_the_log(
    client, caplog, small_bundle_dir, name, value
):
    """A header the CDN should have set is a hint: one that no body could have sent is served
    as unknown, never a 5xx, and never logged as a device or country."""
    headers = [(b"content-type", b"application/json"), (name.encode(), value)]
    if name == "content-type":
        headers = headers[1:]
    answer = client.post("/v1/recommend", content=b"{}", headers=headers)
    assert check_answer(answer, "/v1/recommend") == 200
    stored = client.post("/v1/events", content=json.dumps(event()).encode(), headers=headers)
    assert check_answer(stored, "/v1/events") == 200
    assert not tracebacks(caplog)


def test_a_header_label_no_body_could_send_is_logged_unknown(small_bundle_dir, tmp_path):
    events_dir = tmp_path / "events"
    settings = Settings(bundle_dir=str(small_bundle_dir), events_dir=str(events_dir))
    with TestClient(create_app(settings)) as client:
        headers = [
            (b"content-type", b"application/json"),
            (b"cf-ipcountry", b"d\x7fe"),
            (b"x-edgeperso-device", b"m" * 65),
        ]
        assert client.post("/v1/events", content=json.dumps(event()).encode(), headers=headers)
    [segment] = events_dir.glob("*.jsonl")
    record = json.loads(segment.read_text())
    assert (record["country"], record["device"]) == ("", "")


@pytest.mark.parametrize("zone", [b"Europe", b"a" * 300], ids=["a directory", "too long"])
def test_a_timezone_header_naming_a_directory_or_too_long_is_ignored(client, zone):
    headers = [(b"content-type", b"application/json"), (b"x-edgeperso-timezone", zone)]
    response = client.post("/v1/recommend", content=b"{}", headers=headers)
    assert check_answer(response, "/v1/recommend") == 200


def test_a_client_that_leaves_mid_body_costs_no_traceback(client, caplog):
    """The ASGI app itself, as a server hands it a body cut by the client's leaving."""
    app = client.app
    messages = iter(
        [
            {"type": "http.request", "body": b'{"k":', "more_body": True},
            {"type": "http.disconnect"},
        ]
    )
    sent: list[dict[str, Any]] = []

    async def receive() -> dict[str, Any]:
        return next(messages)

    async def send(message: dict[str, Any]) -> None:
        sent.append(message)

    scope = {
        "type": "http",
        "asgi": {"version": "3.0"},
        "http_version": "1.1",
        "method": "POST",
        "scheme": "http",
        "path": "/v1/recommend",
        "raw_path": b"/v1/recommend",
        "query_string": b"",
        "root_path": "",
        "headers": [(b"content-type", b"application/json"), (b"content-length", b"20")],
        "client": ("127.0.0.1", 5000),
        "server": ("127.0.0.1", 80),
        "state": {},
    }
    client.portal.call(app, scope, receive, send)
    [start] = [m for m in sent if m["type"] == "http.response.start"]
    assert 400 <= start["status"] < 500
    assert not tracebacks(caplog)


# ---------------------------------------------------------------- Hypothesis, in process
DOCUMENT = build_document()
COMPONENTS = DOCUMENT["components"]["schemas"]
KNOWN_TYPES = sorted(set(shop.EVENT_WEIGHTS) | set(FEEDBACK_TYPES))
# Letters a page might send, ASCII or not, none of them forbidden (drawn from a list: cheaper
# for Hypothesis than a character class, and these runs draw a lot).
SAFE_TEXT = st.sampled_from(list("abcdeiuxyzABXZ0129 -_./:@+=éüßøÅłЖя日本語€😀\u200b\ufeff"))
NOW = datetime.now(UTC)
# Field names whose schema-shaped values rarely mean anything to the bundle: bias them to the
# values it knows, so generated requests reach ranking, rules and the log, not just refusals.
HINTS: dict[str, st.SearchStrategy[Any]] = {
    "item_id": st.sampled_from(shop.IDS),
    "type": st.sampled_from(KNOWN_TYPES),
    "user_id": st.sampled_from([*shop.PROFILES, "u-new"]),
    "session_id": st.sampled_from(["s1", "s2"]),
    "ts": st.datetimes(  # about one in eight outside the log's window, either side
        min_value=datetime(1997, 1, 1), max_value=(NOW + timedelta(days=300)).replace(tzinfo=None)
    ).map(lambda t: t.replace(tzinfo=UTC).isoformat()),
}


def from_schema(schema: dict[str, Any], name: str | None = None) -> st.SearchStrategy[Any]:
    """Values of a msgspec JSON schema, small: lists of at most 3, strings of at most 12
    characters; a hinted field draws its hint three times in four."""
    if name in HINTS:
        return st.one_of(HINTS[name], HINTS[name], HINTS[name], _from_schema(schema))
    return _from_schema(schema)


def _from_schema(schema: dict[str, Any]) -> st.SearchStrategy[Any]:
    if "$ref" in schema:
        return st.deferred(lambda: from_schema(COMPONENTS[schema["$ref"].rsplit("/", 1)[-1]]))
    if "anyOf" in schema:
        return st.one_of([from_schema(option) for option in schema["anyOf"]])
    if "enum" in schema:
        return st.sampled_from(schema["enum"])
    kind = schema.get("type")
    if kind == "object":
        properties, required = schema.get("properties", {}), set(schema.get("required", []))
        if "session_id" in properties and "events" not in properties:  # an event: whose it is
            required.add("session_id")
        return st.fixed_dictionaries(
            {k: from_schema(v, k) for k, v in properties.items() if k in required},
            optional={k: from_schema(v, k) for k, v in properties.items() if k not in required},
        )
    if kind == "array":
        size = min(schema.get("maxItems", 3), 3)
        return st.lists(
            from_schema(schema["items"]),
            min_size=schema.get("minItems", 0),
            max_size=max(size, schema.get("minItems", 0)),
        )
    if kind == "string":
        if schema.get("format") == "date-time":
            return HINTS["ts"]
        low = schema.get("minLength", 0)
        return st.text(SAFE_TEXT, min_size=low, max_size=min(schema.get("maxLength", 12), 12))
    if kind == "integer":
        return st.integers(schema.get("minimum"), schema.get("maximum"))
    if kind == "number":
        low = schema.get("minimum", schema.get("exclusiveMinimum"))
        return st.floats(
            low,
            schema.get("maximum"),
            allow_nan=False,
            allow_infinity=False,
            exclude_min="exclusiveMinimum" in schema,
        )
    if kind == "boolean":
        return st.booleans()
    if kind == "null":
        return st.none()
    raise AssertionError(f"no strategy for {schema}")


def body_of(path: str) -> st.SearchStrategy[dict[str, Any]]:
    request = DOCUMENT["paths"][path]["post"]["requestBody"]["content"]["application/json"]
    return from_schema(request["schema"])


HOLE = "@@hostile@@"


def deep(opening: bytes, closing: bytes, inner: bytes = b"") -> st.SearchStrategy[bytes]:
    return st.integers(1, DEEP).map(lambda n: opening * n + inner + closing * n)


HOSTILE_VALUES: st.SearchStrategy[bytes] = st.one_of(
    st.sampled_from(
        [
            b"1e400",
            b"-1e400",
            b"1E-400",
            str(2**70).encode(),
            str(-(2**64)).encode(),
            b"9" * 5000,
            b"-0",
            b"0.5",
            b"NaN",
            b"Infinity",
            b"01",
            b"1.",
            b".5",
            b"true",
            b"null",
            b"{}",
            b"[]",
            b'""',
            b'"\\u0000"',
            b'"a\\u0007b"',
            b'"\\ud800"',
            b'"\\udfff\\ud800"',
            b'"\xff"',
            b'"\xc3"',
            b'"\xed\xa0\x80"',
            b'"\\u2028"',
            b'"\x7f"',
            b'"\xc2\x85"',
            b'"\\t"',
            b'"\\\\"',
            b'"\\""',
            b'"unterminated',
            b"}",
            b",",
            b"",
        ]
    ),
    st.integers(0, 100_000).map(lambda n: b'"' + b"x" * n + b'"'),
    deep(b"[", b"]"),
    deep(b'{"a":', b"}", b"1"),
    st.binary(max_size=24),
    st.text(max_size=12).map(lambda s: json.dumps(s).encode()),
)


def positions(tree: Any) -> list[tuple[Any, Any]]:
    """Every (container, key) in a decoded body, to put a hostile value at."""
    found: list[tuple[Any, Any]] = []
    if isinstance(tree, dict):
        for key, value in tree.items():
            found.append((tree, key))
            found.extend(positions(value))
    elif isinstance(tree, list):
        for i, value in enumerate(tree):
            found.append((tree, i))
            found.extend(positions(value))
    return found


@st.composite
def hostile_bodies(draw: st.DrawFn) -> bytes:
    """A body shaped by either endpoint's schema, spoiled one way: a hostile value in any
    field, a key twice, an unknown key, a cut, a stray byte; or another top level, or bytes."""
    how = draw(st.sampled_from(["value", "duplicate", "cut", "byte", "top", "bytes", "extra"]))
    if how == "bytes":
        return draw(st.binary(max_size=300))
    if how == "top":
        return draw(HOSTILE_VALUES)
    tree = draw(body_of(draw(st.sampled_from(["/v1/recommend", "/v1/events"]))))
    places = positions(tree)
    if how in ("value", "duplicate", "extra") and places:
        container, key = draw(st.sampled_from(places))
        original = json.dumps(container[key]).encode()
        container[key] = HOLE
        spoiled = draw(HOSTILE_VALUES)
        if how == "duplicate" and isinstance(key, str):  # the same key again, the same object
            spoiled = original + b"," + json.dumps(key).encode() + b":" + spoiled
        elif how == "extra" and isinstance(key, str):
            name = draw(st.text(max_size=8)).encode("utf-8", "surrogatepass")
            spoiled = original + b',"' + name + b'":' + spoiled
        return json.dumps(tree).encode().replace(json.dumps(HOLE).encode(), spoiled, 1)
    data = json.dumps(tree, ensure_ascii=draw(st.booleans())).encode("utf-8", "surrogatepass")
    if how == "cut":
        return data[: draw(st.integers(0, max(len(data) - 1, 0)))]
    at = draw(st.integers(0, len(data)))
    return data[:at] + draw(st.binary(min_size=1, max_size=4)) + data[at:]


def valid_bodies(path: str) -> st.SearchStrategy[bytes]:
    return body_of(path).map(lambda tree: json.dumps(tree).encode())


HEADER_BYTES = st.binary(max_size=64).map(
    lambda b: bytes(c for c in b if c == 9 or 32 <= c != 127)  # what an HTTP parser lets through
)
CONTENT_TYPES = st.sampled_from(
    [
        b"application/json; charset=utf-8",
        b"APPLICATION/JSON",
        b"application/json;;",
        b" application/json ",
        b"application/json; charset=latin-1",
        b"text/plain",
        b"",
        b"application/x-www-form-urlencoded",
        b"application/json-patch+json",
        b"\xff",
    ]
)
CONTEXT_HEADERS = st.sampled_from(
    [
        b"cf-ipcountry",
        b"x-edgeperso-country",
        b"x-edgeperso-device",
        b"user-agent",
        b"cf-timezone",
        b"x-edgeperso-timezone",
    ]
)
PLAIN = [(b"content-type", b"application/json")]


@st.composite
def headers(draw: st.DrawFn) -> list[tuple[bytes, bytes]]:
    """Mostly the plain content-type, so bodies get read; else another content-type, or an
    odd context header."""
    pick = draw(st.integers(0, 7))
    if pick < 5:
        return PLAIN
    if pick == 5:
        return [(b"content-type", draw(CONTENT_TYPES))]
    value = draw(st.one_of(HEADER_BYTES, st.sampled_from([b"PL", b"Mozilla/5.0 (iPad)"])))
    return [*PLAIN, (draw(CONTEXT_HEADERS), value)]


@dataclass
class Answer:
    status_code: int
    headers: dict[str, str]
    content: bytes

    @property
    def text(self) -> str:
        return self.content.decode(errors="replace")


async def asgi_post(app: Any, path: str, body: bytes, sent: list[tuple[bytes, bytes]]) -> Answer:
    """One POST straight through the ASGI app, as a server hands it over (with the
    content-length a server would have checked): the test client's HTTP layer costs more than
    the request, and these runs send thousands."""
    delivered = False

    async def receive() -> dict[str, Any]:
        nonlocal delivered
        if delivered:
            return {"type": "http.disconnect"}
        delivered = True
        return {"type": "http.request", "body": body, "more_body": False}

    started: dict[str, Any] = {}
    chunks: list[bytes] = []

    async def send(message: dict[str, Any]) -> None:
        if message["type"] == "http.response.start":
            started.update(message)
        else:
            chunks.append(message.get("body", b""))

    scope = {
        "type": "http",
        "asgi": {"version": "3.0"},
        "http_version": "1.1",
        "method": "POST",
        "scheme": "http",
        "path": path,
        "raw_path": path.encode(),
        "query_string": b"",
        "root_path": "",
        "headers": [*sent, (b"content-length", str(len(body)).encode())],
        "client": ("127.0.0.1", 50000),
        "server": ("127.0.0.1", 80),
        "state": {},
    }
    await app(scope, receive, send)
    answer_headers = {k.decode("latin-1"): v.decode("latin-1") for k, v in started["headers"]}
    return Answer(started["status"], answer_headers, b"".join(chunks))


def run_requests(
    client: TestClient, paths: list[str], bodies: st.SearchStrategy[bytes], examples: int
) -> Counter[int]:
    """`examples` bodies, each sent to every one of `paths`; the statuses seen."""
    statuses: Counter[int] = Counter()

    @seed(SEED)
    @settings(
        max_examples=examples,
        deadline=None,
        database=None,
        suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
    )
    @given(body=bodies, sent=headers())
    def send(body: bytes, sent: list[tuple[bytes, bytes]]) -> None:
        for path in paths:
            answer = client.portal.call(asgi_post, client.app, path, body, sent)
            statuses[check_answer(answer, path)] += 1

    send()
    return statuses


ENDPOINTS = ["/v1/recommend", "/v1/events"]
# Generated requests in the full runs, at least: 2 x (1,400 + 1,400 + 1,800) = 9,200 here, and
# 1,100 from Schemathesis below (its coverage cases, and FULL_SCHEMATHESIS): 10,300 in all.
FULL = {"recommend": 1400, "events": 1400, "hostile": 1800}


@pytest.mark.parametrize("shape", ["recommend", "events", "hostile"])
@pytest.mark.parametrize(
    "full", [pytest.param(False, id="quick"), pytest.param(True, id="full", marks=pytest.mark.slow)]
)
def test_generated_requests_never_get_a_5xx_and_every_refusal_names_the_problem(
    client, caplog, shape, full
):
    """Each body goes to both endpoints: a batch sent to /v1/recommend (or the reverse) is a
    mistake a page can make, and it costs nothing more to generate."""
    examples = FULL[shape] if full else 40
    bodies = hostile_bodies() if shape == "hostile" else valid_bodies(f"/v1/{shape}")
    statuses = run_requests(client, ENDPOINTS, bodies, examples)
    print(shape, dict(sorted(statuses.items())))
    assert statuses.total() >= 2 * examples  # all ran (Hypothesis may add a few)
    # The answers and the refusals of the body itself were both reached.
    assert statuses[400] + statuses[422] > examples // 2
    if shape != "hostile":
        assert statuses[200] > examples // 10
    assert not tracebacks(caplog)
    assert client.get("/healthz").status_code == 200


# ---------------------------------------------------------------- Schemathesis, a real server
@pytest.fixture(scope="module")
def edge_server(small_bundle_dir, tmp_path_factory) -> Iterator[str]:
    """The app as the container runs it (`start_edge_app`'s command), quotas off and a short
    body deadline (a lying content-length waits that long), its log kept: after every test
    here it must still answer, and have logged no traceback."""
    root = tmp_path_factory.mktemp("edge-server")
    port = free_port()
    command = edge_app_command(small_bundle_dir, root / "events", port)
    environment = {
        **os.environ,
        "EDGEPERSO_EVENTS_PER_SECOND": "0",
        "EDGEPERSO_BODY_TIMEOUT_SECONDS": "1",
    }
    with open(root / "server.log", "wb") as log:
        server = subprocess.Popen(
            [*command, "--log-level", "warning"], stdout=log, stderr=log, env=environment
        )
        try:
            wait_for(port, "/readyz", server, seconds=30)
            yield f"http://127.0.0.1:{port}"
            assert answers(port, "/healthz") == 200, "the server did not survive the fuzzing"
            assert server.poll() is None
        finally:
            server.terminate()
            server.wait(timeout=30)
    logged = (root / "server.log").read_text(errors="replace")
    assert "Traceback" not in logged, logged[-3000:]


CHECKS: list[Callable[..., Any]] = [
    not_a_server_error,
    status_code_conformance,
    content_type_conformance,
    response_headers_conformance,
    response_schema_conformance,
    negative_data_rejection,
]
FULL_SCHEMATHESIS = 150  # fuzzed cases per operation with a body and generation mode


def schemathesis_cases(operation: Any, mode: GenerationMode, examples: int) -> Iterator[Any]:
    """Cases of one operation in one mode: Hypothesis drives Schemathesis's strategy."""
    drawn: list[Any] = []

    @seed(SEED)
    @settings(
        max_examples=examples,
        deadline=None,
        database=None,
        phases=[Phase.generate],  # the cases only: they are checked one by one below
        suppress_health_check=list(HealthCheck),
    )
    @given(case=operation.as_strategy(generation_mode=mode))
    def draw(case: Any) -> None:
        drawn.append(case)

    draw()
    return iter(drawn)


@pytest.mark.parametrize(
    "full", [pytest.param(False, id="quick"), pytest.param(True, id="full", marks=pytest.mark.slow)]
)
def test_schemathesis_finds_no_5xx_and_every_answer_matches_the_document(edge_server, full):
    """Schemathesis's coverage cases (each constraint's edges, other methods) and its fuzzed
    cases, valid and invalid, from the served /openapi.json; every answer is checked against
    that document (status, content type, headers, body schema), a body the document calls
    invalid must be refused, and a refusal must name its problem."""
    schema = schemathesis.openapi.from_url(f"{edge_server}/openapi.json")
    session = requests.Session()
    statuses: Counter[tuple[str, int]] = Counter()
    for path, methods in build_document()["paths"].items():
        for method in methods:
            operation = schema[path][method.upper()]
            # Coverage cases: Schemathesis's deterministic phase (public methods of the schema).
            generation = schema.config.generation_for(operation=operation, phase="coverage")
            modes = [GenerationMode.POSITIVE, GenerationMode.NEGATIVE]
            cases = list(
                schema.iter_coverage_cases(
                    operation, generation_modes=modes, generation_config=generation
                )
            )
            if full and "requestBody" in methods[method]:
                for mode in modes:
                    cases.extend(schemathesis_cases(operation, mode, FULL_SCHEMATHESIS))
            elif not full:
                cases = cases[:: max(1, len(cases) // 15)]
            for case in cases:
                response = case.call_and_validate(session=session, checks=CHECKS, timeout=10)
                statuses[(f"{case.method} {case.path}", response.status_code)] += 1
                if response.status_code >= 400:
                    check_answer(response, case.path)
    print("schemathesis", dict(sorted(statuses.items())))
    assert statuses.total() >= (1100 if full else 40)
    assert all(status < 500 for _, status in statuses)
    assert requests.get(f"{edge_server}/healthz", timeout=5).status_code == 200


def raw_exchange(port: int, request: bytes, close_write: bool, seconds: float = 5.0) -> bytes:
    """What the server answers to `request` on a fresh connection; `close_write` ends the
    client's side after it (a client leaving mid-body)."""
    with socket.create_connection(("127.0.0.1", port), timeout=seconds) as connection:
        connection.sendall(request)
        if close_write:
            connection.shutdown(socket.SHUT_WR)
        received = b""
        deadline = time.monotonic() + seconds
        try:
            while time.monotonic() < deadline and (chunk := connection.recv(65536)):
                received += chunk
                if b"\r\n\r\n" in received:  # the status line and headers: enough
                    break
        except (TimeoutError, ConnectionResetError):
            pass
        return received


POST = b"POST /v1/recommend HTTP/1.1\r\nhost: x\r\ncontent-type: application/json\r\n"
RAW = [
    ("content-length too long", POST + b"content-length: 100\r\n\r\n{}", False, b"408"),
    ("content-length too short", POST + b"content-length: 1\r\n\r\n{}", False, b"400"),
    ("content-length negative", POST + b"content-length: -1\r\n\r\n{}", False, b"400"),
    ("content-length not a number", POST + b"content-length: \xb2\r\n\r\n{}", False, b"400"),
    (
        "two content-lengths",
        POST + b"content-length: 2\r\ncontent-length: 3\r\n\r\n{}",
        False,
        b"400",
    ),
    (
        "non-ASCII header bytes",
        POST + b"cf-ipcountry: \xff\xfe\r\nuser-agent: \x80\x81\r\ncontent-length: 2\r\n\r\n{}",
        False,
        b"200",
    ),
    (
        "chunked, JSON cut short",
        POST + b'transfer-encoding: chunked\r\n\r\n3\r\n{"k\r\n0\r\n\r\n',
        False,
        b"400",
    ),
    ("closed mid-body", POST + b'content-length: 100\r\n\r\n{"k":', True, None),
]


@pytest.mark.parametrize(
    ("request_bytes", "close_write", "want"),
    [pytest.param(*case[1:], id=case[0]) for case in RAW],
)
def test_a_lying_or_odd_http_request_gets_a_4xx_and_the_server_lives_on(
    edge_server, request_bytes, close_write, want
):
    port = int(edge_server.rsplit(":", 1)[1])
    reply = raw_exchange(port, request_bytes, close_write)
    status = reply.split(b"\r\n", 1)[0].split(b" ")[1:2]
    if want is None:  # nobody is left to answer: nothing, or a 4xx
        assert not reply or status[0].startswith(b"4"), reply[:300]
    else:
        assert status == [want], reply[:300]
    assert answers(port, "/healthz") == 200

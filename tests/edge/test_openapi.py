import copy
import json
import re

import jsonschema_rs
import msgspec
import pytest
import schemathesis
from starlette.routing import Route
from starlette.testclient import TestClient

from edge import errors
from edge.app import create_app
from edge.config import Settings
from edge.json_text import FORBIDDEN_CHARACTERS
from edge.openapi import build_document, document_bytes
from edge.schemas import FeedbackAccepted, FeedbackBatch, RecommendRequest, RecommendResponse


@pytest.fixture(scope="module")
def document():
    return build_document()


@pytest.fixture(scope="module")
def client(small_bundle_dir, tmp_path_factory):
    settings = Settings(
        bundle_dir=str(small_bundle_dir),
        events_dir=str(tmp_path_factory.mktemp("events")),
        reload_seconds=0,
    )
    with TestClient(create_app(settings), raise_server_exceptions=False) as client:
        yield client


def test_the_document_is_valid_openapi_3_1(document):
    assert document["openapi"] == "3.1.0"
    schemathesis.openapi.from_dict(document).validate()
    broken = copy.deepcopy(document)
    del broken["paths"]["/healthz"]["get"]["responses"]["200"]["description"]
    with pytest.raises(jsonschema_rs.ValidationError):
        schemathesis.openapi.from_dict(broken).validate()


def test_every_route_of_the_app_is_in_the_document_and_nothing_else(client, document):
    served = {
        (route.path, method.lower())
        for route in client.app.routes
        if isinstance(route, Route)
        for method in route.methods or ()
        if method != "HEAD"  # Starlette answers HEAD for every GET
    }
    documented = {(path, method) for path, item in document["paths"].items() for method in item}
    assert served == documented


def test_the_app_serves_the_document_it_builds_and_builds_it_once(client, document):
    response = client.get("/openapi.json")
    assert response.status_code == 200
    assert response.headers["content-type"] == "application/json"
    assert response.json() == json.loads(json.dumps(document))
    assert document_bytes() is document_bytes()


def without_additions(schema):
    """A component as msgspec wrote it: the document adds patterns (and a description)."""
    if isinstance(schema, dict):
        return {k: without_additions(v) for k, v in schema.items() if k != "pattern"}
    if isinstance(schema, list):
        return [without_additions(v) for v in schema]
    return schema


def test_request_and_answer_schemas_are_the_types_the_app_decodes_and_encodes(document):
    types = [RecommendRequest, RecommendResponse, FeedbackBatch, FeedbackAccepted]
    _, generated = msgspec.json.schema_components(types, ref_template="#/components/schemas/{name}")
    components = copy.deepcopy(document["components"]["schemas"])
    del components["FeedbackEvent"]["properties"]["ts"]["description"]
    for name, schema in generated.items():
        assert without_additions(components[name]) == schema, name
    body = document["paths"]["/v1/events"]["post"]["requestBody"]["content"]
    assert body["application/json"]["schema"] == {"$ref": "#/components/schemas/FeedbackBatch"}


def request_strings(node, path="$"):
    """(path, schema) of every string in a request component."""
    if isinstance(node, dict):
        if node.get("type") == "string":
            yield path, node
        for key, value in node.items():
            yield from request_strings(value, f"{path}.{key}")
    elif isinstance(node, list):
        for i, value in enumerate(node):
            yield from request_strings(value, f"{path}[{i}]")


def test_every_request_string_says_it_holds_no_control_character(document):
    components = document["components"]["schemas"]
    names = ["RecommendRequest", "Session", "SessionEvent", "Context"]
    names += ["FeedbackBatch", "FeedbackEvent"]
    strings = [s for name in names for s in request_strings(components[name], name)]
    assert len(strings) > 20
    for path, schema in strings:
        if schema.get("format") == "date-time":
            continue
        pattern = re.compile(schema["pattern"])
        assert pattern.fullmatch("i01 é日😀") and not pattern.fullmatch("a\x00"), path
    # Answers carry what the bundle holds, unconstrained.
    assert "pattern" not in components["ScoredItem"]["properties"]["item_id"]


def test_the_ts_window_is_described_where_a_client_reads_it(document):
    ts = document["components"]["schemas"]["FeedbackEvent"]["properties"]["ts"]
    assert "from 2000-01-01T00:00:00Z to one day past the server's clock" in ts["description"]


def error_classes(base=errors.EdgepersoError):
    for cls in base.__subclasses__():
        yield cls
        yield from error_classes(cls)


def error_instance(cls):
    for kwargs in ({"field": "$.k"}, {"retry_after": 3}, {"file": "x"}):
        try:
            return cls("what was wrong, and what to do", **kwargs)
        except TypeError:
            continue
    raise AssertionError(f"cannot make a {cls.__name__}")


def test_every_request_error_the_app_raises_has_its_status_documented_and_its_shape(document):
    responses = document["paths"]["/v1/events"]["post"]["responses"]
    error_schema = responses["422"]["content"]["application/json"]["schema"]
    validator = jsonschema_rs.validator_for({**error_schema, "components": document["components"]})
    classes = list(error_classes())
    assert errors.ValidationError in classes and len(classes) >= 8
    for cls in classes:
        body = error_instance(cls).to_dict()
        validator.validate(body)
        assert set(body["error"]) <= {"code", "message", "field"}, cls
        if issubclass(cls, errors.RequestError):
            assert str(cls.status_code) in responses, cls


def validator_for(document, ref):
    return jsonschema_rs.validator_for({"$ref": ref, "components": document["components"]})


def response_schema(document, path, method, status):
    response = document["paths"][path][method]["responses"][str(status)]
    return response["content"]["application/json"]["schema"]


def test_real_answers_fit_the_document_and_use_no_undocumented_field(
    client, document, small_bundle_dir, tmp_path
):
    event = {"type": "click", "item_id": "i01", "session_id": "s"}
    json_header = {"content-type": "application/json"}
    answers = [
        ("/v1/recommend", "post", client.post("/v1/recommend", json={"k": 3})),
        ("/v1/recommend", "post", client.post("/v1/recommend", json={"k": 0})),
        ("/v1/recommend", "post", client.post("/v1/recommend", content=b"{", headers=json_header)),
        ("/v1/events", "post", client.post("/v1/events", json={"events": [event]})),
        ("/v1/events", "post", client.post("/v1/events", json={"events": []})),
        ("/healthz", "get", client.get("/healthz")),
        ("/readyz", "get", client.get("/readyz")),
    ]
    (tmp_path / "manifest.json").write_text('{"format_version": 7}')
    with TestClient(create_app(Settings(bundle_dir=str(tmp_path)))) as refused:
        answers.append(("/readyz", "get", refused.get("/readyz")))
    statuses = set()
    for path, method, response in answers:
        statuses.add(response.status_code)
        schema = response_schema(document, path, method, response.status_code)
        body = response.json()
        jsonschema_rs.validator_for({**schema, "components": document["components"]}).validate(body)
        if "$ref" in schema:  # every field the app sends is one the document names
            component = document["components"]["schemas"][schema["$ref"].rsplit("/", 1)[-1]]
            assert set(body) <= set(component["properties"]), (path, body)
    assert statuses == {200, 400, 422, 503}


def test_the_documented_pattern_is_the_checks_own(document):
    pattern = document["components"]["schemas"]["Context"]["properties"]["device"]["anyOf"][0]
    compiled = re.compile(pattern["pattern"])
    for code in (0x00, 0x1F, 0x7F, 0x85, 0x9F, 0x2028, 0x2029, 0x20, 0xA0, 0xE9):
        char = chr(code)
        assert (compiled.fullmatch(char) is None) == bool(FORBIDDEN_CHARACTERS.search(char))

import hashlib
import json

import msgspec
import pytest
from starlette.testclient import TestClient

from edge.app import create_app
from edge.config import Settings
from edge.experiments import Experiment
from edge.exposures import ExposureLog
from edge.schemas import RecommendRequest, RecommendResponse, ResolvedContext
from edge.sink import SinkError
from tests.edge.small_bundle import write_small_bundle


class ListSink:
    def __init__(self, failing: bool = False) -> None:
        self.records: list[dict] = []
        self.failing, self.closed = failing, False

    def write(self, records):
        if self.failing:
            raise SinkError("disk full")
        self.records += records

    def close(self):
        self.closed = True


def answer(variants: dict[str, str]) -> RecommendResponse:
    context = ResolvedContext("", "", 0, "night")
    return RecommendResponse([], "b1", None, False, context, 0.1, variants=variants)


def test_exposures_are_buffered_then_flushed_and_kept_when_the_sink_fails():
    sink = ListSink(failing=True)
    exposures = ExposureLog(sink)
    exposures.add(RecommendRequest(user_id="u1"), answer({"strip": "b", "banner": "on"}))
    exposures.add(RecommendRequest(user_id="u2"), answer({}))  # no experiment: nothing
    exposures.flush()
    assert sink.records == []
    sink.failing = False
    exposures.close()
    assert [(r["experiment"], r["variant"], r["user_id"]) for r in sink.records] == [
        ("strip", "b", "u1"),
        ("banner", "on", "u1"),
    ]
    assert sink.closed and sink.records[0]["type"] == "exposure"


@pytest.fixture(scope="module")
def experiment_bundle(tmp_path_factory):
    strip = {
        "key": "strip",
        "unit": "session",
        "variants": [{"name": "a"}, {"name": "b", "content": {"banner": "spring"}}],
    }
    experiments = [msgspec.convert(strip, Experiment)]
    return write_small_bundle(
        tmp_path_factory.mktemp("experiments") / "bundle", experiments=experiments
    )


def test_the_server_logs_an_exposure_for_every_answer_with_a_variant(experiment_bundle, tmp_path):
    events_dir = tmp_path / "events"
    app = create_app(Settings(bundle_dir=str(experiment_bundle), events_dir=str(events_dir)))
    expected = {}
    with TestClient(app) as client:
        for i in range(20):
            body = json.dumps({"session_id": f"s{i}", "k": 3}).encode()
            response = client.post(
                "/v1/recommend", content=body, headers={"content-type": "application/json"}
            )
            # The documented hash: two variants of equal weight split [0, 1) at one half.
            digest = hashlib.sha256(f"strip:s{i}".encode()).digest()
            expected[f"s{i}"] = "a" if int.from_bytes(digest[:4], "big") < 2**31 else "b"
            answer = response.json()
            assert answer["variants"] == {"strip": expected[f"s{i}"]}
            assert answer["content"] == ({"banner": "spring"} if expected[f"s{i}"] == "b" else {})
        client.post("/v1/recommend", content=b"{}", headers={"content-type": "application/json"})
    logged = [
        json.loads(line)
        for path in (events_dir / "exposures").glob("*.jsonl")
        for line in path.read_text().splitlines()
    ]
    assert sorted(r["session_id"] for r in logged) == sorted(f"s{i}" for i in range(20))
    assert {r["session_id"]: r["variant"] for r in logged} == expected
    assert set(expected.values()) == {"a", "b"}  # both variants were seen
    assert not list(events_dir.glob("*.jsonl"))  # the feedback log holds no exposure


def test_a_failing_exposure_sink_never_stops_the_server(monkeypatch):
    import anyio

    import edge.exposures

    class Broken(ListSink):
        def write(self, records):
            raise RuntimeError("a bug in another store")

        def close(self):
            raise RuntimeError("and again")

    monkeypatch.setattr(edge.exposures, "FLUSH_SECONDS", 0.01)
    exposures = ExposureLog(Broken())
    exposures.add(RecommendRequest(user_id="u1"), answer({"strip": "b"}))

    async def run_a_while() -> None:
        with anyio.move_on_after(0.1):
            await exposures.run()  # flushes fail every 10 ms; the loop goes on

    anyio.run(run_a_while)
    exposures.close()  # logged, not raised


def test_exposures_into_a_directory_that_cannot_be_used_leave_answers_alone(
    experiment_bundle, tmp_path
):
    blocker = tmp_path / "var"
    blocker.write_text("a file where the events directory's parent should be")
    settings = Settings(
        bundle_dir=str(experiment_bundle), events_dir=str(blocker / "events"), reload_seconds=0
    )
    with TestClient(create_app(settings)) as client:
        for i in range(3):
            body = json.dumps({"session_id": f"s{i}", "k": 3}).encode()
            response = client.post(
                "/v1/recommend", content=body, headers={"content-type": "application/json"}
            )
            assert response.status_code == 200 and response.json()["variants"]
        client.app.state.exposures.flush()  # refused by the sink: kept for later, no error
        assert len(client.app.state.exposures._buffer) == 3

"""The storefront script's requests (tests/cases/storefront_request.json, which
storefront/test/edgeperso.test.js checks the script builds) mean to the app what the script
means: each body decodes strictly, and the rules read from it the dwell, the visits and the
cart's idle time the case names."""

import json
from pathlib import Path

import msgspec
import pytest

from edge.rules import visit_signals
from edge.schemas import RecommendRequest, ResolvedContext

CASES = json.loads(
    (Path(__file__).resolve().parents[1] / "cases" / "storefront_request.json").read_text()
)["cases"]
CONTEXT = ResolvedContext(device="desktop", country="", local_hour=10, hour_bucket="morning")


@pytest.mark.parametrize("case", CASES, ids=[c["name"] for c in CASES])
def test_the_scripts_request_means_what_the_script_meant(case):
    request = msgspec.json.decode(json.dumps(case["request"]), type=RecommendRequest)
    assert request.consent is (case["visit"] is not None)
    session, context = request.session, request.context
    signals = visit_signals(
        session.events if session else [],
        context.cart if context else [],
        None,  # an anonymous visitor, or a customer the profile store does not hold
        CONTEXT,
        context.visits if context else None,
        None,
        None,
        session.rules_shown if session else [],
        lambda items: [1.0 for _ in items],
        float(case["now"]),
        24.0,
    )
    for name, expected in case["signals"].items():
        got = signals.values[name]
        assert got == (pytest.approx(expected) if expected is not None else None), name
    if case["visit"] is None:  # without consent nothing about the visitor goes out
        assert request.user_id is None and request.session_id is None and request.session is None

"""The floor of the HTTP benchmark: the least a server that ranks with the bundle's trained model
must do per request, served by the same uvicorn as the product.

Before it starts, it computes each benchmark body's candidates and their features with the
product's own code. Per request it then only parses the body with the product's decoder, runs
the ranker over that body's candidates (one onnxruntime call), takes the top k and answers their
ids and scores as JSON. What the product spends above this floor is everything else a request
needs: the visitor's state, segment and intent, candidates, features and rules.

    EDGEPERSO_BUNDLE=<bundle dir> EDGEPERSO_FLOOR_BODIES=<msgpack list of bodies> \\
        uvicorn bench.floor_app:app
"""

from __future__ import annotations

import contextlib
import math
import os
import time
from collections.abc import AsyncIterator
from pathlib import Path

import msgspec
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from edge.app import _request_decoder, one_blas_thread
from edge.bundle import load_bundle
from edge.context import resolve_context
from edge.recommend import Recommender
from edge.scoring import (
    NO_DEADLINE,
    Candidates,
    build_user_state,
    candidate_features,
    rank,
)
from edge.visitor import describe_visitor, visitor_features

_encoder = msgspec.json.Encoder()


def body_candidates(recommender: Recommender, body: bytes) -> Candidates:
    """The candidates and features the product computes for this body (no rules, no budget),
    with the recommender's own candidate sizes."""
    request = _request_decoder.decode(body)
    bundle = recommender.bundle
    model = bundle.model
    context = resolve_context(request.context, {})
    profile = bundle.profiles.get(request.user_id) if request.user_id else None
    events = request.session.events if request.session else []
    cart = request.context.cart if request.context else []
    state = build_user_state(model, profile, events, cart, request.exclude)
    segment, intent = None, None
    if bundle.visitor is not None:
        visitor, items, now = bundle.visitor, model.items, time.time()
        segment, intent = describe_visitor(visitor, items, profile, events, context, now)
    return candidate_features(
        model,
        state,
        context,
        recommender.sizes,
        NO_DEADLINE,
        *visitor_features(bundle.visitor, segment, intent),
    )


async def recommend(request: Request) -> Response:
    body = await request.body()
    parsed = _request_decoder.decode(body)
    recommender: Recommender = request.app.state.recommender
    bundle = recommender.bundle
    cap = (
        recommender.max_per_category if parsed.max_per_category is None else parsed.max_per_category
    )
    top, scores = rank(
        bundle.model, request.app.state.candidates[body], parsed.k, max_per_category=cap
    )
    items = [
        {"item_id": item, "score": round(float(score), 6)}
        for item, score in zip(bundle.model.items.ids_of(top), scores)
    ]
    return Response(_encoder.encode({"items": items}), media_type="application/json")


async def ready(request: Request) -> Response:
    return Response('{"ready": true}', media_type="application/json")


@contextlib.asynccontextmanager
async def lifespan(app: Starlette) -> AsyncIterator[None]:
    one_blas_thread()
    bundle = load_bundle(Path(os.environ["EDGEPERSO_BUNDLE"]))
    bundle.model.embeddings.wait_for_scan()
    bodies = msgspec.msgpack.decode(Path(os.environ["EDGEPERSO_FLOOR_BODIES"]).read_bytes())
    app.state.recommender = recommender = Recommender(bundle, budget_ms=math.inf)
    app.state.candidates = {body: body_candidates(recommender, body) for body in bodies}
    yield


app = Starlette(
    routes=[Route("/v1/recommend", recommend, methods=["POST"]), Route("/readyz", ready)],
    lifespan=lifespan,
)

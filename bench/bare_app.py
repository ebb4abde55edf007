"""The reference server of the HTTP and start-up benchmarks: a bare Starlette endpoint that
parses a JSON body and returns about 1 KB, served by the same uvicorn as the product."""

from __future__ import annotations

import json

from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

ANSWER = json.dumps({"items": [{"item_id": f"i{i:06d}", "score": 0.5} for i in range(32)]})


async def echo(request: Request) -> Response:
    body = json.loads(await request.body() or b"{}")
    return Response(ANSWER if isinstance(body, dict) else "{}", media_type="application/json")


async def ready(request: Request) -> Response:
    return Response('{"ready": true}', media_type="application/json")


app = Starlette(routes=[Route("/v1/recommend", echo, methods=["POST"]), Route("/readyz", ready)])

"""The paths the app serves, and the label a request's path gets in metrics and logs: its own
route, or `other` for any path a client makes up (so a scanner's thousand paths are one label)."""

from __future__ import annotations

ROUTES = ("/v1/recommend", "/v1/events", "/healthz", "/readyz", "/metrics", "/openapi.json")


def route_label(path: str) -> str:
    return path if path in ROUTES else "other"

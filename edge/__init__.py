"""edgeperso's edge half: load a verified bundle once, answer recommendation requests locally."""

from edge.app import create_app
from edge.bundle import Bundle, load_bundle, verify
from edge.config import Settings
from edge.errors import BundleError, EdgepersoError, RequestError, ValidationError
from edge.recommend import Recommender

__all__ = [
    "Bundle",
    "BundleError",
    "EdgepersoError",
    "Recommender",
    "RequestError",
    "Settings",
    "ValidationError",
    "create_app",
    "load_bundle",
    "verify",
]

"""The route labels of metrics and logs are the app's own routes, and nothing else."""

from starlette.routing import Route

from edge.app import create_app
from edge.config import Settings
from edge.routes import ROUTES, route_label


def test_the_labels_are_the_apps_routes():
    app = create_app(Settings(reload_seconds=0))
    served = {route.path for route in app.routes if isinstance(route, Route)}
    assert served == set(ROUTES)


def test_a_made_up_path_is_other():
    assert route_label("/v1/recommend") == "/v1/recommend"
    assert route_label("/v1/recommend/../admin") == "other"

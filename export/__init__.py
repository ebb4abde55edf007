"""edgeperso's build pipeline: from a shop's event log to a verified edge bundle."""

from export.config import BuildConfig, load_config
from export.pipeline import export_bundle

__all__ = ["BuildConfig", "export_bundle", "load_config"]

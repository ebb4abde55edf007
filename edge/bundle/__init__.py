"""The bundle: the one contract between the build and the edge. Its files (`files`), its typed
manifest (`manifest`), how it is verified (`checks`), how its arrays become the model and back
(`codecs`), and how it is loaded (`load`) and written (`write`)."""

from edge.bundle.checks import sha256_file, verify
from edge.bundle.codecs import (
    SCORE_LEVELS,
    embeddings_from_tree,
    graph_from_tree,
    graph_to_tree,
    model_from_trees,
)
from edge.bundle.files import (
    ARRAY_FILES,
    BANDITS,
    CONTENT,
    COVISITATION,
    EMBEDDINGS,
    EXPERIMENTS,
    FALLBACK,
    ITEMS,
    MANIFEST,
    POPULARITY,
    PROFILES,
    RANKER,
    REGRESSION,
    REQUIRED_FILES,
    RULES,
    VISITOR,
)
from edge.bundle.load import Bundle, load_bundle, load_fallback_only
from edge.bundle.manifest import FORMAT_VERSION, SUPPORTED_FORMAT_VERSIONS, Manifest, Models
from edge.bundle.write import write_bundle
from edge.errors import BundleError

__all__ = [
    "ARRAY_FILES",
    "BANDITS",
    "CONTENT",
    "COVISITATION",
    "EMBEDDINGS",
    "EXPERIMENTS",
    "FALLBACK",
    "FORMAT_VERSION",
    "ITEMS",
    "MANIFEST",
    "POPULARITY",
    "PROFILES",
    "RANKER",
    "REGRESSION",
    "REQUIRED_FILES",
    "RULES",
    "SCORE_LEVELS",
    "SUPPORTED_FORMAT_VERSIONS",
    "VISITOR",
    "Bundle",
    "BundleError",
    "Manifest",
    "Models",
    "embeddings_from_tree",
    "graph_from_tree",
    "graph_to_tree",
    "load_bundle",
    "load_fallback_only",
    "model_from_trees",
    "sha256_file",
    "verify",
    "write_bundle",
]

"""The files of a bundle directory: their names, which a bundle must have, which hold arrays."""

from __future__ import annotations

MANIFEST = "manifest.json"
ITEMS = "items.msgpack"
EMBEDDINGS = "embeddings.msgpack"
COVISITATION = "covisitation.msgpack"
REGRESSION = "item_regression.msgpack"
POPULARITY = "popularity.msgpack"
RANKER = "ranker.onnx"
FALLBACK = "fallback.json"
# Optional: segments and intent, when export could learn either (enough known customers; some
# purchases to learn from).
VISITOR = "visitor.onnx"
EXPERIMENTS = "experiments.msgpack"  # when the build config defines experiments
RULES = "rules.msgpack"  # triggered offers and their guardrails (export writes the defaults)
BANDITS = "bandits.msgpack"  # when the build config defines bandit slots
# Content neighbours: items without interactions, next to the items they resemble (format 8;
# an older bundle has none, and cold items reach the candidates only through their factors).
CONTENT = "content.msgpack"
# The embedded profile store: listed in the manifest's `profile_store`, not in `files`, since a
# node that reads profiles from a key-value store neither needs nor checks it.
PROFILES = "profiles.msgpack"

REQUIRED_FILES = (ITEMS, EMBEDDINGS, COVISITATION, REGRESSION, POPULARITY, RANKER, FALLBACK)
ARRAY_FILES = (ITEMS, EMBEDDINGS, COVISITATION, REGRESSION, POPULARITY)
OPTIONAL_ARRAY_FILES = (CONTENT,)

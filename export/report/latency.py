"""How long the shipped bundle takes to load and to answer, measured on the build machine
through the edge's own code (`edge.bundle.load_bundle`, `edge.recommend.Recommender`), without
HTTP: the figure a merchant reads in the build report. The request mix is a page's: known
customers, anonymous visitors with a short session, and cold visitors with context only.

It is a build machine's figure, not a service level: an edge node's answers add HTTP parsing
and the network (docs/benchmarks.md measures those)."""

from __future__ import annotations

import random
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from edge.bundle import Bundle, load_bundle
from edge.profiles import EmbeddedProfileStore
from edge.recommend import Recommender
from edge.schemas import Context, RecommendRequest, Session, SessionEvent

ANSWERS_PER_KIND = 100
SESSION_EVENTS = 3


@dataclass(frozen=True)
class Latency:
    load_ms: float  # verifying and decoding the bundle, once
    answers_ms: dict[str, list[float]]  # per kind of request: each answer's time
    fallbacks: int  # answers that came from fallback content (a step failed or ran late)
    budget_ms: float

    def all_ms(self) -> list[float]:
        return [ms for times in self.answers_ms.values() for ms in times]


def load_timed(bundle_dir: Path) -> tuple[Bundle, float]:
    """The bundle, verified and decoded as a node loads it, and how long that took (ms)."""
    started = time.perf_counter()
    bundle = load_bundle(bundle_dir, scan_in_background=False)
    return bundle, (time.perf_counter() - started) * 1e3


def measure_latency(
    bundle: Bundle,
    load_ms: float,
    seed: int = 0,
    per_kind: int = ANSWERS_PER_KIND,
    budget_ms: float = 50.0,
) -> Latency:
    """Warm the bundle up as a node does, then time `per_kind` answers of each kind.
    `budget_ms`: the serving budget (`serve`'s default), past which an answer is fallback."""
    recommender = Recommender(bundle, budget_ms=budget_ms)
    recommender.warm_up()
    rng = random.Random(seed)
    items = bundle.model.items
    weights = bundle.model.event_weights
    kind = "view" if "view" in weights else next(iter(weights))
    contexts = _contexts(bundle.manifest.models.contexts)
    users: list[str] = []
    store = bundle.profiles
    if isinstance(store, EmbeddedProfileStore) and len(store):
        wanted = set(rng.sample(range(len(store)), min(per_kind, len(store))))
        users = [user for i, user in enumerate(store.user_ids()) if i in wanted]
    requests: dict[str, list[RecommendRequest]] = {
        "known customer": [
            RecommendRequest(user_id=user, context=rng.choice(contexts)) for user in users
        ],
        "anonymous session": [
            RecommendRequest(
                session=Session(
                    events=[
                        SessionEvent(type=kind, item_id=items.id_of(rng.randrange(len(items))))
                        for _ in range(SESSION_EVENTS)
                    ]
                ),
                context=rng.choice(contexts),
            )
            for _ in range(per_kind if len(items) else 0)
        ],
        "context only": [RecommendRequest(context=rng.choice(contexts)) for _ in range(per_kind)],
    }
    answers_ms: dict[str, list[float]] = {}
    fallbacks = 0
    for name, asked in requests.items():
        times = []
        for request in asked:
            t0 = time.perf_counter()
            response = recommender.recommend(request)
            times.append((time.perf_counter() - t0) * 1e3)
            fallbacks += response.fallback is not None
        if times:
            answers_ms[name] = times
    return Latency(load_ms, answers_ms, fallbacks, budget_ms)


def percentile(times: list[float], share: float) -> float:
    return float(np.percentile(times, share * 100)) if times else float("nan")


def _contexts(names: list[str]) -> list[Context | None]:
    """Contexts built from the bundle's contextual tables ("device=mobile", "country=FR"), and
    no context at all."""
    out: list[Context | None] = [None]
    for name in names:
        key, _, value = name.partition("=")
        if key == "device" and value:
            out.append(Context(device=value))
        elif key == "country" and value:
            out.append(Context(country=value))
    return out

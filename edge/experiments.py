"""Experiments shipped in the bundle, and the deterministic, sticky assignment of a visitor to a
variant. The hash is documented so that any other client (the gateway Worker, a browser)
computes the same variant; `tests/cases/assignment.json` holds shared test vectors.

    bucket  = first 4 bytes of SHA-256("<experiment key>:<unit id>"), big-endian, / 2**32
    variant = the first whose cumulative weight / total weight is above the bucket

The unit id is the user id, or the session id when there is none (`unit = "user"`), or always
the session id (`unit = "session"`). A visitor with neither id is not in the experiment."""

from __future__ import annotations

import hashlib
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Annotated, Literal

import msgspec
from msgspec import Meta, Struct

from edge.schemas import Id, Label

RANKERS = ("composite", "popularity")  # popularity: contextual popular items (a holdout)


class Variant(Struct, frozen=True, forbid_unknown_fields=True):
    name: Annotated[str, Meta(min_length=1, max_length=64)]
    weight: Annotated[float, Meta(gt=0.0)] = 1.0
    ranker: Literal["composite", "popularity"] | None = None  # None: the bundle's (composite)
    content: dict[Label, Annotated[str, Meta(max_length=1024)]] = {}  # handed to the page as is
    rules: Label | None = None  # a rule set of the bundle's rules, or "none"; None: "default"


class Experiment(Struct, frozen=True, forbid_unknown_fields=True):
    key: Id
    variants: Annotated[list[Variant], Meta(min_length=2, max_length=20)]
    unit: Literal["user", "session"] = "user"


class ExperimentTable(Struct, frozen=True):
    """experiments.msgpack: the experiments in the order they apply."""

    experiments: list[Experiment]


def repeated(names: list[str]) -> list[str]:
    """The names that occur more than once, sorted (what a config must not have)."""
    return sorted({name for name in names if names.count(name) > 1})


def experiment_errors(experiments: list[Experiment]) -> list[str]:
    """What the schema cannot say: keys and variant names must be unique."""
    errors = [
        f"experiment {key!r} is defined twice; keys must be unique"
        for key in repeated([e.key for e in experiments])
    ]
    for experiment in experiments:
        errors += [
            f"experiment {experiment.key!r}: variant {name!r} is defined twice; variant names "
            "must be unique within an experiment"
            for name in repeated([v.name for v in experiment.variants])
        ]
    return errors


def bucket(key: str, unit_id: str) -> float:
    """Where a unit falls in [0, 1) for one experiment."""
    digest = hashlib.sha256(f"{key}:{unit_id}".encode()).digest()
    return int.from_bytes(digest[:4], "big") / 2**32


def assign(experiment: Experiment, unit_id: str) -> Variant:
    point = bucket(experiment.key, unit_id) * sum(v.weight for v in experiment.variants)
    reached = 0.0
    for variant in experiment.variants:
        reached += variant.weight
        if point < reached:
            return variant
    return experiment.variants[-1]  # float rounding at the very top


def unit_of(experiment: Experiment, user_id: str | None, session_id: str | None) -> str | None:
    if experiment.unit == "session":
        return session_id
    return user_id or session_id


@dataclass(frozen=True)
class Treatment:
    """What a visitor's variants change in an answer. Experiments apply in the bundle's order:
    the first variant that sets the ranker (or the rule set) decides it, and the first to set a
    content key."""

    variants: dict[str, str]  # experiment key -> variant name
    content: dict[str, str]
    ranker: str = "composite"
    rules: str = "default"  # the rule set


NO_TREATMENT = Treatment({}, {})


def treatment(
    experiments: Sequence[Experiment], user_id: str | None, session_id: str | None
) -> Treatment:
    variants: dict[str, str] = {}
    content: dict[str, str] = {}
    ranker: str | None = None
    rules: str | None = None
    for experiment in experiments:
        unit = unit_of(experiment, user_id, session_id)
        if unit is None:
            continue
        variant = assign(experiment, unit)
        variants[experiment.key] = variant.name
        content = variant.content | content
        ranker = ranker or variant.ranker
        rules = rules or variant.rules
    return Treatment(variants, content, ranker or "composite", rules or "default")


experiment_table_decoder = msgspec.msgpack.Decoder(ExperimentTable)

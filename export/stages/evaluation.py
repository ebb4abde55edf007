"""Evaluate: `EvaluationInput` (the data, its split, and the models trained on the
split's training part) → `Evaluation` (the manifest's `metrics.evaluation`).

The trained models are written as a bundle and loaded by the edge's own code, which answers
the test part's questions next to the baselines. Baselines with settings to choose are tuned
on a validation split carved the same way from the training part."""

from __future__ import annotations

import tempfile
from dataclasses import dataclass, field
from pathlib import Path

import msgspec

from edge.bundle import Bundle, load_bundle
from edge.bundle.manifest import Comparison, Evaluation, Metrics
from export.baselines import grids
from export.cases import Case
from export.config import BuildConfig
from export.evaluate import Interactions, evaluate_models
from export.progress import Say
from export.stages.read import Dataset
from export.stages.split import (
    Split,
    cases_for,
    present_target_types,
    split_for_evaluation,
)
from export.stages.visitors import customer_profiles
from export.stages.write import Trained, write_files


@dataclass(frozen=True, eq=False)
class EvaluationInput:
    data: Dataset
    split: Split
    held: Trained  # trained on `split.train` only
    baselines: tuple[str, ...]
    # Bundles asked the same cases, by name: the one published now, for a rebuild's guard.
    bundles: dict[str, Bundle] = field(default_factory=dict)


def evaluate_held_out(inputs: EvaluationInput, config: BuildConfig, say: Say) -> Evaluation:
    """`say` shows each model's metrics as they come."""
    ec = config.evaluation
    universe, held = inputs.data.universe, inputs.held
    train_part, test_part = inputs.split.train, inputs.split.test
    weights = config.events.weights
    protocol, test_cases = cases_for(
        inputs.split.protocol, train_part, test_part, held.profiles, config, ec.max_cases
    )
    if not test_cases:
        return Evaluation(
            cases=0, note="no visitor in the test part took an item they could be shown"
        )
    fit_part = train_part
    validation_cases: list[Case] = []
    tuned = grids(len(universe.ids), ec.ease_max_items, config.seed)
    if any(len(tuned.get(name, [])) > 1 for name in inputs.baselines):  # else nothing is tuned
        validation = split_for_evaluation(train_part, config, protocol)
        fit_part = validation.train
        _, validation_cases = cases_for(
            protocol,
            fit_part,
            validation.test,
            customer_profiles(fit_part, weights),
            config,
            min(ec.max_cases, 5_000),
        )
    fitted_on = Interactions(
        train_part.user_item_matrix(weights),
        fit_part.user_item_matrix(weights) if validation_cases else None,
        frozenset(train_part.items_seen().tolist()),
    )
    with tempfile.TemporaryDirectory() as tmp:
        write_files(Path(tmp) / "bundle", held, config, inputs.data.lineage, Metrics(), None)
        result = evaluate_models(
            load_bundle(Path(tmp) / "bundle", scan_in_background=False),
            test_cases,
            fitted_on,
            validation_cases,
            universe,
            weights,
            list(inputs.baselines),
            ec.k,
            config.seed,
            ec.ease_max_items,
            say=say,
            bundles=inputs.bundles,
        )
    selection = held.ranker_training.selection
    return Evaluation(
        protocol=protocol,
        scorer=selection.chosen if selection else "ranker",
        cases=len(test_cases),
        validation_cases=len(validation_cases),
        k=ec.k,
        target_types=present_target_types(test_part.summary.types, config),
        split=msgspec.structs.replace(
            inputs.split.description, train_events=len(train_part), test_events=len(test_part)
        ),
        table=result["table"],
        versus={name: Comparison(**paired) for name, paired in result["versus"].items()},
        tuning=result["tuning"],
    )

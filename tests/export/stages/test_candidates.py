"""The candidate models stage: one msgpack tree per array file of the bundle, and fallback
content for every context popularity learned."""

from edge.bundle import ARRAY_FILES, CONTENT, POPULARITY
from export.config import BuildConfig
from export.interactions import build_universe
from export.stages.candidates import fit_candidates
from export.stages.read import Dataset
from export.validate import QualityReport, normalize_events


def test_the_candidate_models_are_the_bundles_array_files_and_its_fallback(shop, seed):
    config = BuildConfig(seed=seed)
    events = normalize_events(shop.events.head(20_000), config, QualityReport())
    universe = build_universe(events, None)
    models = fit_candidates(Dataset(events, universe), config)
    assert set(models.trees) == {*ARRAY_FILES, CONTENT}
    assert set(models.fallback) == {"all", *models.trees[POPULARITY]["contexts"]}
    in_stock = {item for item, ok in zip(universe.ids, universe.in_stock) if ok}
    for items in models.fallback.values():
        assert items and {item for item, _ in items} <= in_stock

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime

import pandas as pd
import pytest

from export.config import BuildConfig
from export.interactions import ItemUniverse, attach_item_codes, item_facts, universe_of
from export.io import read_table
from export.validate import QualityReport, normalize_events, sorted_by_time

NOW = datetime(2026, 12, 7, 12, 0, tzinfo=UTC)


@pytest.fixture(scope="package")
def spark():
    """A local Spark session on two cores for every Spark test (a build run in it finds it
    running, and leaves it running)."""
    from export.spark.session import spark_session

    session = spark_session("local[2]")
    yield session
    session.stop()


@dataclass(frozen=True, eq=False)
class ShopEvents:
    """A simulated shop's validated events on this machine and on Spark."""

    config: BuildConfig
    events: pd.DataFrame  # in time order, with item codes, as export.stages.read gives them
    universe: ItemUniverse
    on_spark: object  # the same events on Spark, cached


@pytest.fixture(scope="package")
def shop_events(spark, shop_files) -> ShopEvents:
    """Every seventh event anonymous (its session is its visitor), the rest of the simulated
    shop's log as it is."""
    from export.spark.validate import read_events, validate_events

    config = BuildConfig()
    raw = read_table(shop_files["events"])
    raw.loc[raw.index % 7 == 0, "user_id"] = ""
    path = shop_files["events"].with_name("events-some-anonymous.parquet")
    raw.to_parquet(path)
    events = sorted_by_time(normalize_events(read_table(path), config, QualityReport(), NOW))
    universe = universe_of(item_facts(events), None)
    attach_item_codes(events, universe)
    events["type"] = events["type"].astype("category")
    on_spark = validate_events(read_events(spark, [path]), config, NOW).events.cache()
    return ShopEvents(config, events, universe, on_spark)


@pytest.fixture(scope="package")
def both(shop_events):
    """The shop's events as a build's `Dataset`: held here, and the same events on Spark only."""
    from export.stages.read import Dataset

    events = shop_events.events.reset_index(drop=True)
    return Dataset(events, shop_events.universe), Dataset(
        None, shop_events.universe, on_spark=shop_events.on_spark
    )

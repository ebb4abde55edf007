"""The split stage: the evaluation's parts, and an empty part named with the setting to change."""

import msgspec
import pandas as pd
import pytest

from export.config import BuildConfig
from export.errors import CannotTrainError
from export.interactions import build_universe
from export.stages.read import Dataset
from export.stages.split import ranker_label_days, split_events
from export.validate import QualityReport, normalize_events


def _data(shop, config):
    events = normalize_events(shop.events, config, QualityReport())
    return Dataset(events, build_universe(events, None))


def test_the_default_split_holds_out_the_rankers_label_window(shop):
    config = BuildConfig()
    data = _data(shop, config)
    split = split_events(data, config)
    days = ranker_label_days(data.events, config)
    assert (split.description.split, split.description.days) == ("time", round(days, 2))
    assert len(split.train) + len(split.test) == len(data.events)
    assert split.train["ts"].max() < split.test["ts"].min()
    assert split.test["ts"].min() >= data.events["ts"].max() - pd.Timedelta(days=days)


def test_a_holdout_longer_than_the_log_names_its_span_and_the_setting(shop):
    config = msgspec.convert({"evaluation": {"holdout_days": 400}}, BuildConfig)
    data = _data(shop, config)
    with pytest.raises(CannotTrainError) as caught:
        split_events(data, config)
    message = str(caught.value)
    span = data.events["ts"].max() - data.events["ts"].min()
    assert f"(0 training and {len(data.events):,} test events)" in message
    assert f"the log spans {span.total_seconds() / 86_400:.1f} days" in message
    assert "evaluation.holdout_days" in message


def test_leave_last_out_without_repeat_customers_names_protocol_and_targets(shop):
    config = msgspec.convert(
        {"evaluation": {"protocol": "leave_last_out", "target_types": ["add_to_cart"]}},
        BuildConfig,
    )
    data = _data(shop, config)
    first = data.events.drop_duplicates("user_id")  # one event per customer: nothing repeats
    with pytest.raises(CannotTrainError) as caught:
        split_events(data.with_events(first), config)
    message = str(caught.value)
    assert "leave_last_out split left an empty part" in message
    assert "evaluation.protocol" in message and "evaluation.target_types" in message

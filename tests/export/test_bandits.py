import msgspec
import pandas as pd
import pytest

from edge.bandits import ALL_SEGMENTS
from edge.bundle import load_bundle
from edge.recommend import Recommender
from edge.schemas import RecommendRequest
from edge.sink import JsonlSegmentSink
from export.bandits import BanditConfig, bandit_errors, bandit_priors
from export.config import ConfigError, load_config
from export.pipeline import export_bundle

BANNER = msgspec.convert(
    {"slot": "home", "arms": [{"name": "a"}, {"name": "b"}], "prior_weight": 50}, BanditConfig
)


def feedback(user: str, arm: str, shown: int, clicked: int) -> list[dict]:
    row = {"slot": "home", "variant": arm, "user_id": user, "item_id": "-", "session_id": "s"}
    return [{**row, "type": "impression"}] * shown + [{**row, "type": "click"}] * clicked


def test_priors_count_impressions_and_clicks_per_segment_shrunk_to_their_weight():
    log = pd.DataFrame(
        feedback("u1", "a", 20, 5)
        + feedback("u2", "b", 400, 40)
        + feedback("anon", "a", 10, 0)
        + [{"slot": "footer", "variant": "a", "user_id": "u1", "type": "click"}]
    )
    [bandit] = bandit_priors([BANNER], log, {"u1": "loyal", "u2": "lapsed"})
    assert bandit.priors["loyal"] == [(6.0, 16.0), (1.0, 1.0)]  # 5 of 20; nothing of b
    alpha, beta = bandit.priors["lapsed"][1]  # 40 of 400, worth 50 observations at most
    assert (alpha, beta) == pytest.approx((1 + 40 * 50 / 400, 1 + 360 * 50 / 400))
    assert bandit.priors[ALL_SEGMENTS][0] == (6.0, 26.0)  # everyone's a: 5 of 30
    [empty] = bandit_priors([BANNER], None, {})
    assert empty.priors == {ALL_SEGMENTS: [(1.0, 1.0), (1.0, 1.0)]}


def test_bad_bandits_are_named():
    twice = msgspec.structs.replace(BANNER, arms=[BANNER.arms[0], BANNER.arms[0]])
    errors = bandit_errors([twice, twice])
    assert "bandit 'home': arm 'a' is defined twice" in errors
    assert "bandit slot 'home' is defined twice; slots must be unique" in errors


def test_export_ships_the_bandits_with_priors_from_the_feedback_log(shop, tmp_path):
    config = tmp_path / "config.toml"
    config.write_text(
        '[[bandits]]\nslot = "home"\n'
        'arms = [{ name = "a", content = { banner = "A" } }, { name = "b" }]\n'
    )
    sink = JsonlSegmentSink(tmp_path / "log")
    user = shop.events["user_id"].iloc[0]
    sink.write(feedback(user, "b", 30, 12))
    sink.close()
    events = tmp_path / "events.csv"
    shop.events.head(5_000).to_csv(events, index=False)
    manifest = export_bundle(
        [events],
        tmp_path / "b",
        load_config(config),
        quiet=True,
        evaluate=False,
        bandit_log=[tmp_path / "log"],
    )
    assert manifest.models.bandits.slots["home"].arms == ["a", "b"]
    bundle = load_bundle(tmp_path / "b")
    assert bundle.bandits[0].priors[ALL_SEGMENTS][1] == (13.0, 19.0)
    answer = Recommender(bundle).recommend(RecommendRequest(slots=["home"]))
    assert answer.slots["home"].arm in ("a", "b")


def test_a_config_with_a_bad_bandit_stops_the_build(tmp_path):
    path = tmp_path / "config.toml"
    path.write_text('[[bandits]]\nslot = "x"\narms = [{ name = "a" }, { name = "a" }]\n')
    with pytest.raises(ConfigError, match="bandit 'x': arm 'a' is defined twice"):
        load_config(path)

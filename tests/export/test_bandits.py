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
    # Everyone's: a, 5 clicks of 30 impressions; b, 40 of 400, worth 50 observations at most.
    everyone_b = (1 + 40 * 50 / 400, 1 + 360 * 50 / 400)
    assert bandit.priors[ALL_SEGMENTS][0] == (6.0, 26.0)
    assert bandit.priors[ALL_SEGMENTS][1] == pytest.approx(everyone_b)
    # A segment's: everyone's observations plus its own, scaled back to 50 at most. Loyal's a:
    # 5 + 5 clicks of 30 + 20; its b, never logged for it, is everyone's b.
    assert bandit.priors["loyal"][0] == pytest.approx((1 + 10, 1 + 40))
    assert bandit.priors["loyal"][1] == pytest.approx(everyone_b)
    # Lapsed's b: 40 + 5 clicks of 400 + 50 observations, scaled to 50.
    assert bandit.priors["lapsed"][1] == pytest.approx((1 + 45 * 50 / 450, 1 + 405 * 50 / 450))
    assert bandit.priors["lapsed"][0] == (6.0, 26.0)
    assert set(bandit.priors) == {ALL_SEGMENTS, "loyal", "lapsed"}  # anon: everyone's only
    [empty] = bandit_priors([BANNER], None, {})
    assert empty.priors == {ALL_SEGMENTS: [(1.0, 1.0), (1.0, 1.0)]}
    pooled = msgspec.structs.replace(BANNER, by_segment=False)
    [one] = bandit_priors([pooled], log, {"u1": "loyal", "u2": "lapsed"})
    assert set(one.priors) == {ALL_SEGMENTS}


def mean(prior: tuple[float, float]) -> float:
    return prior[0] / (prior[0] + prior[1])


def test_a_segment_with_little_data_keeps_everyones_rate_and_one_with_much_its_own():
    # Everyone clicks banner a 5% of the time; a segment seen 4 times clicked it twice, one
    # seen 2,000 times clicked it 20% of the time.
    log = pd.DataFrame(
        feedback("u0", "a", 10_000, 500)
        + feedback("u1", "a", 4, 2)
        + feedback("u2", "a", 2_000, 400)
    )
    segment_of = {"u0": "others", "u1": "few", "u2": "many"}
    [bandit] = bandit_priors([BANNER], log, segment_of)
    # Everyone's: 902 clicks of 12,004 impressions, scaled to 50 observations, on Beta(1, 1).
    everyone = (1 + 902 * 50 / 12_004) / (2 + 50)
    assert mean(bandit.priors[ALL_SEGMENTS][0]) == pytest.approx(everyone)
    # Flat Beta(1, 1) plus its own 2 of 4 would say 50%: it holds 4 / (4 + 50) of its own rate.
    few = mean(bandit.priors["few"][0])
    assert few == pytest.approx((1 + (2 + 902 * 50 / 12_004) * 50 / 54) / 52)
    assert abs(few - everyone) < 0.05
    # 2,000 of its own against everyone's 50: about its own 20%.
    assert mean(bandit.priors["many"][0]) == pytest.approx(0.20, abs=0.015)
    assert sum(bandit.priors["many"][0]) <= 50 + 2  # still worth prior_weight at most


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
        report=False,
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

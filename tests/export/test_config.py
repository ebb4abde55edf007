import pytest

from export.config import BuildConfig, ConfigError, load_config


@pytest.mark.parametrize(
    ("toml", "message"),
    [
        (
            '[segments]\nmethod = "hdbscan"\n',
            "Invalid enum value 'hdbscan' - at `$.segments.method`; allowed: dbscan, kmeans",
        ),
        (
            "[ranker]\nintent_features = true\n",
            "unknown field `intent_features` - at `$.ranker`; allowed: label_days,",
        ),
        ("colour = 1\n", "unknown field `colour`; allowed: seed, input, events,"),
        ('[segments]\nk = "x"\n', "Expected `int | null`, got `str` - at `$.segments.k`"),
        (
            '[[experiments]]\nkey = "e"\nvariants = [{ name = "a" }, { name = "a" }]\n',
            "experiment 'e': variant 'a' is defined twice",
        ),
        (
            '[[experiments]]\nkey = "e"\n'
            'variants = [{ name = "a", ranker = "x" }, { name = "b" }]\n',
            "`$.experiments[0].variants[0].ranker`; allowed: composite, popularity",
        ),
    ],
)
def test_a_bad_config_says_what_is_wrong_and_what_is_allowed(tmp_path, toml, message):
    path = tmp_path / "config.toml"
    path.write_text(toml)
    with pytest.raises(ConfigError) as caught:
        load_config(path)
    assert message in str(caught.value)


def test_no_config_is_the_defaults():
    config = load_config(None)
    assert config == BuildConfig()
    assert config.ranker.segment_feature and not config.ranker.intent_feature
    assert config.segments.method == "kmeans"

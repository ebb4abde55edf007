import pytest

from export.config import BuildConfig, ConfigError, load_config, load_rules


@pytest.mark.parametrize(
    ("toml", "message"),
    [
        (
            '[segments]\nmethod = "hdbscan"\n',
            "Invalid enum value 'hdbscan' - at `$.segments.method`; allowed: dbscan, kmeans",
        ),
        (
            "[ranker]\nintent_features = true\n",
            "unknown field `intent_features` - at `$.ranker`; allowed: labels, label_days,",
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


def test_a_rules_file_is_checked_naming_the_rule_the_field_and_what_is_allowed(tmp_path):
    from export.config import load_rules

    path = tmp_path / "rules.toml"
    path.write_text(
        "[guardrails]\nmax_discount_percent = 20\n\n"
        '[[rules]]\nname = "vip"\nwhen = { segment = { eq = "high-value loyal" } }\n'
        'offer = { discount_percent = 25, code = "VIP25" }\n'
    )
    with pytest.raises(ConfigError, match="rule 'vip', offer.discount_percent: 25 is over"):
        load_rules(path)
    path.write_text('[[rules]]\nname = "x"\nwhen = {}\nbanner = "b"\n')
    with pytest.raises(
        ConfigError, match="unknown field `banner` - at `\\$.rules\\[0\\]`; allowed"
    ):
        load_rules(path)
    path.write_text(
        '[[rules]]\nname = "late"\nwhen = { local_hour = { ge = 22 } }\n'
        'content = { banner = "night-owl" }\n'
    )
    assert [r.name for r in load_rules(path).rules] == ["late"]
    assert [r.name for r in load_rules(None).rules] == ["abandoned-cart", "loyalty", "long-dwell"]


def test_a_variant_naming_an_unknown_rule_set_stops_the_build(tmp_path):
    from export.config import check_rule_sets

    path = tmp_path / "config.toml"
    path.write_text(
        '[[experiments]]\nkey = "e"\n'
        'variants = [{ name = "a", rules = "agressive" }, { name = "b", rules = "none" }]\n'
    )
    with pytest.raises(
        ConfigError,
        match="variant 'a', rules: 'agressive' is not a rule set; allowed: default, none",
    ):
        check_rule_sets(load_config(path), load_rules(None))


def test_the_cli_offers_every_protocol_the_config_and_the_cases_know():
    from typing import get_args

    from export.cases import PROTOCOLS
    from export.cli import EVALUATION_PROTOCOLS
    from export.config import Protocol

    assert EVALUATION_PROTOCOLS == get_args(Protocol) == PROTOCOLS

"""Edge settings from the environment: each variable read once and typed, bad values refused
with a message that names the variable."""

import pytest

from edge.config import Settings


def test_without_any_variable_the_settings_are_the_documented_defaults():
    settings = Settings.from_env({})
    assert settings == Settings(
        bundle_dir=None,
        profiles_path=None,
        budget_ms=50.0,
        max_body_bytes=65_536,
        signing_key=None,
        reload_seconds=5.0,
        events_dir=None,
        max_events_body_bytes=1_048_576,
    )


def test_every_variable_is_read_and_typed():
    settings = Settings.from_env(
        {
            "EDGEPERSO_BUNDLE": "/srv/bundle",
            "EDGEPERSO_PROFILES": "/srv/profiles.msgpack",
            "EDGEPERSO_BUDGET_MS": "12.5",
            "EDGEPERSO_MAX_BODY_BYTES": "2048",
            "EDGEPERSO_SIGNING_KEY": "s3cret-é",
            "EDGEPERSO_RELOAD_SECONDS": "0",  # 0 turns reloading off
            "EDGEPERSO_EVENTS_DIR": "/srv/events",
            "EDGEPERSO_MAX_EVENTS_BODY_BYTES": "4096",
        }
    )
    assert settings == Settings(
        bundle_dir="/srv/bundle",
        profiles_path="/srv/profiles.msgpack",
        budget_ms=12.5,
        max_body_bytes=2048,
        signing_key="s3cret-é".encode(),
        reload_seconds=0.0,
        events_dir="/srv/events",
        max_events_body_bytes=4096,
    )


def test_an_empty_signing_key_means_no_signature_is_required():
    assert Settings.from_env({"EDGEPERSO_SIGNING_KEY": ""}).signing_key is None


@pytest.mark.parametrize(
    "name",
    ["EDGEPERSO_BUDGET_MS", "EDGEPERSO_MAX_BODY_BYTES", "EDGEPERSO_MAX_EVENTS_BODY_BYTES"],
)
@pytest.mark.parametrize("value", ["0", "-1"])
def test_a_limit_that_is_not_positive_is_refused_naming_the_variables(name, value):
    with pytest.raises(ValueError, match=f"{name}.* must be positive") as info:
        Settings.from_env({name: value})
    assert "EDGEPERSO_RELOAD_SECONDS not negative" in str(info.value)


def test_a_negative_reload_interval_is_refused():
    with pytest.raises(ValueError, match="EDGEPERSO_RELOAD_SECONDS not negative; got .* and -1.0"):
        Settings.from_env({"EDGEPERSO_RELOAD_SECONDS": "-1"})


@pytest.mark.parametrize(
    ("name", "value"),
    [("EDGEPERSO_BUDGET_MS", "fast"), ("EDGEPERSO_MAX_BODY_BYTES", "1.5")],
)
def test_a_value_of_the_wrong_type_is_refused_naming_the_variable(name, value):
    with pytest.raises(ValueError, match=f"Config '{name}' has value '{value}'. Not a valid"):
        Settings.from_env({name: value})

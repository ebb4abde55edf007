"""Edge settings from the environment: each variable read once and typed, bad values refused
with a message that names the variable."""

import base64

import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from cryptography.hazmat.primitives.serialization import Encoding, PublicFormat

from edge.config import Settings

# A fixed Ed25519 key pair's public half, raw, as EDGEPERSO_PUBLIC_KEY takes it in base64.
PUBLIC = Ed25519PrivateKey.from_private_bytes(bytes(range(32))).public_key()
PUBLIC_RAW = PUBLIC.public_bytes(Encoding.Raw, PublicFormat.Raw)


def test_without_any_variable_the_settings_are_the_documented_defaults():
    settings = Settings.from_env({})
    assert settings == Settings(
        bundle_dir=None,
        profiles_path=None,
        budget_ms=50.0,
        max_body_bytes=65_536,
        public_key=None,
        allow_unsigned=False,
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
            "EDGEPERSO_PUBLIC_KEY": base64.b64encode(PUBLIC_RAW).decode(),
            "EDGEPERSO_ALLOW_UNSIGNED": "1",
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
        public_key=PUBLIC_RAW,
        allow_unsigned=True,
        reload_seconds=0.0,
        events_dir="/srv/events",
        max_events_body_bytes=4096,
    )


def test_an_empty_public_key_means_no_signature_is_required():
    assert Settings.from_env({"EDGEPERSO_PUBLIC_KEY": " "}).public_key is None


def test_the_public_key_may_be_the_path_of_its_pem_file(tmp_path):
    path = tmp_path / "public.pem"
    path.write_bytes(PUBLIC.public_bytes(Encoding.PEM, PublicFormat.SubjectPublicKeyInfo))
    assert Settings.from_env({"EDGEPERSO_PUBLIC_KEY": str(path)}).public_key == PUBLIC_RAW


def test_the_old_hmac_signing_key_stops_the_start_saying_what_replaced_it():
    with pytest.raises(ValueError, match="EDGEPERSO_SIGNING_KEY .* is no longer read") as info:
        Settings.from_env({"EDGEPERSO_SIGNING_KEY": "s3cret"})
    assert "EDGEPERSO_PUBLIC_KEY" in str(info.value) and "--signing-key" in str(info.value)


def test_a_public_key_that_is_neither_base64_nor_a_key_file_is_refused_naming_the_variable():
    with pytest.raises(ValueError, match="EDGEPERSO_PUBLIC_KEY is neither an Ed25519 public key"):
        Settings.from_env({"EDGEPERSO_PUBLIC_KEY": "s3cret"})


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

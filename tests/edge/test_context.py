import json
from pathlib import Path

import pytest

from edge.context import (
    device_from_user_agent,
    hour_bucket,
    local_hour_from_timezone,
    resolve_context,
)
from edge.schemas import Context

IPHONE = "Mozilla/5.0 (iPhone; CPU iPhone OS 17_0 like Mac OS X) AppleWebKit/605.1.15 Mobile"
IPAD = "Mozilla/5.0 (iPad; CPU OS 17_0 like Mac OS X) AppleWebKit/605.1.15"
ANDROID_TABLET = "Mozilla/5.0 (Linux; Android 13; SM-X700) AppleWebKit/537.36 Safari/537.36"
ANDROID_PHONE = "Mozilla/5.0 (Linux; Android 13; Pixel 7) AppleWebKit/537.36 Mobile Safari"
DESKTOP = "Mozilla/5.0 (Windows NT 10.0; Win64; x64) AppleWebKit/537.36 Chrome/120 Safari"


@pytest.mark.parametrize(
    "ua,device",
    [
        (IPHONE, "mobile"),
        (IPAD, "tablet"),
        (ANDROID_TABLET, "tablet"),
        (ANDROID_PHONE, "mobile"),
        (DESKTOP, "desktop"),
        (None, ""),
    ],
)
def test_device_from_user_agent(ua, device):
    assert device_from_user_agent(ua) == device


@pytest.mark.parametrize(
    "hour,bucket",
    [
        (0, "night"),
        (5, "night"),
        (6, "morning"),
        (12, "afternoon"),
        (18, "evening"),
        (23, "evening"),
    ],
)
def test_hour_buckets(hour, bucket):
    assert hour_bucket(hour) == bucket


def test_local_hour_from_timezone():
    noon_utc = 1_700_000_000 - 1_700_000_000 % 86_400 + 12 * 3600
    assert local_hour_from_timezone("Asia/Tokyo", now=noon_utc) == 21
    assert local_hour_from_timezone("Not/AZone", now=noon_utc) is None


def test_body_wins_over_headers_and_headers_fill_the_rest():
    headers = {"user-agent": IPHONE, "cf-ipcountry": "DE", "x-edgeperso-timezone": "UTC"}
    ctx = resolve_context(Context(device=" Tablet ", local_hour=7), headers)
    assert (ctx.device, ctx.country, ctx.local_hour, ctx.hour_bucket) == (
        "tablet",
        "de",
        7,
        "morning",
    )
    ctx = resolve_context(None, headers | {"x-edgeperso-country": "FR"})
    assert ctx.device == "mobile" and ctx.country == "fr"


# The same vectors the gateway Worker's worker/context.js is checked against.
CASES = json.loads((Path(__file__).parent.parent / "cases" / "context.json").read_text())


@pytest.mark.parametrize("case", CASES["user_agents"], ids=lambda c: c["user_agent"][:40])
def test_devices_agree_with_the_shared_vectors(case):
    assert device_from_user_agent(case["user_agent"]) == case["device"]


@pytest.mark.parametrize("case", CASES["timezones"], ids=lambda c: c["timezone"])
def test_local_hours_agree_with_the_shared_vectors(case):
    assert local_hour_from_timezone(case["timezone"], now=case["epoch"]) == case["local_hour"]


def test_hour_buckets_agree_with_the_shared_vectors():
    assert [hour_bucket(c["hour"]) for c in CASES["hour_buckets"]] == [
        c["bucket"] for c in CASES["hour_buckets"]
    ]

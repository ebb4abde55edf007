"""Request context: what the body says, else what the CDN told us in headers, else defaults.

The gateway (or the CDN) sets `x-edgeperso-country`, `x-edgeperso-timezone` and
`x-edgeperso-device`; Cloudflare's own `cf-ipcountry` is read too. Labels are trimmed and
lower-cased exactly as `export` normalizes them, so contexts match the popularity tables."""

from __future__ import annotations

import re
import time
from collections.abc import Mapping
from datetime import datetime
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from edge.schemas import Context, ResolvedContext

UNKNOWN = ""
HOUR_BUCKETS = ("night", "morning", "afternoon", "evening")  # 0-5, 6-11, 12-17, 18-23

_TABLET = re.compile(r"ipad|tablet|kindle|silk|playbook|(android(?!.*mobile))", re.IGNORECASE)
_MOBILE = re.compile(r"mobi|iphone|ipod|android|blackberry|opera mini|windows phone", re.IGNORECASE)


def normalize_label(value: str | None) -> str:
    return value.strip().lower() if value else UNKNOWN


def hour_bucket(local_hour: int) -> str:
    return HOUR_BUCKETS[local_hour // 6]


def device_from_user_agent(user_agent: str | None) -> str:
    if not user_agent:
        return UNKNOWN
    if _TABLET.search(user_agent):
        return "tablet"
    if _MOBILE.search(user_agent):
        return "mobile"
    return "desktop"


def local_hour_from_timezone(timezone: str | None, now: float | None = None) -> int | None:
    if not timezone:
        return None
    try:
        zone = ZoneInfo(timezone.strip())
    except (ZoneInfoNotFoundError, ValueError, OSError):  # OSError: "Europe" is a directory
        return None
    return datetime.fromtimestamp(time.time() if now is None else now, zone).hour


def resolve_context(body: Context | None, headers: Mapping[str, str]) -> ResolvedContext:
    """Fill each missing field from the CDN's headers; the body always wins."""
    body = body or Context()
    device = (
        normalize_label(body.device)
        or normalize_label(headers.get("x-edgeperso-device"))
        or device_from_user_agent(headers.get("user-agent"))
    )
    country = normalize_label(body.country) or normalize_label(
        headers.get("x-edgeperso-country") or headers.get("cf-ipcountry")
    )
    hour = body.local_hour
    if hour is None:
        hour = local_hour_from_timezone(
            headers.get("x-edgeperso-timezone") or headers.get("cf-timezone")
        )
    if hour is None:
        hour = time.gmtime().tm_hour
    return ResolvedContext(
        device=device,
        country=country,
        local_hour=hour,
        hour_bucket=hour_bucket(hour),
        page=body.page,
    )


def context_keys(context: ResolvedContext) -> dict[str, str]:
    """The keys under which popularity is tabled: one per context dimension."""
    return {
        "device": f"device={context.device}",
        "country": f"country={context.country}",
        "hour": f"hour={context.hour_bucket}",
    }

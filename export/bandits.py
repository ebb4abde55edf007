"""Bandit priors from logged feedback: per slot, segment and arm, the impressions and clicks the
feedback log holds (events that name the slot and the arm as `variant`) become a Beta prior,
shrunk to at most `prior_weight` observations so that each node can still learn quickly.

Everyone's prior (segment "") is Beta(1 + clicks, 1 + non-clicks) of all the slot's traffic.
A segment's prior is everyone's plus the segment's own counts, shrunk back to `prior_weight`
observations: a segment with n impressions of an arm holds n / (n + min(N, prior_weight)) of
its own rate against everyone's (N: everyone's impressions of it). One that saw an arm a few
times keeps about everyone's rate for it; one with thousands, about its own; one with none
gets no prior of its own, and the edge starts it from everyone's, the same prior."""

from __future__ import annotations

from typing import Annotated

import pandas as pd
from msgspec import Meta, Struct

from edge.bandits import ALL_SEGMENTS, Arm, Bandit
from edge.experiments import repeated


class BanditConfig(Struct, frozen=True, forbid_unknown_fields=True):
    slot: Annotated[str, Meta(min_length=1, max_length=64)]
    arms: Annotated[list[Arm], Meta(min_length=2, max_length=50)]
    by_segment: bool = True
    prior_weight: Annotated[float, Meta(gt=0.0)] = 100.0  # most observations a prior is worth


def bandit_errors(bandits: list[BanditConfig]) -> list[str]:
    errors = [
        f"bandit slot {slot!r} is defined twice; slots must be unique"
        for slot in repeated([b.slot for b in bandits])
    ]
    for bandit in bandits:
        names = [a.name for a in bandit.arms]
        errors += [
            f"bandit {bandit.slot!r}: arm {name!r} is defined twice" for name in repeated(names)
        ]
    return errors


def bandit_priors(
    bandits: list[BanditConfig], log: pd.DataFrame | None, segment_of: dict[str, str]
) -> list[Bandit]:
    """The bandits with their priors: Beta(1, 1) where the log says nothing."""
    out = []
    for config in bandits:
        names = [a.name for a in config.arms]
        counts = _counts(config.slot, names, log, segment_of, config.by_segment)
        weight = config.prior_weight
        pooled = [_beta(*counts.get((ALL_SEGMENTS, arm), (0, 0)), weight) for arm in names]
        priors = {ALL_SEGMENTS: pooled}
        for segment in sorted({s for s, _ in counts} - {ALL_SEGMENTS}):
            priors[segment] = [
                _shrunk(*counts.get((segment, arm), (0, 0)), everyone, weight)
                for arm, everyone in zip(names, pooled, strict=True)
            ]
        out.append(Bandit(config.slot, list(config.arms), config.by_segment, priors))
    return out


def _counts(
    slot: str,
    arms: list[str],
    log: pd.DataFrame | None,
    segment_of: dict[str, str],
    by_segment: bool,
) -> dict[tuple[str, str], tuple[int, int]]:
    """(segment, arm) -> (impressions, clicks); segment "" pools everyone."""
    if log is None or "slot" not in log or "variant" not in log:
        return {}
    rows = log[(log["slot"] == slot) & log["variant"].isin(arms)]
    rows = rows[rows["type"].isin(["impression", "click"])]
    if rows.empty:
        return {}
    users = rows["user_id"].fillna("").astype(str) if "user_id" in rows else [""] * len(rows)
    frame = pd.DataFrame(
        {
            "arm": rows["variant"].to_numpy(),
            "click": (rows["type"] == "click").to_numpy(),
            "segment": [segment_of.get(u, ALL_SEGMENTS) for u in users],
        }
    )
    groups = [frame.assign(segment=ALL_SEGMENTS)]
    if by_segment:
        groups.append(frame[frame["segment"] != ALL_SEGMENTS])
    counts: dict[tuple[str, str], tuple[int, int]] = {}
    for (segment, arm), part in pd.concat(groups).groupby(["segment", "arm"]):
        clicks = int(part["click"].sum())
        counts[(str(segment), str(arm))] = (int((~part["click"]).sum()), clicks)
    return counts


def _beta(impressions: float, clicks: float, weight: float) -> tuple[float, float]:
    """Beta(1 + clicks, 1 + impressions - clicks), scaled down to at most `weight` of them."""
    clicks = min(clicks, impressions)
    scale = min(1.0, weight / impressions) if impressions else 1.0
    return (1.0 + clicks * scale, 1.0 + (impressions - clicks) * scale)


def _shrunk(
    impressions: int, clicks: int, everyone: tuple[float, float], weight: float
) -> tuple[float, float]:
    """A segment's prior for one arm: everyone's (its observations beyond Beta(1, 1)) plus the
    segment's own impressions and clicks, the sum scaled down to at most `weight`."""
    clicks = min(clicks, impressions)
    pooled_clicks, pooled_misses = everyone[0] - 1.0, everyone[1] - 1.0
    return _beta(impressions + pooled_clicks + pooled_misses, clicks + pooled_clicks, weight)

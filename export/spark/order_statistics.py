"""Exact order statistics per group on Spark (the k-th smallest of each input file's times, for
the stray-timestamp bounds), without putting a big group in order in one task.

A big group's value at a rank is looked for between two approximate quantiles a step of the
grid below and above it (`percentile_approx`, whose rank error is a tenth of that step); the
values below the lower one are counted, those between the two collected, and the rank read
from them, then checked: the approximation only narrows where to look. A bracket that misses
its rank, or holds too many values to collect (a timestamp shared by a large share of the
group), falls back to the sort, as every group under BRACKETED_FROM values does."""

from __future__ import annotations

import math
from typing import TYPE_CHECKING

import numpy as np

if TYPE_CHECKING:
    from pyspark.sql import DataFrame

BRACKETED_FROM = 10_000  # values in a group; smaller groups are sorted in one task
STEP = 0.0001  # the grid of quantiles asked near each end of a group, as shares of it
GRID_DEPTH = 0.003  # how far from each end the grid reaches (the ranks asked are near them)
ACCURACY = 100_000  # percentile_approx's: a rank error of at most a 1/ACCURACY share
MOST_COLLECTED = 1_000_000  # values between a bracket's quantiles, else it sorts


def values_at_ranks(
    frame: DataFrame,
    group: str,
    value: str,
    ranks: dict[int, tuple[int, ...]],
    sizes: dict[int, int],
) -> dict[int, tuple[float, ...]]:
    """For each group of `frame` in `ranks` (its `sizes`: values per group), the values of
    column `value` at those 0-based ranks in ascending order."""
    big = {g: r for g, r in ranks.items() if sizes[g] >= BRACKETED_FROM and _on_grid(r, sizes[g])}
    found = _bracketed(frame, group, value, big, sizes) if big else {}
    rest = {g: r for g, r in ranks.items() if g not in found}
    return found | (_sorted(frame, group, value, rest) if rest else {})


def _grid() -> list[float]:
    steps = round(GRID_DEPTH / STEP)
    near_start = [i * STEP for i in range(steps + 1)]
    return near_start + [1.0 - p for p in reversed(near_start)]


def _on_grid(ranks: tuple[int, ...], size: int) -> bool:
    """Whether every rank lies a step inside the grid's reach from its end."""
    shares = [r / size for r in ranks]
    return all(s <= GRID_DEPTH - STEP or s >= 1 - GRID_DEPTH + STEP for s in shares)


def _bracketed(
    frame: DataFrame,
    group: str,
    value: str,
    ranks: dict[int, tuple[int, ...]],
    sizes: dict[int, int],
) -> dict[int, tuple[float, ...]]:
    from pyspark.sql import functions as F

    from export.spark.validate import to_pandas  # which imports this module

    grid = _grid()
    wanted = frame.filter(F.col(group).isin(list(ranks)))
    quantiles = {
        int(row[group]): row["q"]
        for row in wanted.groupBy(group)
        .agg(F.percentile_approx(value, grid, ACCURACY).alias("q"))
        .collect()
    }
    brackets: dict[tuple[int, int], tuple[float, float]] = {}
    for g, asked in ranks.items():
        for rank in asked:
            share = rank / sizes[g]
            lower = [q for p, q in zip(grid, quantiles[g]) if p <= share - STEP]
            upper = [q for p, q in zip(grid, quantiles[g]) if p >= share + STEP]
            brackets[(g, rank)] = (
                lower[-1] if lower else -math.inf,
                upper[0] if upper else math.inf,
            )
    x, in_group = F.col(value), F.col(group)
    counts = wanted.agg(
        *(
            F.sum(F.when((in_group == g) & (x < lo), 1).otherwise(0)).alias(f"below_{i}")
            for i, ((g, _), (lo, _)) in enumerate(brackets.items())
        ),
        *(
            F.sum(F.when((in_group == g) & (x >= lo) & (x <= hi), 1).otherwise(0)).alias(f"in_{i}")
            for i, ((g, _), (lo, hi)) in enumerate(brackets.items())
        ),
    ).first()
    assert counts is not None  # an aggregate without grouping has one row
    below = {key: int(counts[f"below_{i}"]) for i, key in enumerate(brackets)}
    inside = {key: int(counts[f"in_{i}"]) for i, key in enumerate(brackets)}
    kept = {
        key: bounds
        for key, bounds in brackets.items()
        if below[key] <= key[1] < below[key] + inside[key] and inside[key] <= MOST_COLLECTED
    }
    collected: dict[tuple[int, int], np.ndarray] = {}
    if kept:
        between = F.lit(False)
        for (g, _), (lo, hi) in kept.items():
            between = between | ((in_group == g) & (x >= lo) & (x <= hi))
        rows = to_pandas(wanted.filter(between).select(group, value))
        for (g, rank), (lo, hi) in kept.items():
            values = rows.loc[rows[group] == g, value].to_numpy(dtype=np.float64)
            collected[(g, rank)] = np.sort(values[(values >= lo) & (values <= hi)])
    found: dict[int, tuple[float, ...]] = {}
    for g, asked in ranks.items():
        if all((g, rank) in collected for rank in asked):
            found[g] = tuple(float(collected[(g, r)][r - below[(g, r)]]) for r in asked)
    return found


def _sorted(
    frame: DataFrame, group: str, value: str, ranks: dict[int, tuple[int, ...]]
) -> dict[int, tuple[float, ...]]:
    """The values at `ranks`, each group put in order in one task."""
    from pyspark.sql import Window
    from pyspark.sql import functions as F

    by_group = Window.partitionBy(group).orderBy(value)
    ranked = frame.filter(F.col(group).isin(list(ranks))).withColumn(
        "_rank", F.row_number().over(by_group) - 1
    )
    wanted = F.lit(False)
    for g, asked in ranks.items():
        wanted = wanted | ((F.col(group) == g) & F.col("_rank").isin(list(asked)))
    at = {
        (int(r[group]), int(r["_rank"])): float(r[value]) for r in ranked.filter(wanted).collect()
    }
    return {g: tuple(at[(g, rank)] for rank in asked) for g, asked in ranks.items()}

"""`edgeperso experiment-report`: conversion per experiment variant from the server's logs, with
confidence intervals, the difference from the first (control) variant, and a sample-ratio
mismatch check.

A unit (the user id, else the session id, as the exposure recorded it) enters an experiment at
its first exposure; it converts when the feedback log holds a target event of the same user or
session at or after that moment. Units exposed to two variants of one experiment (a visitor
who logged in mid-visit under a "user" experiment) are counted in neither and reported."""

from __future__ import annotations

import math
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import msgspec
import numpy as np
import pandas as pd
from scipy.stats import chisquare, norm

from edge.experiments import ExperimentTable, experiment_table_decoder
from edge.objectstore import is_store_url
from export.errors import InputError
from export.sources import local_inputs

Z95 = float(norm.ppf(0.975))
SRM_P_VALUE = 0.001  # below this, the split is not the one configured: do not trust the test


def read_log(paths: Sequence[str | Path]) -> pd.DataFrame:
    """JSON-lines segments from files, directories or `s3://` prefixes (`export.sources`;
    exposures included, and in a directory the segments a running server still writes, up
    to their last whole line), as one frame."""
    for path in paths:
        if not is_store_url(path) and not Path(path).exists():
            raise InputError(
                f"{path}: no such file or directory; pass the directory `serve --events-dir` "
                "writes (its exposures/ folder is read too), its store prefix "
                "(`serve --events-store`) or segment files"
            )
    with local_inputs(paths, exposures=True, open_segments=True) as inputs:
        frames = [_read_segment(f) for f in inputs.local_paths() if f.stat().st_size]
    if not frames:
        raise InputError(f"no log records in {', '.join(map(str, paths))} (*.jsonl files)")
    return pd.concat(frames, ignore_index=True)


def _read_segment(path: Path) -> pd.DataFrame:
    try:
        return pd.read_json(path, lines=True, dtype=False)
    except (ValueError, OSError) as exc:
        raise InputError(f"{path}: cannot be read as JSON lines: {exc}") from exc


def _require(log: pd.DataFrame, columns: tuple[str, ...], what: str) -> None:
    missing = [c for c in columns if c not in log]
    if missing:
        raise InputError(
            f"the log has no {', '.join(missing)} field; {what} needs records with "
            f"{', '.join(columns)}, as `serve --events-dir` writes them"
        )


def wilson(successes: int, n: int) -> tuple[float, float]:
    """95% Wilson interval of a proportion (sound for small counts and rates near 0)."""
    if n == 0:
        return (math.nan, math.nan)
    p = successes / n
    centre = (p + Z95**2 / (2 * n)) / (1 + Z95**2 / n)
    half = Z95 * math.sqrt(p * (1 - p) / n + Z95**2 / (4 * n * n)) / (1 + Z95**2 / n)
    return (centre - half, centre + half)


def experiment_report(
    log: pd.DataFrame,
    target: str = "purchase",
    experiments: ExperimentTable | None = None,
) -> dict[str, Any]:
    """Per experiment and variant: units, conversions, rate with its interval, and the
    difference from the first variant; plus the sample-ratio check against the configured
    weights (equal shares when the bundle's experiments are not given)."""
    _require(log, ("ts", "type", "user_id", "session_id"), "the experiment report")
    exposures = log[log["type"] == "exposure"].copy()
    if exposures.empty:
        raise InputError("the log holds no exposure: run experiments and pass the exposures/ log")
    exposures["unit"] = exposures["user_id"].fillna("").astype(str)
    no_user = exposures["unit"] == ""
    exposures.loc[no_user, "unit"] = exposures.loc[no_user, "session_id"].astype(str)
    exposures["t"] = pd.to_datetime(exposures["ts"], utc=True, format="ISO8601")
    conversions = _conversion_times(log, target)
    revenue = _revenue_events(log, target)
    weights = (
        {e.key: {v.name: v.weight for v in e.variants} for e in experiments.experiments}
        if (experiments)
        else {}
    )
    report: dict[str, Any] = {"target": target, "experiments": {}}
    for key, rows in exposures.groupby("experiment", sort=True):
        experiment = str(key)  # the log is read as strings (`dtype=False`): the key itself
        report["experiments"][experiment] = _one_experiment(
            rows, conversions, revenue, weights.get(experiment)
        )
    return report


def _conversion_times(log: pd.DataFrame, target: str) -> pd.Series:
    """The first target event of each user id and of each session id."""
    hits = log[log["type"] == target]
    if hits.empty:
        return pd.Series(dtype="datetime64[ns, UTC]")
    t = pd.to_datetime(hits["ts"], utc=True, format="ISO8601")
    ids = pd.concat([hits["user_id"], hits["session_id"]]).fillna("").astype(str)
    times = pd.concat([t, t])
    first: pd.Series = times[ids != ""].groupby(ids[ids != ""]).min()
    return first


def _revenue_events(log: pd.DataFrame, target: str) -> pd.DataFrame:
    """Each target event's revenue (price × qty; no price: 0), once under its user id and once
    under its session id: `id`, `t`, `revenue`."""
    hits = log[log["type"] == target]
    if hits.empty or "price" not in hits:
        return pd.DataFrame({"id": [], "t": [], "revenue": []})
    price = pd.to_numeric(hits["price"], errors="coerce").fillna(0.0)
    qty = pd.to_numeric(hits["qty"], errors="coerce").fillna(1.0) if "qty" in hits else 1.0
    t = pd.to_datetime(hits["ts"], utc=True, format="ISO8601")
    value = (price * qty).clip(lower=0.0)
    frame = pd.DataFrame(
        {
            "id": pd.concat([hits["user_id"], hits["session_id"]]).fillna("").astype(str),
            "t": pd.concat([t, t]),
            "revenue": pd.concat([value, value]),
        }
    )
    return frame[frame["id"] != ""]


def _revenue_per_unit(per_unit: pd.DataFrame, revenue: pd.DataFrame) -> pd.Series:
    """Each unit's revenue from target events at or after its first exposure."""
    if revenue.empty:
        return pd.Series(0.0, index=per_unit.index)
    joined = revenue.merge(per_unit[["first"]], left_on="id", right_index=True)
    joined = joined[joined["t"] >= joined["first"]]
    summed = joined.groupby("id")["revenue"].sum()
    return summed.reindex(per_unit.index, fill_value=0.0)


def _mean_interval(values: np.ndarray) -> tuple[float, list[float]]:
    """The mean and its 95% interval (normal approximation)."""
    if values.size == 0:
        return math.nan, [math.nan, math.nan]
    mean = float(values.mean())
    half = Z95 * float(values.std(ddof=1)) / math.sqrt(values.size) if values.size > 1 else 0.0
    return mean, [mean - half, mean + half]


def _one_experiment(
    rows: pd.DataFrame,
    conversions: pd.Series,
    revenue: pd.DataFrame,
    weights: dict[str, float] | None,
) -> dict[str, Any]:
    per_unit = rows.groupby("unit").agg(
        variants=("variant", "nunique"), variant=("variant", "first"), first=("t", "min")
    )
    mixed = int((per_unit["variants"] > 1).sum())
    per_unit = per_unit[per_unit["variants"] == 1]
    converted_at = conversions.reindex(per_unit.index)
    per_unit["converted"] = (converted_at >= per_unit["first"]).to_numpy()
    per_unit["revenue"] = _revenue_per_unit(per_unit, revenue).to_numpy()
    names = list(weights) if weights else sorted(per_unit["variant"].unique())
    unknown = sorted(set(per_unit["variant"]) - set(names))
    # Per variant: counts, rate and interval, and its difference from the control (a report
    # for people and JSON, of mixed values).
    variants: dict[str, dict[str, Any]] = {}
    for name in names:
        members = per_unit[per_unit["variant"] == name]
        n, k = len(members), int(members["converted"].sum())
        low, high = wilson(k, n)
        mean, interval = _mean_interval(members["revenue"].to_numpy(dtype=float))
        variants[name] = {
            "units": n,
            "conversions": k,
            "rate": round(k / n, 5) if n else math.nan,
            "rate_ci95": [round(low, 5), round(high, 5)],
            "revenue_per_unit": round(mean, 4),
            "revenue_per_unit_ci95": [round(v, 4) for v in interval],
        }
    control = names[0]
    base = per_unit.loc[per_unit["variant"] == control, "revenue"].to_numpy(dtype=float)
    for name in names[1:]:
        variants[name]["vs_" + control] = _difference(variants[control], variants[name])
        other = per_unit.loc[per_unit["variant"] == name, "revenue"].to_numpy(dtype=float)
        variants[name]["revenue_vs_" + control] = _mean_difference(base, other)
    counts = np.array([variants[n]["units"] for n in names], dtype=float)
    shares = np.array([weights[n] for n in names] if weights else [1.0] * len(names))
    expected = counts.sum() * shares / shares.sum()
    p_value = float(chisquare(counts, expected).pvalue) if counts.sum() else math.nan
    return {
        "variants": variants,
        "sample_ratio": {
            "expected_shares": [round(float(s), 4) for s in shares / shares.sum()],
            "observed_units": counts.astype(int).tolist(),
            "p_value": round(p_value, 6),
            "mismatch": bool(p_value < SRM_P_VALUE),
            "weights_from": "bundle" if weights else "equal shares (no --bundle given)",
        },
        "units_in_two_variants": mixed,
        "variants_not_in_bundle": unknown,
    }


def _difference(a: dict[str, Any], b: dict[str, Any]) -> dict[str, Any]:
    """b's rate minus a's, with a 95% interval and the two-sided p-value (two-proportion z)."""
    if not a["units"] or not b["units"]:
        return {"difference": math.nan}
    pa, pb = a["conversions"] / a["units"], b["conversions"] / b["units"]
    se = math.sqrt(pa * (1 - pa) / a["units"] + pb * (1 - pb) / b["units"])
    pooled = (a["conversions"] + b["conversions"]) / (a["units"] + b["units"])
    se0 = math.sqrt(pooled * (1 - pooled) * (1 / a["units"] + 1 / b["units"]))
    p_value = 2 * (1 - norm.cdf(abs(pb - pa) / se0)) if se0 > 0 else 1.0
    return {
        "difference": round(pb - pa, 5),
        "ci95": [round(pb - pa - Z95 * se, 5), round(pb - pa + Z95 * se, 5)],
        "relative": round((pb - pa) / pa, 4) if pa else math.nan,
        "p_value": round(float(p_value), 6),
    }


def _mean_difference(a: np.ndarray, b: np.ndarray) -> dict[str, Any]:
    """b's mean revenue per unit minus a's, with a 95% interval (Welch's normal approximation)."""
    if a.size < 2 or b.size < 2:
        return {"difference": math.nan}
    diff = float(b.mean() - a.mean())
    se = math.sqrt(float(a.var(ddof=1)) / a.size + float(b.var(ddof=1)) / b.size)
    return {
        "difference": round(diff, 4),
        "ci95": [round(diff - Z95 * se, 4), round(diff + Z95 * se, 4)],
    }


def ips_estimate(
    log: pd.DataFrame, slot: str, policy: dict[str, str], segment_of: dict[str, str]
) -> dict[str, float]:
    """Off-policy value of a candidate policy for a bandit slot, from logged impressions that
    carry their selection probability: the click rate it would have had, by inverse propensity
    scoring (and self-normalized), next to the logging policy's own click rate.

    `policy` maps a segment to the arm the candidate shows ("" for visitors of any other
    segment). An impression's reward is a click on the same slot and arm in its session."""
    if "slot" not in log or "propensity" not in log:
        raise InputError("the log has no slot or propensity: log bandit impressions with both")
    _require(log, ("type", "variant", "user_id", "session_id"), "the policy estimate")
    rows = log[log["slot"] == slot]
    shown = rows[(rows["type"] == "impression") & rows["propensity"].notna()]
    if shown.empty:
        raise InputError(f"no impression of slot {slot!r} with a propensity in the log")
    clicks = rows[rows["type"] == "click"]
    clicked = set(zip(clicks["session_id"].astype(str), clicks["variant"].astype(str)))
    reward = np.array(
        [(s, v) in clicked for s, v in zip(shown["session_id"].astype(str), shown["variant"])],
        dtype=float,
    )
    users = shown["user_id"].fillna("").astype(str)
    segments = users.map(lambda user: segment_of.get(user, ""))
    wanted = segments.map(lambda seg: policy.get(seg, policy.get("", ""))).to_numpy()
    match = (wanted == shown["variant"].to_numpy()).astype(float)
    weights = match / shown["propensity"].to_numpy(dtype=float)
    ips = float(np.mean(weights * reward))
    snips = float(np.sum(weights * reward) / np.sum(weights)) if weights.sum() else math.nan
    effective = float(weights.sum() ** 2 / np.sum(weights**2)) if weights.sum() else 0.0
    return {
        "impressions": int(len(shown)),
        "logged_click_rate": round(float(reward.mean()), 5),
        "ips_click_rate": round(ips, 5),
        "snips_click_rate": round(snips, 5),
        "effective_sample_size": round(effective, 1),
    }


def bundle_experiments(bundle_dir: Path) -> ExperimentTable:
    path = bundle_dir / "experiments.msgpack"
    if not path.is_file():
        raise InputError(f"{bundle_dir} has no experiments.msgpack: it runs no experiment")
    try:
        return experiment_table_decoder.decode(path.read_bytes())
    except msgspec.MsgspecError as exc:
        raise InputError(f"{path} is not an experiments table: {exc}") from exc


def format_report(report: dict[str, Any]) -> str:
    lines = [f"conversion = a {report['target']} at or after the first exposure"]
    for key, result in report["experiments"].items():
        srm = result["sample_ratio"]
        flag = "MISMATCH: do not trust this test" if srm["mismatch"] else "ok"
        lines.append(f"\nexperiment {key}  (sample ratio p = {srm['p_value']:.4g}: {flag})")
        lines.append(
            f"  {'variant':<16}{'units':>8}{'conv':>7}{'rate':>9}  95% CI            vs the first"
            f"{'':>14}{'revenue/unit':>14}  95% CI              vs the first"
        )
        for name, v in result["variants"].items():
            diff = next((d for k, d in v.items() if k.startswith("vs_")), None)
            versus = ""
            if diff and not math.isnan(diff.get("difference", math.nan)):
                versus = f"{diff['difference']:+.4f} (p {diff['p_value']:.3g})"
            money = next((d for k, d in v.items() if k.startswith("revenue_vs_")), None)
            money_versus = ""
            if money and not math.isnan(money.get("difference", math.nan)):
                lo, hi = money["ci95"]
                money_versus = f"{money['difference']:+.2f} [{lo:+.2f}, {hi:+.2f}]"
            low, high = v["rate_ci95"]
            r_low, r_high = v["revenue_per_unit_ci95"]
            lines.append(
                f"  {name:<16}{v['units']:>8}{v['conversions']:>7}{v['rate']:>9.4f}  "
                f"[{low:.4f}, {high:.4f}]  {versus:<26}{v['revenue_per_unit']:>12.2f}  "
                f"[{r_low:.2f}, {r_high:.2f}]  {money_versus}"
            )
        if result["units_in_two_variants"]:
            lines.append(f"  {result['units_in_two_variants']} unit(s) saw two variants: left out")
    return "\n".join(lines)

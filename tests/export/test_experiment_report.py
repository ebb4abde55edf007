import json

import msgspec
import numpy as np
import pandas as pd
import pytest

from edge.experiments import ExperimentTable
from edge.sink import JsonlSegmentSink
from export.cli import main
from export.experiment_report import experiment_report, read_log, wilson

T0 = pd.Timestamp("2026-11-01", tz="UTC")


def iso(minutes: float) -> str:
    return (T0 + pd.Timedelta(minutes=minutes)).isoformat()


def simulated_log(seed: int, units: dict[str, int], rates: dict[str, float]) -> list[dict]:
    """Exposures of `units[v]` sessions to variant v; each converts with `rates[v]` after."""
    rng = np.random.default_rng(seed)
    records = []
    for variant, n in units.items():
        for i in range(n):
            session = f"{variant}-{i}"
            records.append(
                {
                    "ts": iso(i),
                    "type": "exposure",
                    "experiment": "strip",
                    "variant": variant,
                    "user_id": "",
                    "session_id": session,
                }
            )
            if rng.random() < rates[variant]:
                records.append(
                    {
                        "ts": iso(i + 5),
                        "type": "purchase",
                        "item_id": "x",
                        "user_id": "",
                        "session_id": session,
                    }
                )
    return records


def test_a_real_difference_is_found_with_its_interval(seed):
    log = pd.DataFrame(simulated_log(seed, {"a": 4000, "b": 4000}, {"a": 0.10, "b": 0.15}))
    result = experiment_report(log)["experiments"]["strip"]
    a, b = result["variants"]["a"], result["variants"]["b"]
    assert a["units"] == b["units"] == 4000
    assert a["rate_ci95"][0] < 0.10 < a["rate_ci95"][1]
    assert b["rate_ci95"][0] < 0.15 < b["rate_ci95"][1]
    versus = b["vs_a"]
    assert versus["ci95"][0] < 0.05 < versus["ci95"][1] and versus["ci95"][0] > 0
    assert versus["p_value"] < 1e-6
    assert not result["sample_ratio"]["mismatch"]


def test_a_split_that_is_not_the_configured_one_is_flagged(seed):
    log = pd.DataFrame(simulated_log(seed, {"a": 2000, "b": 1700}, {"a": 0.1, "b": 0.1}))
    assert experiment_report(log)["experiments"]["strip"]["sample_ratio"]["mismatch"]
    table = msgspec.convert(
        {
            "experiments": [
                {
                    "key": "strip",
                    "variants": [{"name": "a", "weight": 2000}, {"name": "b", "weight": 1700}],
                }
            ]
        },
        ExperimentTable,
    )
    configured = experiment_report(log, experiments=table)["experiments"]["strip"]
    assert not configured["sample_ratio"]["mismatch"]  # that split was the configured one
    assert configured["sample_ratio"]["weights_from"] == "bundle"


def test_only_conversions_after_the_first_exposure_count_and_mixed_units_are_left_out():
    log = pd.DataFrame(
        [
            {
                "ts": iso(10),
                "type": "exposure",
                "experiment": "e",
                "variant": "a",
                "user_id": "u1",
                "session_id": "s1",
            },
            {"ts": iso(5), "type": "purchase", "item_id": "x", "user_id": "u1", "session_id": "s0"},
            {
                "ts": iso(10),
                "type": "exposure",
                "experiment": "e",
                "variant": "b",
                "user_id": "",
                "session_id": "s2",
            },
            {"ts": iso(11), "type": "purchase", "item_id": "x", "user_id": "", "session_id": "s2"},
            {
                "ts": iso(10),
                "type": "exposure",
                "experiment": "e",
                "variant": "a",
                "user_id": "u3",
                "session_id": "s3",
            },
            {
                "ts": iso(12),
                "type": "exposure",
                "experiment": "e",
                "variant": "b",
                "user_id": "u3",
                "session_id": "s3",
            },
        ]
    )
    result = experiment_report(log)["experiments"]["e"]
    assert result["variants"]["a"]["units"] == 1 and result["variants"]["a"]["conversions"] == 0
    assert result["variants"]["b"]["conversions"] == 1
    assert result["units_in_two_variants"] == 1


def test_wilson_intervals():
    assert wilson(0, 10)[0] == pytest.approx(0.0, abs=1e-12)
    assert wilson(0, 10)[1] == pytest.approx(0.2775, abs=1e-4)
    assert wilson(5, 10) == pytest.approx((0.2366, 0.7634), abs=1e-4)


def test_the_command_reads_the_servers_segments(tmp_path, seed, capsys):
    sink = JsonlSegmentSink(tmp_path / "events" / "exposures", max_bytes=20_000)
    records = simulated_log(seed, {"a": 300, "b": 300}, {"a": 0.2, "b": 0.2})
    sink.write(records)
    sink.close()
    out, page = tmp_path / "report.json", tmp_path / "report.html"
    log = str(tmp_path / "events")
    assert main(["experiment-report", "--log", log, "--json", str(out), "--html", str(page)]) == 0
    printed = capsys.readouterr().out
    assert "experiment strip" in printed and "vs the first" in printed
    assert f"page: {page}" in printed and "<h2>Experiment strip</h2>" in page.read_text()
    assert read_log([tmp_path / "events"]).shape[0] == len(records)
    assert json.loads(out.read_text())["experiments"]["strip"]["variants"]["a"]["units"] == 300
    assert main(["experiment-report", "--log", str(tmp_path / "nothing")]) == 2
    assert "nothing: no such file or directory" in capsys.readouterr().err
    (tmp_path / "empty").mkdir()
    assert main(["experiment-report", "--log", str(tmp_path / "empty")]) == 2
    assert "no table files" in capsys.readouterr().err


def test_ips_estimates_a_candidate_policy_from_logged_propensities(seed, tmp_path, capsys):
    """Logged by a uniform random choice (propensity 1/3); the candidate shows each segment its
    best banner, whose true click rate the estimate must find."""
    from export.experiment_report import ips_estimate

    ctr = {"loyal": [0.05, 0.20, 0.05], "lapsed": [0.15, 0.05, 0.02]}
    rng = np.random.default_rng(seed)
    records, segment_of = [], {}
    for i in range(30_000):
        segment = "loyal" if i % 2 else "lapsed"
        user, arm = f"u{i}", int(rng.integers(3))
        segment_of[user] = segment
        row = {
            "slot": "home",
            "variant": f"b{arm}",
            "user_id": user,
            "session_id": f"s{i}",
            "item_id": "-",
            "ts": iso(i),
        }
        records.append({**row, "type": "impression", "propensity": 1 / 3})
        if rng.random() < ctr[segment][arm]:
            records.append({**row, "type": "click"})
    log = pd.DataFrame(records)
    best = {"loyal": "b1", "lapsed": "b0"}
    result = ips_estimate(log, "home", best, segment_of)
    assert result["logged_click_rate"] == pytest.approx(
        np.mean([*ctr["loyal"], *ctr["lapsed"]]), abs=0.01
    )
    assert result["ips_click_rate"] == pytest.approx(0.175, abs=0.012)
    assert result["snips_click_rate"] == pytest.approx(0.175, abs=0.012)
    assert 9_000 < result["effective_sample_size"] < 11_000  # a third of the impressions
    worst = ips_estimate(log, "home", {"loyal": "b0", "lapsed": "b2"}, segment_of)
    assert worst["ips_click_rate"] < 0.05
    sink = JsonlSegmentSink(tmp_path / "log")
    sink.write(records)
    sink.close()
    policy = tmp_path / "policy.json"
    policy.write_text(json.dumps({"slot": "home", "arms": {"": "b1"}}))
    assert main(["experiment-report", "--log", str(tmp_path / "log"), "--policy", str(policy)]) == 0
    assert "ips_click_rate" in capsys.readouterr().out


def test_revenue_per_unit_counts_what_was_bought_after_the_first_exposure():
    def exposure(session: str, variant: str, minute: float) -> dict:
        return {"ts": iso(minute), "type": "exposure", "experiment": "x", "variant": variant,
                "user_id": "", "session_id": session}  # fmt: skip

    def purchase(session: str, minute: float, price: float, qty: int = 1) -> dict:
        return {"ts": iso(minute), "type": "purchase", "user_id": "", "session_id": session,
                "price": price, "qty": qty}  # fmt: skip

    log = pd.DataFrame(
        [
            exposure("a1", "a", 0), purchase("a1", 1, 10.0, 2),  # 20 after the exposure
            purchase("a2", 0, 99.0), exposure("a2", "a", 1),  # bought before: not counted
            exposure("b1", "b", 0), purchase("b1", 2, 30.0), purchase("b1", 3, 5.0),
            exposure("b2", "b", 0),
        ]
    )  # fmt: skip
    variants = experiment_report(log)["experiments"]["x"]["variants"]
    assert variants["a"]["revenue_per_unit"] == 10.0  # (20 + 0) / 2
    assert variants["b"]["revenue_per_unit"] == 17.5  # (35 + 0) / 2
    low, high = variants["b"]["revenue_per_unit_ci95"]
    assert low < 17.5 < high
    assert variants["b"]["revenue_vs_a"]["difference"] == 7.5


def test_segments_the_server_still_writes_are_read_up_to_their_last_whole_line(tmp_path):
    exposures = tmp_path / "events" / "exposures"
    exposures.mkdir(parents=True)
    line = {"ts": iso(0), "type": "exposure", "experiment": "x", "variant": "a",
            "user_id": "", "session_id": "s1"}  # fmt: skip
    whole = json.dumps(line).encode() + b"\n"
    (exposures / "events-20261101T000000Z-1-0001.jsonl.open").write_bytes(whole + b'{"ts": "20')
    log = read_log([tmp_path / "events"])
    assert log["session_id"].tolist() == ["s1"]  # the torn line was never acknowledged

"""bench/stress.py: the data sets' configs carried over to their canonical logs, what a
stopped or crashed evaluation is recorded as, the tables, and one small grid end to end."""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
from pathlib import Path

import pandas as pd
import pytest
import stress
from stress import (
    DATASETS,
    OTTO_CONFIG,
    Prepared,
    Run,
    canonical_config,
    child,
    config_toml,
    evaluate,
    grid,
    markdown,
    spelled_as_offered,
    why_it_failed,
    write_config,
)

from export.config import BuildConfig, InputConfig, load_config

ROOT = Path(__file__).resolve().parent.parent.parent


@pytest.mark.parametrize("name", ["online_retail.toml", "eshop_clickstream.toml"])
def test_a_data_sets_config_reads_back_for_its_canonical_log_without_its_input_mapping(
    name, tmp_path
):
    config = load_config(ROOT / "configs" / name)
    canonical = canonical_config(config)
    path = write_config(canonical, tmp_path / "canonical.toml")
    again = load_config(path)
    assert again == canonical
    assert again.events == config.events and again.evaluation == config.evaluation
    assert again.input == InputConfig(timezone=config.input.timezone)
    assert "[input.columns]" not in path.read_text()


def test_the_otto_config_reads_its_sessions_types_and_millisecond_times(tmp_path):
    raw = tmp_path / "otto.csv"
    raw.write_text("session,aid,ts,type\n0,11,1659304800025,clicks\n0,12,1659304904511,carts\n")
    (tmp_path / "otto.toml").write_text(OTTO_CONFIG)
    from export.stages.read import Sources, read_inputs

    config = load_config(tmp_path / "otto.toml")
    events = read_inputs(Sources((raw,)), config, lambda _: None).events
    assert events["type"].astype(str).tolist() == ["view", "add_to_cart"]
    assert events["session_id"].tolist() == ["0", "0"]
    assert events["ts"].iat[0] == pd.Timestamp("2022-07-31 22:00:00.025", tz="UTC")


def test_config_toml_writes_only_what_differs_from_the_defaults():
    assert config_toml(BuildConfig()) == "\n"
    text = config_toml(BuildConfig(seed=4))
    assert text == "seed = 4\n"


def test_config_toml_refuses_an_array_of_tables_by_name(tmp_path):
    path = tmp_path / "config.toml"
    path.write_text('[[experiments]]\nkey = "e"\nvariants = [{ name = "a" }, { name = "b" }]\n')
    with pytest.raises(ValueError, match=r"arrays of tables \(experiments\)"):
        config_toml(load_config(path))


def test_a_protocol_is_found_however_the_command_spells_it():
    offered = ["auto", "temporal", "leave-last-out", "next-new-item"]
    assert spelled_as_offered("leave_last_out", offered) == "leave-last-out"
    assert spelled_as_offered("temporal", offered) == "temporal"
    assert spelled_as_offered("random", offered) is None


def test_a_stop_is_recorded_with_the_builds_own_message_and_a_crash_with_its_exception():
    stop = "data quality\n  rows read 0\nevaluate failed: the event files hold no rows; pass more\n"
    assert why_it_failed(stop, 2) == (
        "stopped",
        "evaluate failed: the event files hold no rows; pass more",
    )
    crash = (
        'Traceback (most recent call last):\n  File "x.py", line 1, in <module>\n'
        "KeyError: 'item_code'\nThis is a bug in edgeperso, not a problem with your data\n"
    )
    assert why_it_failed(crash, 1) == ("crashed", "KeyError: 'item_code'")
    assert why_it_failed("", -9) == ("crashed", "exit -9")


def test_the_table_shows_the_best_baseline_and_edgepersos_gap_to_it():
    runs = [
        Run(
            "shop",
            "original",
            "temporal",
            events=1_000,
            cases=40,
            ndcg={"edgeperso": 0.30, "popular": 0.10, "als": 0.25, "ease": 0.20},
        ),
        Run(
            "shop",
            "view_only",
            "temporal",
            events=0,
            status="stopped",
            message="evaluate failed: a | b",
        ),
        Run("shop", "original", "random", ndcg={"edgeperso": 0.5}),
    ]
    table = markdown(runs, ["temporal"])
    assert "### temporal" in table and "random" not in table
    assert (
        "| shop | original | 1,000 | 40 | 0.3000 | 0.1000 | 0.2500 (als) | +0.0500 | ok |" in table
    )
    assert "| stopped: evaluate failed: a \\| b |" in table


def test_a_data_set_that_is_not_there_is_a_row_naming_the_file(tmp_path):
    options = argparse.Namespace(
        work=str(tmp_path / "work"),
        data=str(tmp_path),
        datasets=["online_retail"],
        shapes=["original", "long_tail"],
        max_events=1_000,
        seed=0,
    )
    rows = list(grid(options, {"temporal": "temporal"}, pool=None))  # type: ignore[arg-type]
    assert [(r.shape, r.status) for r in rows] == [
        ("original", "missing"),
        ("long_tail", "missing"),
    ]
    assert str(tmp_path / DATASETS["online_retail"].events) in rows[0].message


def test_an_evaluation_that_stops_is_recorded_with_the_reason_the_build_gives(tmp_path):
    empty = pd.DataFrame(
        {
            "ts": pd.to_datetime([], utc=True),
            "user_id": [],
            "item_id": [],
            "session_id": [],
            "type": [],
        }
    ).astype({"user_id": object})
    events = tmp_path / "empty.parquet"
    empty.to_parquet(events, index=False)
    config = write_config(BuildConfig(), tmp_path / "canonical.toml")
    options = argparse.Namespace(max_cases=None, baselines=["popular"], timeout=300.0)
    run = evaluate(
        Run("shop", "purchase_only", "temporal"),
        events,
        config,
        Prepared(empty, BuildConfig()),
        options,
        "temporal",
    )
    assert run.status == "stopped"
    assert "hold no rows" in run.message


@pytest.mark.slow  # a simulated shop evaluated twice: about half a minute
def test_the_quick_grid_runs_end_to_end_and_writes_its_tables(tmp_path):
    out = tmp_path / "stress.json"
    command = [
        sys.executable,
        str(ROOT / "bench" / "stress.py"),
        "--quick",
        "--datasets",
        "simulator",
        "--shapes",
        "original",
        "stray_timestamps",
        "--out",
        str(out),
        "--work",
        str(tmp_path / "work"),
    ]
    subprocess.run(command, cwd=ROOT, check=True, capture_output=True, timeout=600)
    report = json.loads(out.read_text())
    assert len(report["protocols"]) == 1
    runs = {r["shape"]: r for r in report["runs"]}
    assert set(runs) == {"original", "stray_timestamps"}
    for run in runs.values():
        assert run["status"] == "ok", run["message"]
        assert set(run["ndcg"]) == {"edgeperso", "popular"}
        assert 0.0 <= run["ndcg"]["edgeperso"] <= 1.0 and run["cases"] > 0
    # The build drops the two strays and keeps every other event.
    assert runs["original"]["rows_kept"] == runs["original"]["events"]
    assert runs["stray_timestamps"]["rows_kept"] == runs["stray_timestamps"]["events"] - 2
    tables = out.with_suffix(".md").read_text()
    assert f"### {report['protocols'][0]}" in tables
    assert "| simulator | stray_timestamps |" in tables


def test_the_script_names_the_protocols_shops_meet():
    assert stress.PROTOCOLS == ("temporal", "leave_last_out", "random", "next_new_item")


def test_a_child_past_its_time_is_killed_and_told_apart_from_one_that_exits():
    sleeper = [sys.executable, "-c", "import time; time.sleep(30)"]
    assert child(sleeper, timeout=0.5)[0] is None
    code, stderr, cpu = child([sys.executable, "-c", "import sys; sys.exit('no rows')"], 30.0)
    assert (code, stderr.strip()) == (1, "no rows")
    assert 0.0 < cpu < 30.0


def test_config_toml_writes_a_table_whose_default_is_none_whole(tmp_path):
    path = tmp_path / "config.toml"
    path.write_text('[input]\ndate_columns = { year = "y", month = "m", day = "d" }\n')
    config = load_config(path)
    assert load_config(write_config(config, tmp_path / "again.toml")) == config

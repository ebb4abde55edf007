import json
import shutil

from export.cli import main


def test_inspect_summarizes_a_valid_bundle_and_fails_on_a_broken_one(bundle_dir, tmp_path, capsys):
    assert main(["inspect", str(bundle_dir), "--json"]) == 0
    summary = json.loads(capsys.readouterr().out)
    assert summary["valid"] and summary["items"] > 0 and summary["data_quality"]["rows_kept"]
    assert sum(summary["segments"].values()) == summary["profiles"]
    assert 0.5 < summary["intent"]["auc"] <= 1.0
    broken = tmp_path / "broken"
    shutil.copytree(bundle_dir, broken)
    (broken / "covisitation.msgpack").write_bytes(b"oops")
    assert main(["inspect", str(broken)]) == 1
    assert "covisitation.msgpack has 4 bytes" in capsys.readouterr().err


def test_export_maps_foreign_columns_by_flag(tmp_path, shop, capsys):
    events = shop.events.head(3000).rename(columns={"user_id": "Customer", "item_id": "Sku"})
    path = tmp_path / "events.csv"
    events.to_csv(path, index=False)
    out = tmp_path / "bundle"
    code = main(
        [
            "export",
            "--events",
            str(path),
            "--map",
            "user_id=Customer",
            "item_id=Sku",
            "--out",
            str(out),
            "--no-evaluate",
        ]
    )
    assert code == 0, capsys.readouterr().err
    assert "[3/3] write the bundle" in capsys.readouterr().err
    assert main(["inspect", str(out)]) == 0


def test_export_errors_are_one_clear_line(tmp_path, capsys):
    path = tmp_path / "events.csv"
    path.write_text("when,who,what\n2026-01-01,u,a\n")
    assert main(["export", "--events", str(path), "--out", str(tmp_path / "b")]) == 1
    err = capsys.readouterr().err
    assert "export failed" in err and "--map" in err and "Traceback" not in err
    assert main(["export", "--events", str(path), "--map", "colour=x", "--out", "b"]) == 1
    assert "not event columns" in capsys.readouterr().err


def test_simulate_writes_files_that_export_accepts(tmp_path, capsys):
    out = tmp_path / "sim"
    assert (
        main(
            [
                "simulate",
                "--out",
                str(out),
                "--users",
                "200",
                "--items",
                "100",
                "--events",
                "5000",
                "--days",
                "20",
                "--format",
                "csv",
            ]
        )
        == 0
    )
    printed = capsys.readouterr().out
    assert "events:" in printed and (out / "events.csv").exists()
    assert (
        main(
            [
                "export",
                "--events",
                str(out / "events.csv"),
                "--catalog",
                str(out / "catalog.csv"),
                "--users",
                str(out / "users.csv"),
                "--out",
                str(tmp_path / "b"),
                "--quiet",
            ]
        )
        == 0
    )
    assert main(["simulate", "--out", str(out), "--users", "0"]) == 1


def test_evaluate_compares_with_baselines_and_writes_json(shop_files, tmp_path, capsys):
    out = tmp_path / "evaluation.json"
    code = main(
        [
            "evaluate",
            "--events",
            str(shop_files["events"]),
            "--catalog",
            str(shop_files["catalog"]),
            "--baselines",
            "popular",
            "als",
            "--max-cases",
            "300",
            "--json",
            str(out),
            "--quiet",
        ]
    )
    assert code == 0, capsys.readouterr().err
    printed = capsys.readouterr().out
    assert "edgeperso" in printed and "als" in printed and "recall@50" in printed
    result = json.loads(out.read_text())
    assert set(result["table"]) == {"edgeperso", "popular", "als"}
    assert result["cases"] <= 300 and result["validation_cases"] > 0
    chosen = result["tuning"]["als"]["chosen"]
    assert chosen in [t["params"] for t in result["tuning"]["als"]["validation"]]


def test_evaluate_refuses_bad_options_clearly(shop_files, capsys):
    events = str(shop_files["events"])
    assert main(["evaluate", "--events", events, "--holdout-days", "-3"]) == 1
    assert "holdout_days" in capsys.readouterr().err


def test_evaluate_anonymous_sessions_by_their_next_item(shop, tmp_path, capsys):
    """A log with no user ids (the clickstream's shape): the session protocol asks for the
    next item after part of each session."""
    events = shop.events.assign(user_id="").head(20_000)
    path = tmp_path / "sessions.parquet"
    events.to_parquet(path)
    out = tmp_path / "evaluation.json"
    args = ["evaluate", "--events", str(path), "--baselines", "popular", "item_knn"]
    assert main([*args, "--json", str(out), "--quiet"]) == 0, capsys.readouterr().err
    result = json.loads(out.read_text())
    assert result["protocol"] == "sessions" and result["cases"] > 50
    table = result["table"]
    assert table["edgeperso"]["ndcg@10"] > table["popular"]["ndcg@10"]

import json
import shutil
import subprocess
import sys

import pytest

import export.pipeline
from edge.errors import BundleError
from export.cli import REPORT_BUG, main


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


def test_export_maps_foreign_columns_by_flag_and_signs_with_the_key_given(
    tmp_path, shop, capsys, monkeypatch
):
    events = shop.events.head(3000).rename(columns={"user_id": "Customer", "item_id": "Sku"})
    path = tmp_path / "events.csv"
    events.to_csv(path, index=False)
    out = tmp_path / "bundle"
    assert main(["keygen", "--out", str(tmp_path / "keys")]) == 0
    public_line = capsys.readouterr().out.strip()
    monkeypatch.setenv("EDGEPERSO_SIGNING_KEY_FILE", str(tmp_path / "keys" / "private.pem"))
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
    err = capsys.readouterr().err
    assert "[3/3] write the bundle" in err and ", signed by key " in err
    assert main(["inspect", str(out), "--public-key", public_line]) == 0
    assert main(["inspect", str(out), "--public-key", str(tmp_path / "keys" / "public.pem")]) == 0


def test_keygen_prints_the_public_key_alone_on_stdout_and_never_overwrites(tmp_path, capsys):
    import base64

    from cryptography.hazmat.primitives.serialization import (
        Encoding,
        PublicFormat,
        load_pem_public_key,
    )

    assert main(["keygen", "--out", str(tmp_path)]) == 0
    out, err = capsys.readouterr()
    public = load_pem_public_key((tmp_path / "public.pem").read_bytes())
    assert (
        out == base64.b64encode(public.public_bytes(Encoding.Raw, PublicFormat.Raw)).decode() + "\n"
    )
    assert "never on an edge node" in err and "EDGEPERSO_PUBLIC_KEY" in err
    assert main(["keygen", "--out", str(tmp_path)]) == 2
    assert capsys.readouterr().err.startswith("keygen failed: ")


def test_export_refuses_a_key_that_cannot_sign_before_any_work(tmp_path, capsys, monkeypatch):
    """The events file does not exist: the key is read first, so a bad one costs no build."""
    assert main(["keygen", "--out", str(tmp_path)]) == 0
    capsys.readouterr()
    export = ["export", "--events", "missing.csv", "--out", str(tmp_path / "b")]
    assert main([*export, "--signing-key", str(tmp_path / "public.pem")]) == 2
    assert "holds a public key: export signs with the private key" in capsys.readouterr().err
    monkeypatch.setenv("EDGEPERSO_SIGNING_KEY", "the old shared secret")
    assert main([*export, "--signing-key", str(tmp_path / "private.pem")]) == 2
    err = capsys.readouterr().err
    assert err.startswith(
        "export failed: EDGEPERSO_SIGNING_KEY (a shared HMAC secret) is no longer"
    )


def test_export_errors_are_one_clear_line(tmp_path, capsys):
    path = tmp_path / "events.csv"
    path.write_text("when,who,what\n2026-01-01,u,a\n")
    assert main(["export", "--events", str(path), "--out", str(tmp_path / "b")]) == 2
    err = capsys.readouterr().err
    assert "export failed" in err and "--map" in err and "Traceback" not in err
    assert main(["export", "--events", str(path), "--map", "colour=x", "--out", "b"]) == 2
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
    assert main(["simulate", "--out", str(out), "--users", "0"]) == 2


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
    assert main(["evaluate", "--events", events, "--holdout-days", "-3"]) == 2
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


def test_an_unreadable_config_is_its_message_and_exit_code_2(tmp_path, capsys):
    missing = tmp_path / "missing.toml"
    args = ["export", "--events", "e.csv", "--config", str(missing), "--out", str(tmp_path / "b")]
    assert main(args) == 2
    err = capsys.readouterr().err
    assert err == f"export failed: config {missing}: cannot be read (No such file or directory)\n"


def test_a_map_flag_without_a_column_is_a_user_error(capsys):
    assert main(["export", "--events", "e.csv", "--map", "user_id", "--out", "b"]) == 2
    err = capsys.readouterr().err
    assert "--map expects canonical=SOURCE_COLUMN" in err and "Traceback" not in err


def test_a_bad_policy_file_is_a_user_error(tmp_path, capsys):
    log = tmp_path / "log.jsonl"
    log.write_text('{"type": "impression", "slot": "home", "propensity": 0.5}\n')
    policy = tmp_path / "policy.json"
    policy.write_text('{"slot": "home"}')
    assert main(["experiment-report", "--log", str(log), "--policy", str(policy)]) == 2
    err = capsys.readouterr().err
    assert err.startswith("experiment-report failed: policy") and '"arms"' in err


def test_a_refused_bundle_is_its_message_and_exit_code_2(monkeypatch, capsys):
    def refuse(*args, **kwargs):
        raise BundleError("ranker.onnx has 4 bytes; the manifest says 9", file="ranker.onnx")

    monkeypatch.setattr(export.pipeline, "export_bundle", refuse)
    assert main(["export", "--events", "e.csv", "--out", "b", "--quiet"]) == 2
    assert (
        capsys.readouterr().err == "export failed: ranker.onnx has 4 bytes; the manifest says 9\n"
    )


@pytest.mark.parametrize("error", [KeyError("features"), ValueError("shapes do not align")])
def test_any_other_error_is_a_bug_shown_with_its_traceback_and_a_request_to_report_it(
    monkeypatch, capsys, error
):
    """A ValueError too: the build's own errors are ExportErrors, so anything else is a bug."""

    def broken(*args, **kwargs):
        raise error

    monkeypatch.setattr(export.pipeline, "export_bundle", broken)
    assert main(["export", "--events", "e.csv", "--out", "b", "--quiet"]) == 1
    err = capsys.readouterr().err
    assert "Traceback (most recent call last)" in err and f"{type(error).__name__}: " in err
    assert err.rstrip().splitlines()[-1] == REPORT_BUG
    assert "export failed" not in err


def test_the_command_line_imports_no_build_library_until_a_build_command_runs():
    """`edgeperso serve` and `inspect` run where only the edge runtime is installed."""
    code = (
        "import sys, export.cli\n"
        "heavy = ('pandas', 'sklearn', 'skl2onnx', 'onnx', 'implicit', 'scipy', 'pyarrow',\n"
        "         'matplotlib', 'pyspark')\n"
        "print(','.join(sorted(m for m in sys.modules if m.split('.')[0] in heavy)))\n"
    )
    result = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True
    )
    assert result.stdout.strip() == ""


def test_a_policy_estimate_over_a_bundle_without_embedded_profiles_sees_no_segments(
    tmp_path, capsys, monkeypatch
):
    """A bundle may leave its profiles to the shop's own store: every visitor is then in no
    segment ("" in the policy), not a crash."""
    import edge.bundle
    import export.experiment_report
    from edge.profiles import EmptyProfileStore

    class NoProfiles:
        profiles = EmptyProfileStore()

    monkeypatch.setattr(edge.bundle, "load_bundle", lambda path: NoProfiles())
    monkeypatch.setattr(export.experiment_report, "bundle_experiments", lambda path: None)
    row = {"slot": "home", "user_id": "u1", "session_id": "s1", "item_id": "-"}
    records = [
        {**row, "type": "impression", "variant": "b1", "propensity": 0.5},
        {**row, "type": "click", "variant": "b1"},
        {**row, "session_id": "s2", "type": "impression", "variant": "b0", "propensity": 0.5},
    ]
    log = tmp_path / "log.jsonl"
    log.write_text("".join(json.dumps(r) + "\n" for r in records))
    policy = tmp_path / "policy.json"
    policy.write_text(json.dumps({"slot": "home", "arms": {"": "b1"}}))
    args = ["--log", str(log), "--policy", str(policy), "--bundle", str(tmp_path / "bundle")]
    assert main(["experiment-report", *args]) == 0
    assert '"ips_click_rate": 1.0' in capsys.readouterr().out


def test_a_policy_whose_arms_are_not_labels_is_a_user_error(tmp_path, capsys):
    log = tmp_path / "log.jsonl"
    log.write_text('{"type": "impression", "slot": "home", "propensity": 0.5}\n')
    policy = tmp_path / "policy.json"
    policy.write_text('{"slot": "home", "arms": {"loyal": 2}}')
    assert main(["experiment-report", "--log", str(log), "--policy", str(policy)]) == 2
    err = capsys.readouterr().err
    assert err.startswith("experiment-report failed: policy") and '"<arm>"' in err

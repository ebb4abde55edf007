import re
import shutil

import msgspec

from edge.bundle import load_bundle
from edge.bundle.manifest import FlaggedItems, InputFile
from export.cli import main
from export.report.build import REPORT, build_report

HOSTILE = "<script>alert(1)</script>"


def charts_in(html: str) -> list[str]:
    return re.findall(r'<figure class="chart" data-chart="([^"]+)">', html)


def sections_in(html: str) -> list[str]:
    return re.findall(r"<h2>([^<]+)</h2>", html)


def test_export_writes_the_report_beside_the_bundle_without_touching_it(bundle_dir):
    html = (bundle_dir / REPORT).read_text()
    manifest = load_bundle(bundle_dir).manifest  # the bundle still verifies
    assert REPORT not in manifest.files
    assert sections_in(html) == [
        "Summary",
        "Data quality",
        "Segments",
        "Purchase intent",
        "Against the baselines",
        "What the build chose, and why",
        "The bundle",
    ]
    # The simulated shop has customers, sessions with purchases and an evaluation: every chart.
    assert set(charts_in(html)) >= {
        "segment-sizes",
        "segment-silhouette",
        "intent-calibration",
        "model-ndcg",
        "versus-baselines",
        "scorer-selection",
        "answer-latency",
    }
    assert f"Build {manifest.build_id}" in html
    assert f"{manifest.lineage.rows_kept:,}" in html
    evaluation = manifest.metrics.evaluation
    assert evaluation is not None
    for name, paired in evaluation.versus.items():
        assert f"<td>{name}</td>" in html and f"{paired.difference:.4g}" in html
    chosen = manifest.models.serving.scorer
    assert chosen is not None and "Served: " in html


def test_what_the_shops_data_names_cannot_inject_markup(bundle):
    """Item ids, file names and drop reasons come from the shop's data; none becomes markup."""
    lineage = msgspec.structs.replace(
        bundle.manifest.lineage,
        files=[InputFile(role="events", name=HOSTILE, sha256="0" * 64, rows=1)],
        dropped_by_reason={HOSTILE: 3},
        non_products={"config": FlaggedItems(items=1, examples=[HOSTILE])},
        config={"input": {"columns": {"item_id": HOSTILE}}},
    )
    manifest = msgspec.structs.replace(bundle.manifest, lineage=lineage, build_id=HOSTILE)
    html = build_report(manifest, None)
    assert "<script" not in html
    assert html.count("&lt;script&gt;") >= 5
    assert "Latency was not measured." in html


def test_report_writes_the_page_of_a_bundle_built_without_one(shop, tmp_path, capsys):
    events = tmp_path / "events.csv"
    shop.events.head(4000).to_csv(events, index=False)
    out = tmp_path / "bundle"
    args = ["export", "--events", str(events), "--out", str(out), "--quiet"]
    assert main([*args, "--no-evaluate", "--no-report"]) == 0
    assert not (out / REPORT).exists()
    assert main(["report", str(out)]) == 0
    assert capsys.readouterr().out.strip() == str(out / REPORT)
    html = (out / REPORT).read_text()
    assert "Not evaluated (export --no-evaluate)." in html
    assert "answer-latency" in charts_in(html)
    elsewhere = tmp_path / "pages" / "build.html"
    assert main(["report", str(out), "--out", str(elsewhere)]) == 0
    assert elsewhere.read_text().startswith("<!doctype html>")


def test_report_refuses_a_bundle_that_does_not_verify(bundle_dir, tmp_path, capsys):
    broken = tmp_path / "broken"
    shutil.copytree(bundle_dir, broken)
    (broken / REPORT).unlink()
    (broken / "covisitation.msgpack").write_bytes(b"oops")
    assert main(["report", str(broken)]) == 2
    assert "covisitation.msgpack" in capsys.readouterr().err
    assert not (broken / REPORT).exists()
    assert main(["report", str(tmp_path / "nowhere")]) == 2


def test_the_summary_names_the_strongest_baseline(bundle):
    html = build_report(bundle.manifest, None)
    evaluation = bundle.manifest.metrics.evaluation
    assert evaluation is not None and evaluation.versus
    weakest_lead = min(evaluation.versus.items(), key=lambda pair: pair[1].difference)[0]
    assert f"against {weakest_lead}, the strongest baseline" in html

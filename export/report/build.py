"""report.html: what a build learned, for the merchant, written into the bundle's directory by
`edgeperso export` (and again by `edgeperso report BUNDLE`). Everything it says comes from the
bundle's manifest (the lineage, the evaluation, the models' own records of how they were
chosen) and from the bundle itself, loaded and asked through the edge's code
(`export.report.latency`). The page is not one of the bundle's files: the manifest does not
list it, publishing does not copy it, and an edge node never reads it."""

from __future__ import annotations

import json
from pathlib import Path

from edge.bundle.manifest import (
    Comparison,
    Evaluation,
    IntentInfo,
    Lineage,
    Manifest,
    RankerTraining,
    SegmentsInfo,
    Signature,
)
from export.report import charts
from export.report.latency import Latency, load_timed, measure_latency, percentile
from export.report.page import Page, Section, write_page
from export.validate import DROP_REASON_MEANINGS

REPORT = "report.html"
STABILITY_CHECKS = {  # export.segments' names for them
    "ari_other_seed": "refitted with another seed",
    "ari_half_of_customers": "refitted on half of the customers",
}


def write_build_report(bundle_dir: str | Path, out: str | Path | None = None) -> Path:
    """Load the bundle (verifying it), time its answers, and write the page to `out`
    (default: report.html in the bundle's directory), whole or not at all."""
    bundle_dir = Path(bundle_dir)
    bundle, load_ms = load_timed(bundle_dir)
    latency = measure_latency(bundle, load_ms)
    target = Path(out) if out is not None else bundle_dir / REPORT
    write_page(target, build_report(bundle.manifest, latency))
    return target


def build_report(manifest: Manifest, latency: Latency | None) -> str:
    """The page's HTML, from a manifest and the measured latency (None: not measured)."""
    lineage, models = manifest.lineage, manifest.models
    evaluation = manifest.metrics.evaluation
    page = Page(f"Build {manifest.build_id}", lead=_lead(manifest))
    _summary(page.section("Summary"), manifest, evaluation, latency)
    _data_quality(page.section("Data quality"), lineage)
    segments = page.section("Segments")
    if models.segments is not None:
        _segments(segments, models.segments)
    else:
        segments.paragraph(
            "No segments were learned: the log has no known customers with enough history, or "
            "the config turned them off.",
            "note",
        )
    intent = page.section("Purchase intent")
    if models.intent is not None:
        _intent(intent, models.intent)
    else:
        intent.paragraph(
            "No intent model was learned: it needs sessions with views and purchases.", "note"
        )
    comparison = page.section("Against the baselines")
    if evaluation is not None and evaluation.table:
        _comparison(comparison, evaluation)
    else:
        reason = evaluation.note if evaluation is not None else None
        comparison.paragraph(
            f"Not evaluated{': ' + reason if reason else ' (export --no-evaluate)'}.", "note"
        )
    _choices(page.section("What the build chose, and why"), manifest)
    _bundle(page.section("The bundle"), manifest, latency)
    return page.html()


def _lead(manifest: Manifest) -> str:
    lineage = manifest.lineage
    span = ""
    if lineage.time_range:
        span = f", {lineage.time_range[0][:10]} to {lineage.time_range[1][:10]}"
    signed = manifest.signature
    signer = f"signed by key {signed.key_id}" if isinstance(signed, Signature) else "not signed"
    return (
        f"Made {manifest.created_at} from {lineage.rows_kept:,} events{span}; {signer}; bundle "
        f"format {manifest.format_version}."
    )


def _summary(
    section: Section, manifest: Manifest, evaluation: Evaluation | None, latency: Latency | None
) -> None:
    lineage = manifest.lineage
    scorer = manifest.models.serving.scorer or "ranker"
    facts: list[tuple[str, str | int | float | None]] = [
        ("events kept", lineage.rows_kept),
        ("items", lineage.items),
        ("customers", lineage.users),
        ("answers ranked by", _scorer_name(scorer)),
    ]
    if evaluation is not None and evaluation.versus:
        best, paired = _strongest_baseline(evaluation)
        k = evaluation.k
        facts.append((f"NDCG@{k} against {best}, the strongest baseline", _versus_text(paired)))
    facts.append(("bundle size", f"{_bundle_bytes(manifest) / 1e6:.2f} MB"))
    if latency is not None and latency.all_ms():
        every = latency.all_ms()
        facts.append(
            (
                "time per answer on the build machine",
                f"median {percentile(every, 0.5):.2f} ms, 99th percentile "
                f"{percentile(every, 0.99):.2f} ms",
            )
        )
    section.facts(facts)


def _data_quality(section: Section, lineage: Lineage) -> None:
    read = lineage.rows_read or 1
    section.facts(
        [
            ("rows read", lineage.rows_read),
            ("rows kept", f"{lineage.rows_kept:,} ({lineage.rows_kept / read:.1%})"),
            ("rows dropped", f"{lineage.rows_dropped:,} ({lineage.rows_dropped / read:.1%})"),
            ("items", lineage.items),
            ("customers", lineage.users),
            ("customers with attributes", lineage.users_with_attributes),
            ("anonymous events joined to their login", lineage.anonymous_events_joined),
        ]
    )
    reasons = list(lineage.dropped_by_reason.items())
    section.table(
        ["reason", "rows dropped", "share of rows read", "what it means"],
        [
            [reason, count, f"{count / read:.2%}", DROP_REASON_MEANINGS.get(reason, "")]
            for reason, count in reasons
        ],
        "Every row the checks dropped, by the first check it failed.",
    )
    dropped = [(reason, count) for reason, count in reasons if count]
    if dropped:
        section.chart(
            charts.bars(
                [r for r, _ in dropped],
                [c for _, c in dropped],
                "Rows dropped, by reason",
                "rows",
                log_scale=max(c for _, c in dropped) > 100 * max(1, min(c for _, c in dropped)),
            ),
            "dropped-rows",
            "Rows dropped by each check (only the checks that dropped any).",
        )
    else:
        section.paragraph("No row was dropped.", "good")
    if lineage.files:
        section.table(
            ["input", "file", "rows", "sha256"],
            [[f.role, f.name, f.rows, f.sha256[:16]] for f in lineage.files],
            "The files read (the sha256 identifies each exactly).",
        )
    if lineage.non_products:
        section.table(
            ["flagged by", "items", "examples"],
            [
                [how, flagged.items, ", ".join(flagged.examples)]
                for how, flagged in lineage.non_products.items()
            ],
            "Items never recommended (postage, fees, ...), kept in the history.",
        )


def _segments(section: Section, info: SegmentsInfo) -> None:
    sizes = [(row.segment, row.size) for row in info.table]
    sizes += [(f"{name} (rule)", size) for name, size in info.rule_sizes.items()]
    section.paragraph(
        f"{len(info.clusters)} segments found by {info.method}"
        + (f" (k = {info.k}, chosen by {info.k_chosen_by})" if info.k else "")
        + (f"; {len(info.rules)} shop rules win over them" if info.rules else "")
        + "."
    )
    if sizes:
        section.chart(
            charts.bars([s for s, _ in sizes], [n for _, n in sizes], "Segment sizes", "customers"),
            "segment-sizes",
            "Customers in each segment.",
        )
    if info.table:
        # Features no segment has (no dwell in a log without it) say nothing of any.
        features = [f for f in info.table[0].centre if any(r.centre.get(f) for r in info.table)]
        section.table(
            ["segment", "customers", "top device", *(f.replace("_", " ") for f in features)],
            [
                [row.segment, row.size, row.top_device or "–", *map(row.centre.get, features)]
                for row in info.table
            ],
            "What characterizes each segment: the median of each feature over its members.",
        )
    if len(info.silhouette) > 1:
        ks = sorted(info.silhouette)
        section.chart(
            charts.line(
                [float(k) for k in ks],
                [info.silhouette[k] for k in ks],
                "Silhouette by number of segments",
                "segments (k)",
                "silhouette",
                marked=float(info.k) if info.k else None,
            ),
            "segment-silhouette",
            "How well separated the segments are for each k tried; the chosen k is circled.",
        )
    if info.stability:
        section.table(
            ["stability check", "adjusted Rand index"],
            [[STABILITY_CHECKS.get(name, name), value] for name, value in info.stability.items()],
            "The same segments again from another seed and from half of the customers "
            "(1 = the same assignment).",
        )


def _intent(section: Section, info: IntentInfo) -> None:
    evaluation = info.evaluation
    if evaluation is None:
        section.paragraph("The intent model was trained but not evaluated.", "note")
        return
    train, later = evaluation.train_window, evaluation.eval_window
    section.facts(
        [
            ("trained on", f"{evaluation.train_sessions:,} sessions, " + _window(train)),
            ("evaluated on", f"{evaluation.eval_sessions:,} later sessions, " + _window(later)),
            ("purchase rate there", f"{evaluation.eval_purchase_rate:.2%}"),
            ("AUC", evaluation.auc),
            (
                "log loss",
                f"{evaluation.log_loss:.4f} (the base rate alone: "
                f"{evaluation.log_loss_of_base_rate:.4f})",
            ),
        ]
    )
    if evaluation.calibration:
        bins = evaluation.calibration
        section.chart(
            charts.calibration(
                [b.predicted for b in bins],
                [b.observed for b in bins],
                [b.sessions for b in bins],
                "Intent calibration",
            ),
            "intent-calibration",
            "Observed purchase rate against the predicted probability, per bin of sessions; "
            "on the dashed line, predictions are exact.",
        )
        section.table(
            ["predicted from", "to", "sessions", "mean predicted", "observed"],
            [[b.low, b.high, b.sessions, b.predicted, b.observed] for b in bins],
            "Calibration bins.",
        )
    truth = evaluation.against_truth
    if truth is not None:
        section.table(
            ["sessions", "AUC of the true intent", "AUC of the model", "Spearman with the truth"],
            [
                [
                    truth.sessions,
                    truth.auc_of_true_intent,
                    truth.auc_of_model,
                    truth.spearman_with_true_intent,
                ]
            ],
            "Against a simulated shop's true purchase probability.",
        )


def _comparison(section: Section, evaluation: Evaluation) -> None:
    k = evaluation.k
    split = evaluation.split
    held = (
        f"{split.split} split"
        + (f" of the last {split.days:g} days" if split.days else "")
        + f": trained on {split.train_events:,} events, tested on {split.test_events:,}"
        if split is not None
        else "held-out split"
    )
    section.paragraph(
        f"Every model was asked the same {evaluation.cases:,} questions ({evaluation.protocol} "
        f"protocol, {held}); edgeperso answered through the edge's own code. Targets: "
        f"{', '.join(evaluation.target_types) or '–'}."
    )
    metrics = list(next(iter(evaluation.table.values())))
    shown = [m for m in metrics if m != "fallbacks"]
    section.table(
        ["model", *shown],
        [[name, *(row.get(m) for m in shown)] for name, row in evaluation.table.items()],
        f"Each model on the test cases (ms: time per answer in the build; coverage: share of "
        f"the catalog in some top {k}).",
    )
    ndcg = f"ndcg@{k}"
    names = [name for name, row in evaluation.table.items() if ndcg in row]
    section.chart(
        charts.bars(
            names,
            [evaluation.table[n][ndcg] for n in names],
            f"NDCG@{k} on the test cases",
            f"NDCG@{k}",
            highlight="edgeperso",
        ),
        "model-ndcg",
        f"Mean NDCG@{k} of each model; edgeperso highlighted.",
    )
    if evaluation.versus:
        versus = list(evaluation.versus.items())
        section.chart(
            charts.intervals(
                [f"edgeperso − {name}" for name, _ in versus],
                [paired.difference for _, paired in versus],
                [paired.ci95 for _, paired in versus],
                f"NDCG@{k} difference, with its 95% interval",
                f"NDCG@{k} of edgeperso minus the baseline's, case by case",
            ),
            "versus-baselines",
            "edgeperso against each baseline on the same cases: an interval right of zero is "
            "better, one across zero is within noise.",
        )
        section.table(
            ["baseline", "difference", "95% interval", "verdict"],
            [
                [
                    name,
                    paired.difference,
                    _interval(paired.ci95),
                    _verdict(paired.ci95),
                ]
                for name, paired in versus
            ],
        )
    tuned = {name: t for name, t in evaluation.tuning.items() if t.get("chosen")}
    if tuned:
        section.table(
            ["baseline", "settings chosen", "settings tried"],
            [
                [name, json.dumps(t["chosen"], sort_keys=True), len(t.get("validation", []))]
                for name, t in tuned.items()
            ],
            "Baselines with settings were tuned on a validation split carved from the training "
            "part.",
        )
    _skipped_baselines(section, evaluation)


def _skipped_baselines(section: Section, evaluation: Evaluation) -> None:
    for name, tuned in evaluation.tuning.items():
        if "skipped" in tuned:
            section.paragraph(f"{name} was not run: {tuned['skipped']}.", "note")


def _choices(section: Section, manifest: Manifest) -> None:
    models = manifest.models
    training = models.ranker.training
    evaluation = manifest.metrics.evaluation
    split = evaluation.split if evaluation is not None else None
    if split is not None and split.chosen_because:
        section.heading("How the build held data out")
        section.paragraph(f"A {split.split} split, because {split.chosen_because}.")
    _ranker_choices(section, training)
    embeddings = models.embeddings
    section.heading("Item embeddings")
    stored = (
        f"{embeddings.method}, {embeddings.factors} factors, {embeddings.rows:,} rows, "
        f"stored as {embeddings.dtype}"
    )
    if embeddings.recall_at_100 is not None:
        stored += (
            f": int8 kept {embeddings.recall_at_100:.2%} of float32's top 100 for "
            f"{embeddings.users or 0:,} customers"
        )
    if embeddings.int8_refused:
        stored += "; int8 lost too much of it and was refused"
    section.paragraph(stored + ".")
    config = manifest.lineage.config
    if config:
        section.preformatted(
            "The build config, as the build read it", json.dumps(config, indent=2, sort_keys=True)
        )


def _ranker_choices(section: Section, training: RankerTraining) -> None:
    section.heading("The ranker")
    section.paragraph(
        f"Trained on {training.rows:,} candidate rows from {training.cases:,} cases "
        f"({training.cases_with_positive:,} with an item taken), {training.trees} trees. Labels: "
        f"{training.labels}"
        + (f", because {training.labels_chosen_because}" if training.labels_chosen_because else "")
        + "."
    )
    if training.features_switched_off:
        section.paragraph(
            "Features switched off (constant or unavailable in this log): "
            + ", ".join(training.features_switched_off)
            + "."
        )
    selection = training.selection
    if selection is None:
        return
    section.heading("What ranks the answers")
    section.paragraph(f"Served: {_scorer_name(selection.chosen)}. {_capital(selection.reason)}.")
    if selection.ndcg:
        names = list(selection.ndcg)
        section.chart(
            charts.bars(
                [_scorer_name(n) for n in names],
                [selection.ndcg[n] for n in names],
                f"NDCG@{selection.k} on {selection.validation_cases:,} validation cases",
                f"NDCG@{selection.k}",
                highlight=_scorer_name(selection.chosen),
            ),
            "scorer-selection",
            "The composite ranker and each candidate generator alone, on cases held out of the "
            "ranker's fit; what is served highlighted.",
        )


def _bundle(section: Section, manifest: Manifest, latency: Latency | None) -> None:
    files = sorted(
        [*manifest.files.items(), *manifest.profile_store.items()],
        key=lambda pair: -pair[1].bytes,
    )
    section.table(
        ["file", "bytes", "sha256"],
        [[name, entry.bytes, entry.sha256[:16]] for name, entry in files],
        f"{_bundle_bytes(manifest) / 1e6:.2f} MB in all.",
    )
    if latency is None:
        section.paragraph("Latency was not measured.", "note")
        return
    section.heading("Time to answer")
    section.paragraph(
        f"Measured on the build machine when this page was written: the bundle loaded and "
        f"verified in {latency.load_ms:,.0f} ms, then answered through the edge's code, without "
        f"HTTP, with a {latency.budget_ms:g} ms budget. An edge node adds HTTP and the network "
        "to these figures."
    )
    section.table(
        ["request", "answers", "median ms", "p90 ms", "p99 ms", "max ms"],
        [
            [
                name,
                len(times),
                round(percentile(times, 0.5), 3),
                round(percentile(times, 0.9), 3),
                round(percentile(times, 0.99), 3),
                round(max(times), 3),
            ]
            for name, times in latency.answers_ms.items()
        ],
    )
    if latency.fallbacks:
        section.paragraph(
            f"{latency.fallbacks} answers ran past the budget and were fallback content.", "bad"
        )
    if latency.all_ms():
        section.chart(
            charts.histogram(latency.all_ms(), "Time per answer", "milliseconds"),
            "answer-latency",
            "How the answers' times spread, every kind of request together.",
        )


def _strongest_baseline(evaluation: Evaluation) -> tuple[str, Comparison]:
    """The baseline edgeperso beats by the least (or loses to by the most)."""
    return min(evaluation.versus.items(), key=lambda pair: pair[1].difference)


def _versus_text(paired: Comparison) -> str:
    spread = "" if paired.ci95 is None else f" (95% interval {_interval(paired.ci95)})"
    return f"{paired.difference:+.4f}{spread}: {_verdict(paired.ci95)}"


def _interval(ci95: tuple[float, float] | None) -> str:
    return "–" if ci95 is None else f"{ci95[0]:+.4f} to {ci95[1]:+.4f}"


def _verdict(ci95: tuple[float, float] | None) -> str:
    if ci95 is None:
        return "too few cases for an interval"
    if ci95[0] > 0:
        return "better"
    if ci95[1] < 0:
        return "worse"
    return "within noise"


def _scorer_name(scorer: str) -> str:
    return {
        "ranker": "the composite ranker",
        "als": "ALS alone",
        "regression": "item-to-item regression alone",
        "covis": "co-visitation alone",
        "popular": "popularity alone",
    }.get(scorer, scorer)


def _window(window: tuple[str, str]) -> str:
    """An ISO time window, to the minute."""
    start, end = (t[:16].replace("T", " ") for t in window)
    return f"{start} to {end}"


def _capital(text: str) -> str:
    return text[:1].upper() + text[1:]


def _bundle_bytes(manifest: Manifest) -> int:
    return sum(f.bytes for f in manifest.files.values()) + sum(
        f.bytes for f in manifest.profile_store.values()
    )

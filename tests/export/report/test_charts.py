from export.report import charts


def test_labels_are_drawn_as_written_never_as_markup_or_mathematics():
    svg = charts.bars(["$x^2$ segment", "<b>bold</b>"], [3, 4], "Sizes & more", "n").decode()
    assert "$x^2$ segment" in svg  # mathtext would have turned it into a superscript
    assert "&lt;b&gt;bold&lt;/b&gt;" in svg and "<b>" not in svg
    assert "Sizes &amp; more" in svg


def test_the_same_chart_is_the_same_bytes():
    """No date in the file, ids salted by the title: a report diffs cleanly between builds."""
    first = charts.intervals(["a − b"], [0.02], [(0.01, 0.03)], "Difference", "NDCG@10")
    assert first == charts.intervals(["a − b"], [0.02], [(0.01, 0.03)], "Difference", "NDCG@10")
    assert b"<dc:date>" not in first


def test_a_log_scale_has_plain_tick_labels():
    svg = charts.bars(["a", "b"], [1, 5_000], "Dropped", "rows", log_scale=True).decode()
    assert "mathdefault" not in svg and "10^" not in svg
    assert ">1,000<" in svg or "1,000" in svg


def test_every_chart_kind_draws_from_small_and_degenerate_input():
    for svg in (
        charts.bars(["only"], [0], "Empty", "n"),
        charts.intervals(["a"], [0.0], [None], "No interval", "d"),
        charts.intervals(["a", "b"], [0.1, 0.2], [(0.05, 0.15), (0.1, 0.3)], "R", "r", False),
        charts.calibration([0.1], [0.0], [0], "One bin"),
        charts.line([3.0], [0.2], "One k", "k", "s", marked=3.0),
        charts.histogram([1.0], "One answer", "ms"),
    ):
        assert svg.startswith(b"<?xml") and b"</svg>" in svg

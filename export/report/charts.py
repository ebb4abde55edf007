"""The reports' charts, drawn by matplotlib as SVG: small files, text kept as text, nothing
fetched when the page opens. Each function returns the SVG's bytes.

Labels come from the shop's data (segment names, baseline names, drop reasons), so matplotlib
is told never to read them as mathematics (`text.parse_math`): a name holding `$` is drawn as
written. Figures are drawn with the object API (`Figure`, never pyplot): no global state, and
no window system."""

from __future__ import annotations

import io
from collections.abc import Sequence
from typing import Any

import matplotlib as mpl
from matplotlib.figure import Figure
from matplotlib.ticker import FuncFormatter, NullFormatter
from matplotlib.typing import RcKeyType

WIDTH_IN = 7.0  # inches at 72 points: about 500 px wide, as the page lays charts out
BAR_HEIGHT_IN = 0.32
ACCENT = "#1f6feb"  # what the build chose or shipped
MUTED = "#8c959f"  # everything it is compared with
STYLE: dict[RcKeyType, Any] = {
    "text.parse_math": False,  # a label is text, never mathtext (see above)
    "svg.fonttype": "none",  # text as <text>, not paths: a tenth of the size, and selectable
    "font.size": 10,
    "axes.spines.top": False,
    "axes.spines.right": False,
    "axes.titlesize": 11,
    "axes.titleweight": "bold",
}


def bars(
    labels: Sequence[str],
    values: Sequence[float],
    title: str,
    xlabel: str,
    highlight: str | None = None,
    log_scale: bool = False,
) -> bytes:
    """Horizontal bars, one per label, top to bottom in the order given; `highlight` in the
    accent colour, the rest muted (all accent without one)."""
    with mpl.rc_context(STYLE):
        figure = _figure(len(labels))
        axes = figure.add_subplot()
        positions = list(range(len(labels)))[::-1]
        colours = [ACCENT if highlight is None or label == highlight else MUTED for label in labels]
        axes.barh(positions, values, color=colours)
        axes.set_yticks(positions, labels=list(labels))
        if log_scale:
            axes.set_xscale("log")
            # Plain tick labels: the log scale's default ones are mathtext, drawn here as text.
            axes.xaxis.set_major_formatter(FuncFormatter(lambda value, _: _short(value)))
            axes.xaxis.set_minor_formatter(NullFormatter())
        for y, value in zip(positions, values):
            axes.annotate(
                _short(value),
                (value, y),
                xytext=(3, 0),
                textcoords="offset points",
                va="center",
                fontsize=8,
            )
        axes.set_title(title, loc="left")
        axes.set_xlabel(xlabel)
        axes.margins(x=0.15)
        return _svg(figure, title)


def intervals(
    labels: Sequence[str],
    values: Sequence[float],
    ranges: Sequence[tuple[float, float] | None],
    title: str,
    xlabel: str,
    differences: bool = True,
) -> bytes:
    """One point per label with its interval as a bar. `differences`: the values are
    differences, drawn around a line at zero, an interval clear of zero in the accent colour
    (a forest plot); else estimates side by side."""
    with mpl.rc_context(STYLE):
        figure = _figure(len(labels))
        axes = figure.add_subplot()
        positions = list(range(len(labels)))[::-1]
        for y, value, span in zip(positions, values, ranges):
            clear = span is not None and not span[0] <= 0 <= span[1]
            colour = ACCENT if clear or not differences else MUTED
            if span is not None:
                axes.plot(span, (y, y), color=colour, linewidth=2.5, solid_capstyle="butt")
            axes.plot([value], [y], "o", color=colour, markersize=6)
        if differences:
            axes.axvline(0.0, color="#57606a", linewidth=0.8)
        axes.set_yticks(positions, labels=list(labels))
        axes.set_ylim(-0.7, len(labels) - 0.3)
        axes.set_title(title, loc="left")
        axes.set_xlabel(xlabel)
        return _svg(figure, title)


def calibration(
    predicted: Sequence[float], observed: Sequence[float], sessions: Sequence[int], title: str
) -> bytes:
    """Observed purchase rate against the predicted one per bin, the diagonal being perfect
    calibration; each point's area follows its bin's sessions."""
    with mpl.rc_context(STYLE):
        figure = Figure(figsize=(WIDTH_IN * 0.7, WIDTH_IN * 0.6))
        axes = figure.add_subplot()
        top = max(1e-3, *predicted, *observed) * 1.05
        axes.plot([0, top], [0, top], color=MUTED, linewidth=1, linestyle="--")
        largest = max(sessions, default=1) or 1
        sizes = [20 + 180 * n / largest for n in sessions]
        axes.plot(predicted, observed, color=ACCENT, linewidth=1)
        axes.scatter(predicted, observed, s=sizes, color=ACCENT, zorder=3)
        axes.set_xlim(0, top)
        axes.set_ylim(0, top)
        axes.set_xlabel("predicted purchase probability (bin mean)")
        axes.set_ylabel("observed purchase rate")
        axes.set_title(title, loc="left")
        return _svg(figure, title)


def line(
    xs: Sequence[float],
    ys: Sequence[float],
    title: str,
    xlabel: str,
    ylabel: str,
    marked: float | None = None,
) -> bytes:
    """A line through points, with `marked` (an x) circled: a curve and the choice made on it."""
    with mpl.rc_context(STYLE):
        figure = Figure(figsize=(WIDTH_IN * 0.7, WIDTH_IN * 0.45))
        axes = figure.add_subplot()
        axes.plot(xs, ys, "o-", color=MUTED, markersize=4)
        if marked is not None and marked in xs:
            y = ys[list(xs).index(marked)]
            axes.plot([marked], [y], "o", color=ACCENT, markersize=10)
        axes.set_xlabel(xlabel)
        axes.set_ylabel(ylabel)
        axes.set_title(title, loc="left")
        return _svg(figure, title)


def histogram(values: Sequence[float], title: str, xlabel: str, bins: int = 40) -> bytes:
    """How `values` spread, with their median and 99th percentile marked."""
    with mpl.rc_context(STYLE):
        figure = Figure(figsize=(WIDTH_IN, WIDTH_IN * 0.4))
        axes = figure.add_subplot()
        axes.hist(values, bins=bins, color=MUTED)
        ordered = sorted(values)
        for share, name in ((0.5, "p50"), (0.99, "p99")):
            if ordered:
                x = ordered[min(len(ordered) - 1, int(share * len(ordered)))]
                axes.axvline(x, color=ACCENT, linewidth=1)
                axes.annotate(
                    f"{name} {x:.2f}",
                    (x, 1),
                    xycoords=("data", "axes fraction"),
                    xytext=(3, -10),
                    textcoords="offset points",
                    fontsize=8,
                    color=ACCENT,
                )
        axes.set_xlabel(xlabel)
        axes.set_ylabel("answers")
        axes.set_title(title, loc="left")
        return _svg(figure, title)


def _figure(rows: int) -> Figure:
    return Figure(figsize=(WIDTH_IN, 0.9 + BAR_HEIGHT_IN * max(rows, 1)), layout="constrained")


def _svg(figure: Figure, title: str) -> bytes:
    """The figure as SVG, the same bytes for the same chart: no date, ids salted by title."""
    if figure.get_layout_engine() is None:
        figure.set_layout_engine("constrained")
    out = io.BytesIO()
    with mpl.rc_context({"svg.hashsalt": title}):
        figure.savefig(out, format="svg", metadata={"Date": None})
    return out.getvalue()


def _short(value: float) -> str:
    """A bar's figure as people read it: 1,234 · 0.0767 · 3.2M."""
    if value >= 1e6:
        return f"{value / 1e6:.1f}M"
    if value == int(value):
        return f"{int(value):,}"
    return f"{value:.4g}"

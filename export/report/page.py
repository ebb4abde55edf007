"""One self-contained HTML page: sections of text, tables and charts, styled inline, with
every chart an SVG inside the file. It opens from disk with no network, and its content
security policy allows nothing else: no script, no request, no font from anywhere.

Everything the page shows comes from the shop's data (item ids, segment names, file names),
so every string is escaped here, in one place; a caller never writes markup. Charts are
`<img>` elements of `data:` URLs: an SVG inside an image runs no script and shares no ids
with the page or with the other charts."""

from __future__ import annotations

import base64
import math
import os
import tempfile
from dataclasses import dataclass, field
from html import escape
from pathlib import Path

POLICY = "default-src 'none'; img-src data:; style-src 'unsafe-inline'"

STYLE = """
body { font: 15px/1.45 system-ui, sans-serif; color: #1f2328; margin: 0 auto;
       max-width: 60rem; padding: 1.5rem; }
h1 { font-size: 1.6rem; margin-bottom: .2rem; }
h2 { font-size: 1.25rem; border-bottom: 1px solid #d0d7de; padding-bottom: .2rem;
     margin-top: 2.2rem; }
h3 { font-size: 1.05rem; margin-top: 1.4rem; }
.lead { color: #57606a; margin-top: 0; }
table { border-collapse: collapse; margin: .6rem 0 1rem; font-size: .9rem; }
caption { text-align: left; color: #57606a; padding-bottom: .3rem; }
th, td { border-bottom: 1px solid #d0d7de; padding: .25rem .7rem .25rem 0; text-align: left;
         vertical-align: top; }
td.num, th.num { text-align: right; font-variant-numeric: tabular-nums; }
figure.chart { margin: .8rem 0 1.2rem; }
figure.chart img { max-width: 100%; height: auto; }
figcaption { color: #57606a; font-size: .85rem; }
dl.facts { display: grid; grid-template-columns: max-content 1fr; gap: .2rem 1rem; }
dl.facts dt { color: #57606a; }
dl.facts dd { margin: 0; }
.good { color: #1a7f37; } .bad { color: #cf222e; } .note { color: #57606a; }
pre { background: #f6f8fa; padding: .7rem; overflow-x: auto; font-size: .8rem; }
"""

Cell = str | int | float | None


@dataclass
class Section:
    title: str
    parts: list[str] = field(default_factory=list)

    def paragraph(self, text: str, kind: str = "") -> None:
        """A paragraph; `kind` "good", "bad" or "note" colours it."""
        css = f' class="{kind}"' if kind else ""
        self.parts.append(f"<p{css}>{escape(text)}</p>")

    def heading(self, text: str) -> None:
        self.parts.append(f"<h3>{escape(text)}</h3>")

    def facts(self, pairs: list[tuple[str, Cell]]) -> None:
        """Name: value pairs, one per line."""
        rows = "".join(f"<dt>{escape(k)}</dt><dd>{_text(v)}</dd>" for k, v in pairs)
        self.parts.append(f'<dl class="facts">{rows}</dl>')

    def table(self, headers: list[str], rows: list[list[Cell]], caption: str = "") -> None:
        """A table; numbers are right-aligned and printed as `number` does."""
        numeric = [
            bool(rows) and all(isinstance(r[i], int | float) or r[i] is None for r in rows)
            for i in range(len(headers))
        ]
        head = "".join(
            f"<th{' class=num' if n else ''}>{escape(h)}</th>" for h, n in zip(headers, numeric)
        )
        body = "".join(
            "<tr>"
            + "".join(
                f'<td class="num">{_text(c)}</td>'
                if isinstance(c, int | float)
                else f"<td>{_text(c)}</td>"
                for c in row
            )
            + "</tr>"
            for row in rows
        )
        title = f"<caption>{escape(caption)}</caption>" if caption else ""
        self.parts.append(
            f"<table>{title}<thead><tr>{head}</tr></thead><tbody>{body}</tbody></table>"
        )

    def chart(self, svg: bytes, name: str, caption: str) -> None:
        """A chart (an SVG from `export.report.charts`); `name` identifies it to a reader of the
        markup and to tests, `caption` says what it shows and is its text alternative."""
        data = base64.b64encode(svg).decode("ascii")
        self.parts.append(
            f'<figure class="chart" data-chart="{escape(name)}">'
            f'<img src="data:image/svg+xml;base64,{data}" alt="{escape(caption)}">'
            f"<figcaption>{escape(caption)}</figcaption></figure>"
        )

    def preformatted(self, summary: str, text: str) -> None:
        """Text shown as it is (a config), folded under `summary`."""
        self.parts.append(
            f"<details><summary>{escape(summary)}</summary><pre>{escape(text)}</pre></details>"
        )


@dataclass
class Page:
    title: str
    lead: str = ""
    sections: list[Section] = field(default_factory=list)

    def section(self, title: str) -> Section:
        section = Section(title)
        self.sections.append(section)
        return section

    def html(self) -> str:
        body = "".join(
            f"<section><h2>{escape(s.title)}</h2>{''.join(s.parts)}</section>"
            for s in self.sections
        )
        lead = f'<p class="lead">{escape(self.lead)}</p>' if self.lead else ""
        return (
            "<!doctype html>\n"
            '<html lang="en"><head><meta charset="utf-8">'
            f'<meta http-equiv="Content-Security-Policy" content="{POLICY}">'
            '<meta name="viewport" content="width=device-width, initial-scale=1">'
            f"<title>{escape(self.title)}</title><style>{STYLE}</style></head>"
            f"<body><h1>{escape(self.title)}</h1>{lead}{body}</body></html>\n"
        )


def number(value: float | int | None) -> str:
    """A figure as a report prints it: counts with thousands separators, rates to 4 digits."""
    if value is None:
        return "–"
    if isinstance(value, bool):
        return "yes" if value else "no"
    if isinstance(value, int):
        return f"{value:,}"
    if math.isnan(value):
        return "–"
    if value == int(value) and abs(value) >= 1000:
        return f"{int(value):,}"
    return f"{value:.4g}" if abs(value) < 1000 else f"{value:,.1f}"


def _text(value: Cell) -> str:
    if isinstance(value, int | float) or value is None:
        return escape(number(value))
    return escape(value)


def write_page(target: Path, text: str) -> None:
    """Write a page whole or not at all: a reader never opens half of one."""
    target.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{target.name}.", dir=target.parent)
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as f:
            f.write(text)
        os.chmod(tmp, 0o644)  # a page to read, as the bundle's files are (mkstemp makes 0600)
        os.replace(tmp, target)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise

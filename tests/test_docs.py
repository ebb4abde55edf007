"""The documentation: README.md (the front door) and docs/ (the reference).

- Every relative link in README.md and docs/*.md reaches a file, and its `#anchor` a heading
  of that file, by GitHub's slug rules.
- The README's walk-through runs: scripts/walkthrough.sh is its commands as a script, every
  command the README shows is in that script in the same order, and the script runs.
- The repository speaks of the product, never of how it was made: no figure labelled by the
  work period or the request that produced it ("this session's", "the issue's", "the last
  run"...) in README.md, docs/, bench/results/, the benchmarks' sources or pyproject.toml.
  "This session" in the shopper's sense (a visitor's browsing session) is product language
  and stays; "this session's" is banned all the same, so write "the current session's".
"""

from __future__ import annotations

import json
import re
import shlex
import subprocess
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
README = ROOT / "README.md"
DOCS = ROOT / "docs"
WALKTHROUGH_SCRIPT = ROOT / "scripts" / "walkthrough.sh"
WALKTHROUGH_HEADING = "A five-minute walk-through"


def doc_files() -> list[Path]:
    return [README, *sorted(DOCS.glob("*.md"))]


def shown(path: Path) -> Path:
    """A path as a failure names it: relative to the repository when inside it."""
    return path.relative_to(ROOT) if path.is_relative_to(ROOT) else path


# ------------------------------------------------------------------ markdown: headings, links
FENCE = re.compile(r"^\s*(```|~~~)")
HEADING = re.compile(r"^(#{1,6})\s+(.*?)\s*#*\s*$")
INLINE_LINK = re.compile(r"!?\[(?:[^\[\]]|\[[^\]]*\])*\]\(\s*<?([^)\s>]*)>?(?:\s+\"[^\"]*\")?\s*\)")
REFERENCE_LINK = re.compile(r"^\s{0,3}\[[^\]]+\]:\s*<?(\S+?)>?(?:\s+\"[^\"]*\")?\s*$")
CODE_SPAN = re.compile(r"(`+)(?:(?!\1).)+?\1")
SCHEME = re.compile(r"^[a-zA-Z][a-zA-Z0-9+.-]*:")


def prose_lines(text: str) -> list[tuple[int, str]]:
    """(line number, line) outside fenced code blocks, code spans blanked."""
    out, fenced = [], False
    for number, line in enumerate(text.splitlines(), start=1):
        if FENCE.match(line):
            fenced = not fenced
            continue
        if not fenced:
            out.append((number, CODE_SPAN.sub("", line)))
    return out


def github_slug(heading: str) -> str:
    """A heading's anchor as GitHub makes it: the rendered text lower-cased, every character
    that is not a letter, digit, space, hyphen or underscore removed, spaces made hyphens."""
    text = re.sub(r"!?\[([^\]]*)\]\([^)]*\)", r"\1", heading)  # a link: its text
    text = re.sub(r"<[^>]+>", "", text)  # inline HTML
    text = text.replace("`", "").replace("*", "")  # code and emphasis marks
    text = re.sub(r"[^\w\- ]", "", text.strip().lower())
    return text.replace(" ", "-")


def anchors(path: Path) -> set[str]:
    """Every heading's anchor in a markdown file, with GitHub's -1, -2... for repeats."""
    seen: dict[str, int] = {}
    found = set()
    fenced = False
    for line in path.read_text(encoding="utf-8").splitlines():
        if FENCE.match(line):
            fenced = not fenced
            continue
        match = None if fenced else HEADING.match(line)
        if match is None:
            continue
        slug = github_slug(match.group(2))
        count = seen.get(slug, 0)
        seen[slug] = count + 1
        found.add(slug if count == 0 else f"{slug}-{count}")
    return found


def relative_links(path: Path) -> list[tuple[int, str]]:
    """(line, target) of every link that is not a URL with a scheme (http:, mailto:...)."""
    links = []
    for number, line in prose_lines(path.read_text(encoding="utf-8")):
        targets = [m.group(1) for m in INLINE_LINK.finditer(line)]
        reference = REFERENCE_LINK.match(line)
        if reference:
            targets.append(reference.group(1))
        links += [(number, t) for t in targets if t and not SCHEME.match(t)]
    return links


def broken_links(path: Path) -> list[str]:
    """`file:line: target: why` for each relative link that does not resolve."""
    problems = []
    for number, target in relative_links(path):
        file_part, _, anchor = target.partition("#")
        resolved = (path.parent / file_part).resolve() if file_part else path
        where = f"{shown(path)}:{number}"
        if not resolved.exists():
            problems.append(f"{where}: {target}: no such file or directory")
        elif anchor and resolved.suffix == ".md" and anchor not in anchors(resolved):
            problems.append(f"{where}: {target}: no heading with the anchor #{anchor}")
    return problems


def test_github_slugs_follow_githubs_rules():
    assert github_slug("The event loop") == "the-event-loop"
    assert github_slug("Set-up: two commands") == "set-up-two-commands"
    assert github_slug("`POST /v1/recommend`") == "post-v1recommend"
    assert github_slug("Where it stands (2026-11-28)") == "where-it-stands-2026-11-28"
    assert github_slug("Fast at the edge: p50 / p99") == "fast-at-the-edge-p50--p99"
    assert github_slug("Links into [docs](docs/)") == "links-into-docs"
    assert github_slug("max_per_category") == "max_per_category"


def test_repeated_headings_get_numbered_anchors(tmp_path):
    page = tmp_path / "page.md"
    page.write_text("# Notes\n\n## Notes\n\n```sh\n# not a heading\n```\n\n## Other\n")
    assert anchors(page) == {"notes", "notes-1", "other"}


def test_the_link_check_reports_a_missing_file_and_a_missing_anchor(tmp_path):
    (tmp_path / "other.md").write_text("# Present\n")
    page = tmp_path / "page.md"
    page.write_text(
        "See [fine](other.md#present), [gone](missing.md), [no anchor](other.md#absent),\n"
        "[here](#top), [web](https://example.com/x.md) and `[code](not-a-link.md)`.\n\n# Top\n"
    )
    problems = broken_links(page)
    assert len(problems) == 2, problems
    assert "missing.md: no such file" in problems[0] and ":1:" in problems[0]
    assert "other.md#absent: no heading with the anchor #absent" in problems[1]


@pytest.mark.parametrize("path", doc_files(), ids=lambda p: str(p.relative_to(ROOT)))
def test_every_relative_link_resolves(path):
    problems = broken_links(path)
    assert not problems, "broken links:\n" + "\n".join(problems)


def test_the_readme_links_every_docs_page():
    readme_targets = {t.partition("#")[0] for _, t in relative_links(README)}
    for page in sorted(DOCS.glob("*.md")):
        if page.name == "testing.md":  # written separately; the README links it all the same
            continue
        assert f"docs/{page.name}" in readme_targets, f"README.md does not link docs/{page.name}"
    assert "docs/testing.md" in readme_targets


# ------------------------------------------------------------------ the walk-through
def shell_commands(text: str) -> list[str]:
    """Logical lines of a shell text: continuations joined, comments and blank lines dropped,
    whitespace normalized."""
    commands, pending = [], ""
    for raw in text.splitlines():
        line = pending + " " + raw.strip() if pending else raw.strip()
        if line.endswith("\\"):
            pending = line[:-1].strip()
            continue
        pending = ""
        line = strip_comment(line)
        if line:
            commands.append(" ".join(line.split()))
    return commands


def strip_comment(line: str) -> str:
    """The line without a `# comment` that starts outside quotes."""
    quote = None
    for i, char in enumerate(line):
        if quote:
            quote = None if char == quote else quote
        elif char in "'\"":
            quote = char
        elif char == "#" and (i == 0 or line[i - 1].isspace()):
            return line[:i].rstrip()
    return line


def is_assignment(command: str) -> bool:
    """`NAME=value [NAME=value ...]` and nothing else."""
    try:
        words = shlex.split(command)
    except ValueError:
        return False
    return bool(words) and all(re.match(r"^[A-Za-z_]\w*=", w) for w in words)


def readme_walkthrough() -> list[str]:
    """The commands of the first ```sh block under the README's walk-through heading."""
    text = README.read_text(encoding="utf-8")
    heading = re.search(rf"^##\s+{re.escape(WALKTHROUGH_HEADING)}\s*$", text, re.MULTILINE)
    assert heading, f"README.md has no '## {WALKTHROUGH_HEADING}' section"
    block = re.search(r"^```(?:sh|bash|shell)\n(.*?)^```", text[heading.end() :], re.S | re.M)
    assert block, "the walk-through section has no ```sh block"
    return shell_commands(block.group(1))


def test_every_walkthrough_command_is_in_the_script_in_order():
    shown = readme_walkthrough()
    script = shell_commands(WALKTHROUGH_SCRIPT.read_text(encoding="utf-8"))
    assert len([c for c in shown if not is_assignment(c)]) >= 6, shown
    assigned = {m.group(1) for c in script if (m := re.match(r"([A-Za-z_]\w*)=", c))}
    position = 0
    for command in shown:
        if is_assignment(command):  # the script picks its own values (a temp dir, a free port)
            names = {w.split("=", 1)[0] for w in shlex.split(command)}
            assert names <= assigned, f"the script does not set {sorted(names - assigned)}"
            continue
        found = [i for i in range(position, len(script)) if script[i] == command]
        assert found, (
            f"the README's walk-through runs\n    {command}\nwhich {WALKTHROUGH_SCRIPT.name} "
            "does not (or not after the command before it): keep them the same"
        )
        position = found[0] + 1


def test_the_walkthrough_covers_export_inspect_serve_curl_and_evaluate():
    shown = " \n".join(readme_walkthrough())
    for step in ("edgeperso export", "edgeperso inspect", "edgeperso serve", "curl", "evaluate"):
        assert step in shown, f"the README's walk-through does not show {step!r}"
    assert "--host 127.0.0.1" in shown


@pytest.mark.slow
def test_the_walkthrough_runs_and_answers():
    done = subprocess.run(
        ["bash", str(WALKTHROUGH_SCRIPT)],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert done.returncode == 0, f"{done.stdout[-3000:]}\n{done.stderr[-3000:]}"
    out = done.stdout
    assert re.search(r"^bundle \S+: valid \(format \d+", out, re.M), out[:2000]
    start = out.index('{"items":')
    answer, _ = json.JSONDecoder().raw_decode(out[start:])
    assert len(answer["items"]) == 3 and answer["fallback"] is None, answer
    assert answer["personalized"] is True
    assert re.fullmatch(r"\d{8}T\d{6}Z-[0-9a-f]{10}", answer["bundle"]), answer["bundle"]
    table = re.search(r"^\s*edgeperso\s+[\d.]+\s+([\d.]+)", out, re.M)
    popular = re.search(r"^\s*popular\s+[\d.]+\s+([\d.]+)", out, re.M)
    assert table and popular, out[-2000:]  # NDCG@10 of the bundle and of the baseline


# ------------------------------------------------------------------ no process wording
# Phrases that label a figure or a text by the work that produced it, collected from the README
# before it became a front door (case-insensitive). Each names a work period, a request or a
# before/after of a change; the product's own words never need them.
PROCESS_PHRASES = (
    "this session's",  # "this session's machine", "this session's rebuild"
    ", this session",  # "(latest run, this session)", "5 rounds, this session, on a new machine"
    "the issue",  # "the figures", "the machine", "the issue's own figure"
    "earlier session",
    "last session",
    "latest session",
    "session before",  # "the session before", "the machine of the session before"
    "sessions before",
    "the last run",
    "latest run",
    "the last one",  # "whose memory is slower than the last one's"
    "the machine before",
    "on a new machine",
    "the code before",
    "old code",
    "old and new",
    "this change",  # "before this change", "after this change"
    "the commit before",
)
WORDING_FILES = ("README.md", "docs/*.md", "bench/results/*", "bench/*.py", "pyproject.toml")


def wording_files() -> list[Path]:
    return sorted({p for pattern in WORDING_FILES for p in ROOT.glob(pattern) if p.is_file()})


def process_wording(path: Path) -> list[str]:
    """`file:line: "phrase" in: line` for each banned phrase."""
    found = []
    for number, line in enumerate(path.read_text(encoding="utf-8").splitlines(), start=1):
        lowered = line.lower()
        for phrase in PROCESS_PHRASES:
            if phrase in lowered:
                found.append(f'{shown(path)}:{number}: "{phrase}" in: {line.strip()}')
    return found


def test_the_wording_check_names_the_file_and_line(tmp_path):
    sample = tmp_path / "probe.md"
    sample.write_text("A visitor's view in this session counts.\nThe latest run gave 3 ms.\n")
    assert process_wording(sample) == [f'{sample}:2: "latest run" in: The latest run gave 3 ms.']


@pytest.mark.parametrize("path", wording_files(), ids=lambda p: str(p.relative_to(ROOT)))
def test_no_text_tells_how_the_product_was_made(path):
    found = process_wording(path)
    assert not found, (
        "say what the product does and date each figure, with its machine and command:\n"
        + "\n".join(found)
    )

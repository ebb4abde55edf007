import base64
import re
import stat

from export.report.page import POLICY, Page, number, write_page

HOSTILE = '<script>alert(1)</script><img src=x onerror="alert(2)">'


def test_every_string_the_page_shows_is_escaped_and_no_script_can_run():
    page = Page(HOSTILE, lead=HOSTILE)
    section = page.section(HOSTILE)
    section.paragraph(HOSTILE)
    section.heading(HOSTILE)
    section.facts([(HOSTILE, HOSTILE)])
    section.table([HOSTILE], [[HOSTILE]], caption=HOSTILE)
    section.chart(b"<svg xmlns='http://www.w3.org/2000/svg'/>", HOSTILE, HOSTILE)
    section.preformatted(HOSTILE, HOSTILE)
    html = page.html()
    assert "<script" not in html and "<img src=x" not in html
    # all 16 places: title (twice), lead, section, paragraph, heading, facts (2), table (3),
    # chart (name, alt, caption), folded text (2)
    assert html.count("&lt;script&gt;alert(1)&lt;/script&gt;") == 16
    assert f'content="{POLICY}"' in html and "script-src" not in POLICY
    assert "default-src 'none'" in POLICY  # nothing is fetched: the page works offline


def test_a_chart_is_an_image_of_the_exact_svg_named_for_readers_and_tests():
    svg = b"<svg xmlns='http://www.w3.org/2000/svg' width='4' height='4'/>"
    page = Page("t")
    page.section("s").chart(svg, "sizes", "Customers per segment.")
    html = page.html()
    found = re.search(r'data-chart="sizes"><img src="data:image/svg\+xml;base64,([^"]+)"', html)
    assert found and base64.b64decode(found.group(1)) == svg
    assert 'alt="Customers per segment."' in html


def test_numbers_are_printed_as_people_read_them():
    assert number(1234567) == "1,234,567"
    assert number(0.076712) == "0.07671"
    assert number(1397.07) == "1,397.1"
    assert number(None) == number(float("nan")) == "–"
    page = Page("t")
    page.section("s").table(["model", "ndcg"], [["a", 0.5], ["b", None]])
    assert "<th class=num>ndcg</th>" in page.html()  # a column of numbers is right-aligned


def test_a_page_is_written_whole_and_readable_by_others(tmp_path):
    target = tmp_path / "deep" / "report.html"
    write_page(target, "<!doctype html>")
    assert target.read_text() == "<!doctype html>"
    assert stat.S_IMODE(target.stat().st_mode) == 0o644
    assert [p.name for p in target.parent.iterdir()] == ["report.html"]  # no temporary left

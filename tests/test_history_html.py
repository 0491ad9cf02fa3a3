"""``lpo-ci history html``: the dashboard as a real headless Chromium renders it.

The page is built from records made by the record builder (a rename, a model
change, a new fingerprint, a commit subject written to break out of the page),
loaded from disk in the distribution's ``chromium`` with a fresh profile, and
checked the way a person would: charts drawn (their geometry and the line's
pixels in a screenshot), a tooltip under the pointer, no console error, no
request leaving the file.
"""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from lpo_ci.cli import main
from lpo_ci.history import series as ser
from lpo_ci.history.html import dashboard
from lpo_ci.history.store import LocalStore
from tests.support.chromium import check_page, chromium_binary
from tests.support.history_data import commit_id, context, make_record, synthetic_history
from tests.support.png import count_colour

HOSTILE = "</script><img src=x onerror=\"document.title='pwned'\"><b>bold</b> & 'quotes' @team"
LINE_COLOUR = (0x0F, 0x76, 0x6E)
needs_chromium = pytest.mark.skipif(chromium_binary() is None,
                                    reason="chromium is not installed (.ci/run installs it: apt-get install chromium)")
CHARTS = """JSON.stringify({
  charts: Number(document.documentElement.getAttribute('data-charts')),
  title: document.title,
  lines: Array.from(document.querySelectorAll('svg.chart.accuracy path.line')).map(p => Math.round(p.getTotalLength())),
  bands: Array.from(document.querySelectorAll('svg.chart.accuracy path.band'))
              .map(p => Math.round(p.getBoundingClientRect().height)),
  marks: Array.from(document.querySelectorAll('svg.chart .mark-label')).map(t => t.textContent),
  costs: document.querySelectorAll('svg.chart.cost path.line').length,
  injected: document.querySelectorAll('main img, main b').length
})"""


def history(tmp_path: Path) -> LocalStore:
    """Two templates: one renamed, with a template edit, a model change and a new fingerprint."""
    store = LocalStore(tmp_path / "history")
    records = []
    for index in range(12):
        outcomes = "c" * (30 - index % 4) + "w" * (10 + index % 4)
        path = "prompts/a.j2" if index < 6 else "prompts/b.j2"
        records.append(make_record(
            path, outcomes, index, text="v1" if index < 4 else "v2",
            renamed_from="prompts/a.j2" if index == 6 else None,
            model="openai/fake" if index < 8 else "openai/other",
            fingerprint="fp-one" if index < 10 else "fp-two",
            ctx=context(index, subject=HOSTILE if index == 5 else None)))
        records.append(make_record("prompts/c.j2", "c" * (20 + index) + "w" * 10, index))
    store.append(records)
    return store


def test_the_page_is_self_contained_and_escapes_what_it_shows(tmp_path):
    page = dashboard(ser.select(ser.build(history(tmp_path).shards()), None), title="<Quality & more>")
    assert "Content-Security-Policy" in page and "default-src 'none'" in page
    assert not re.search(r"(src|href)=\"(https?:)?//", page)  # nothing to fetch
    assert "&lt;Quality &amp; more&gt;" in page and "<Quality" not in page
    assert HOSTILE not in page and "</script><img" not in page
    assert "\\u003c/script\\u003e\\u003cimg src=x" in page  # the subject travels as inert JSON
    assert "prompts/b.j2 (formerly prompts/a.j2)" in page


@needs_chromium
def test_headless_chromium_draws_the_charts_without_errors(tmp_path, capsys):
    store = history(tmp_path)
    out = tmp_path / "site" / "index.html"
    assert main(["history", "html", str(out), "--dir", str(store.directory), "--root", str(tmp_path)]) == 0
    assert f"dashboard written to {out}" in capsys.readouterr().out

    page = check_page(out, dom_expression=CHARTS, hover=("section svg.accuracy rect.hover", 0.0))
    assert page.console == [] and page.exceptions == [] and page.requests == []
    import json

    dom = json.loads(page.dom)
    assert dom["charts"] == 4 and dom["title"] == "Prompt quality over time"  # not 'pwned'
    assert dom["injected"] == 0
    # b.j2 (with a.j2's records): two comparable runs, each a line with its band; c.j2: one line
    assert len(dom["lines"]) == 3 and all(length > 50 for length in dom["lines"])
    assert len(dom["bands"]) == 3 and all(height > 10 for height in dom["bands"])
    assert sorted(dom["marks"]) == ["D", "M", "T"]
    assert dom["costs"] == 4
    assert page.tooltip.startswith(f"{commit_id(0)[:8]}  2026-01-01\nChange number 0\naccuracy 75.0%")
    assert count_colour(page.screenshot, LINE_COLOUR) > 500  # the lines are on the screen


@needs_chromium
def test_the_tooltip_shows_a_hostile_subject_as_text(tmp_path):
    store = history(tmp_path)
    out = tmp_path / "index.html"
    out.write_text(dashboard(ser.select(ser.build(store.shards()), ["prompts/b.j2"]), title="t"), encoding="utf-8")
    # the pointer at the sixth of b.j2's twelve records: the one with the hostile subject
    page = check_page(out, dom_expression="document.title", hover=("svg.accuracy rect.hover", 5 / 11))
    assert page.console == [] and page.exceptions == [] and page.requests == [] and page.dom == "t"
    assert page.tooltip.splitlines()[1] == HOSTILE


@needs_chromium
def test_the_browser_check_catches_errors_and_requests(tmp_path):
    """The checks above can fail: a page with a console error, an exception and a remote image."""
    bad = tmp_path / "bad.html"
    bad.write_text("<html><body><script>console.error('broken chart');</script>"
                   "<img src='http://198.51.100.1/x.png'><script>undefinedFunction();</script></body></html>",
                   encoding="utf-8")
    page = check_page(bad)
    assert "broken chart" in " ".join(page.console)
    assert any("undefinedFunction" in e for e in page.exceptions)
    assert "http://198.51.100.1/x.png" in page.requests


def test_a_long_history_draws_lines_not_dots(tmp_path):
    store = synthetic_history(tmp_path / "h", templates=1, commits=400, n=20)
    page = dashboard(ser.select(ser.build(store.shards()), None), title="t")
    assert page.count("<circle") == 0 and page.count('class="line"') >= 2

"""The trend in the pull-request comment: built from records, carried by the report, read back as
untrusted data, drawn by Mermaid (checked with Mermaid's own bundle in headless Chromium) and the
first thing dropped when the comment is too long."""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest

from lpo_ci.github import comment
from lpo_ci.github.report_view import ReportError, load_report
from lpo_ci.history import drift, trend
from tests.support.chromium import check_page, chromium_binary
from tests.support.history_data import commit_id, item, make_record

MERMAID = os.environ.get("LPO_CI_TEST_MERMAID_JS", "")


def records(count: int, **options) -> list[dict]:
    return [make_record("prompts/x.j2", "c" * (30 - i) + "w" * (10 + i), i, text=f"v{i // 3}", **options)
            for i in range(count)]


def head_record(outcomes: str = "c" * 20 + "w" * 20, **options) -> dict:
    return make_record("prompts/x.j2", outcomes, 99, **options)


def test_the_trend_keeps_comparable_records_and_ends_at_the_head():
    recent = records(15)
    recent[13] = make_record("prompts/x.j2", "c" * 40, 13, fingerprint="other")
    built = trend.build(recent, head_record())
    assert len(built.points) == trend.POINTS and built.head == 0.5 and built.left_out == 1
    assert [p.commit for p in built.points][-1] == recent[14]["commit"]
    assert built.points[-2].commit == recent[12]["commit"]  # the incomparable record is not drawn
    assert built.points[1].changes in ("", "T")
    assert trend.parse(json.loads(json.dumps(built.to_dict()))) == built


def test_the_markdown_block_has_a_sparkline_and_a_mermaid_line_chart():
    block = trend.markdown("`prompts/x.j2`", trend.build(records(4), head_record()))
    first, chart = block.split("\n\n", 1)
    assert first.startswith("`prompts/x.j2` `") and "75.0% → **50.0%** at this pull request's head" in first
    assert "(4 earlier records of the base branch)" in first
    lines = chart.splitlines()
    assert lines[:2] == ["```mermaid", "xychart-beta"] and lines[-1] == "```"
    assert lines[2] == '  x-axis ["' + '", "'.join(commit_id(i)[:7] for i in range(4)) + '", "head"]'
    assert lines[3] == '  y-axis "accuracy (%)" 40 --> 80' and lines[4] == "  line [75.0, 72.5, 70.0, 67.5, 50.0]"
    assert trend.markdown("t", trend.Trend([], 0.5)) == ""  # one point is not a trend
    # a commit recorded twice (a fresh re-run) gets a label of its own: Mermaid merges equal ones
    again = trend.build(records(2) + [make_record("prompts/x.j2", "c" * 40, 1)], head_record())
    labels = trend.markdown("t", again).split("x-axis ")[1].split("\n")[0]
    assert labels == f'["{commit_id(0)[:7]}", "{commit_id(1)[:7]}", "{commit_id(1)[:7]}-2", "head"]'


@pytest.mark.parametrize("bad, field", [
    ({"points": [{"commit": "zz\" --> 0\nline [1]", "date": "2026-01-01", "accuracy": 0.5}]}, "point 0"),
    ({"points": [{"commit": "abcdef12", "date": "<b>x</b>", "accuracy": 0.5}]}, "point 0"),
    ({"points": [{"commit": "abcdef12", "date": "2026-01-01", "accuracy": 7}]}, "point 0"),
    ({"points": [{"commit": "abcdef12", "date": "2026-01-01", "accuracy": 0.5, "changes": "```"}]}, "point 0"),
    ({"points": [], "head": "high"}, "head"),
    ({"points": "many"}, "list of points"),
])
def test_a_report_with_a_forged_trend_is_refused(tmp_path, bad, field):
    report = tmp_path / "report.json"
    entry = {**item("prompts/x.j2", "cc"), "line": 1, "reason": "", "history": {"trend": bad}}
    report.write_text(json.dumps({"version": 1, "templates": [entry]}), encoding="utf-8")
    with pytest.raises(ReportError, match=rf"templates\[0\]\.history\.trend: expected .*{field}"):
        load_report(report)


def view_with_trends(tmp_path: Path, templates: int) -> object:
    entries = []
    for index in range(templates):
        name = f"prompts/t{index:02d}.j2"
        built = trend.build([make_record(name, "c" * (30 - i) + "w" * (10 + i), i) for i in range(12)],
                            make_record(name, "c" * 20 + "w" * 20, 99))
        entries.append({**item(name, "c" * 20 + "w" * 20), "line": 1, "reason": "no significant drop",
                        "head_accuracy": 0.5, "history": {"trend": built.to_dict()}})
    report = tmp_path / "report.json"
    report.write_text(json.dumps({"version": 1, "templates": entries}), encoding="utf-8")
    return load_report(report)


def test_the_comment_shows_the_trends_and_drops_them_first_when_too_long(tmp_path):
    view = view_with_trends(tmp_path, 30)
    full = comment.render(view, marker_text=comment.marker("k"), limit=comment.COMMENT_LIMIT)
    assert "#### Accuracy over time" in full and full.count("```mermaid\nxychart-beta") == 30
    assert "left out" not in full
    tight = comment.render(view, marker_text=comment.marker("k"), limit=len(full) - 1)
    assert "```mermaid" not in tight and "Trend charts left out to fit" in tight
    assert tight.count("| ✅ |") == 30  # every verdict row is still there
    summary = comment.render(view, limit=comment.SUMMARY_LIMIT)
    assert summary.count("xychart-beta") == 30


@pytest.mark.skipif(not (MERMAID and Path(MERMAID).is_file() and chromium_binary()),
                    reason="needs chromium and Mermaid's browser bundle (LPO_CI_TEST_MERMAID_JS; .ci/run fetches it)")
def test_mermaid_draws_the_trend_chart(tmp_path):
    block = trend.markdown("`prompts/x.j2`", trend.build(records(12), head_record()))
    chart = block.split("```mermaid\n", 1)[1].rsplit("```", 1)[0]
    page = tmp_path / "mermaid.html"
    page.write_text(
        f"<html><body><div id='out'></div><script src='{Path(MERMAID).resolve().as_uri()}'></script><script>"
        "mermaid.initialize({startOnLoad: false});"
        f"window.drawn = mermaid.render('trend', {json.dumps(chart)})"
        ".then(r => { document.getElementById('out').innerHTML = r.svg; return 'ok'; })"
        ".catch(e => 'error: ' + e);</script></body></html>", encoding="utf-8")
    result = check_page(page, size=(800, 500), dom_expression=(
        "window.drawn.then(s => JSON.stringify({status: s, labels: Array.from(document.querySelectorAll("
        "'#out svg text')).map(t => t.textContent), lines: document.querySelectorAll('#out svg path').length}))"))
    drawn = json.loads(result.dom)
    assert drawn["status"] == "ok" and result.exceptions == [] and result.console == []
    assert "head" in drawn["labels"] and "accuracy (%)" in drawn["labels"] and drawn["lines"] >= 1


def test_a_finding_serialises_for_the_report():
    window = records(5)
    found = drift.creeping(window, head_record(text="v2"), tolerance=0.05, alpha=0.05, size=5)
    data = found.to_dict()
    assert data["status"] == "fail" and data["paired"]["drop"] == pytest.approx(0.25)
    assert data["reference"]["commit"] == window[0]["commit"] and data["changes"] == 2
    assert found.message.startswith(f"creeping regression: accuracy fell 25.0 points since {window[0]['commit'][:8]} "
                                    "(2026-01-01), over 2 changes")

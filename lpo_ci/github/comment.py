"""The report as Markdown that always fits: the sticky comment and the job summary.

GitHub refuses a comment over 65,536 characters and cuts a job summary over
1 MiB, and a refused comment leaves the previous one standing with an old
verdict. So the body is assembled from pieces (title, one row per template,
one section per failing or erroring template, warnings, footer) and stepped
down, leanest last, until it fits:

1. optional per-template blocks (``TemplateBlock``: a trend chart, a note) go first;
2. fewer and shorter example answers, then none;
3. the passing templates shrink to one count row;
4. shorter reasons and no patches; then sections for the first templates only;
5. no sections; then compact rows;
6. rows for the first templates only, the rest counted ("and 9,850 more failing
   templates ... see the job summary").

Rows come worst first (regressions by their drop, then errors, then passes),
so what is cut is the least severe; no failing verdict disappears without
being counted. Sizes are measured in UTF-8 bytes, never less than however
GitHub counts characters.
"""

from __future__ import annotations

import hashlib
import re
from dataclasses import dataclass, replace
from functools import lru_cache
from typing import Callable, Iterable

from .markdown import code, environment
from .report_view import ReportView, TemplateView

LEGACY_MARKER = "<!-- lpo-ci:report -->"
COMMENT_LIMIT = 65536
SUMMARY_LIMIT = 1024 * 1024  # a step's job summary may hold 1 MiB
ICONS = {"pass": "✅", "fail": "❌", "error": "⚠️"}
RUN_URL = re.compile(r"^https?://[^\s()<>\[\]]+$")
MODELS_SHOWN = 3


def marker(key: str) -> str:
    """The hidden marker of one publisher's comment (a digest: the key's text stays out of HTML)."""
    return f"<!-- lpo-ci:report {hashlib.sha256(key.encode('utf-8')).hexdigest()[:16]} -->"


def size(text: str) -> int:
    return len(text.encode("utf-8"))


@dataclass(frozen=True)
class TemplateBlock:
    """An optional section added to each failing or erroring template's details.

    ``section``: "template" (after its reason and examples) or "optimization" (after
    the suggested fix). ``render`` returns Markdown that is already safe (escape what
    you interpolate with ``markdown.escape``/``code``/``fenced``), or None for nothing.
    Blocks are the first thing dropped when the comment must shrink.
    """

    section: str
    render: Callable[[TemplateView], str | None]


@dataclass(frozen=True)
class Shape:
    """How much one rendering shows."""

    blocks: bool = True
    flips: int = 20
    answer_chars: int = 160
    reason_chars: int = 600
    patch: bool = True
    passing_rows: bool = True
    details: bool = True
    compact: bool = False


_FULL = Shape()
_LEAN = Shape(blocks=False, flips=0, reason_chars=300, patch=False, passing_rows=False)
SHAPES = (
    _FULL,
    replace(_FULL, blocks=False),
    replace(_FULL, blocks=False, flips=5, answer_chars=60),
    replace(_FULL, blocks=False, flips=0),
    replace(_FULL, blocks=False, flips=0, passing_rows=False),
    _LEAN,                                   # then: sections for the first templates only
    replace(_LEAN, details=False),
    replace(_LEAN, details=False, compact=True),  # then: rows for the first templates only
)


def headline(view: ReportView) -> str:
    failed, errors = len(view.regressed), len(view.errored)
    if not view.templates:
        return "no prompt templates were scored"
    parts = []
    if failed:
        parts.append(f"{failed:,} template{'s' * (failed != 1)} regressed")
    if errors:
        parts.append(f"{errors:,} could not be evaluated")
    if not parts:
        count = len(view.templates)
        return "the prompt template holds its accuracy" if count == 1 else \
            f"all {count:,} prompt templates hold their accuracy"
    return ", ".join(parts)


def verdict_word(view: ReportView | None) -> str:
    if view is None or (view.errored and not view.regressed):
        return "ERROR"
    return "FAIL" if view.regressed else "PASS"


def ordered(view: ReportView) -> list[TemplateView]:
    """Worst first: regressions by their drop, then errors, then passes (each by path)."""
    rank = {"fail": 0, "error": 1, "pass": 2}
    return sorted(view.templates, key=lambda t: (rank[t.status], t.delta if t.status == "fail" and t.delta
                                                 is not None else 0.0, t.path))


@lru_cache(maxsize=1)
def _module():
    return environment().get_template("github/report.md.j2").module


def _piece(text: object) -> str:
    return str(text).strip("\n")


def _take(pieces: Iterable[str], budget: int, joiner: int) -> list[str]:
    """The leading pieces whose sizes (plus a joiner each) fit in ``budget``."""
    taken, used = [], 0
    for piece in pieces:
        used += size(piece) + joiner
        if used > budget:
            break
        taken.append(piece)
    return taken


def render(view: ReportView, *, limit: int, marker_text: str = "", label: str | None = None,
           posted=None, unposted=None, problems: list[str] | None = None, run_url: str | None = None,
           blocks: Iterable[TemplateBlock] = (), elsewhere: str = "the job summary and the JSON report") -> str:
    """The report in Markdown, as detailed as fits in ``limit`` bytes; ``elsewhere`` says
    where what does not fit can be read."""
    m = _module()
    posted, unposted, blocks = posted or {}, unposted or {}, tuple(blocks)
    rows_order = ordered(view)
    flagged = [t for t in rows_order if t.status != "pass"]
    passing = [t for t in rows_order if t.status == "pass"]
    models = sorted({t.model for t in view.templates if t.model})
    head = [_piece(marker_text)] if marker_text else []
    head.append(_piece(m.title(headline(view), label)))
    tail = [_piece(m.problems(problems))] if problems else []
    tail.append(_piece(m.footer(view.tool or "lpo-ci", view.base_rev, models[:MODELS_SHOWN],
                                max(0, len(models) - MODELS_SHOWN), sum(t.calls for t in view.templates),
                                sum(t.cache_hits for t in view.templates), sum(t.cost for t in view.templates),
                                run_url if run_url and RUN_URL.match(run_url) else None)))

    from ..history.trend import comment_section

    # Every template's trend (passing ones too): optional, dropped with the blocks.
    trends = comment_section([(code(t.template, 100), t.trend) for t in rows_order if t.trend])
    rendered_rows: dict[tuple[int, bool], str] = {}

    def row(t: TemplateView, compact: bool) -> str:
        key = (id(t), compact)
        if key not in rendered_rows:
            rendered_rows[key] = _piece(m.row(t, ICONS, compact))
        return rendered_rows[key]

    def section(t: TemplateView, shape: Shape) -> str:
        extra: dict[str, list[str]] = {"template": [], "optimization": []}
        for block in blocks if shape.blocks else ():
            text = block.render(t)
            if text:
                extra.setdefault(block.section, []).append(text)
        return _piece(m.details(t, shape, ICONS, posted, unposted, extra["template"], extra["optimization"],
                                elsewhere))

    def assemble(shape: Shape, rows: list[str], hidden_passing: int, more: str, sections: list[str],
                 more_sections: str, trimmed: bool) -> str:
        table = [_piece(m.table_header(shape.compact)), *rows]
        if hidden_passing:
            table.append(_piece(m.passing_row(hidden_passing, ICONS, shape.compact)))
        blocks_ = [*head, "\n".join(table)] if view.templates else list(head)
        blocks_ += [more] if more else []
        blocks_ += sections + ([more_sections] if more_sections else [])
        if trends and shape.blocks:
            blocks_.append(_piece(m.trends(trends)))
        elif trends and not trimmed:
            blocks_.append(_piece(m.trends_left_out()))
        blocks_ += [_piece(m.trimmed(elsewhere))] if trimmed else []
        return "\n\n".join(blocks_ + tail) + "\n"

    for index, shape in enumerate(SHAPES):
        trimmed = replace(shape, blocks=True) != _FULL  # dropping optional blocks is no trimming
        listed = rows_order if shape.passing_rows else flagged
        hidden_passing = 0 if shape.passing_rows else len(passing)
        rows_budget = limit - size(assemble(shape, [], hidden_passing, "", [], "", trimmed))
        rows = _take((row(t, shape.compact) for t in listed), rows_budget, 1)
        last = index == len(SHAPES) - 1
        if len(rows) < len(listed) and not last:
            continue
        if len(rows) < len(listed):  # the leanest shape: as many rows as fit, the rest counted
            def counted(rest: list[TemplateView]) -> str:
                return _piece(m.more_rows(sum(t.status == "fail" for t in rest),
                                          sum(t.status == "error" for t in rest), 0, elsewhere))

            budget = limit - size(assemble(shape, [], hidden_passing, counted(listed), [], "", True))
            rows = _take((row(t, True) for t in listed), budget, 1)
            text = assemble(shape, rows, hidden_passing, counted(listed[len(rows):]), [], "", True)
            return text if rows and size(text) <= limit else _minimal(view, head, tail, limit, m, elsewhere)
        if not shape.details:
            return assemble(shape, rows, hidden_passing, "", [], "", trimmed)
        base = assemble(shape, rows, hidden_passing, "", [], "", trimmed)
        sections = _take((section(t, shape) for t in flagged), limit - size(base), 2)
        if len(sections) == len(flagged):
            return assemble(shape, rows, hidden_passing, "", sections, "", trimmed)
        if shape == _LEAN and sections:  # the first templates' sections, the rest counted
            note = _piece(m.more_details(len(flagged), elsewhere))  # the longest count: an upper bound
            sections = _take(iter(sections), limit - size(base) - size(note) - 2, 2)
            if sections:
                note = _piece(m.more_details(len(flagged) - len(sections), elsewhere))
                return assemble(shape, rows, hidden_passing, "", sections, note, True)
    return _minimal(view, head, tail, limit, m, elsewhere)  # pragma: no cover - the last shape returns


def _minimal(view: ReportView, head: list[str], tail: list[str], limit: int, m, elsewhere: str) -> str:
    """Title, counts and footer: what is left when not one row fits (a tiny limit)."""
    more = _piece(m.more_rows(len(view.regressed), len(view.errored),
                              len(view.templates) - len(view.regressed) - len(view.errored), elsewhere))
    text = "\n\n".join([*head, more, *tail]) + "\n"
    if size(text) > limit:
        text = "\n\n".join([*head, more]) + "\n"
    return text.encode("utf-8")[:limit].decode("utf-8", "ignore")


def notice(view: ReportView | None, *, why: str, marker_text: str, label: str | None,
           run_url: str | None = None) -> str:
    """A short body that says why the report is not shown (refused by GitHub, or there is no
    report), and the verdict: what replaces a comment that would otherwise lie."""
    m = _module()
    title = _piece(m.title(headline(view) if view else "no report", label))
    body = _piece(m.notice(verdict_word(view), why, run_url if run_url and RUN_URL.match(run_url) else None,
                           view is not None))
    return "\n\n".join(p for p in (marker_text, title, body) if p) + "\n"

"""The report as Markdown, and the one sticky pull-request comment that carries it.

The comment is found again by a hidden marker and edited in place, so a pull
request gets one lpo-ci comment however often it is pushed. GitHub refuses
bodies over 65,536 characters: details are trimmed first (example answers,
then patches and reasons, then the rows of passing templates), never the
verdicts of failing ones.
"""

from __future__ import annotations

import re

from .api import GitHubAPI, GitHubError
from .markdown import code, environment
from .report_view import ReportView

MARKER = "<!-- lpo-ci:report -->"
COMMENT_LIMIT = 65536
SUMMARY_LIMIT = 1_000_000  # a job summary may hold 1 MiB
ICONS = {"pass": "✅", "fail": "❌", "error": "⚠️"}
# (detail, examples shown per template, characters per answer) from richest to leanest
LEVELS = ((3, 20, 160), (2, 5, 60), (1, 0, 0), (0, 0, 0))
RUN_URL = re.compile(r"^https?://[^\s()<>\[\]]+$")


def headline(view: ReportView) -> str:
    failed, errors = len(view.regressed), len(view.errored)
    if not view.templates:
        return "no prompt templates were scored"
    parts = []
    if failed:
        parts.append(f"{failed} template{'s' * (failed != 1)} regressed")
    if errors:
        parts.append(f"{errors} could not be evaluated")
    if not parts:
        count = len(view.templates)
        return "the prompt template holds its accuracy" if count == 1 else \
            f"all {count} prompt templates hold their accuracy"
    return ", ".join(parts)


def render(view: ReportView, *, marker: bool, limit: int, posted=None, unposted=None,
           problems: list[str] | None = None, run_url: str | None = None) -> str:
    """The report in Markdown, as detailed as fits in ``limit`` characters."""
    env = environment()
    template = env.get_template("github/report.md.j2")
    templates = view.templates
    context = dict(
        marker=MARKER if marker else "", headline=headline(view), icons=ICONS, posted=posted or {},
        unposted=unposted or {}, problems=problems or [], tool=view.tool or "lpo-ci", base_rev=view.base_rev,
        run_url=run_url if run_url and RUN_URL.match(run_url) else None,
        models=sorted({t.model for t in templates if t.model}),
        calls=sum(t.calls for t in templates), cache_hits=sum(t.cache_hits for t in templates),
        cost=sum(t.cost for t in templates),
        details=[t for t in templates if t.status != "pass"], trends="", trends_dropped=False)
    from ..history.trend import comment_section

    trends = comment_section([(code(t.template, 100), t.trend) for t in templates if t.trend])
    if trends:  # the richest comment with the trend charts; they are the first thing dropped
        text = template.render(**{**context, "trends": trends}, rows=templates, hidden_passing=0,
                               detail=LEVELS[0][0], flips_shown=LEVELS[0][1], answer_chars=LEVELS[0][2],
                               trimmed=False)
        if len(text) <= limit:
            return text
        context["trends_dropped"] = True
    text = ""
    for collapse_passing in (False, True):
        rows = [t for t in templates if t.status != "pass"] if collapse_passing else templates
        for detail, flips_shown, answer_chars in LEVELS:
            text = template.render(
                **context, rows=rows, hidden_passing=len(templates) - len(rows), detail=detail,
                flips_shown=flips_shown, answer_chars=answer_chars,
                trimmed=(detail, flips_shown) != LEVELS[0][:2] or collapse_passing)
            if len(text) <= limit:
                return text
    return text  # the verdicts of the failing templates alone are over the limit: GitHub will say so


def _ours(comment: dict) -> bool:
    """A comment with our marker, written by a bot (anyone can paste the marker)."""
    user = comment.get("user") or {}
    return MARKER in (comment.get("body") or "") and user.get("type") == "Bot"


def upsert_sticky(api: GitHubAPI, repo: str, number: int, body: str) -> tuple[str, str]:
    """Edit our earlier comment in place, else create it; returns ("updated"|"created", its URL)."""
    comments = api.paginate(f"/repos/{repo}/issues/{number}/comments")
    for comment in reversed([c for c in comments if isinstance(c, dict) and _ours(c)]):
        try:
            answer = api.request("PATCH", f"/repos/{repo}/issues/comments/{comment['id']}", {"body": body})
            return "updated", (answer.data or {}).get("html_url", "")
        except GitHubError as exc:
            if exc.status not in (403, 404):  # not ours to edit, or deleted meanwhile: make a new one
                raise
    answer = api.request("POST", f"/repos/{repo}/issues/{number}/comments", {"body": body})
    return "created", (answer.data or {}).get("html_url", "")


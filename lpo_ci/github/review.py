"""The suggested fix as one-click GitHub suggestions on the template's own lines.

A review comment may only sit on lines of the pull request's diff (GitHub
answers 422 to the whole review otherwise), so each suggestion is checked
against the diff hunks first, and against the file at the PR's head (the
evaluated checkout may be a merge commit whose lines differ); the ones that
do not fit stay in the sticky comment as a patch. Each posted suggestion carries a hidden key (path, lines,
replacement): the same suggestion is never posted twice.
"""

from __future__ import annotations

import hashlib
import re
from dataclasses import dataclass

from ..patch import Suggestion
from .api import GitHubAPI
from .markdown import escape
from .report_view import ReportView, TemplateView

KEY_MARKER = "<!-- lpo-ci:suggestion {key} -->"
_HUNK = re.compile(r"^@@ -\d+(?:,\d+)? \+(\d+)(?:,\d+)? @@")


def diff_hunks(patch: str) -> list[set[int]]:
    """Per hunk of a pulls/files ``patch``, the new-file lines a comment may sit on
    (added and context lines; removed lines have no new-file number)."""
    hunks: list[set[int]] = []
    line = 0
    for text in patch.splitlines():
        header = _HUNK.match(text)
        if header:
            line = int(header.group(1))
            hunks.append(set())
        elif hunks and not text.startswith("-") and not text.startswith("\\"):
            hunks[-1].add(line)
            line += 1
    return hunks


def _fits(hunks: list[set[int]], start: int, end: int) -> bool:
    return any(all(n in hunk for n in range(start, end + 1)) for hunk in hunks)


@dataclass
class Planned:
    template: TemplateView
    start_line: int
    end_line: int
    replacement: str

    @property
    def key(self) -> str:
        text = f"{self.template.path}\0{self.start_line}\0{self.end_line}\0{self.replacement}"
        return hashlib.sha256(text.encode("utf-8")).hexdigest()[:16]

    def body(self) -> str:
        """Rebuilt from the replacement lines (never a body taken from the report),
        with a fence no line inside can close."""
        o = self.template.optimization
        why = (f"lpo-ci suggests this edit: held-out accuracy {o.heldout_head or 0:.1%} → "
               f"{o.heldout_winner or 0:.1%} (p = {o.p_value or 0:.2g}) on {self.template.data}.")
        block = Suggestion(self.start_line, self.end_line, self.replacement).block()
        return f"{escape(why)}\n\n{block}\n{KEY_MARKER.format(key=self.key)}"


def plan(view: ReportView, files: list[dict]) -> tuple[list[Planned], dict[str, str]]:
    """The suggestions that can be posted, and why the others cannot (by path)."""
    patches = {f.get("filename"): f.get("patch") or "" for f in files if isinstance(f, dict)}
    postable: list[Planned] = []
    skipped: dict[str, str] = {}
    for t in view.templates:
        o = t.optimization
        if t.status != "fail" or o is None or o.status != "suggested" or not o.suggestions:
            continue
        if t.path not in patches:
            skipped[t.path] = "the template is not changed by this pull request"
            continue
        hunks = diff_hunks(patches[t.path])
        fitting = [s for s in o.suggestions if _fits(hunks, s.start_line, s.end_line)]
        if len(fitting) < len(o.suggestions):
            skipped[t.path] = "the lines to change are not all in this pull request's diff"
            continue  # half a fix would be worse than the patch
        postable += [Planned(t, s.start_line, s.end_line, s.replacement) for s in fitting]
    return postable, skipped


def post_suggestions(api: GitHubAPI, repo: str, number: int, head_sha: str, view: ReportView,
                     ) -> tuple[dict[str, list[tuple[int, int]]], dict[str, str], int]:
    """Post new suggestions as one review; returns (posted or already there, by path: line ranges),
    (not posted, by path: why) and the number of review comments created."""
    files = api.paginate(f"/repos/{repo}/pulls/{number}/files")
    planned, skipped = plan(view, files)
    # Line numbers come from the evaluated file (in Actions, the merge commit's): they hold on
    # the PR's head only if the file there is the same text.
    evaluated = {p.template.path: p.template.optimization.head_source or "" for p in planned}
    for path, text in sorted(evaluated.items()):
        at_head = api.file_text(repo, path, head_sha)
        if at_head is None or at_head.replace("\r\n", "\n") != text.replace("\r\n", "\n"):
            skipped[path] = ("the pull request's head differs from the evaluated version of the template "
                             "(the base branch changed it too)")
    planned = [p for p in planned if p.template.path not in skipped]
    if not planned:
        return {}, skipped, 0
    existing = " ".join(c.get("body") or "" for c in api.paginate(f"/repos/{repo}/pulls/{number}/comments")
                        if isinstance(c, dict) and (c.get("user") or {}).get("type") == "Bot")
    fresh = [p for p in planned if KEY_MARKER.format(key=p.key) not in existing]
    if fresh:
        comments = []
        for p in fresh:
            comment = {"path": p.template.path, "line": p.end_line, "side": "RIGHT", "body": p.body()}
            if p.start_line != p.end_line:
                comment.update(start_line=p.start_line, start_side="RIGHT")
            comments.append(comment)
        names = sorted({p.template.path for p in fresh})
        body = escape("lpo-ci: suggested fix for " + ", ".join(names)) + " (one click to commit)."
        api.request("POST", f"/repos/{repo}/pulls/{number}/reviews",
                    {"commit_id": head_sha, "event": "COMMENT", "body": body, "comments": comments})
    posted: dict[str, list[tuple[int, int]]] = {}
    for p in planned:
        posted.setdefault(p.template.path, []).append((p.start_line, p.end_line))
    return posted, skipped, len(fresh)

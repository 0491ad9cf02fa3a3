"""The suggested fix as one-click GitHub suggestions on the template's own lines.

Only fixes ``targets`` let through are posted (a prompt template by trusted
globs, literal text only, lines and text derived here). A review comment may
only sit on lines of the pull request's diff (GitHub answers 422 to the whole
review otherwise), so each suggestion is checked against the diff hunks
first, and against the file at the PR's head (the evaluated checkout may be a
merge commit whose lines differ); the ones that do not fit stay in the sticky
comment as a patch. Each posted suggestion carries a hidden key (path, lines,
replacement) and is recognised by it and by our own account: the same
suggestion is never posted twice, not even when a create is retried after a
502 that came once the review was stored.
"""

from __future__ import annotations

import hashlib
import re
from dataclasses import dataclass

from ..patch import Suggestion
from .api import GitHubAPI
from .comment import COMMENT_LIMIT, size
from .identity import Identity
from .markdown import escape
from .report_view import ReportView, TemplateView

KEY_MARKER = "<!-- lpo-ci:suggestion {key} -->"
REVIEW_BATCH = 20  # review comments per review: GitHub times out on large ones
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
    suggestion: Suggestion
    untrusted: bool = False  # from a report of another run: the pull request's own claims

    @property
    def key(self) -> str:
        s = self.suggestion
        text = f"{self.template.path}\0{s.start_line}\0{s.end_line}\0{s.replacement}"
        return hashlib.sha256(text.encode("utf-8")).hexdigest()[:16]

    def body(self) -> str:
        """Rebuilt from the replacement lines (never a body taken from the report),
        with a fence no line inside can close."""
        o = self.template.optimization
        assert o is not None  # a suggestion is planned from a template's fix only
        why = (f"lpo-ci suggests this edit: held-out accuracy {o.heldout_head or 0:.1%} → "
               f"{o.heldout_winner or 0:.1%} (p = {o.p_value or 0:.2g}) on {self.template.data}.")
        if self.untrusted:
            why += " Found and measured by this pull request's own run: review it as you would its code."
        return f"{escape(why)}\n\n{self.suggestion.block()}\n{KEY_MARKER.format(key=self.key)}"

    def comment(self) -> dict:
        s = self.suggestion
        comment = {"path": self.template.path, "line": s.end_line, "side": "RIGHT", "body": self.body()}
        if s.start_line != s.end_line:
            comment.update(start_line=s.start_line, start_side="RIGHT")
        return comment


def plan(view: ReportView, files: list[dict], untrusted: bool = False) -> tuple[list[Planned], dict[str, str]]:
    """The suggestions that can be posted, and why the others cannot (by path)."""
    patches = {f.get("filename"): f.get("patch") or "" for f in files if isinstance(f, dict)}
    postable: list[Planned] = []
    skipped: dict[str, str] = {}
    for t in view.templates:
        o = t.optimization
        if t.status != "fail" or o is None or o.status != "suggested":
            continue
        if t.withheld:
            skipped[t.path] = t.withheld
            continue
        if not t.fix_suggestions:
            skipped[t.path] = "the change cannot be written as a line suggestion (see the patch)"
            continue
        if t.path not in patches:
            skipped[t.path] = "the template is not changed by this pull request"
            continue
        hunks = diff_hunks(patches[t.path])
        if not all(_fits(hunks, s.start_line, s.end_line) for s in t.fix_suggestions):
            skipped[t.path] = "the lines to change are not all in this pull request's diff"
            continue  # half a fix would be worse than the patch
        planned = [Planned(t, s, untrusted) for s in t.fix_suggestions]
        if any(size(p.body()) > COMMENT_LIMIT for p in planned):
            skipped[t.path] = "the suggestion is too long for a review comment"
            continue
        postable += planned
    return postable, skipped


@dataclass
class Posted:
    posted: dict[str, list[tuple[int, int]]]   # by path: line ranges posted, now or before
    skipped: dict[str, str]                    # by path: why not posted
    created: int                               # review comments created now
    problem: str | None = None                 # GitHub refused a review


def _batches(fresh: list[Planned]) -> list[list[Planned]]:
    """Reviews of about REVIEW_BATCH comments, a template's suggestions never split."""
    batches: list[list[Planned]] = []
    for p in fresh:
        if batches and batches[-1][-1].template is p.template:
            batches[-1].append(p)
        elif batches and len(batches[-1]) < REVIEW_BATCH:
            batches[-1].append(p)
        else:
            batches.append([p])
    return batches


def post_suggestions(api: GitHubAPI, repo: str, number: int, head_sha: str, view: ReportView,
                     identity: Identity, untrusted: bool = False) -> Posted:
    """Post the new suggestions as reviews; suggestions of ours already there count as posted."""
    from .api import GitHubError

    files = api.paginate(f"/repos/{repo}/pulls/{number}/files")
    planned, skipped = plan(view, files, untrusted)
    # Line numbers come from the evaluated file (in Actions, the merge commit's): they hold on
    # the PR's head only if the file there is the same text.
    evaluated = {p.template.path: (o.head_source if (o := p.template.optimization) else None) or ""
                 for p in planned}
    for path, text in sorted(evaluated.items()):
        at_head = api.file_text(repo, path, head_sha)
        if at_head is None or at_head.replace("\r\n", "\n") != text.replace("\r\n", "\n"):
            skipped[path] = ("the pull request's head differs from the evaluated version of the template "
                             "(the base branch changed it too)")
    planned = [p for p in planned if p.template.path not in skipped]
    if not planned:
        return Posted({}, skipped, 0)

    def ours() -> str:
        return " ".join(c.get("body") or "" for c in api.paginate(f"/repos/{repo}/pulls/{number}/comments")
                        if isinstance(c, dict) and identity.owns(c))

    existing = ours()
    fresh = [p for p in planned if KEY_MARKER.format(key=p.key) not in existing]
    created, problem = 0, None
    for batch in _batches(fresh):
        def landed(batch=batch):
            now = ours()
            return {"landed": True} if all(KEY_MARKER.format(key=p.key) in now for p in batch) else None

        names = sorted({p.template.path for p in batch})
        shown = ", ".join(names[:5]) + (f" and {len(names) - 5} more" if len(names) > 5 else "")
        body = escape(f"lpo-ci: suggested fix for {shown}") + " (one click to commit)."
        try:
            api.request("POST", f"/repos/{repo}/pulls/{number}/reviews",
                        {"commit_id": head_sha, "event": "COMMENT", "body": body,
                         "comments": [p.comment() for p in batch]}, landed=landed)
            created += len(batch)
        except GitHubError as exc:
            problem = problem or f"suggestions not posted: {exc}"
            for p in batch:
                skipped[p.template.path] = f"GitHub refused the review ({exc.status or 'unreachable'} {exc.message})"
    posted: dict[str, list[tuple[int, int]]] = {}
    for p in planned:
        if p.template.path not in skipped:
            posted.setdefault(p.template.path, []).append((p.suggestion.start_line, p.suggestion.end_line))
    return Posted(posted, skipped, created, problem)

"""``lpo-ci github publish``: a report becomes a check verdict, a job summary,
annotations, one sticky PR comment and one-click suggestions.

Posting is best effort: when GitHub refuses or is down, the verdict, the
summary and the outputs stay exactly what the report says, and a warning says
what was not posted and why. The exit status is the report's verdict.
"""

from __future__ import annotations

import os
import sys
from dataclasses import dataclass, field
from pathlib import Path

from ..errors import EXIT_ERROR, EXIT_FAIL, EXIT_OK
from . import comment, review, workflow
from .api import GitHubAPI, GitHubError
from .markdown import secrets_from_env
from .report_view import ReportView, load_report

PYTEST_NO_TESTS = 5


@dataclass
class PublishOptions:
    report: str
    comment: bool = True
    suggestions: bool = True
    patch_out: str | None = None
    repo: str | None = None
    pr: int | None = None
    head_sha: str | None = None
    api_url: str | None = None
    pytest_exit_code: int | None = None


def _combined_patch(view: ReportView) -> str:
    """One patch for every suggested fix, with repository paths, for ``git apply`` at the top."""
    return "".join(t.fix_patch for t in view.templates if t.fix_patch)


def _say(message: str) -> None:
    print(f"lpo-ci: {message}", file=sys.stderr)


def _verdict(view: ReportView | None, pytest_exit_code: int | None) -> tuple[int, str]:
    if view is None:
        return EXIT_ERROR, f"no report was written (pytest exit status {pytest_exit_code})"
    if view.regressed:
        return EXIT_FAIL, comment.headline(view)
    if view.errored:
        return EXIT_ERROR, comment.headline(view)
    if pytest_exit_code not in (None, 0, PYTEST_NO_TESTS):
        return EXIT_ERROR, (f"pytest exited with status {pytest_exit_code} outside the templates' verdicts "
                            "(a collection or usage error): see the log above")
    return EXIT_OK, comment.headline(view)


def _annotate(view: ReportView) -> None:
    """An error on each failing template's spec line, a notice where a fix is suggested
    (the view's text is already redacted)."""
    for t in view.templates:
        if t.status == "fail":
            workflow.annotate("error", t.reason, file=t.path, line=t.line, title="lpo-ci: accuracy regression")
        elif t.status == "error":
            workflow.annotate("error", t.reason, file=t.path, line=t.line,
                              title="lpo-ci: evaluation error (not a regression)")
        o = t.optimization
        if o and o.status == "suggested":
            for s in o.suggestions:
                workflow.annotate("notice", f"suggested fix: held-out accuracy {o.heldout_head or 0:.1%} -> "
                                            f"{o.heldout_winner or 0:.1%} (p = {o.p_value or 0:.2g})",
                                  file=t.path, line=s.start_line, title="lpo-ci: suggested fix")


def publish(options: PublishOptions) -> int:
    token = os.environ.get("GITHUB_TOKEN", "")
    secrets = secrets_from_env()  # GITHUB_TOKEN among them
    workflow.mask(secrets)
    report_path = Path(options.report)
    if not report_path.exists() and options.pytest_exit_code == PYTEST_NO_TESTS:
        view = ReportView(str(report_path), "", None, [])
    elif not report_path.exists() and options.pytest_exit_code not in (None, 0):
        view = None
    else:
        view = load_report(report_path, secrets)  # redacted as read; a ReportError goes to the caller
    status, message = _verdict(view, options.pytest_exit_code)

    patch_path = None
    if view is not None:
        _annotate(view)
        patch = _combined_patch(view)
        if patch and options.patch_out:
            patch_path = Path(options.patch_out)
            patch_path.parent.mkdir(parents=True, exist_ok=True)
            patch_path.write_text(patch, encoding="utf-8")

    posting = Posting()
    target = workflow.pull_request(options.repo, options.pr, options.head_sha)
    if view is not None and (options.comment or options.suggestions):
        if target is None:
            _say("not a pull request run (no PR number and head commit): nothing posted")
        elif not token:
            posting.problems.append("no GITHUB_TOKEN: nothing was posted to the pull request")
        else:
            api = GitHubAPI(token, options.api_url or os.environ.get("GITHUB_API_URL") or "https://api.github.com")
            _post(api, target, view, options, posting)
    problems = posting.problems
    for problem in problems:
        workflow.annotate("warning", problem, title="lpo-ci: publishing")

    if view is not None:
        summary = comment.render(view, marker=False, limit=comment.SUMMARY_LIMIT,
                                 posted=posting.posted, unposted=posting.unposted, problems=problems, run_url=None)
        workflow.append_summary(summary)
    else:
        workflow.annotate("error", message, title="lpo-ci: evaluation error")
    workflow.set_outputs(report=str(report_path) if view is not None else "",
                         regressed=bool(view and view.regressed), errored=status == EXIT_ERROR,
                         patch=str(patch_path) if patch_path else "", comment_url=posting.comment_url)
    _say(message)
    return status


@dataclass
class Posting:
    posted: dict = field(default_factory=dict)     # path -> line ranges carrying a suggestion
    unposted: dict = field(default_factory=dict)   # path -> why its suggestion stays in the comment
    comment_url: str = ""
    problems: list = field(default_factory=list)


def _post(api: GitHubAPI, target: workflow.PullRequest, view: ReportView, options: PublishOptions,
          posting: Posting) -> None:
    if options.pr is not None:
        mismatch = _head_mismatch(api, target)
        if mismatch:
            posting.problems.append(f"nothing posted: {mismatch}")
            return
    if options.suggestions and view.regressed:
        try:
            posting.posted, posting.unposted, created = review.post_suggestions(
                api, target.repo, target.number, target.head_sha, view)
            _say(f"{created} new suggestion(s) posted, "
                 f"{sum(map(len, posting.posted.values())) - created} already there")
        except GitHubError as exc:
            posting.problems.append(f"suggestions not posted: {exc}")
    if options.comment:
        body = comment.render(view, marker=True, limit=comment.COMMENT_LIMIT,
                              posted=posting.posted, unposted=posting.unposted, run_url=workflow.run_url())
        try:
            action, posting.comment_url = comment.upsert_sticky(api, target.repo, target.number, body)
            _say(f"report comment {action}: {posting.comment_url}")
        except GitHubError as exc:
            posting.problems.append(f"report comment not posted: {exc}")


def _head_mismatch(api: GitHubAPI, target: workflow.PullRequest) -> str | None:
    """A PR number from outside the event (an artifact) must name the commit that was evaluated;
    what is wrong if it does not."""
    try:
        data = api.request("GET", f"/repos/{target.repo}/pulls/{target.number}").data or {}
    except GitHubError as exc:
        return str(exc)
    actual = (data.get("head") or {}).get("sha")
    if actual != target.head_sha:
        return (f"the pull request's head is {str(actual)[:12]}, not the evaluated commit "
                f"{target.head_sha[:12]}: refusing to post")
    return None

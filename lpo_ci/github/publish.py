"""``lpo-ci github publish``: a report becomes a check verdict, a job summary,
annotations, one sticky PR comment and one-click suggestions.

Posting is best effort: when GitHub refuses or is down, the verdict, the
summary and the outputs stay exactly what the report says, and a warning says
what was not posted and why. The exit status is the report's verdict.
Everything posted is redacted (secrets) and made relative to the repository
(machine paths) as the report is read.
"""

from __future__ import annotations

import os
import subprocess
import sys
from dataclasses import dataclass, field
from pathlib import Path, PurePosixPath

from ..errors import EXIT_ERROR, EXIT_FAIL, EXIT_OK, EXIT_USAGE, LpoError
from ..redaction import Redactor, secrets_from_env
from . import comment, review, targets, workflow
from .api import GitHubAPI, GitHubError
from .comment import TemplateBlock
from .identity import whoami
from .paths import PathScrubber, mentioned_line
from .report_view import ReportError, ReportView, TemplateView, load_report
from .sticky import Sticky

PYTEST_NO_TESTS = 5
UNTRUSTED_EVENTS = ("workflow_run", "pull_request_target")


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
    comment_key: str | None = None      # what this publisher's sticky comment is keyed by
    project_dir: str | None = None      # the project's folder in the repository
    prompts: tuple[str, ...] = ()       # template globs the evaluation used (overrides the project's)
    untrusted_report: bool = False      # the report comes from another run (the fork-safe publisher)
    blocks: tuple[TemplateBlock, ...] = ()  # optional per-template sections of the comment


@dataclass
class Posting:
    posted: dict = field(default_factory=dict)     # path -> line ranges carrying a suggestion
    unposted: dict = field(default_factory=dict)   # path -> why its suggestion stays in the comment
    comment_url: str = ""
    problems: list = field(default_factory=list)


@dataclass(frozen=True)
class Place:
    """Where the project is: its folder in the repository, and on this machine if checked out."""

    top: Path                 # the repository's top on this machine (or the working directory)
    cwd_prefix: str           # the working directory's folder in the repository ("" or "a/b/")


def _say(message: str) -> None:
    print(f"lpo-ci: {message}", file=sys.stderr)


def _prefix(folder: str) -> str:
    """A repository folder as a path prefix: "" for the top, "a/b/" below it."""
    parts = [p for p in PurePosixPath(folder.replace("\\", "/")).parts if p not in ("", ".")]
    if PurePosixPath(folder).is_absolute() or ".." in parts:
        raise LpoError(f"--project-dir {folder!r} is not a folder inside the repository",
                       hint="give the project's folder relative to the repository's top, e.g. services/bot")
    return "/".join(parts) + "/" if parts else ""


def _place() -> Place:
    cwd = Path.cwd().resolve()
    workspace = os.environ.get("GITHUB_WORKSPACE")
    top = None
    if workspace and (cwd == Path(workspace).resolve() or Path(workspace).resolve() in cwd.parents):
        top = Path(workspace).resolve()
    else:
        try:
            done = subprocess.run(["git", "-C", str(cwd), "rev-parse", "--show-toplevel"], capture_output=True,
                                  text=True, timeout=30)
            top = Path(done.stdout.strip()).resolve() if done.returncode == 0 and done.stdout.strip() else None
        except (OSError, subprocess.SubprocessError):
            top = None
    top = top or cwd
    return Place(top, _prefix(cwd.relative_to(top).as_posix()) if cwd != top else "")


def untrusted(options: PublishOptions) -> bool:
    """The report was written by another run (possibly a fork's code): trust nothing in it."""
    return options.untrusted_report or options.pr is not None or \
        os.environ.get("GITHUB_EVENT_NAME", "") in UNTRUSTED_EVENTS


def default_comment_key(prefix: str) -> str:
    """What was evaluated: the project folder, and the workflow and job that publish it."""
    return "\n".join([prefix or ".", os.environ.get("GITHUB_WORKFLOW", ""), os.environ.get("GITHUB_JOB", "")])


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


def _annotation_place(t: TemplateView, prefix: str, top: Path) -> tuple[str, int]:
    """The file and line a template's reason names (``prompts/x.j2:15``), else its spec line."""
    def accept(path: str) -> str | None:
        if path in (t.path, t.template):
            return t.path
        for candidate in (path, prefix + path):
            if candidate == prefix + "pyproject.toml" or (top / candidate).is_file():
                return candidate
        return None

    named = mentioned_line(t.reason, accept)
    return named if named else (t.path, t.line)


def _annotate(view: ReportView, prefix: str, top: Path) -> None:
    """An error per failing or erroring template at the line its reason names, a notice per
    suggested fix; past GitHub's ten per kind, one more that counts the rest."""
    flagged = [t for t in comment.ordered(view) if t.status != "pass"]
    shown = flagged if len(flagged) <= workflow.ANNOTATIONS_PER_KIND else flagged[:workflow.ANNOTATIONS_PER_KIND - 1]
    for t in shown:
        file, line = _annotation_place(t, prefix, top)
        if t.status == "fail":
            regression = t.reason.startswith("regression: ")  # else it names its rule: "under min_accuracy: …"
            message = t.reason[len("regression: "):] if regression else t.reason
            workflow.annotate("error", message, file=file, line=line,
                              title="lpo-ci: accuracy regression" if regression else "lpo-ci: the gate failed")
        else:
            workflow.annotate("error", t.reason, file=file, line=line,
                              title="lpo-ci: evaluation error (not a regression)")
    if len(shown) < len(flagged):
        rest = flagged[len(shown):]
        failing = sum(t.status == "fail" for t in rest)
        workflow.annotate("error", f"and {failing:,} more regressions and {len(rest) - failing:,} more templates "
                                   "that could not be evaluated: see the job summary", title="lpo-ci")
    fixed = [t for t in flagged if t.has_fix]
    shown = fixed if len(fixed) <= workflow.ANNOTATIONS_PER_KIND else fixed[:workflow.ANNOTATIONS_PER_KIND - 1]
    for t in shown:
        o = t.optimization
        assert o is not None  # has_fix
        lines = [s.start_line for s in t.fix_suggestions] or [t.line]
        workflow.annotate("notice", f"held-out accuracy {o.heldout_head or 0:.1%} -> {o.heldout_winner or 0:.1%} "
                                    f"(p = {o.p_value or 0:.2g})", file=t.path, line=lines[0],
                          title="lpo-ci: suggested fix")
    if len(shown) < len(fixed):
        workflow.annotate("notice", f"and {len(fixed) - len(shown):,} more templates with a suggested fix: "
                                    "see the report comment or the job summary", title="lpo-ci")


def _warn(problems: list[str]) -> None:
    shown = problems if len(problems) <= workflow.ANNOTATIONS_PER_KIND else problems[:workflow.ANNOTATIONS_PER_KIND - 1]
    for problem in shown:
        workflow.annotate("warning", problem, title="lpo-ci: publishing")
    if len(shown) < len(problems):
        workflow.annotate("warning", f"and {len(problems) - len(shown)} more: see the job summary",
                          title="lpo-ci: publishing")


def _read(options: PublishOptions, place: Place, redact: Redactor) -> tuple[ReportView | None, ReportError | None,
                                                                          int, str]:
    """(the report, or None; the error reading it; the exit status; the verdict's message, as posted)."""
    report_path = Path(options.report)
    if not report_path.exists() and options.pytest_exit_code == PYTEST_NO_TESTS:
        view = ReportView(str(report_path), "", None, [])
    elif not report_path.exists() and options.pytest_exit_code not in (None, 0):
        view = None
    else:
        scrub = PathScrubber.from_environment(place.top)
        try:
            view = load_report(report_path, redact, scrub)
        except ReportError as exc:
            return None, exc, EXIT_USAGE, redact(scrub(str(exc)))
    return (view, None, *_verdict(view, options.pytest_exit_code))


def _globs(options: PublishOptions, place: Place, prefix: str, distrust: bool, api: GitHubAPI | None,
           target: workflow.PullRequest | None, base_sha: str | None) -> targets.TemplateGlobs:
    if not distrust:
        return targets.from_checkout(place.top / prefix, prefix, list(options.prompts))
    if api is None or not base_sha or target is None:
        return targets.TemplateGlobs(prefix, "the base branch", None,
                                     "the base branch's configuration could not be read (no pull request access)")
    return targets.from_base_branch(api, target.repo, base_sha, prefix, list(options.prompts))


def publish(options: PublishOptions) -> int:
    token = os.environ.get("GITHUB_TOKEN", "")
    secrets = secrets_from_env()  # GITHUB_TOKEN among them
    workflow.mask(secrets)
    redact = Redactor(secrets)
    place = _place()
    distrust = untrusted(options)
    view, read_error, status, message = _read(options, place, redact)
    if options.project_dir is not None:
        prefix = _prefix(options.project_dir)
    else:
        prefix = place.cwd_prefix if distrust or view is None else view.prefix

    target = workflow.pull_request(options.repo, options.pr, options.head_sha)
    posting = Posting()
    api, base_sha = None, None
    if options.comment or options.suggestions:
        if target is None:
            _say("not a pull request run (no PR number and head commit): nothing posted")
        elif not token:
            posting.problems.append("no GITHUB_TOKEN: nothing was posted to the pull request")
        else:
            api = GitHubAPI(token, options.api_url or os.environ.get("GITHUB_API_URL") or "https://api.github.com")
            if distrust:
                base_sha, mismatch = _check_pull(api, target)
                if mismatch:
                    posting.problems.append(f"nothing posted: {mismatch}")
                    api = None

    patch_path = None
    if view is not None:
        targets.withhold_untrusted_fixes(view, _globs(options, place, prefix, distrust, api, target, base_sha))
        _annotate(view, prefix, place.top)
        patch = "".join(t.fix_patch for t in view.templates)
        if patch and options.patch_out:
            patch_path = Path(options.patch_out)
            patch_path.parent.mkdir(parents=True, exist_ok=True)
            patch_path.write_text(patch, encoding="utf-8")

    label = options.comment_key or prefix.rstrip("/") or None
    if api is not None and target is not None:
        _post(api, target, view, options, posting, key=options.comment_key or default_comment_key(prefix),
              label=label, why=None if view is not None else message, untrusted=distrust, redact=redact)
    problems = [redact(problem) for problem in posting.problems]
    _warn(problems)

    if view is not None:
        summary = comment.render(view, limit=workflow.summary_room(), label=label, posted=posting.posted,
                                 unposted=posting.unposted, problems=problems, blocks=options.blocks,
                                 elsewhere="the JSON report (the action's report output)")
        workflow.append_summary(summary)
    else:
        workflow.annotate("error", message, title="lpo-ci: evaluation error")
    workflow.set_outputs(report=options.report if view is not None else "",
                         regressed=bool(view and view.regressed),
                         errored=view is None or bool(view.errored) or status == EXIT_ERROR,
                         patch=str(patch_path) if patch_path else "", comment_url=posting.comment_url)
    if read_error is not None:
        raise read_error
    _say(message)
    return status


def _post(api: GitHubAPI, target: workflow.PullRequest, view: ReportView | None, options: PublishOptions,
          posting: Posting, *, key: str, label: str | None, why: str | None, untrusted: bool,
          redact: Redactor) -> None:
    identity = whoami(api)
    _say(f"posting as {identity.login or 'a bot account'} ({identity.how})")
    if view is not None and options.suggestions and view.regressed:
        try:
            result = review.post_suggestions(api, target.repo, target.number, target.head_sha, view, identity,
                                             untrusted)
            posting.posted, posting.unposted = result.posted, result.skipped
            if result.problem:
                posting.problems.append(result.problem)
            _say(f"{result.created} new suggestion(s) posted, "
                 f"{sum(map(len, result.posted.values())) - result.created} already there")
        except GitHubError as exc:
            posting.problems.append(f"suggestions not posted: {exc}")
    if not options.comment:
        return
    marker_text = comment.marker(key)
    run_url = workflow.run_url()

    def notice(reason: str) -> str:
        return comment.notice(view, why=redact(reason), marker_text=marker_text, label=label, run_url=run_url)

    if view is None:
        body = notice(why or "no report")
    else:
        body = comment.render(view, limit=comment.COMMENT_LIMIT, marker_text=marker_text, label=label,
                              posted=posting.posted, unposted=posting.unposted, run_url=run_url,
                              blocks=options.blocks)
    try:
        sticky = Sticky(api, target.repo, target.number, identity, marker_text).upsert(body, notice)
        posting.comment_url = sticky.url
        posting.problems += sticky.problems
        _say(f"report comment {sticky.action}: {sticky.url}")
    except GitHubError as exc:
        posting.problems.append(f"report comment not posted: {exc}")


def _check_pull(api: GitHubAPI, target: workflow.PullRequest) -> tuple[str | None, str | None]:
    """A report from another run must be of the pull request's head commit: (the PR's base
    commit, as GitHub names it, and what is wrong if the heads differ)."""
    try:
        data = api.request("GET", f"/repos/{target.repo}/pulls/{target.number}").data or {}
    except GitHubError as exc:
        return None, str(exc)
    actual = (data.get("head") or {}).get("sha")
    base = (data.get("base") or {}).get("sha")
    if actual != target.head_sha:
        return base, (f"the pull request's head is {str(actual)[:12]}, not the evaluated commit "
                      f"{target.head_sha[:12]}: refusing to post")
    return base, None

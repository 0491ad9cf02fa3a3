"""What a GitHub Actions runner gives a step, and what a step gives back.

Annotations, the job summary, step outputs and log masks go through
github-action-utils when running in Actions; outside it the same calls print
plain ``file:line: message`` lines or do nothing, so publishing can be tried
from a laptop. The pull request comes from the event payload, or from
``--pr`` (a ``workflow_run`` publisher), checked against the commit that
was evaluated.
"""

from __future__ import annotations

import json
import os
import re
import sys
from dataclasses import dataclass
from pathlib import Path

from ..errors import LpoError


def in_actions() -> bool:
    return os.environ.get("GITHUB_ACTIONS") == "true"


def annotate(kind: str, message: str, *, file: str | None = None, line: int | None = None,
             title: str | None = None) -> None:
    """An error, warning or notice on a file line of the run's page (a plain line elsewhere)."""
    if in_actions():
        import github_action_utils as gha

        getattr(gha, kind)(message, title=title, file=file, line=line)
        return
    where = f"{file}:{line}: " if file and line else (f"{file}: " if file else "")
    print(f"{where}{kind}: {title + ': ' if title else ''}{message}", file=sys.stderr)


SUMMARY_BYTES = 1024 * 1024  # GitHub's limit on one step's job summary
ANNOTATIONS_PER_KIND = 10    # errors, warnings, notices: GitHub shows this many of each per step


def summary_room() -> int:
    """Bytes the job summary of this step can still take (another command may have written to it)."""
    path = os.environ.get("GITHUB_STEP_SUMMARY")
    try:
        used = os.path.getsize(path) if path else 0
    except OSError:
        used = 0
    return max(0, SUMMARY_BYTES - used - 1)  # the newline append_job_summary adds


def append_summary(markdown: str) -> bool:
    if not os.environ.get("GITHUB_STEP_SUMMARY"):
        return False
    import github_action_utils as gha

    gha.append_job_summary(markdown)
    return True


def set_outputs(**values: object) -> None:
    if not os.environ.get("GITHUB_OUTPUT"):
        return
    import github_action_utils as gha

    for name, value in values.items():
        gha.set_output(name.replace("_", "-"), "" if value is None else
                       str(value).lower() if isinstance(value, bool) else value)


def mask(values: list[str]) -> None:
    """Ask the runner to hide these values in every later log line."""
    if not in_actions():
        return
    import github_action_utils as gha

    for value in values:
        gha.add_mask(value)


def run_url() -> str | None:
    server, repo, run = (os.environ.get(k) for k in ("GITHUB_SERVER_URL", "GITHUB_REPOSITORY", "GITHUB_RUN_ID"))
    return f"{server}/{repo}/actions/runs/{run}" if server and repo and run else None


@dataclass
class PullRequest:
    repo: str       # owner/name
    number: int
    head_sha: str


def _event() -> tuple[str, dict]:
    name, path = os.environ.get("GITHUB_EVENT_NAME", ""), os.environ.get("GITHUB_EVENT_PATH")
    if not path:
        return name, {}
    try:
        data = json.loads(Path(path).read_text(encoding="utf-8"))
    except (OSError, ValueError) as exc:
        raise LpoError(f"cannot read the event payload: {exc}", path=path) from None
    return name, data if isinstance(data, dict) else {}


def pull_request(repo: str | None = None, number: int | None = None, head_sha: str | None = None,
                 ) -> PullRequest | None:
    """The pull request to post on, or None when this run has none (a push, a laptop)."""
    repo = repo or os.environ.get("GITHUB_REPOSITORY")
    if not repo or not re.fullmatch(r"[\w.-]+/[\w.-]+", repo):
        return None
    name, event = _event()
    pr = event.get("pull_request") if isinstance(event.get("pull_request"), dict) else None
    if number is None and pr is not None:
        number = pr.get("number")
    if head_sha is None:
        if pr is not None:
            head_sha = (pr.get("head") or {}).get("sha")
        elif name == "workflow_run":
            head_sha = (event.get("workflow_run") or {}).get("head_sha")
    if not isinstance(number, int) or not isinstance(head_sha, str) or not re.fullmatch(r"[0-9a-f]{40}", head_sha):
        return None
    return PullRequest(repo, number, head_sha)

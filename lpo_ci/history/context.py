"""What git and the CI environment say about a run: commit, ref, event, renames, ancestry.

A handful of git calls per run, none per record, so recording stays cheap.
"""

from __future__ import annotations

import os
import secrets
import subprocess
from datetime import datetime, timezone
from pathlib import Path
from collections.abc import Mapping
from typing import Any

from .. import __version__

# GitHub Actions event -> the history's event names
EVENTS = {"push": "push", "schedule": "schedule", "workflow_dispatch": "manual", "pull_request": "pull_request",
          "pull_request_target": "pull_request", "merge_group": "push"}
MAX_ANCESTORS = 200_000


def _git(root: Path, *args: str) -> subprocess.CompletedProcess:
    return subprocess.run(["git", "-C", str(root), *args], capture_output=True, text=True,
                          encoding="utf-8", errors="replace")


def now() -> str:
    """A run date: UTC, to the microsecond, in one fixed format (they sort as text)."""
    return datetime.now(timezone.utc).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


def event_name(environ: Mapping[str, str] | None = None) -> str:
    environ = os.environ if environ is None else environ
    return EVENTS.get(environ.get("GITHUB_EVENT_NAME", ""), "manual")


def run_context(root: Path, *, event: str | None = None, repo_prefix: str = "") -> dict[str, Any]:
    """The fields every record of this run shares."""
    context: dict[str, Any] = {
        "run": secrets.token_hex(6), "tool": f"lpo-ci {__version__}", "repo_prefix": repo_prefix,
        "commit": None, "parent": None, "commit_date": None, "subject": "", "run_date": now(),
        "ref": "", "event": event or event_name(),
    }
    try:
        head = _git(root, "log", "-1", "--format=%H%x00%P%x00%cI%x00%s", "HEAD")
    except FileNotFoundError:  # git is not installed: records without a commit
        return context
    if head.returncode == 0 and head.stdout.strip():
        commit, parents, date, subject = (head.stdout.rstrip("\n").split("\x00") + ["", "", ""])[:4]
        context.update(commit=commit, parent=(parents.split() or [None])[0], commit_date=date,
                       subject=subject[:300])
        if os.environ.get("GITHUB_ACTIONS") == "true" and os.environ.get("GITHUB_REF"):
            context["ref"] = os.environ["GITHUB_REF"]
        else:
            ref = _git(root, "symbolic-ref", "-q", "HEAD")
            context["ref"] = ref.stdout.strip() if ref.returncode == 0 else "HEAD"
    return context


def dirty_paths(root: Path, relpaths: list[str]) -> set[str]:
    """Which of the templates differ from the commit (the record then says so)."""
    if not relpaths:
        return set()
    try:
        status = _git(root, "status", "--porcelain=v1", "--no-renames", "-z", "--", *relpaths)
    except FileNotFoundError:
        return set()
    prefix = _git(root, "rev-parse", "--show-prefix").stdout.strip()
    changed = set()
    for entry in status.stdout.split("\x00"):
        if len(entry) > 3:
            path = entry[3:]
            changed.add(path[len(prefix):] if prefix and path.startswith(prefix) else path)
    return changed & set(relpaths)


def former_paths(root: Path, relpath: str) -> list[str]:
    """The paths a template had before its renames, newest first (``git log --follow``)."""
    try:
        log = _git(root, "log", "--follow", "-M", "--diff-filter=R", "--format=", "--name-status", "-z",
                   "--", relpath)
    except FileNotFoundError:
        return []
    if log.returncode != 0:
        return []
    prefix = _git(root, "rev-parse", "--show-prefix").stdout.strip()
    fields = [f.strip("\n") for f in log.stdout.split("\x00")]
    paths = []
    for index, value in enumerate(fields[:-1]):
        if value[:1] == "R" and value[1:].isdigit():
            old = fields[index + 1]
            old = old[len(prefix):] if prefix and old.startswith(prefix) else old
            if old and old != relpath and old not in paths:
                paths.append(old)
    return paths


class Ancestry:
    """Whether a recorded commit is in the history of a given one (``git rev-list``, once).

    Unknown (``known`` is False) outside git and in a shallow clone, whose history is cut short:
    callers then fall back to what the records themselves say."""

    def __init__(self, root: Path, rev: str | None):
        self.commits: set[str] | None = None
        if rev:
            try:
                shallow = _git(root, "rev-parse", "--is-shallow-repository").stdout.strip() == "true"
                listed = None if shallow else _git(root, "rev-list", f"--max-count={MAX_ANCESTORS}", rev)
            except FileNotFoundError:
                listed = None
            if listed is not None and listed.returncode == 0:
                self.commits = set(listed.stdout.split())

    @property
    def known(self) -> bool:
        return bool(self.commits)

    def contains(self, commit: str | None) -> bool:
        return self.commits is not None and commit in self.commits

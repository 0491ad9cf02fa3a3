"""The base version of a template, from git.

BASE is, in order: the explicit ``--lpo-base`` ref; the pull request's base
branch in GitHub Actions (``GITHUB_BASE_REF``); the merge-base of HEAD with
the default branch. Outside a git repository there is no base.
"""

from __future__ import annotations

import os
import subprocess
from pathlib import Path

from .errors import SpecError


def _git(root: Path, *args: str) -> subprocess.CompletedProcess:
    return subprocess.run(["git", "-C", str(root), *args], capture_output=True, text=True,
                          encoding="utf-8", errors="replace")


def is_repository(root: Path) -> bool:
    try:
        return _git(root, "rev-parse", "--is-inside-work-tree").stdout.strip() == "true"
    except FileNotFoundError:  # git is not installed
        return False


def _exists(root: Path, ref: str) -> bool:
    return _git(root, "rev-parse", "--verify", "--quiet", f"{ref}^{{commit}}").returncode == 0


def resolve_base(root: Path, explicit: str | None = None) -> str | None:
    """The commit to compare with, or None when there is none."""
    if not is_repository(root):
        if explicit:
            raise SpecError(f"--lpo-base {explicit} given, but {root} is not in a git repository",
                            hint="run inside a git checkout or drop --lpo-base")
        return None
    if explicit:
        if not _exists(root, explicit):
            raise SpecError(f"--lpo-base: no commit named '{explicit}'",
                            hint="fetch it first (git fetch origin main) or name an existing ref")
        return _git(root, "rev-parse", f"{explicit}^{{commit}}").stdout.strip()
    if not _exists(root, "HEAD"):
        return None
    candidates = []
    if os.environ.get("GITHUB_BASE_REF"):
        candidates += [f"origin/{os.environ['GITHUB_BASE_REF']}", os.environ["GITHUB_BASE_REF"]]
    candidates += ["origin/HEAD", "origin/main", "origin/master", "main", "master"]
    for ref in candidates:
        if _exists(root, ref):
            merge_base = _git(root, "merge-base", "HEAD", ref)
            if merge_base.returncode == 0:
                return merge_base.stdout.strip()
    return _git(root, "rev-parse", "HEAD").stdout.strip()


def repo_prefix(root: Path) -> str:
    """Where ``root`` sits in its git repository ("" at the top, "sub/dir/" below it):
    what turns a template's path into the repository path GitHub knows it by."""
    try:
        result = _git(root, "rev-parse", "--show-prefix")
    except FileNotFoundError:
        return ""
    return result.stdout.strip() if result.returncode == 0 else ""


def show(root: Path, rev: str, relpath: str) -> str | None:
    """The file at ``rev``, or None if it did not exist there (a new template)."""
    result = subprocess.run(["git", "-C", str(root), "show", f"{rev}:{relpath}"], capture_output=True)
    if result.returncode != 0:
        return None
    return result.stdout.decode("utf-8", errors="replace")


def head_rev(root: Path) -> str | None:
    """The checked-out commit, or None outside a git repository (or before the first commit)."""
    try:
        result = _git(root, "rev-parse", "--verify", "--quiet", "HEAD^{commit}")
    except FileNotFoundError:
        return None
    return result.stdout.strip() or None if result.returncode == 0 else None


def show_many(root: Path, rev: str, relpaths: list[str]) -> dict[str, str | None]:
    """``show`` for many files in one git process (``cat-file --batch``), not one process each."""
    if not relpaths:
        return {}
    if any("\n" in path for path in relpaths):  # the batch protocol is line-based
        return {path: show(root, rev, path) for path in relpaths}
    request = "".join(f"{rev}:{path}\n" for path in relpaths).encode("utf-8")
    result = subprocess.run(["git", "-C", str(root), "cat-file", "--batch"], input=request, capture_output=True)
    found: dict[str, str | None] = {}
    data, position = result.stdout, 0
    for path in relpaths:
        end = data.find(b"\n", position)
        if result.returncode != 0 or end < 0:
            return {p: show(root, rev, p) for p in relpaths}  # an unexpected answer: one by one
        header = data[position:end].split()
        position = end + 1
        if len(header) == 3 and header[1] == b"blob":
            size = int(header[2])
            found[path] = data[position:position + size].decode("utf-8", errors="replace")
            position += size + 1
        else:  # "<object> missing", or not a file at that path
            if len(header) == 3:
                position += int(header[2]) + 1
            found[path] = None
    return found

"""The base version of a template, from git.

BASE is, in order: the explicit ``--lpo-base`` ref; the pull request's base
branch in GitHub Actions (``GITHUB_BASE_REF``); the merge-base of HEAD with
the default branch. Whenever a base is asked for or expected and cannot be
read (a missing ref, a shallow clone), the result carries an error: the gate
must then say it cannot compare, never call the template unchanged. Only a
folder outside git, or a repository with no remote and no base branch, falls
back (to no base, or to the last commit), and ``BaseRef.how`` says so.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import tempfile
from dataclasses import dataclass
from pathlib import Path

from .errors import GitError

DEFAULT_BRANCHES = ("origin/HEAD", "origin/main", "origin/master", "main", "master")
FETCH_DEPTH_HINT = "check out with fetch-depth: 0 (actions/checkout)"


@dataclass(frozen=True)
class BaseRef:
    """What the gate compares with and why: shown in the report and the summary."""

    rev: str | None  # the commit, or None: no git reference
    ref: str | None = None  # the name it came from: an explicit ref, origin/main, HEAD
    how: str = ""  # why this one, in words
    error: GitError | None = None  # a base was expected but cannot be read

    def describe(self) -> str:
        if self.error is not None:
            return f"cannot be read from git: {self.error.message}"
        if self.rev is None:
            return f"no git base ({self.how})"
        return f"{self.ref} at {self.rev[:12]} ({self.how})"

    def to_dict(self) -> dict:
        return {"ref": self.ref, "rev": self.rev, "how": self.how,
                "error": str(self.error) if self.error is not None else None}


def _environment(env: dict | None = None) -> dict:
    """Never wait on a credential prompt (a filter or hook that wants the network)."""
    return {**(env if env is not None else os.environ), "GIT_TERMINAL_PROMPT": "0"}


def _git(root: Path, *args: str, env: dict | None = None) -> subprocess.CompletedProcess:
    try:
        return subprocess.run(["git", "-C", str(root), *args], capture_output=True, text=True,
                              encoding="utf-8", errors="replace", env=_environment(env))
    except FileNotFoundError:  # git is not installed
        return subprocess.CompletedProcess(["git"], 127, "", "git is not installed")


def is_repository(root: Path) -> bool:
    return _git(root, "rev-parse", "--is-inside-work-tree").stdout.strip() == "true"


def _exists(root: Path, ref: str) -> bool:
    return _git(root, "rev-parse", "--verify", "--quiet", f"{ref}^{{commit}}").returncode == 0


def _commit(root: Path, ref: str) -> str:
    return _git(root, "rev-parse", "--verify", "--quiet", f"{ref}^{{commit}}").stdout.strip()


def _shallow(root: Path) -> bool:
    return _git(root, "rev-parse", "--is-shallow-repository").stdout.strip() == "true"


def _fetch_hint(ref: str) -> str:
    branch = ref.split("/", 1)[1] if ref.startswith("origin/") else ref
    return f"fetch it (git fetch origin {branch}), or {FETCH_DEPTH_HINT}"


def _merge_base(root: Path, ref: str, why: str) -> BaseRef:
    """The merge-base of HEAD with ``ref``; an error when they share no history."""
    result = _git(root, "merge-base", "HEAD", ref)
    if result.returncode == 0 and result.stdout.strip():
        return BaseRef(result.stdout.strip(), ref, f"merge-base of HEAD with {ref}{why}")
    if _shallow(root):
        return BaseRef(None, ref, error=GitError(
            f"HEAD and {ref} share no history in this shallow clone, so their merge-base is unknown",
            hint=f"{FETCH_DEPTH_HINT}, or deepen the clone (git fetch --unshallow origin)"))
    return BaseRef(None, ref, error=GitError(f"HEAD and {ref} have no common commit",
                                             hint="name the base commit with --lpo-base REF"))


def resolve_base(root: Path, explicit: str | None = None, *, option: str = "--lpo-base") -> BaseRef:
    """The commit to compare with (``option`` names the explicit ref in messages)."""
    if explicit is not None and (not explicit.strip() or explicit.startswith("-")):
        return BaseRef(None, explicit, error=GitError(f"{option}: '{explicit}' is not a git ref",
                                                      hint="name a branch, tag or commit"))
    if not is_repository(root):
        if explicit:
            return BaseRef(None, explicit, error=GitError(
                f"{option} {explicit} given, but {root} is not inside a git repository",
                hint=f"run inside a git checkout or drop {option}"))
        if shutil.which("git") is None:
            return BaseRef(None, how="git is not installed")
        return BaseRef(None, how="not a git repository")
    if explicit:
        if not _exists(root, explicit):
            return BaseRef(None, explicit, error=GitError(
                f"{option}: no commit named '{explicit}' in this clone", hint=_fetch_hint(explicit)))
        return BaseRef(_commit(root, explicit), explicit, f"{option} {explicit}")
    remotes = _git(root, "remote").stdout.split()
    branch = os.environ.get("GITHUB_BASE_REF", "").strip()
    if branch:
        candidates = [f"{remote}/{branch}" for remote in sorted(remotes, key=lambda r: r != "origin")]
        found = next((ref for ref in candidates + [branch] if _exists(root, ref)), None)
        if found is None:
            return BaseRef(None, f"origin/{branch}", error=GitError(
                f"GITHUB_BASE_REF is '{branch}', but this clone has no branch {branch} "
                f"(a shallow checkout fetches only the pull request's commit)", hint=_fetch_hint(branch)))
        return _merge_base(root, found, f" (GITHUB_BASE_REF={branch})")
    if not _exists(root, "HEAD"):
        if remotes:
            return BaseRef(None, error=GitError("HEAD has no commit yet, so there is no merge-base",
                                                hint="commit first, or name the base with --lpo-base REF"))
        return BaseRef(None, how="the repository has no commit yet")
    for ref in DEFAULT_BRANCHES:
        if _exists(root, ref):
            if ref == "origin/HEAD":  # name the branch it points to
                ref = _git(root, "symbolic-ref", "--quiet", "--short", "refs/remotes/origin/HEAD").stdout.strip() \
                    or ref
            return _merge_base(root, ref, "")
    if remotes:
        return BaseRef(None, error=GitError(
            f"the repository has a remote ({', '.join(remotes)}) but none of the base branches "
            f"{', '.join(DEFAULT_BRANCHES)} exists in this clone (a shallow or single-branch checkout?)",
            hint=f"fetch the base branch (git fetch origin main), {FETCH_DEPTH_HINT}, "
                 f"or name the base with --lpo-base REF"))
    return BaseRef(_commit(root, "HEAD"), "HEAD",
                   "no remote and no main or master branch: the last commit")


def repo_prefix(root: Path) -> str:
    """Where ``root`` sits in its git repository ("" at the top, "sub/dir/" below it):
    what turns a template's path into the repository path GitHub knows it by."""
    result = _git(root, "rev-parse", "--show-prefix")
    return result.stdout.strip() if result.returncode == 0 else ""


def _toplevel(folder: Path) -> Path | None:
    result = _git(folder, "rev-parse", "--show-toplevel")
    return Path(result.stdout.strip()).resolve() if result.returncode == 0 else None


def repo_path(path: Path) -> str | None:
    """``path`` (a file in the working tree) as git names it, or None outside any repository.
    Symbolic links are resolved: the real file is what git tracks with the text."""
    real = Path(path).resolve()
    top = _toplevel(real.parent)
    if top is None:
        return None
    try:
        return real.relative_to(top).as_posix()
    except ValueError:
        return None


def show(root: Path, rev: str, path: str) -> str | None:
    """The file at ``rev`` (``path`` as ``repo_path`` gives it), or None if it did not exist
    there. Checkout filters apply (line endings, LFS), so the text is what a checkout holds;
    a file that exists but cannot be read is an error, never "new"."""
    try:
        result = subprocess.run(["git", "-C", str(root), "cat-file", "--filters", f"{rev}:{path}"],
                                capture_output=True, env=_environment())
    except FileNotFoundError:
        return None
    if result.returncode == 0:
        return result.stdout.decode("utf-8", errors="replace")
    if _git(root, "cat-file", "-e", f"{rev}:{path}").returncode == 0:
        problem = result.stderr.decode("utf-8", errors="replace").strip().splitlines()
        raise GitError(f"cannot read {path} at {rev[:12]}: {problem[-1] if problem else 'git cat-file failed'}",
                       hint="check the file's git filters (git lfs install, for LFS files)")
    return None


def renamed_from(root: Path, rev: str, path: str) -> str | None:
    """The path ``path`` had at ``rev`` if git sees it as renamed since then, else None.

    Like ``git diff --find-renames REV`` on the working tree, whether the rename is
    committed, staged or not (an untracked new name is added, intent-to-add only, to a
    throwaway copy of the index: the user's index is never touched).
    """
    tracked = _git(root, "ls-files", "--error-unmatch", "--full-name", "--", f":/{path}").returncode == 0
    env = None
    with tempfile.TemporaryDirectory(prefix="lpo-ci-index-") as scratch:
        if not tracked:
            index = Path(scratch) / "index"
            real = _git(root, "rev-parse", "--git-path", "index").stdout.strip()
            if real and (Path(root) / real).is_file():  # relative to root unless absolute
                shutil.copyfile(Path(root) / real, index)
            env = {**os.environ, "GIT_INDEX_FILE": str(index)}
            if _git(root, "add", "--intent-to-add", "--", f":/{path}", env=env).returncode != 0:
                return None
        result = _git(root, "diff", "-z", "--name-status", "--find-renames", rev, "--", env=env)
    if result.returncode != 0:
        return None
    fields = result.stdout.split("\0")
    i = 0
    while i < len(fields) and fields[i]:
        status = fields[i]
        if status[0] in "RC":
            old, new = fields[i + 1], fields[i + 2]
            if status[0] == "R" and new == path:
                return old
            i += 3
        else:
            i += 2
    return None


def head_rev(root: Path) -> str | None:
    """The checked-out commit, or None outside a git repository (or before the first commit)."""
    try:
        result = _git(root, "rev-parse", "--verify", "--quiet", "HEAD^{commit}")
    except FileNotFoundError:
        return None
    return result.stdout.strip() or None if result.returncode == 0 else None


def show_many(root: Path, rev: str, paths: list[str]) -> dict[str, str | None]:
    """``show`` for many files (``repo_path`` names) in one git process (``cat-file --batch``),
    not one process each; checkout filters apply as in ``show``."""
    if not paths:
        return {}
    if any("\n" in path for path in paths):  # the batch protocol is line-based
        return {path: show(root, rev, path) for path in paths}
    request = "".join(f"{rev}:{path}\n" for path in paths).encode("utf-8")
    result = subprocess.run(["git", "-C", str(root), "cat-file", "--batch", "--filters"], input=request,
                            capture_output=True, env=_environment())
    found: dict[str, str | None] = {}
    data, position = result.stdout, 0
    for path in paths:
        end = data.find(b"\n", position)
        if result.returncode != 0 or end < 0:
            return {p: show(root, rev, p) for p in paths}  # an unexpected answer: one by one
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

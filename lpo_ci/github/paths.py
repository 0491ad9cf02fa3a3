"""Machine paths in posted text, made relative to the repository.

Reasons and errors in a report name files by the path the evaluating machine
saw (``/runner/_work/prompts/prompts/prompts/bool.j2:15`` on a self-hosted runner). On GitHub the
reader knows the repository, not the runner: a path inside the checkout is
shown relative to the repository's top, the runner's temporary and tool
folders and the home folder by their variables (``$RUNNER_TEMP/…``, ``~/…``).

The report may come from another job (the fork-safe publisher), whose
checkout this machine never saw: there a path is recognised by the runner's
layout, ``…/<repository name>/<repository name>/…``, as actions/checkout
places a repository on every runner (``D:\\a\\name\\name\\`` on Windows).
"""

from __future__ import annotations

import os
import re
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path, PurePosixPath

# An absolute path: POSIX (not part of a URL or of a longer word) or a Windows drive path.
_ABSOLUTE = re.compile(r"(?<![\w.:/\\~$%-])(?:/|[A-Za-z]:\\)[^\s'\"`<>|*?()\[\]{},;]*")
# A mention of a repository file with a line: "prompts/bool.j2:15".
_MENTION = re.compile(r"(?<![\w./-])((?:[\w.-]+/)*[\w.-]*\w\.[A-Za-z]\w*):(\d+)\b")


def _posix(path: str) -> str:
    return path.replace("\\", "/")


@dataclass(frozen=True)
class PathScrubber:
    """``roots``: (absolute folder, what it becomes) pairs, longest first; ``repo_name``: for
    the runner layout of a checkout seen elsewhere."""

    roots: tuple[tuple[str, str], ...] = ()
    repo_name: str | None = None

    @classmethod
    def from_environment(cls, repo_top: Path | None = None,
                         environ: Mapping[str, str] | None = None) -> "PathScrubber":
        """Roots of this machine: the repository's top and the workspace (to the repository's
        top), the runner's temporary and tool folders, the home folder."""
        environ = os.environ if environ is None else environ
        roots: list[tuple[str, str]] = []
        if repo_top is not None:
            roots.append((str(repo_top), ""))
        for name, shown in (("GITHUB_WORKSPACE", ""), ("RUNNER_TEMP", "$RUNNER_TEMP/"),
                            ("RUNNER_TOOL_CACHE", "$RUNNER_TOOL_CACHE/"), ("HOME", "~/"),
                            ("USERPROFILE", "~/")):
            if environ.get(name):
                roots.append((environ[name], shown))
        expanded = []
        for folder, shown in roots:
            for form in {folder, _resolved(folder)}:
                if len(form.rstrip("/\\")) > 1:  # never "/" itself
                    expanded.append((_posix(form).rstrip("/"), shown))
        expanded.sort(key=lambda pair: -len(pair[0]))
        repository = environ.get("GITHUB_REPOSITORY", "")
        return cls(tuple(expanded), repository.split("/")[-1] if "/" in repository else None)

    def __call__(self, text: str) -> str:
        if "/" not in text and "\\" not in text:
            return text
        return _ABSOLUTE.sub(lambda match: self.relative(match.group()), text)

    def relative(self, path: str) -> str:
        posix = _posix(path)
        for folder, shown in self.roots:
            if posix == folder:
                return shown.rstrip("/") or "."
            if posix.startswith(folder + "/"):
                return shown + posix[len(folder) + 1:]
        if self.repo_name:
            name = re.escape(self.repo_name)
            match = re.search(rf"/{name}/{name}(/|$)", posix)
            if match:
                return posix[match.end():] or "."
        return path


def _resolved(folder: str) -> str:
    try:
        return str(Path(folder).resolve())
    except (OSError, RuntimeError):
        return folder


def mentioned_line(text: str, accept) -> tuple[str, int] | None:
    """The first ``path:line`` in ``text`` whose path ``accept`` turns into a repository path
    (it returns None to skip a mention)."""
    for match in _MENTION.finditer(text or ""):
        path = str(PurePosixPath(match.group(1)))
        if path.startswith(("../", "/")):
            continue
        target = accept(path)
        if target:
            return target, int(match.group(2))
    return None

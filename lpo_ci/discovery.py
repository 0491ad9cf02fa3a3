"""Which files are prompt templates under test.

A file is a test subject when a ``prompts`` glob matches its path (relative to
the project root), no ``exclude`` glob does, and it is not a partial: its name,
or a folder the glob's wildcards stand for, starts with ``_`` (the convention
of Sass and of Jinja projects: ``_preamble.j2``, ``_partials/``). Files named
in ``[tool.lpo_ci.templates]`` are always test subjects.

Globs follow ``pathlib``'s rules: ``*`` and ``?`` stay within a folder, ``**``
spans any number of folders (none included). Walking never enters hidden
folders, virtual environments, ``node_modules``, ``build`` or ``dist`` unless a
glob names them literally, and never loops through a symbolic link.
"""

from __future__ import annotations

import os
from fnmatch import fnmatchcase
from functools import lru_cache
from pathlib import Path

DEFAULT_GLOBS = ("**/prompts/**/*.j2", "**/prompts/**/*.jinja", "**/prompts/**/*.jinja2")
SKIPPED_FOLDERS = frozenset({"node_modules", "__pycache__", "site-packages", "build", "dist", "venv", "CVS"})


def literal_head(pattern: str) -> list[str]:
    """The folders a glob names before its first wildcard (``app/prompts`` of ``app/prompts/**/*.j2``)."""
    head = []
    for part in _parts(pattern)[:-1]:
        if any(ch in part for ch in "*?["):
            break
        head.append(part)
    return head


def _parts(pattern: str) -> tuple[str, ...]:
    return tuple(p for p in pattern.strip("/").split("/") if p not in ("", "."))


def glob_match(pattern: str, rel: str) -> bool:
    """Whether the project path ``rel`` matches ``pattern``, folder by folder."""
    globs, names = _parts(pattern), rel.split("/")

    @lru_cache(maxsize=None)
    def match(i: int, j: int) -> bool:
        if i == len(globs):
            return j == len(names)
        if globs[i] == "**":  # none, or one more folder
            return match(i + 1, j) or (j < len(names) and match(i, j + 1))
        return j < len(names) and fnmatchcase(names[j], globs[i]) and match(i + 1, j + 1)

    return match(0, 0)


def is_partial(rel: str, pattern: str) -> bool:
    """A file whose name, or a folder below the glob's literal head, starts with ``_``."""
    parts = rel.split("/")
    head = literal_head(pattern)
    if parts[:len(head)] == head:
        parts = parts[len(head):]
    return any(part.startswith("_") for part in parts)


def classify(settings, rel: str) -> str | None:
    """Why the project path ``rel`` is not a test subject ("excluded", "partial", "not
    matched"), or None when it is one."""
    if rel in settings.template_tables:
        return None
    patterns = [p for p in settings.prompts if glob_match(p, rel)]
    if not patterns:
        return "not matched"
    if any(glob_match(p, rel) for p in settings.exclude):
        return "excluded"
    if all(is_partial(rel, p) for p in patterns):
        return "partial"
    return None


def relative(settings, path: Path) -> str | None:
    try:
        return Path(path).resolve().relative_to(settings.root).as_posix()
    except ValueError:
        return None


def matches(settings, path: Path) -> bool:
    """Whether ``path`` is a prompt template under test (see the module docstring).
    A symbolic link is judged by its own name, inside the project."""
    rel = _link_relative(settings, Path(path))
    return rel is not None and classify(settings, rel) is None


def _link_relative(settings, path: Path) -> str | None:
    """``path`` relative to the root without resolving a final symbolic link (its name counts)."""
    try:
        parent = path.parent.resolve()
        return (parent / path.name).relative_to(settings.root).as_posix()
    except ValueError:
        return None


def _skipped(folder: Path) -> bool:
    name = folder.name
    return name.startswith(".") or name in SKIPPED_FOLDERS or name.endswith(".egg") \
        or (folder / "pyvenv.cfg").is_file()


def _walk(start: Path):
    """Files under ``start``, pruning skipped folders and symbolic-link loops."""
    seen: set[Path] = set()
    for folder, dirs, files in os.walk(start, followlinks=True):
        real = Path(folder).resolve()
        if real in seen:
            dirs[:] = []
            continue
        seen.add(real)
        dirs[:] = sorted(d for d in dirs if not _skipped(Path(folder) / d))
        for name in sorted(files):
            yield Path(folder) / name


def discover(settings, paths: list[Path] | None = None) -> list[Path]:
    """Templates under test in the project (or under ``paths``), each real file once, sorted."""
    found: dict[Path, Path] = {}
    starts = {settings.root.joinpath(*literal_head(p)) for p in settings.prompts}
    for start in sorted(starts):
        if not start.is_dir():
            continue
        for path in _walk(start):
            rel = _link_relative(settings, path)
            if rel is not None and classify(settings, rel) is None and path.is_file():
                found.setdefault(path.resolve(), path)
    for rel in settings.template_tables:
        candidate = settings.root / rel
        if candidate.is_file():
            found.setdefault(candidate.resolve(), candidate)
    result = sorted(found)
    if paths:
        wanted = [Path(p).resolve() for p in paths]
        result = [p for p in result if any(p == w or w in p.parents for w in wanted)]
    return result


def template_folders(settings) -> list[Path]:
    """The fewest folders that hold every template under test (what pytest must visit)."""
    folders: list[Path] = []
    for folder in sorted({p.parent for p in discover(settings)}, key=lambda f: len(f.parts)):
        if not any(folder == f or f in folder.parents for f in folders):
            folders.append(folder)
    return folders

"""Shared partials: ``{% include %}``, ``{% import %}`` and ``{% extends %}`` inside the project.

A name resolves as an application's ``FileSystemLoader`` resolves it: in the
template's own folder, then in each folder above it up to the project root
(or in the folders of ``search_path`` under ``[tool.lpo_ci]``). Nothing outside
the project root is ever read, whether through ``..``, an absolute name or a
symbolic link. The same loader reads every included file's base version from
git, so a change to a shared partial is scored in every template that includes
it; ``loaded`` records what each render read, to tell which files changed.
"""

from __future__ import annotations

from pathlib import Path, PurePosixPath
from typing import Callable

from jinja2 import BaseLoader, TemplateNotFound
from jinja2.loaders import split_template_path

from .errors import SpecError

Reader = Callable[[str], "str | None"]  # project path -> text, or None when there is no such file
GIT_SYMLINK_HOPS = 8


class ProjectLoader(BaseLoader):
    """Looks names up in ``folders`` (project paths, first match wins) and reads files with
    ``read``; ``overrides`` (project path -> text) stand in for files, as the optimizer's
    candidate edits of a partial do. ``label`` names a file in errors (``rev:path`` for a
    base version)."""

    def __init__(self, folders: list[str], read: Reader, *, label: Callable[[str], str] = str,
                 overrides: dict[str, str] | None = None):
        self.folders = folders
        self.read = read
        self.label = label
        self.overrides = dict(overrides or {})
        self.loaded: dict[str, str] = {}  # every file served: project path -> text

    def resolve(self, name: str) -> str | None:
        """The project path ``name`` stands for, or None (``..`` is refused by Jinja's splitter)."""
        pieces = split_template_path(name)
        for folder in self.folders:
            rel = PurePosixPath(folder, *pieces).as_posix()
            if rel in self.overrides or rel in self.loaded or self.read(rel) is not None:
                return rel
        return None

    def get_source(self, environment, name):
        if not isinstance(name, str) or "\0" in name:
            raise TemplateNotFound(str(name))
        rel = self.resolve(name)
        if rel is None:
            searched = ", ".join(f"{f}/" if f else "the project root" for f in self.folders)
            raise TemplateNotFound(name, f"{name!r} is not in the folders searched ({searched})")
        text = self.overrides.get(rel)
        if text is None:
            text = self.loaded.get(rel)
        if text is None:
            text = self.read(rel)
        self.loaded[rel] = text
        return text, self.label(rel), lambda: True


def search_folders(template_relpath: str, configured: tuple[str, ...] = ()) -> list[str]:
    """Project folders names are looked up in ("" is the root): ``configured`` (the
    ``search_path`` setting, checked to stay inside the project) when set, else the
    template's folder and every folder above it up to the root."""
    if configured:
        return [_folder(PurePosixPath(f)) for f in configured]
    folder = PurePosixPath(template_relpath).parent
    folders = [_folder(folder)]
    while str(folder) != ".":
        folder = folder.parent
        folders.append(_folder(folder))
    return folders


def _folder(path: PurePosixPath) -> str:
    return "" if str(path) == "." else path.as_posix()


def working_tree_reader(root: Path) -> Reader:
    """Files of the working tree, refused when they resolve outside the project root."""
    root = Path(root).resolve()

    def read(rel: str) -> str | None:
        path = root / rel
        try:
            if not path.is_file():
                return None
            real = path.resolve()
        except (OSError, ValueError):
            return None
        if not real.is_relative_to(root):
            raise SpecError(f"{rel} resolves outside the project ({real}): lpo-ci reads no file "
                            f"outside the project root", path=rel,
                            hint="keep shared templates inside the project, or copy the file in")
        try:
            return real.read_text(encoding="utf-8")
        except UnicodeDecodeError as exc:
            raise SpecError(f"not UTF-8 text: {exc.reason}", path=rel, hint="save the file as UTF-8") from None
        except OSError as exc:
            raise SpecError(f"cannot read the file: {exc.strerror or exc}", path=rel,
                            hint="check the file's permissions") from None

    return read


def git_reader(root: Path, rev: str) -> Reader:
    """Files as they were at ``rev`` (project paths; symbolic links followed inside the project)."""
    from . import vcs

    prefix = vcs.repo_prefix(root)
    cache: dict[str, str | None] = {}

    def read(rel: str) -> str | None:
        if rel in cache:
            return cache[rel]
        path, text = rel, None
        for _ in range(GIT_SYMLINK_HOPS):
            text = vcs.show(root, rev, prefix + path)
            if text is None or not vcs.is_symlink(root, rev, prefix + path):
                break
            target, text = PurePosixPath(text.strip()), None
            linked = None if target.is_absolute() else _inside(PurePosixPath(path).parent / target)
            if linked is None:
                break  # a link out of the project: not read
            path = linked
        cache[rel] = text
        return text

    return read


def changed_files(head: dict[str, str], base: dict[str, str]) -> list[str]:
    """Included files whose text differs between two renders' ``loaded`` (or that only one read)."""
    return sorted(path for path in head.keys() | base.keys() if head.get(path) != base.get(path))


def _inside(path: PurePosixPath) -> str | None:
    """``path`` with ``..`` resolved, or None when it leaves the project."""
    parts: list[str] = []
    for part in path.parts:
        if part == "..":
            if not parts:
                return None
            parts.pop()
        elif part != ".":
            parts.append(part)
    return "/".join(parts)


def referenced_names(source: str) -> set[str]:
    """The names a template includes, imports or extends, where they are literal strings."""
    from jinja2 import meta

    from .render import environment

    try:
        return {name for name in meta.find_referenced_templates(environment().parse(source)) if name}
    except Exception:  # noqa: BLE001 - a broken template is reported as its own item
        return set()


def referenced_files(root: Path, templates: dict[str, str], configured: tuple[str, ...] = ()) -> set[str]:
    """Project paths that ``templates`` (project path -> text) include, import or extend."""
    read = working_tree_reader(root)
    found: set[str] = set()
    for relpath, source in templates.items():
        loader = ProjectLoader(search_folders(relpath, configured), _quiet(read))
        for name in referenced_names(source):
            try:
                rel = loader.resolve(name)
            except Exception:  # noqa: BLE001 - TemplateNotFound for '..': not a partial of ours
                continue
            if rel is not None:
                found.add(rel)
    return found


def _quiet(read: Reader) -> Reader:
    def safe(rel: str) -> str | None:
        try:
            return read(rel)
        except SpecError:
            return None

    return safe

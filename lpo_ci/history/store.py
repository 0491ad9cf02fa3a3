"""Where history records live: a small interface and the local-directory backend.

Records are JSON lines in one file per template, named after the template's
path in the repository plus ``.jsonl`` (``prompts/qa.j2.jsonl``), so a person
finds a template's history where they expect it and concurrent writers of
different templates never touch the same file. Files are only appended to.

Reading is lazy: a shard keeps its raw lines and parses them on demand, from
the end when only the last records are wanted (``history show`` of a long
history parses a few lines per template, not all of them). A line that is not
a record is skipped with a warning naming the file and line; nothing is
rewritten.
"""

from __future__ import annotations

import os
from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import Any

from ..errors import LpoError
from . import record as rec

SUFFIX = ".jsonl"
ATTRIBUTES = "*.jsonl merge=union\n"  # a person merging two copies by hand keeps both sides' lines
SIMILAR_SHOWN = 1  # per kind of problem and file, lines named before "and N more"


class HistoryError(LpoError):
    """The history store cannot be used as asked (foreign branch, bad path, ...)."""


def shard_name(template: str, repo_prefix: str = "") -> str:
    """The store file of a template: its repository path plus ``.jsonl``."""
    return f"{repo_prefix}{template}{SUFFIX}"


class Shard:
    """One template's file of records, parsed on demand; problems are kept for the warnings."""

    def __init__(self, name: str, source: str, data: bytes):
        self.name = name
        self.source = source  # what warnings call the file: a path, or branch:path
        self._lines = data.split(b"\n")
        if self._lines and not self._lines[-1].strip():
            self._lines.pop()
        self._parsed: dict[int, dict[str, Any] | None] = {}
        self.problems: list[tuple[int, str]] = []  # (line, what is wrong)

    def __len__(self) -> int:
        return len(self._lines)

    def _record(self, index: int) -> dict[str, Any] | None:
        if index in self._parsed:
            return self._parsed[index]
        line = self._lines[index]
        parsed = None
        if line.strip():
            try:
                parsed = rec.loads(line)
            except rec.RecordError as exc:
                self.problems.append((index + 1, str(exc)))
        self._parsed[index] = parsed
        return parsed

    def records(self) -> list[dict[str, Any]]:
        """Every record, in the order they were appended."""
        return [r for r in map(self._record, range(len(self._lines))) if r is not None]

    def reversed(self) -> Iterator[dict[str, Any]]:
        """Records from the newest back, parsed as they are reached."""
        for index in range(len(self._lines) - 1, -1, -1):
            found = self._record(index)
            if found is not None:
                yield found

    def first(self) -> dict[str, Any] | None:
        for index in range(len(self._lines)):
            found = self._record(index)
            if found is not None:
                return found
        return None

    def warnings(self) -> list[str]:
        """The problems, one line per kind: the first place it occurred, and how often."""
        by_kind: dict[str, list[int]] = {}
        for line, problem in sorted(self.problems):
            kind = "newer" if "newer lpo-ci" in problem else problem
            by_kind.setdefault(kind, []).append(line)
        texts = []
        for kind, lines in by_kind.items():
            problem = next(p for n, p in self.problems if n == lines[0])
            more = f" (and {len(lines) - SIMILAR_SHOWN} more lines like it)" if len(lines) > SIMILAR_SHOWN else ""
            hint = ("upgrade lpo-ci to read it" if kind == "newer"
                    else "the line was skipped; fix or delete it by hand if it should count")
            texts.append(f"{self.source}:{lines[0]}: not a history record: {problem}{more}; {hint}")
        return texts


class Store:
    """The interface of a history backend."""

    description = ""

    def names(self) -> list[str]:
        """The shard files the store holds."""
        raise NotImplementedError

    def shards(self, names: Iterable[str] | None = None) -> dict[str, Shard]:
        """The named shards that exist (all of them when ``names`` is None)."""
        raise NotImplementedError

    def append(self, records: list[dict[str, Any]]) -> list[str]:
        """Append records; returns warnings (a push that was refused, ...)."""
        raise NotImplementedError


def group_lines(records: list[dict[str, Any]]) -> dict[str, list[str]]:
    """Shard name -> the new lines for it, in order."""
    grouped: dict[str, list[str]] = {}
    for record in records:
        name = shard_name(record["template"], record.get("repo_prefix", ""))
        grouped.setdefault(name, []).append(rec.dumps(record))
    return grouped


def check_shard_name(name: str) -> str:
    if not rec.relative_path(name) or not name.endswith(SUFFIX):
        raise HistoryError(f"'{name}' is not a path a history file may have",
                           hint="template paths must be relative and stay inside the repository")
    return name


class LocalStore(Store):
    """A directory of JSON-lines files on this machine (default ``.lpo-ci/history/``)."""

    def __init__(self, directory: Path):
        self.directory = Path(directory)
        self.description = str(self.directory)

    def names(self) -> list[str]:
        if not self.directory.is_dir():
            return []
        return sorted(p.relative_to(self.directory).as_posix() for p in self.directory.rglob(f"*{SUFFIX}")
                      if p.is_file())

    def shards(self, names: Iterable[str] | None = None) -> dict[str, Shard]:
        found = {}
        for name in (self.names() if names is None else names):
            path = self.directory / check_shard_name(name)
            try:
                data = path.read_bytes()
            except FileNotFoundError:
                continue
            except OSError as exc:
                raise HistoryError(f"cannot read the history file: {exc.strerror}", path=path) from None
            found[name] = Shard(name, str(path), data)
        return found

    def append(self, records: list[dict[str, Any]]) -> list[str]:
        self.directory.mkdir(parents=True, exist_ok=True)
        attributes = self.directory / ".gitattributes"
        if not attributes.exists():
            attributes.write_text(ATTRIBUTES, encoding="utf-8")
        for name, lines in group_lines(records).items():
            path = self.directory / check_shard_name(name)
            path.parent.mkdir(parents=True, exist_ok=True)
            append_lines(path, lines)
        return []


def append_lines(path: Path, lines: list[str]) -> None:
    """Append whole lines under an exclusive lock, so concurrent writers never interleave;
    a last line left without its newline (an interrupted writer) is closed first."""
    payload = "".join(line + "\n" for line in lines).encode("utf-8")
    with open(path, "a+b") as handle:
        _lock(handle)
        handle.seek(0, os.SEEK_END)
        if handle.tell() > 0:
            handle.seek(-1, os.SEEK_END)
            if handle.read(1) != b"\n":
                payload = b"\n" + payload
        handle.seek(0, os.SEEK_END)
        handle.write(payload)
        handle.flush()


def _lock(handle) -> None:
    try:
        import fcntl
    except ImportError:  # not POSIX: appends of one write call are the best we have
        return
    fcntl.flock(handle.fileno(), fcntl.LOCK_EX)


def collect_warnings(shards: Iterable[Shard]) -> list[str]:
    return [text for shard in shards for text in shard.warnings()]

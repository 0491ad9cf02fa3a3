"""Where history records live: a small interface and the local-directory backend.

Records are JSON lines, one folder per template named after the template's
path in the repository, one file per month of runs in it
(``prompts/qa.j2/2026-03.jsonl``). A person finds a template's history where
they expect it; concurrent writers of different templates never touch the
same file; and an append rewrites one month's file at most, which keeps a
commit to the history branch cheap however long the history grows. Files
are only appended to.

Reading is lazy: a template's shard loads its month files newest first, as
far back as a reader goes, and parses lines on demand from the end
(``history show`` of a long history parses a few lines per template). A line
that is not a record is skipped with a warning naming the file and line;
nothing is rewritten.
"""

from __future__ import annotations

import json
import os
import re
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ..errors import LpoError
from . import record as rec

SUFFIX = ".jsonl"
ATTRIBUTES = "*.jsonl merge=union\n"  # a person merging two copies by hand keeps both sides' lines
SIMILAR_SHOWN = 1  # per kind of problem and file, lines named before "and N more"
_CHUNK = re.compile(r"\A(?P<key>.+)/(?P<month>\d{4}-\d{2})\.jsonl\Z")


class HistoryError(LpoError):
    """The history store cannot be used as asked (foreign branch, bad path, ...)."""


def template_key(template: str, repo_prefix: str = "") -> str:
    """A template's folder in the store: its path in the repository."""
    return f"{repo_prefix}{template}"


def chunk_name(record: dict[str, Any]) -> str:
    """The file a record is appended to: its template's folder, its run's month."""
    return f"{template_key(record['template'], record.get('repo_prefix', ''))}/{record['run_date'][:7]}{SUFFIX}"


def split_chunk(name: str) -> tuple[str, str] | None:
    """(template key, month) of a store file name, or None for any other file."""
    match = _CHUNK.match(name)
    if not match or not rec.relative_path(name):
        return None
    return match["key"], match["month"]


def check_chunk(name: str) -> str:
    if split_chunk(name) is None:
        raise HistoryError(f"'{name}' is not a path a history file may have",
                           hint="template paths must be relative and stay inside the repository")
    return name


@dataclass
class Chunk:
    """One month file of a template; ``data`` is None until loaded."""

    name: str
    source: str  # what warnings call it: a path, or branch:path
    data: bytes | None = None
    lines: list[bytes] | None = None

    def split(self) -> list[bytes]:
        if self.lines is None:
            lines = (self.data or b"").split(b"\n")
            if lines and not lines[-1].strip():
                lines.pop()
            self.lines = lines
        return self.lines


_UNPARSED = object()


class Shard:
    """One template's records across its month files, loaded and parsed on demand."""

    def __init__(self, key: str, chunks: list[Chunk], load: Callable[[list[Chunk]], None]):
        self.key = key
        self.chunks = sorted(chunks, key=lambda c: c.name)
        self._load = load
        self._parsed: list[list[Any] | None] = [None] * len(self.chunks)  # per file: a record, None or _UNPARSED
        self.problems: list[tuple[str, int, str]] = []  # (file, line, what is wrong)

    def _slots(self, index: int) -> list[Any]:
        """The file's lines' parsed records (_UNPARSED until parsed), loading the file if needed."""
        slots = self._parsed[index]
        if slots is None:
            chunk = self.chunks[index]
            if chunk.data is None:
                self._load([chunk])
            slots = self._parsed[index] = [_UNPARSED] * len(chunk.split())
        return slots

    def _problem(self, index: int, line: int, message: str) -> None:
        self.problems.append((self.chunks[index].source, line + 1, message))

    def _record(self, index: int, line: int) -> dict[str, Any] | None:
        slots = self._slots(index)
        if slots[line] is _UNPARSED:
            raw, parsed = self.chunks[index].split()[line], None
            if raw.strip():
                try:
                    parsed = rec.loads(raw)
                except rec.RecordError as exc:
                    self._problem(index, line, str(exc))
            slots[line] = parsed
        return slots[line]

    def records(self) -> list[dict[str, Any]]:
        """Every record, in the order they were appended."""
        self._load([c for c in self.chunks if c.data is None])
        found: list[dict[str, Any]] = []
        for index in range(len(self.chunks)):
            self._parse_all(index)
            found += [r for r in self._slots(index) if r is not None]
        return found

    def _parse_all(self, index: int) -> None:
        """Parse a whole file in one JSON call (several times faster than line by line); a file
        with a line that is not JSON is parsed line by line, to name that line."""
        slots, lines = self._slots(index), self.chunks[index].split()
        todo = [n for n, slot in enumerate(slots) if slot is _UNPARSED and lines[n]]
        values = None
        # one JSON object per line, as written here (anything else is parsed line by line)
        if todo and all(lines[n][:1] == b"{" and lines[n][-1:] == b"}" for n in todo):
            try:
                values = json.loads(b"[" + b",".join(lines[n] for n in todo) + b"]")
            except (ValueError, UnicodeDecodeError):
                pass
        if values is not None and len(values) == len(todo):
            for n, value in zip(todo, values):
                try:
                    slots[n] = rec.check(value)
                except rec.RecordError as exc:
                    slots[n] = None
                    self._problem(index, n, str(exc))
        for n in range(len(slots)):
            if slots[n] is _UNPARSED:
                self._record(index, n)

    def reversed(self) -> Iterator[dict[str, Any]]:
        """Records from the newest back, loaded and parsed as they are reached."""
        for index in range(len(self.chunks) - 1, -1, -1):
            for line in range(len(self._slots(index)) - 1, -1, -1):
                found = self._record(index, line)
                if found is not None:
                    yield found

    def first(self) -> dict[str, Any] | None:
        for index in range(len(self.chunks)):
            for line in range(len(self._slots(index))):
                found = self._record(index, line)
                if found is not None:
                    return found
        return None

    def parsed(self) -> list[dict[str, Any]]:
        """The records parsed so far."""
        return [r for slots in self._parsed if slots for r in slots if r is not None and r is not _UNPARSED]

    def warnings(self) -> list[str]:
        """The problems, one line per kind and file: the first place it occurred, and how often."""
        by_kind: dict[tuple[str, str], list[tuple[int, str]]] = {}
        for source, line, problem in sorted(self.problems):
            kind = "newer" if "newer lpo-ci" in problem else problem
            by_kind.setdefault((source, kind), []).append((line, problem))
        texts = []
        for (source, kind), found in by_kind.items():
            line, problem = found[0]
            more = f" (and {len(found) - SIMILAR_SHOWN} more lines like it)" if len(found) > SIMILAR_SHOWN else ""
            hint = ("upgrade lpo-ci to read it" if kind == "newer"
                    else "the line was skipped; fix or delete it by hand if it should count")
            texts.append(f"{source}:{line}: not a history record: {problem}{more}; {hint}")
        return texts


class Store:
    """The interface of a history backend."""

    description = ""

    def keys(self) -> list[str]:
        """The templates (repository paths) the store holds records of."""
        raise NotImplementedError

    def shards(self, keys: Iterable[str] | None = None) -> dict[str, Shard]:
        """The named templates' shards that exist (all of them when ``keys`` is None)."""
        raise NotImplementedError

    def append(self, records: list[dict[str, Any]]) -> list[str]:
        """Append records; returns warnings (a push that was refused, ...)."""
        raise NotImplementedError


def group_lines(records: list[dict[str, Any]]) -> dict[str, list[str]]:
    """Store file -> the new lines for it, in order."""
    grouped: dict[str, list[str]] = {}
    for record in records:
        grouped.setdefault(check_chunk(chunk_name(record)), []).append(rec.dumps(record))
    return grouped


def by_key(names: Iterable[str]) -> dict[str, list[str]]:
    """Template key -> its month files, from a listing of store files (others ignored)."""
    keys: dict[str, list[str]] = {}
    for name in names:
        parts = split_chunk(name)
        if parts is not None:
            keys.setdefault(parts[0], []).append(name)
    return keys


class LocalStore(Store):
    """A directory of JSON-lines files on this machine (default ``.lpo-ci/history/``)."""

    def __init__(self, directory: Path):
        self.directory = Path(directory)
        self.description = str(self.directory)

    def _files(self) -> dict[str, list[str]]:
        if not self.directory.is_dir():
            return {}
        return by_key(p.relative_to(self.directory).as_posix() for p in self.directory.rglob(f"*{SUFFIX}")
                      if p.is_file())

    def keys(self) -> list[str]:
        return sorted(self._files())

    def _load(self, chunks: list[Chunk]) -> None:
        for chunk in chunks:
            try:
                chunk.data = (self.directory / chunk.name).read_bytes()
            except OSError as exc:
                raise HistoryError(f"cannot read the history file: {exc.strerror}", path=chunk.source) from None

    def shards(self, keys: Iterable[str] | None = None) -> dict[str, Shard]:
        files = self._files()
        wanted = files if keys is None else {k: files[k] for k in keys if k in files}
        return {key: Shard(key, [Chunk(name, str(self.directory / name)) for name in names], self._load)
                for key, names in wanted.items()}

    def append(self, records: list[dict[str, Any]]) -> list[str]:
        grouped = group_lines(records)
        try:
            self.directory.mkdir(parents=True, exist_ok=True)
            attributes = self.directory / ".gitattributes"
            if not attributes.exists():
                attributes.write_text(ATTRIBUTES, encoding="utf-8")
            for name, lines in grouped.items():
                path = self.directory / name
                path.parent.mkdir(parents=True, exist_ok=True)
                append_lines(path, lines)
        except OSError as exc:
            raise HistoryError(f"cannot write the history: {exc.strerror}", path=exc.filename or self.directory,
                               hint="check the folder (history_dir under [tool.lpo_ci]) is a writable directory") \
                from None
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

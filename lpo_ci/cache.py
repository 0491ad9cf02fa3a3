"""The response cache: a rerun of unchanged work makes no model call.

Entries are content-addressed by model, prompt and every parameter that
changes the answer. The store is SQLite in WAL mode: several pytest-xdist
workers can read and write at once, and each response is committed as soon
as it arrives, so an interrupted run resumes where it stopped.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import sqlite3
import threading
from pathlib import Path
from typing import Any

SCHEMA_VERSION = 1


@contextlib.contextmanager
def _locked(directory: Path):
    """Hold the cache folder's lock while opening, so concurrent workers never both
    repair a store (where ``fcntl`` exists; elsewhere SQLite's own locking is all)."""
    try:
        import fcntl

        handle = open(directory / ".lock", "a")
    except (ImportError, OSError):  # no fcntl, or a folder we may not write: SQLite reports that
        yield
        return
    with handle:
        fcntl.flock(handle, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)


def cache_key(request: dict[str, Any]) -> str:
    """A stable hash of everything that determines a response."""
    canonical = json.dumps({"v": SCHEMA_VERSION, **request}, sort_keys=True, ensure_ascii=False,
                           separators=(",", ":"))
    return hashlib.sha256(canonical.encode("utf-8")).hexdigest()


CACHE_DIR_HINT = ("point --lpo-cache-dir (lpo-ci --cache-dir, cache_dir under [tool.lpo_ci], or "
                  "LPO_CI_CACHE_DIR) at a directory lpo-ci can write")


class ResponseCache:
    """A SQLite key-value store under ``directory``; ``None`` disables caching.

    A store that is not a database any more (overwritten, truncated) is moved aside,
    kept for inspection and named in ``warnings``; the run goes on with a fresh one.
    """

    def __init__(self, directory: Path | None):
        self.directory = Path(directory) if directory else None
        self._local = threading.local()
        self.warnings: list[str] = []
        if self.directory is not None:
            self._make_directory()
            with _locked(self.directory):
                try:
                    self._open_store()
                except sqlite3.DatabaseError as exc:  # not a database, or a malformed one
                    self._set_aside(exc)
                    self._open_store()

    def _make_directory(self) -> None:
        from .errors import SpecError

        if self.directory.exists() and not self.directory.is_dir():
            raise SpecError("the response cache directory is an existing file", path=self.directory,
                            hint=CACHE_DIR_HINT)
        try:
            self.directory.mkdir(parents=True, exist_ok=True)
            ignore = self.directory / ".gitignore"
            if not ignore.exists():
                ignore.write_text("# written by lpo-ci: the response cache is not for version control\n*\n")
        except OSError as exc:
            raise SpecError(f"cannot use the response cache directory: {exc.strerror or exc}",
                            path=self.directory, hint=CACHE_DIR_HINT) from None

    def _open_store(self) -> None:
        from .errors import SpecError

        try:
            db = self._connect()
            problem = db.execute("PRAGMA quick_check").fetchone()[0]
            if problem != "ok":
                raise sqlite3.DatabaseError(problem)
            db.execute("CREATE TABLE IF NOT EXISTS responses ("
                       "key TEXT PRIMARY KEY, value TEXT NOT NULL, created REAL NOT NULL)")
        except sqlite3.OperationalError as exc:  # cannot open, locked for a minute
            self.close()
            raise SpecError(f"cannot open the response cache: {exc}", path=self.path, hint=CACHE_DIR_HINT) from None
        except sqlite3.DatabaseError:
            self.close()
            raise

    def _set_aside(self, error: Exception) -> None:
        """Move the broken store (and its journal) aside, keeping it for inspection."""
        import time

        from .errors import SpecError

        stamp = time.strftime("%Y%m%d-%H%M%S")
        kept = self.path.with_name(f"{self.path.name}.corrupt-{stamp}")
        try:
            for suffix in ("", "-wal", "-shm"):
                part = Path(f"{self.path}{suffix}")
                if part.exists():
                    part.replace(f"{kept}{suffix}")
        except OSError as exc:
            raise SpecError(f"the response cache is unreadable ({error}) and cannot be moved aside: "
                            f"{exc.strerror or exc}", path=self.path, hint=CACHE_DIR_HINT) from None
        self.warnings.append(f"the response cache {self.path} was unreadable ({error}); it was moved to "
                             f"{kept} and a fresh cache was started")

    @property
    def path(self) -> Path | None:
        return self.directory / "responses.sqlite3" if self.directory else None

    def _connect(self) -> sqlite3.Connection:
        db = getattr(self._local, "db", None)
        if db is None:
            db = sqlite3.connect(self.path, timeout=60, isolation_level=None)
            db.execute("PRAGMA journal_mode=WAL")
            db.execute("PRAGMA synchronous=NORMAL")
            db.execute("PRAGMA busy_timeout=60000")
            self._local.db = db
        return db

    def get(self, key: str) -> dict[str, Any] | None:
        if self.directory is None:
            return None
        row = self._connect().execute("SELECT value FROM responses WHERE key = ?", (key,)).fetchone()
        return json.loads(row[0]) if row else None

    def put(self, key: str, value: dict[str, Any]) -> None:
        if self.directory is None:
            return
        import time

        self._connect().execute(
            "INSERT OR REPLACE INTO responses (key, value, created) VALUES (?, ?, ?)",
            (key, json.dumps(value, ensure_ascii=False), time.time()))

    def __len__(self) -> int:
        if self.directory is None:
            return 0
        return self._connect().execute("SELECT COUNT(*) FROM responses").fetchone()[0]

    def close(self) -> None:
        db = getattr(self._local, "db", None)
        if db is not None:
            db.close()
            self._local.db = None

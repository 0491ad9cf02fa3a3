"""The response cache: a rerun of unchanged work makes no model call.

Entries are content-addressed by model, prompt and every parameter that
changes the answer. The store is SQLite in WAL mode: several pytest-xdist
workers can read and write at once, and each response is committed as soon
as it arrives, so an interrupted run resumes where it stopped.
"""

from __future__ import annotations

import hashlib
import json
import sqlite3
import threading
from pathlib import Path
from typing import Any

SCHEMA_VERSION = 1


def cache_key(request: dict[str, Any]) -> str:
    """A stable hash of everything that determines a response."""
    canonical = json.dumps({"v": SCHEMA_VERSION, **request}, sort_keys=True, ensure_ascii=False,
                           separators=(",", ":"))
    return hashlib.sha256(canonical.encode("utf-8")).hexdigest()


class ResponseCache:
    """A SQLite key-value store under ``directory``; ``None`` disables caching."""

    def __init__(self, directory: Path | None):
        self.directory = Path(directory) if directory else None
        self._local = threading.local()
        if self.directory is not None:
            self.directory.mkdir(parents=True, exist_ok=True)
            ignore = self.directory / ".gitignore"
            if not ignore.exists():
                ignore.write_text("# written by lpo-ci: the response cache is not for version control\n*\n")
            with self._connect() as db:
                db.execute("CREATE TABLE IF NOT EXISTS responses ("
                           "key TEXT PRIMARY KEY, value TEXT NOT NULL, created REAL NOT NULL)")

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

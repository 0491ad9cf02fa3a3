"""The response cache: a rerun of unchanged work makes no model call.

Entries are content-addressed by model, prompt and every parameter that
changes the answer. Two stores share one small interface (``CacheBackend``):

* SQLite in WAL mode, the default: several pytest-xdist workers can read and
  write at once, and each response is committed as soon as it arrives, so an
  interrupted run resumes where it stopped;
* Redis (``cache_url = "redis://host:port/db"``), shared by the jobs of a CI
  matrix and by every later run on any runner. A Redis that cannot be reached
  never fails a gate: lpo-ci warns once and goes on with the local SQLite
  store, with bounded connect and socket timeouts so that it never hangs.
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
REDIS_PREFIX = "lpo-ci:response:"  # + cache_key(...): the same keys as the SQLite store
REDIS_CONNECT_TIMEOUT = 2.0  # seconds: an unreachable host must not hold up a run
REDIS_SOCKET_TIMEOUT = 5.0
REDIS_BATCH = 500  # keys per MGET


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


class CacheWarning(UserWarning):
    """The shared cache could not be used; the run goes on with the local one."""


class CacheBackend:
    """What the model client needs from a response store: JSON-able values by key."""

    def get(self, key: str) -> dict[str, Any] | None:
        raise NotImplementedError

    def get_many(self, keys: list[str]) -> dict[str, dict[str, Any]]:
        """The stored values among ``keys``, in one round trip where the store allows it."""
        found = {}
        for key in keys:
            value = self.get(key)
            if value is not None:
                found[key] = value
        return found

    def put(self, key: str, value: dict[str, Any]) -> None:
        raise NotImplementedError

    def is_empty(self) -> bool:
        """True only when surely empty (a run will call the model): a cheap look, never a wait."""
        return False

    def close(self) -> None:
        pass


class ResponseCache(CacheBackend):
    """A SQLite key-value store under ``directory``; ``None`` disables caching.

    A store that is not a database any more (overwritten, truncated) is moved aside,
    kept for inspection and named in ``warnings``; the run goes on with a fresh one.
    """

    def __init__(self, directory: Path | None):
        self.directory = Path(directory) if directory else None
        self._local = threading.local()
        self.warnings: list[str] = []
        if self.directory is not None:
            self._make_directory(self.directory)
            with _locked(self.directory):
                try:
                    self._open_store()
                except sqlite3.DatabaseError as exc:  # not a database, or a malformed one
                    self._set_aside(exc)
                    self._open_store()

    def _make_directory(self, directory: Path) -> None:
        from .errors import SpecError

        if directory.exists() and not directory.is_dir():
            raise SpecError("the response cache directory is an existing file", path=directory,
                            hint=CACHE_DIR_HINT)
        try:
            directory.mkdir(parents=True, exist_ok=True)
            ignore = directory / ".gitignore"
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
        kept = self._file.with_name(f"{self._file.name}.corrupt-{stamp}")
        try:
            for suffix in ("", "-wal", "-shm"):
                part = Path(f"{self._file}{suffix}")
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

    @property
    def _file(self) -> Path:
        """The store's file, for the methods that run only with caching on."""
        if self.path is None:
            raise RuntimeError("the response cache is off: it has no file")
        return self.path

    def _connect(self) -> sqlite3.Connection:
        db = getattr(self._local, "db", None)
        if db is None:
            # timeout: a worker waits up to a minute for another's write (SQLite's busy_timeout)
            db = sqlite3.connect(self._file, timeout=60, isolation_level=None)
            db.execute("PRAGMA journal_mode=WAL")
            db.execute("PRAGMA synchronous=NORMAL")
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

    def is_empty(self) -> bool:
        if self.directory is None:
            return True
        return self._connect().execute("SELECT NOT EXISTS (SELECT 1 FROM responses)").fetchone()[0] == 1

    def close(self) -> None:
        db = getattr(self._local, "db", None)
        if db is not None:
            db.close()
            self._local.db = None


def _safe_url(url: str) -> str:
    """The URL without its password, for messages."""
    from urllib.parse import urlsplit

    parts = urlsplit(url)
    if parts.password is None:
        return url
    host = parts.hostname or ""
    if parts.port:
        host += f":{parts.port}"
    user = f"{parts.username}:***@" if parts.username else ":***@"
    return parts._replace(netloc=user + host).geturl()


class RedisCache(CacheBackend):
    """Responses in Redis, shared across processes, jobs and runners.

    The first failure of any kind (the ``redis`` client missing, a refused or
    timed-out connection, a server killed mid-run, an error reply) is a warning;
    from then on this run reads and writes ``fallback``, the local store. It does
    not go back to Redis within the run: a flapping server costs one timeout, not
    one per call.
    """

    def __init__(self, url: str, fallback: ResponseCache, *,
                 connect_timeout: float = REDIS_CONNECT_TIMEOUT, socket_timeout: float = REDIS_SOCKET_TIMEOUT):
        self.url = url
        self.fallback = fallback
        self.connect_timeout = connect_timeout
        self.socket_timeout = socket_timeout
        self._client = None
        self._failed: str | None = None  # why Redis was given up, once it was
        self._lock = threading.Lock()

    @property
    def active(self) -> bool:
        """Whether this run still uses Redis."""
        return self._failed is None

    @property
    def warnings(self) -> list[str]:
        """For the report and the summary, like the local store's: why Redis was given up."""
        own = [f"the shared response cache {_safe_url(self.url)} could not be used ({self._failed}); "
               "the run went on with the local cache"] if self._failed else []
        return [*getattr(self.fallback, "warnings", []), *own]

    def _redis(self):
        if self._client is None:
            import redis
            from redis.backoff import NoBackoff
            from redis.retry import Retry

            # No retries by the client: the local store is the retry.
            self._client = redis.Redis.from_url(
                self.url, socket_connect_timeout=self.connect_timeout, socket_timeout=self.socket_timeout,
                retry=Retry(NoBackoff(), 0), retry_on_timeout=False, health_check_interval=0)
        return self._client

    def _give_up(self, exc: BaseException) -> None:
        import warnings

        with self._lock:
            if self._failed is not None:
                return
            if isinstance(exc, ImportError):
                reason = "the redis client is not installed: pip install 'lpo-ci[redis]'"
            else:
                reason = f"{type(exc).__name__}: {str(exc).strip()[:200]}"
            self._failed = reason
        local = getattr(self.fallback, "directory", None)
        warnings.warn(CacheWarning(
            f"response cache {_safe_url(self.url)} cannot be used ({reason}); this run goes on with "
            f"the local cache{f' in {local}' if local else ''}"), stacklevel=4)

    def _attempt(self, operation, fallback):
        """``operation(client)``, or ``fallback()`` once Redis has failed."""
        if self._failed is None:
            try:
                return operation(self._redis())
            except Exception as exc:  # noqa: BLE001 - any Redis trouble: warn and go local
                self._give_up(exc)
        return fallback()

    def get(self, key: str) -> dict[str, Any] | None:
        return self.get_many([key]).get(key)

    def get_many(self, keys: list[str]) -> dict[str, dict[str, Any]]:
        def fetch(client) -> dict[str, dict[str, Any]]:
            found = {}
            for start in range(0, len(keys), REDIS_BATCH):
                chunk = keys[start:start + REDIS_BATCH]
                for key, raw in zip(chunk, client.mget([REDIS_PREFIX + k for k in chunk])):
                    value = _decode(raw) if raw is not None else None
                    if value is not None:
                        found[key] = value
            return found

        return self._attempt(fetch, lambda: self.fallback.get_many(keys)) if keys else {}

    def put(self, key: str, value: dict[str, Any]) -> None:
        data = json.dumps(value, ensure_ascii=False)
        self._attempt(lambda r: r.set(REDIS_PREFIX + key, data), lambda: self.fallback.put(key, value))

    def __len__(self) -> int:
        def count(client) -> int:
            return sum(1 for _ in client.scan_iter(match=REDIS_PREFIX + "*", count=1000))

        return self._attempt(count, lambda: len(self.fallback))

    def close(self) -> None:
        if self._client is not None:
            try:
                self._client.close()
            except Exception:  # noqa: BLE001 - closing a connection that is already gone
                pass
            self._client = None
        self.fallback.close()


def _decode(raw: bytes | str) -> dict[str, Any] | None:
    """A stored value, or None (a miss) for anything that is not one of ours."""
    try:
        value = json.loads(raw)
    except (ValueError, UnicodeDecodeError):
        return None
    return value if isinstance(value, dict) and isinstance(value.get("text"), str) else None


def open_cache(directory: Path | None, url: str | None = None) -> CacheBackend:
    """The configured store: Redis at ``url`` (the local one at ``directory`` as its fallback), else SQLite."""
    local = ResponseCache(directory)
    return RedisCache(url, local) if url else local

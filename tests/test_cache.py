"""The response cache: content-addressed, shared safely by concurrent processes."""

from __future__ import annotations

import multiprocessing

from lpo_ci.cache import ResponseCache, cache_key


def test_key_depends_on_every_parameter_but_not_on_order():
    base = {"model": "m", "prompt": "p", "temperature": 0, "stop": ["\n"]}
    assert cache_key(base) == cache_key(dict(reversed(list(base.items()))))
    for change in ({"model": "m2"}, {"prompt": "p "}, {"temperature": 0.1}, {"stop": None}):
        assert cache_key({**base, **change}) != cache_key(base)


def test_put_get_persist_across_instances(tmp_path):
    cache = ResponseCache(tmp_path / "c")
    key = cache_key({"prompt": "x"})
    assert cache.get(key) is None
    cache.put(key, {"text": "héllo", "prompt_tokens": 3})
    cache.close()
    again = ResponseCache(tmp_path / "c")
    assert again.get(key) == {"text": "héllo", "prompt_tokens": 3}
    assert len(again) == 1
    assert (tmp_path / "c" / ".gitignore").read_text().strip().endswith("*")


def test_disabled_cache_stores_nothing(tmp_path):
    cache = ResponseCache(None)
    cache.put("k", {"text": "x"})
    assert cache.get("k") is None and len(cache) == 0


def _writer(directory: str, worker: int, count: int) -> None:
    cache = ResponseCache(directory)
    for i in range(count):
        cache.put(cache_key({"worker": worker, "i": i}), {"text": f"{worker}-{i}"})
        cache.get(cache_key({"worker": (worker + 1) % 4, "i": i}))


def test_concurrent_processes_lose_nothing(tmp_path):
    directory = str(tmp_path / "shared")
    ResponseCache(directory)
    context = multiprocessing.get_context("spawn")
    workers = [context.Process(target=_writer, args=(directory, w, 150)) for w in range(4)]
    for process in workers:
        process.start()
    for process in workers:
        process.join(60)
        assert process.exitcode == 0
    cache = ResponseCache(directory)
    assert len(cache) == 600
    assert cache.get(cache_key({"worker": 3, "i": 149})) == {"text": "3-149"}


def _filled(directory) -> ResponseCache:
    cache = ResponseCache(directory)
    for i in range(2000):
        cache.put(cache_key({"i": i}), {"text": "x" * 200})
    cache.close()
    return cache


def test_a_cache_overwritten_with_garbage_is_set_aside_and_replaced(tmp_path):
    store = _filled(tmp_path / "c").path
    store.write_bytes(b"this is not a database" * 1000)
    cache = ResponseCache(tmp_path / "c")
    assert len(cache) == 0  # a fresh store that works
    cache.put("k", {"text": "y"})
    assert cache.get("k") == {"text": "y"}
    (kept,) = tmp_path.joinpath("c").glob("responses.sqlite3.corrupt-*")
    assert kept.read_bytes().startswith(b"this is not a database")  # kept for inspection
    assert len(cache.warnings) == 1 and str(kept) in cache.warnings[0] and "fresh cache" in cache.warnings[0]


def test_a_truncated_cache_is_set_aside_and_replaced(tmp_path):
    import sqlite3

    cache = _filled(tmp_path / "c")
    db = sqlite3.connect(cache.path)
    db.execute("PRAGMA wal_checkpoint(TRUNCATE)")
    db.close()
    size = cache.path.stat().st_size
    with open(cache.path, "r+b") as handle:
        handle.truncate(size // 2 + 100)  # mid-page
    again = ResponseCache(tmp_path / "c")
    assert len(again) == 0 and again.warnings and "malformed" in again.warnings[0]
    assert list(tmp_path.joinpath("c").glob("responses.sqlite3.corrupt-*"))


def test_a_cache_directory_that_is_a_file_is_a_clear_error(tmp_path):
    import pytest

    from lpo_ci.errors import SpecError

    (tmp_path / "cache").write_text("a file")
    with pytest.raises(SpecError, match="the response cache directory is an existing file") as excinfo:
        ResponseCache(tmp_path / "cache")
    assert "--lpo-cache-dir" in excinfo.value.hint


# --- what makes the store safe to share ------------------------------------------

def test_the_store_is_in_wal_mode_and_waits_a_minute_for_a_lock(tmp_path):
    cache = ResponseCache(tmp_path)
    db = cache._connect()
    assert db.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
    assert db.execute("PRAGMA synchronous").fetchone()[0] == 1  # NORMAL: safe in WAL mode, fewer syncs
    assert db.execute("PRAGMA busy_timeout").fetchone()[0] == 60_000
    assert (tmp_path / "responses.sqlite3-wal").exists()
    cache.close()


def test_a_writer_waits_for_another_processs_lock_instead_of_failing(tmp_path):
    import sqlite3
    import threading
    import time

    cache = ResponseCache(tmp_path)
    other = sqlite3.connect(tmp_path / "responses.sqlite3", isolation_level=None, check_same_thread=False)
    other.execute("BEGIN EXCLUSIVE")
    released = threading.Event()

    def release():
        time.sleep(0.5)
        other.execute("COMMIT")
        released.set()

    threading.Thread(target=release).start()
    started = time.monotonic()
    cache.put("k", {"text": "waited"})  # blocked until the other connection commits
    assert released.is_set() and time.monotonic() - started >= 0.4
    assert cache.get("k") == {"text": "waited"}
    other.close()
    cache.close()


def test_a_reader_is_not_blocked_by_a_write_in_progress(tmp_path):
    import sqlite3

    cache = ResponseCache(tmp_path)
    cache.put("k", {"text": "before"})
    writer = sqlite3.connect(tmp_path / "responses.sqlite3", isolation_level=None)
    writer.execute("BEGIN IMMEDIATE")
    writer.execute("INSERT OR REPLACE INTO responses VALUES ('k', '{\"text\": \"after\"}', 0)")
    assert cache.get("k") == {"text": "before"}  # WAL: the committed value, at once
    writer.execute("COMMIT")
    assert cache.get("k") == {"text": "after"}
    writer.close()
    cache.close()


def test_close_closes_the_connection_and_the_cache_reopens_on_use(tmp_path):
    import sqlite3

    import pytest

    cache = ResponseCache(tmp_path)
    cache.put("k", {"text": "x"})
    db = cache._connect()
    cache.close()
    with pytest.raises(sqlite3.ProgrammingError):
        db.execute("SELECT 1")
    assert cache.get("k") == {"text": "x"} and cache._connect() is not db
    cache.close()
    cache.close()  # twice is harmless
    ResponseCache(None).close()


def test_each_thread_has_its_own_connection(tmp_path):
    import threading

    cache = ResponseCache(tmp_path)
    mine = cache._connect()
    theirs = []
    thread = threading.Thread(target=lambda: theirs.append(cache._connect()))
    thread.start()
    thread.join()
    assert theirs[0] is not mine and cache._connect() is mine
    cache.close()


# --- keys, the folder, the store's edges ------------------------------------------

def test_keys_are_stable_across_releases():
    # a changed key would silently turn every stored answer into a miss: the hash is pinned
    import hashlib

    assert cache_key({"model": "m", "prompt": "é"}) == hashlib.sha256(
        '{"model":"m","prompt":"é","v":1}'.encode()).hexdigest()


def test_a_nested_cache_directory_is_created_and_its_gitignore_kept(tmp_path):
    cache = ResponseCache(tmp_path / "a" / "b" / "c")
    cache.put("k", {"text": "x"})
    assert cache.path == tmp_path / "a" / "b" / "c" / "responses.sqlite3" and cache.path.exists()
    cache.close()
    own = tmp_path / "mine"
    own.mkdir()
    (own / ".gitignore").write_text("responses.sqlite3\n")
    ResponseCache(own).close()
    assert (own / ".gitignore").read_text() == "responses.sqlite3\n"  # the user's file is left alone


def test_a_cache_directory_that_cannot_be_made_is_a_clear_error(tmp_path):
    import pytest

    from lpo_ci.errors import SpecError

    (tmp_path / "file").write_text("not a folder")
    with pytest.raises(SpecError, match="cannot use the response cache directory: Not a directory") as excinfo:
        ResponseCache(tmp_path / "file" / "cache")
    assert excinfo.value.path == str(tmp_path / "file" / "cache") and "--lpo-cache-dir" in excinfo.value.hint


def test_a_store_that_cannot_be_opened_is_a_clear_error(tmp_path):
    import pytest

    from lpo_ci.errors import SpecError

    (tmp_path / "responses.sqlite3").mkdir()  # in the way of the database file
    with pytest.raises(SpecError, match="cannot open the response cache: unable to open database file") as excinfo:
        ResponseCache(tmp_path)
    assert excinfo.value.path == str(tmp_path / "responses.sqlite3") and "--lpo-cache-dir" in excinfo.value.hint


def test_a_folder_whose_lock_file_cannot_be_opened_still_caches(tmp_path):
    (tmp_path / ".lock").mkdir()  # open(..., "a") fails: SQLite's own locking is all there is
    cache = ResponseCache(tmp_path)
    cache.put("k", {"text": "x"})
    assert cache.get("k") == {"text": "x"}
    cache.close()


def test_opening_waits_for_the_folder_lock(tmp_path):
    # another worker holding the lock (repairing the store) makes this one wait, not race it
    import fcntl
    import threading

    ResponseCache(tmp_path).close()
    with open(tmp_path / ".lock", "a") as held:
        fcntl.flock(held, fcntl.LOCK_EX)
        opened = threading.Event()
        thread = threading.Thread(target=lambda: (ResponseCache(tmp_path).close(), opened.set()))
        thread.start()
        assert not opened.wait(0.3)
        fcntl.flock(held, fcntl.LOCK_UN)
        assert opened.wait(30)
        thread.join()
    with open(tmp_path / ".lock", "a") as again:  # and the lock is free once the store is open
        fcntl.flock(again, fcntl.LOCK_EX | fcntl.LOCK_NB)


def test_a_broken_store_is_set_aside_with_its_journal(tmp_path):
    (tmp_path / "responses.sqlite3").write_bytes(b"garbage" * 1000)
    (tmp_path / "responses.sqlite3-wal").write_bytes(b"old journal")
    cache = ResponseCache(tmp_path)
    (kept,) = tmp_path.glob("responses.sqlite3.corrupt-*[0-9]")
    assert kept.read_bytes().startswith(b"garbage")
    assert kept.with_name(kept.name + "-wal").read_bytes() == b"old journal"
    assert not (tmp_path / "responses.sqlite3-wal").read_bytes().startswith(b"old")  # the fresh store's own
    assert len(cache) == 0 and cache.warnings[0].startswith(f"the response cache {cache.path} was unreadable (")
    cache.close()


def test_a_broken_store_that_cannot_be_moved_aside_is_a_clear_error(tmp_path, monkeypatch):
    import time

    import pytest

    from lpo_ci.errors import SpecError

    monkeypatch.setattr(time, "strftime", lambda _format: "STAMP")
    (tmp_path / "responses.sqlite3").write_bytes(b"garbage" * 1000)
    (tmp_path / "responses.sqlite3.corrupt-STAMP" / "taken").mkdir(parents=True)  # the target is in the way
    with pytest.raises(SpecError, match=r"the response cache is unreadable \(.*\) and cannot be moved aside") \
            as excinfo:
        ResponseCache(tmp_path)
    assert excinfo.value.path == str(tmp_path / "responses.sqlite3") and "--lpo-cache-dir" in excinfo.value.hint


def test_the_disabled_cache_has_no_file_and_is_always_empty():
    import pytest

    cache = ResponseCache(None)
    assert cache.path is None and cache.is_empty() and cache.get_many(["k"]) == {}
    with pytest.raises(RuntimeError, match="has no file"):
        _ = cache._file


def test_is_empty_and_get_many(tmp_path):
    cache = ResponseCache(tmp_path)
    assert cache.is_empty() is True and cache.get_many(["a", "b"]) == {}
    cache.put("a", {"text": "1"})
    cache.put("c", {"text": "3"})
    assert cache.is_empty() is False
    assert cache.get_many(["a", "b", "c"]) == {"a": {"text": "1"}, "c": {"text": "3"}}
    cache.put("a", {"text": "one"})  # a later answer replaces the earlier one
    assert cache.get("a") == {"text": "one"} and len(cache) == 2
    cache.close()


def test_the_backend_interface_has_no_store_of_its_own():
    import pytest

    from lpo_ci.cache import CacheBackend

    backend = CacheBackend()
    with pytest.raises(NotImplementedError):
        backend.get("k")
    with pytest.raises(NotImplementedError):
        backend.put("k", {"text": "x"})
    assert backend.is_empty() is False  # unknown: a run must not assume it will call the model
    backend.close()


# --- the shared Redis store's logic, on an in-memory stand-in for the client ------
# (tests/test_redis_cache.py runs the same code against a real redis-server)

class FakeRedis:
    """The four client calls RedisCache makes, on a dict; ``broken`` makes every call fail."""

    def __init__(self, broken: Exception | None = None):
        self.data: dict[str, str] = {}
        self.broken = broken
        self.mget_sizes: list[int] = []
        self.closed = False

    def _check(self):
        if self.broken is not None:
            raise self.broken

    def mget(self, keys):
        self._check()
        self.mget_sizes.append(len(keys))
        return [self.data.get(k) for k in keys]

    def set(self, key, value):
        self._check()
        self.data[key] = value

    def scan_iter(self, match, count):
        self._check()
        assert match.endswith("*")
        return iter([k for k in self.data if k.startswith(match[:-1])])

    def close(self):
        self.closed = True
        self._check()


def redis_cache(tmp_path, client: FakeRedis, url: str = "redis://127.0.0.1:1/0"):
    from lpo_ci.cache import RedisCache

    cache = RedisCache(url, ResponseCache(tmp_path / "local"))
    cache._client = client
    return cache


def test_redis_stores_under_the_prefix_and_reads_in_batches_of_500(tmp_path):
    from lpo_ci.cache import REDIS_PREFIX

    client = FakeRedis()
    cache = redis_cache(tmp_path, client)
    keys = [f"k{i}" for i in range(1001)]
    for key in keys[::2]:
        cache.put(key, {"text": key})
    assert client.data[REDIS_PREFIX + "k0"] == '{"text": "k0"}' and len(cache) == 501
    found = cache.get_many(keys)
    assert client.mget_sizes == [500, 500, 1]
    assert found == {k: {"text": k} for k in keys[::2]}
    assert cache.get("k2") == {"text": "k2"} and cache.get("k1") is None
    assert cache.get_many([]) == {} and client.mget_sizes[-1] == 1  # nothing asked, no round trip
    client.data["unrelated"] = "x"
    assert len(cache) == 501 and cache.active and cache.warnings == []
    assert len(cache.fallback) == 0  # nothing went to the local store


def test_values_under_our_prefix_that_are_not_ours_are_misses(tmp_path):
    from lpo_ci.cache import REDIS_PREFIX, _decode

    client = FakeRedis()
    cache = redis_cache(tmp_path, client)
    for key, raw in {"a": "not json", "b": b"\xff\xfe", "c": "[1]", "d": '{"other": 1}', "e": '{"text": 3}',
                     "f": '{"text": "ok"}'}.items():
        client.data[REDIS_PREFIX + key] = raw
    assert cache.get_many(list("abcdefg")) == {"f": {"text": "ok"}}
    assert _decode(b'{"text": "bytes"}') == {"text": "bytes"}


def test_the_first_redis_failure_warns_once_and_the_local_store_takes_over(tmp_path, recwarn):
    import warnings

    from lpo_ci.cache import CacheWarning

    client = FakeRedis(broken=ConnectionError("refused\n"))
    cache = redis_cache(tmp_path, client, url="redis://user:secret@127.0.0.1:1/0")
    warnings.simplefilter("always")
    cache.put("k", {"text": "local"})  # fails over: written locally
    assert not cache.active
    client.broken = None  # Redis back: this run stays local all the same
    assert cache.get("k") == {"text": "local"} and client.mget_sizes == []
    assert len(cache) == 1 and cache.get_many(["k", "x"]) == {"k": {"text": "local"}}
    (warning,) = [w for w in recwarn if issubclass(w.category, CacheWarning)]
    assert warning.filename == __file__  # pointed at the caller of put, not at lpo-ci
    message = str(warning.message)
    assert message == (f"response cache redis://user:***@127.0.0.1:1/0 cannot be used (ConnectionError: refused); "
                       f"this run goes on with the local cache in {tmp_path / 'local'}")
    assert cache.warnings == ["the shared response cache redis://user:***@127.0.0.1:1/0 could not be used "
                              "(ConnectionError: refused); the run went on with the local cache"]
    cache.close()
    assert client.closed and cache._client is None and cache.fallback._local.db is None  # both stores closed


def test_a_failure_while_reading_falls_back_too_and_the_reason_is_cut_short(tmp_path, recwarn):
    client = FakeRedis(broken=TimeoutError("x" * 500))
    cache = redis_cache(tmp_path, client)
    cache.fallback.put("k", {"text": "local"})
    assert cache.get_many(["k"]) == {"k": {"text": "local"}}
    assert cache.warnings == [f"the shared response cache redis://127.0.0.1:1/0 could not be used "
                              f"(TimeoutError: {'x' * 200}); the run went on with the local cache"]
    assert len(recwarn) == 1
    cache._give_up(ValueError("later"))  # a second failure changes nothing
    assert len(recwarn) == 1 and "later" not in cache.warnings[0]


def test_without_the_redis_client_the_hint_is_the_install_command(tmp_path, recwarn):
    client = FakeRedis(broken=ImportError("No module named 'redis'"))
    cache = redis_cache(tmp_path, client)
    assert len(cache) == 0
    assert "(the redis client is not installed: pip install 'lpo-ci[redis]')" in cache.warnings[0]


def test_redis_warnings_include_the_local_stores(tmp_path):
    (tmp_path / "local").mkdir()
    (tmp_path / "local" / "responses.sqlite3").write_bytes(b"garbage" * 100)
    cache = redis_cache(tmp_path, FakeRedis())
    assert len(cache.warnings) == 1 and "was unreadable" in cache.warnings[0]


def test_closing_a_connection_that_is_already_gone_is_quiet(tmp_path):
    client = FakeRedis()
    cache = redis_cache(tmp_path, client)
    client.broken = ConnectionError("gone")
    cache.close()
    assert client.closed and cache._client is None
    cache.close()  # nothing left to close


def test_the_redis_client_gives_up_fast_and_never_retries(tmp_path):
    # README: connecting gives up after 2 s, a command after 5 s, and Redis is not retried
    from lpo_ci.cache import RedisCache

    cache = RedisCache("redis://127.0.0.1:1/0", ResponseCache(None))
    client = cache._redis()
    assert cache._redis() is client  # one client per run
    options = client.connection_pool.connection_kwargs
    assert (options["socket_connect_timeout"], options["socket_timeout"]) == (2.0, 5.0)
    assert options["retry_on_timeout"] is False and options["health_check_interval"] == 0
    assert options["retry"]._retries == 0
    cache.close()


def test_the_url_loses_its_password_in_messages():
    from lpo_ci.cache import _safe_url

    assert _safe_url("redis://cache:6379/0") == "redis://cache:6379/0"
    assert _safe_url("redis://user:pw@cache:6379/0") == "redis://user:***@cache:6379/0"
    assert _safe_url("rediss://:pw@cache/1") == "rediss://:***@cache/1"


def test_open_cache_picks_the_store(tmp_path):
    from lpo_ci.cache import RedisCache, open_cache

    local = open_cache(tmp_path / "a")
    assert type(local) is ResponseCache and local.directory == tmp_path / "a"
    shared = open_cache(tmp_path / "b", "redis://127.0.0.1:1/0")
    assert isinstance(shared, RedisCache) and shared.url == "redis://127.0.0.1:1/0"
    assert shared.fallback.directory == tmp_path / "b"
    local.close()
    shared.close()


def test_a_store_whose_quick_check_finds_damage_is_set_aside(tmp_path):
    # a damaged page that SQLite still opens: PRAGMA quick_check names it instead of raising
    import sqlite3

    cache = _filled(tmp_path)
    db = sqlite3.connect(cache.path)
    db.execute("PRAGMA wal_checkpoint(TRUNCATE)")
    page_size = db.execute("PRAGMA page_size").fetchone()[0]
    db.close()
    with open(cache.path, "r+b") as handle:
        handle.seek(2 * page_size + 1)  # the third page's free-block pointer
        byte = handle.read(1)[0]
        handle.seek(2 * page_size + 1)
        handle.write(bytes([byte ^ 0xFF]))
    again = ResponseCache(tmp_path)
    assert len(again) == 0 and "*** in database main ***" in again.warnings[0]
    assert list(tmp_path.glob("responses.sqlite3.corrupt-*"))
    again.close()


def test_a_store_that_fails_after_connecting_leaves_no_connection_open(tmp_path):
    # a database of another program (an index on a collation only it knows): not ours to repair
    import os
    import sqlite3

    import pytest

    from lpo_ci.errors import SpecError

    other = sqlite3.connect(tmp_path / "responses.sqlite3")
    other.create_collation("theirs", lambda a, b: (a > b) - (a < b))
    other.execute("CREATE TABLE t (x TEXT COLLATE theirs)")
    other.execute("CREATE INDEX i ON t (x)")
    other.commit()
    other.close()
    with pytest.raises(SpecError, match="cannot open the response cache: no such collation sequence: theirs") \
            as excinfo:
        ResponseCache(tmp_path)
    store = str(tmp_path / "responses.sqlite3")
    open_files = [os.readlink(f"/proc/self/fd/{fd}") for fd in os.listdir("/proc/self/fd")
                  if os.path.exists(f"/proc/self/fd/{fd}")]
    assert store not in open_files  # closed, though the failed cache is still referenced here
    assert excinfo.value.path == store


def test_both_stores_keep_the_same_json_text_non_ascii_as_written(tmp_path):
    import sqlite3

    from lpo_ci.cache import REDIS_PREFIX

    value = {"text": "Réponse: 日本語", "prompt_tokens": 3}
    client = FakeRedis()
    redis_cache(tmp_path, client).put("k", value)
    local = ResponseCache(tmp_path / "sqlite")
    local.put("k", value)
    local.close()
    db = sqlite3.connect(tmp_path / "sqlite" / "responses.sqlite3")
    (stored,) = db.execute("SELECT value FROM responses WHERE key = 'k'").fetchone()
    db.close()
    assert stored == client.data[REDIS_PREFIX + "k"] == '{"text": "Réponse: 日本語", "prompt_tokens": 3}'

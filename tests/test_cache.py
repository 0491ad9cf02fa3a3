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

"""The shared response cache on a real ``redis-server`` started on 127.0.0.1.

Same keys and values as the SQLite store; two processes writing the same keys
at once; a server that is unreachable, silent, or killed mid-run costs a
warning and nothing else: the run goes on with the local SQLite cache.
"""

from __future__ import annotations

import json
import socket
import sqlite3
import subprocess
import sys
import textwrap
import threading
import time
import warnings
from pathlib import Path

import pytest

from lpo_ci.cache import REDIS_PREFIX, CacheWarning, RedisCache, ResponseCache, cache_key, open_cache
from tests.support.openai_server import fake_openai_server, wording_sensitive_answer
from tests.support.redis_server import RedisServer, free_port, redis_binary
from tests.test_plugin import (  # noqa: F401 - the fixtures apply here too
    GOOD, _hermetic_env, _preload_heavy_modules, project, report, write_template)

pytest.importorskip("redis", reason="the redis client is not installed: pip install -e '.[test]'")
pytestmark = pytest.mark.skipif(
    redis_binary() is None,
    reason="redis-server is not installed (apt-get install redis-server); .ci/run installs it")

VALUE = {"text": "True", "prompt_tokens": 3, "completion_tokens": 1, "cost": 0.0, "model": "openai/fake"}


@pytest.fixture
def redis_server():
    with RedisServer() as server:
        yield server


def raw_client(server: RedisServer):
    import redis

    return redis.Redis.from_url(server.url(), socket_timeout=5)


def local_entries(directory: Path) -> int:
    path = directory / "responses.sqlite3"
    if not path.exists():
        return 0
    with sqlite3.connect(path) as db:
        return db.execute("SELECT COUNT(*) FROM responses").fetchone()[0]


# --------------------------------------------------------------------------
# the store


def test_same_keys_and_values_as_the_sqlite_store(redis_server, tmp_path):
    key = cache_key({"model": "openai/fake", "prompt": "Q: True and False\nA:"})
    shared, local = open_cache(tmp_path / "a", redis_server.url()), ResponseCache(tmp_path / "b")
    assert isinstance(shared, RedisCache)
    assert shared.get(key) is None
    shared.put(key, VALUE)
    local.put(key, VALUE)
    assert shared.get(key) == local.get(key) == VALUE
    assert json.loads(raw_client(redis_server).get(REDIS_PREFIX + key)) == VALUE
    assert shared.get_many([key, "f" * 64]) == local.get_many([key, "f" * 64]) == {key: VALUE}
    assert len(shared) == 1 and shared.active
    assert local_entries(tmp_path / "a") == 0  # Redis up: the local store is not written
    shared.close()


def test_foreign_values_under_our_prefix_are_misses(redis_server, tmp_path):
    client = raw_client(redis_server)
    client.set(REDIS_PREFIX + "a" * 64, b"\xff not json")
    client.set(REDIS_PREFIX + "b" * 64, json.dumps({"no": "text"}))
    cache = open_cache(tmp_path, redis_server.url())
    assert cache.get_many(["a" * 64, "b" * 64]) == {}
    assert cache.active


def test_many_keys_in_batches(redis_server, tmp_path):
    cache = open_cache(tmp_path, redis_server.url(db=3))
    keys = [cache_key({"prompt": str(i)}) for i in range(1203)]
    for index, key in enumerate(keys[::2]):
        cache.put(key, {**VALUE, "text": str(index)})
    found = cache.get_many(keys)
    assert len(found) == 602 and found[keys[2]]["text"] == "1"
    assert raw_client(redis_server).dbsize() == 0  # db 0 untouched: the URL's db is used


WRITER = textwrap.dedent("""
    import sys
    from lpo_ci.cache import open_cache
    cache = open_cache(None, sys.argv[1])
    for round in range(3):
        for i in range(400):
            key = f"{i:064x}"
            cache.put(key, {"text": f"answer {i}", "writer": sys.argv[2]})
            value = cache.get(key)
            assert value is not None and value["text"] == f"answer {i}", value
    assert cache.active
    print("ok")
""")


def test_two_processes_write_the_same_keys_at_once(redis_server):
    writers = [subprocess.Popen([sys.executable, "-c", WRITER, redis_server.url(), name],
                                stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
               for name in ("one", "two")]
    results = [w.communicate(timeout=120) for w in writers]
    assert [w.returncode for w in writers] == [0, 0], results
    assert all(out.strip() == "ok" for out, _ in results)
    client = raw_client(redis_server)
    assert client.dbsize() == 400
    assert {json.loads(client.get(REDIS_PREFIX + f"{i:064x}"))["text"] for i in (0, 399)} == {
        "answer 0", "answer 399"}


# --------------------------------------------------------------------------
# Redis that cannot be used: a warning, then the local store


def test_unreachable_redis_warns_once_and_uses_the_local_store(tmp_path):
    url = f"redis://:hunter2@127.0.0.1:{free_port()}/0"  # nothing listens there
    cache = open_cache(tmp_path, url)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        assert cache.get("a" * 64) is None
        cache.put("a" * 64, VALUE)
        assert cache.get("a" * 64) == VALUE
    messages = [str(w.message) for w in caught if issubclass(w.category, CacheWarning)]
    assert len(messages) == 1, messages
    assert "cannot be used" in messages[0] and "ConnectionError" in messages[0]
    assert "hunter2" not in messages[0] and ":***@127.0.0.1" in messages[0]
    assert str(tmp_path) in messages[0]
    assert not cache.active and local_entries(tmp_path) == 1


def test_a_silent_server_costs_one_bounded_timeout(tmp_path):
    with socket.socket() as silent:  # accepts connections (the kernel's backlog) and never answers
        silent.bind(("127.0.0.1", 0))
        silent.listen(8)
        cache = RedisCache(f"redis://127.0.0.1:{silent.getsockname()[1]}/0", ResponseCache(tmp_path),
                           connect_timeout=0.5, socket_timeout=0.5)
        started = time.monotonic()
        with pytest.warns(CacheWarning, match="Timeout"):
            assert cache.get_many(["a" * 64, "b" * 64]) == {}
        for _ in range(20):  # given up: no further timeouts
            cache.put("a" * 64, VALUE)
            assert cache.get("a" * 64) == VALUE
        assert time.monotonic() - started < 5


def test_missing_redis_client_is_a_warning_with_the_install_hint(tmp_path, monkeypatch):
    monkeypatch.setitem(sys.modules, "redis", None)  # import redis -> ImportError
    cache = open_cache(tmp_path, "redis://127.0.0.1:6379/0")
    with pytest.warns(CacheWarning, match=r"pip install 'lpo-ci\[redis\]'"):
        assert cache.get("a" * 64) is None
    cache.put("a" * 64, VALUE)
    assert local_entries(tmp_path) == 1


@pytest.mark.parametrize("url", ["http://127.0.0.1:6379", "127.0.0.1:6379", "redis:/x"])
def test_bad_cache_url_in_pyproject_is_a_usage_error_at_its_line(pytester, url):
    project(pytester, None, lpo=f'cache_url = "{url}"\n')
    write_template(pytester, "prompts/a.j2", GOOD, samples=5)
    result = pytester.runpytest("--lpo")
    assert result.ret == pytest.ExitCode.USAGE_ERROR
    assert "pyproject.toml:3: 'cache_url' must be a Redis URL" in result.stderr.str()


def test_bad_cache_url_in_the_environment_is_a_usage_error(pytester, monkeypatch):
    project(pytester, None)
    write_template(pytester, "prompts/a.j2", GOOD, samples=5)
    monkeypatch.setenv("LPO_CI_CACHE_URL", "localhost:6379")
    result = pytester.runpytest("--lpo")
    assert result.ret == pytest.ExitCode.USAGE_ERROR
    assert "LPO_CI_CACHE_URL must be a Redis URL" in result.stderr.str()


# --------------------------------------------------------------------------
# end to end: runs that share Redis


def lpo_ci(*args: str, cwd: Path, env: dict) -> subprocess.Popen:
    exe = Path(sys.executable).with_name("lpo-ci")
    command = [str(exe)] if exe.exists() else [sys.executable, "-m", "lpo_ci.cli"]
    return subprocess.Popen([*command, *args], cwd=cwd, env=env, stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True)


def test_two_runs_at_once_share_answers_through_redis(redis_server, pytester, monkeypatch):
    import os

    with fake_openai_server(latency=0.02) as server:
        project(pytester, server.url, lpo=f'cache_url = "{redis_server.url()}"\n')
        write_template(pytester, "prompts/a.j2", GOOD, samples=60)
        env = {**os.environ, "NO_PROXY": "127.0.0.1", "no_proxy": "127.0.0.1"}
        runs = [lpo_ci("eval", "prompts/a.j2", "--no-base", "--report", f"r{k}.json",
                       "--cache-dir", f"local-{k}", cwd=pytester.path, env=env) for k in (1, 2)]
        outputs = [run.communicate(timeout=300) for run in runs]
        assert [run.returncode for run in runs] == [0, 0], outputs
        assert all("CacheWarning" not in err for _, err in outputs)
        first, second = report(pytester, "r1.json"), report(pytester, "r2.json")
        outcomes = [[(e["id"], e["head"]["outcome"]) for e in r["templates"][0]["examples"]]
                    for r in (first, second)]
        assert outcomes[0] == outcomes[1] and len(outcomes[0]) == 60
        assert raw_client(redis_server).dbsize() == 60  # same keys, written by both, stored once
        assert server.requests <= 120

        before = server.requests
        third = lpo_ci("eval", "prompts/a.j2", "--no-base", "--report", "r3.json", "--cache-dir", "local-3",
                       cwd=pytester.path, env=env)
        third.communicate(timeout=300)
        assert third.returncode == 0
        assert server.requests == before  # a new runner's empty local cache: every answer from Redis
        usage = report(pytester, "r3.json")["templates"][0]["usage"]
        assert usage["calls"] == 0 and usage["cache_hits"] == 60
        assert local_entries(pytester.path / "local-3") == 0


def test_redis_killed_mid_run_costs_no_example(redis_server, pytester, monkeypatch):
    killed_at = []
    lock = threading.Lock()

    def answer(prompt: str) -> str:
        with lock:
            if len(server.prompts) >= 30 and not killed_at:  # from the 30th request on, the cache is dead
                killed_at.append(raw_client(redis_server).dbsize())
                redis_server.kill()
        return wording_sensitive_answer(prompt)

    with fake_openai_server(answer=answer, latency=0.01) as server:
        project(pytester, server.url, lpo=f'cache_url = "{redis_server.url()}"\nconcurrency = 4\n')
        write_template(pytester, "prompts/a.j2", GOOD, samples=120)
        result = pytester.runpytest("--lpo", "--lpo-report", "report.json", "--lpo-cache-dir", "local",
                                    "-W", "always::lpo_ci.cache.CacheWarning")
        result.assert_outcomes(passed=1)
        result.stdout.fnmatch_lines(["*CacheWarning: response cache redis://127.0.0.1:*/0 cannot be used*"
                                     "goes on with the local cache*"])
        item = report(pytester)["templates"][0]
        assert item["head"]["n"] == 120 and item["head"]["errors"] == 0
        assert all(e["head"]["outcome"] != "error" for e in item["examples"])
        assert item["usage"]["calls"] == 120 and server.requests == 120  # nothing asked twice
        assert killed_at and 0 < killed_at[0] < 120
        stored_locally = local_entries(pytester.path / "local")
        assert stored_locally >= 120 - killed_at[0] - 4  # what arrived after the kill is kept

        # The rerun, with Redis gone for good, is served by the local store for what it holds.
        server.reset_counts()
        rerun = pytester.runpytest("--lpo", "--lpo-cache-dir", "local", "-W", "ignore::lpo_ci.cache.CacheWarning")
        rerun.assert_outcomes(passed=1)
        assert server.requests == 120 - stored_locally


def test_redis_cache_in_pytest_with_xdist(redis_server, pytester):
    pytest.importorskip("xdist")
    with fake_openai_server() as server:
        project(pytester, server.url, lpo=f'cache_url = "{redis_server.url()}"\n')
        for name in ("a", "b", "c"):
            write_template(pytester, f"prompts/{name}.j2", f"{name}. {GOOD}", samples=15)
        pytester.runpytest("-n", "2", "--lpo", "--lpo-cache-dir", "local-1").assert_outcomes(passed=3)
        assert server.requests == 45 and raw_client(redis_server).dbsize() == 45
        pytester.runpytest("-n", "2", "--lpo", "--lpo-cache-dir", "local-2").assert_outcomes(passed=3)
        assert server.requests == 45


def test_threads_share_one_client(redis_server, tmp_path):
    cache = open_cache(tmp_path, redis_server.url())
    errors = []

    def work(offset: int) -> None:
        try:
            for i in range(200):
                key = f"{(i + offset) % 300:064x}"
                cache.put(key, {**VALUE, "text": key})
                assert cache.get(key)["text"] == key
        except Exception as exc:  # noqa: BLE001 - reported below
            errors.append(exc)

    threads = [threading.Thread(target=work, args=(k * 100,)) for k in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert errors == [] and cache.active and len(cache) == 300

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

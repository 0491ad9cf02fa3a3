"""Model calls through litellm against a real OpenAI-compatible server on loopback."""

from __future__ import annotations

import asyncio

import pytest

from lpo_ci.cache import ResponseCache
from lpo_ci.llm import ModelClient, ModelParams, Usage, _retry_after
from tests.support.openai_server import fake_openai_server

PROMPT = "Evaluate the result of a random Boolean expression.\n\nQ: not ( True ) and ( True ) is\nA:"


def client(server, tmp_path, mode="chat", **kwargs) -> ModelClient:
    model = "openai/fake" if mode == "chat" else "text-completion-openai/fake"
    params = ModelParams(model=model, mode=mode, api_base=server.url, max_tokens=16)
    return ModelClient(params, cache=ResponseCache(tmp_path / "cache"), backoff=0.01, **kwargs)


@pytest.mark.parametrize("mode", ["chat", "completion"])
def test_answers_tokens_and_cache(tmp_path, mode):
    with fake_openai_server() as server:
        c = client(server, tmp_path, mode)
        first = asyncio.run(c.complete(PROMPT))
        assert first.text == "False" and first.error is None and not first.cached
        assert first.prompt_tokens > 0 and first.completion_tokens == 1 and first.cost == 0.0
        again = asyncio.run(c.complete(PROMPT))
        assert again.cached and again.text == "False"
        assert server.requests == 1


def test_rate_limits_and_server_errors_are_retried(tmp_path):
    with fake_openai_server(fail_every=3, fail_status=429, retry_after=0.01) as server:
        c = client(server, tmp_path, retries=8)
        prompts = [PROMPT.replace("not ( True )", f"{'not ' * i}( True )") for i in range(10)]
        results = asyncio.run(c.complete_all(prompts))
        assert all(r.text in ("True", "False") for r in results)
        assert server.failures >= 3 and server.requests == 10 + server.failures
        usage = Usage()
        for r in results:
            usage.add(r)
        assert usage.retries == server.failures and usage.errors == 0


def test_permanent_failures_are_reported_not_raised_nor_retried(tmp_path):
    with fake_openai_server(outage=True, outage_status=400) as server:
        result = asyncio.run(client(server, tmp_path, retries=3).complete(PROMPT))
        assert result.text is None and "BadRequest" in result.error
        assert server.requests == 1  # a bad request is not worth a retry


def test_outage_gives_up_after_the_retry_budget(tmp_path):
    with fake_openai_server(outage=True, outage_status=503) as server:
        result = asyncio.run(client(server, tmp_path, retries=2).complete(PROMPT))
        assert result.text is None and result.attempts == 3 and server.requests == 3
        assert len(ResponseCache(tmp_path / "cache")) == 0  # failures are never cached


def test_concurrency_is_bounded(tmp_path):
    with fake_openai_server(latency=0.05) as server:
        c = client(server, tmp_path, concurrency=4)
        prompts = [f"Q: {'not ' * i}True is\nA:" for i in range(12)]
        import time
        started = time.perf_counter()
        asyncio.run(c.complete_all(prompts))
        # 12 calls 4 at a time: at least 3 rounds of 50 ms.
        assert time.perf_counter() - started >= 0.15
        assert server.requests == 12


def test_a_retry_waits_at_least_retry_after_and_spreads_the_calls_told_the_same(tmp_path, monkeypatch):
    """Calls rate-limited together are told the same Retry-After: waiting exactly that long
    would send them back together, to collide again."""
    waits: list[float] = []
    real_sleep = asyncio.sleep

    async def recorded(seconds):  # asyncio.sleep is patched for everyone: only the retry waits are ours
        if seconds < 0.1:
            return await real_sleep(seconds)
        waits.append(seconds)
        await real_sleep(0)

    monkeypatch.setattr("lpo_ci.llm.asyncio.sleep", recorded)
    with fake_openai_server(fail_every=1, retry_after=0.2) as server:
        prompts = [f"Q: {'not ' * i}True is\nA:" for i in range(6)]
        results = asyncio.run(client(server, tmp_path, retries=2).complete_all(prompts))
    assert all(r.error and "RateLimit" in r.error and r.attempts == 3 for r in results)
    assert len(waits) == 12 and all(0.2 <= w <= 0.2 * 1.25 for w in waits)
    assert len(set(waits)) > 1


def test_retry_after_header_is_read():
    class Response:
        headers = {"retry-after": "1.5"}

    class Error(Exception):
        response = Response()

    assert _retry_after(Error()) == 1.5
    assert _retry_after(ValueError()) is None

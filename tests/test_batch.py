"""Several prompts in one completion request, against a real OpenAI-compatible server on loopback.

The server answers a list of prompts with one choice per prompt and usage for
the whole request, as vLLM, llama.cpp's server and OpenAI's legacy endpoint
do; or it refuses lists, or answers only the first prompt of one, as servers
that take a single string do.
"""

from __future__ import annotations

import asyncio
import json
import re

import pytest

from lpo_ci.batch import BatchWarning, apportion
from lpo_ci.breaker import CircuitBreaker
from lpo_ci.cache import ResponseCache, cache_key
from lpo_ci.llm import ModelClient, ModelParams, Usage, import_litellm, text_endpoint
from tests.support.openai_server import fake_openai_server

_NUMBER = re.compile(r"Question (\d+):")


def echo_number(prompt: str) -> str:
    """Each answer names its own question, so an answer given to the wrong prompt shows."""
    return f"answer {_NUMBER.search(prompt)[1]}"


def questions(n: int, start: int = 0) -> list[str]:
    return [f"Question {i}:" + " word" * (i % 7) + "\nAnswer:" for i in range(start, start + n)]


def client(server, tmp_path, *, model="openai/fake", mode="completion", batch_size=8, concurrency=16,
           **kwargs) -> ModelClient:
    params = ModelParams(model=model, mode=mode, api_base=server.url, max_tokens=16)
    return ModelClient(params, cache=ResponseCache(tmp_path / "cache"), concurrency=concurrency,
                       batch_size=batch_size, backoff=0.01, **kwargs)


def total(results, field: str) -> int:
    return sum(getattr(r, field) for r in results)


def check_answers(prompts, results) -> None:
    for prompt, result in zip(prompts, results):
        assert result.error is None, result.error
        assert result.text == echo_number(prompt), (prompt, result.text)


def test_waiting_prompts_share_requests_and_each_gets_its_own_answer(tmp_path):
    with fake_openai_server(answer=echo_number, latency=0.02) as server:
        prompts = questions(40)
        results = asyncio.run(client(server, tmp_path).complete_all(prompts))
        check_answers(prompts, results)
        sizes = server.request_sizes
        assert sum(sizes) == 40 and max(sizes) == 8 and len(sizes) <= 8
        # Usage is reported for a whole request; the shares add up to exactly what was counted.
        assert total(results, "prompt_tokens") == sum(len(p.split()) for p in prompts)
        assert total(results, "completion_tokens") == 2 * 40
        assert all(r.completion_tokens == 2 for r in results)  # equal answers, equal shares
        assert all(r.model_id == "fake" and r.system_fingerprint == "fp_fake" for r in results)

        server.reset_counts()  # every answer is cached per prompt: a rerun asks nothing
        again = asyncio.run(client(server, tmp_path).complete_all(prompts))
        assert server.requests == 0 and all(r.cached for r in again)
        assert [r.text for r in again] == [r.text for r in results]


def test_batched_answers_equal_unbatched_ones_and_share_the_cache(tmp_path):
    with fake_openai_server(answer=echo_number) as server:
        prompts = questions(24)
        one, many = client(server, tmp_path / "one", batch_size=1), client(server, tmp_path / "many", batch_size=6)
        alone = asyncio.run(one.complete_all(prompts))
        assert server.request_sizes == [1] * 24
        batched = asyncio.run(many.complete_all(prompts))
        assert max(server.request_sizes[24:]) == 6
        assert [r.text for r in batched] == [r.text for r in alone]
        usage_alone, usage_batched = Usage(), Usage()
        for a, b in zip(alone, batched):
            usage_alone.add(a)
            usage_batched.add(b)
            assert (a.attempts, a.cached, a.error, a.model_id, a.system_fingerprint) == \
                (b.attempts, b.cached, b.error, b.model_id, b.system_fingerprint)
        usage_alone.latency = usage_batched.latency = 0.0
        assert usage_batched == usage_alone  # calls, retries, errors, tokens and cost alike
        # The same cache entries under the same keys (a prompt's tokens in a list are its share).
        keys = [cache_key(one.params.request(p)) for p in prompts]
        entries_alone = [one.cache.get(k) for k in keys]
        entries_batched = [many.cache.get(k) for k in keys]
        shared = ("prompt_tokens", "completion_tokens", "cost")
        for a, b in zip(entries_alone, entries_batched):
            assert {k: v for k, v in a.items() if k not in shared} == {k: v for k, v in b.items() if k not in shared}
        for name in shared:
            assert sum(e[name] for e in entries_batched) == sum(e[name] for e in entries_alone)
        # Answers made in batches serve a later unbatched run, and the other way round.
        server.reset_counts()
        asyncio.run(client(server, tmp_path / "many", batch_size=1).complete_all(prompts))
        asyncio.run(client(server, tmp_path / "one", batch_size=6).complete_all(prompts))
        assert server.requests == 0


def test_a_refused_key_fails_every_prompt_of_the_list_once_and_opens_the_breaker(tmp_path, monkeypatch):
    monkeypatch.setenv("LPO_CI_API_KEY", "sk-wrong")
    with fake_openai_server(answer=echo_number, outage=True, outage_status=401) as server:
        c = client(server, tmp_path, retries=4)
        results = asyncio.run(c.complete_all(questions(8)))
        assert all(r.text is None and r.error.startswith("configuration error") for r in results)
        assert server.request_sizes == [8]  # no retry, no resend: the key, not the list, was refused
        assert c.breaker.error is not None and c._batcher.refused is None


def test_each_prompt_holds_one_of_the_concurrent_slots(tmp_path):
    with fake_openai_server(answer=echo_number, latency=0.02) as server:
        prompts = questions(20)
        results = asyncio.run(client(server, tmp_path, batch_size=8, concurrency=3).complete_all(prompts))
        check_answers(prompts, results)
        assert max(server.request_sizes) == 3 and sum(server.request_sizes) == 20


def test_identical_prompts_in_flight_are_sent_once(tmp_path):
    with fake_openai_server(answer=echo_number) as server:
        prompts = questions(5) * 3
        results = asyncio.run(client(server, tmp_path).complete_all(prompts))
        check_answers(prompts, results)
        assert sum(server.request_sizes) == 5
        assert sum(not r.cached for r in results) == 5


def test_a_server_that_refuses_lists_gets_one_prompt_per_request(tmp_path):
    with fake_openai_server(answer=echo_number, list_prompts="refuse") as server:
        c = client(server, tmp_path)
        prompts = questions(30)
        with pytest.warns(BatchWarning, match="refused a list of 8 prompts.*one prompt per request") as said:
            results = asyncio.run(c.complete_all(prompts))
        assert len([w for w in said if issubclass(w.category, BatchWarning)]) == 1  # said once
        check_answers(prompts, results)
        assert all(r.attempts == 1 for r in results)  # a refused list is not an attempt that failed
        lists = [size for size in server.request_sizes if size > 1]
        # The lists sent at once at the start (16 prompts in flight, 8 a request) were refused;
        # every prompt was then answered alone, and no list was sent again.
        assert lists == [8, 8] and server.failures == 2
        assert server.request_sizes.count(1) == 30
        assert "BadRequestError" in c._batcher.refused


def test_a_server_that_answers_only_the_first_prompt_of_a_list_is_caught(tmp_path):
    with fake_openai_server(answer=echo_number, list_prompts="first") as server:
        c = client(server, tmp_path, concurrency=8)
        prompts = questions(20)
        with pytest.warns(BatchWarning, match="BatchMismatch"):
            results = asyncio.run(c.complete_all(prompts))
        check_answers(prompts, results)  # no answer shifted onto another prompt
        assert "BatchMismatch" in c._batcher.refused
        assert server.requests == 1 + 20  # the list, then every prompt alone


def test_a_bad_request_about_the_prompts_keeps_lists_on(tmp_path):
    with fake_openai_server(answer=echo_number, outage=True, outage_status=400) as server:
        c = client(server, tmp_path, retries=3)
        results = asyncio.run(c.complete_all(questions(8)))
        assert all(r.text is None and "BadRequest" in r.error and r.attempts == 1 for r in results)
        assert server.request_sizes == [8] + [1] * 8  # the list, then each prompt: all refused alone too
        assert c._batcher.refused is None
        assert len(ResponseCache(tmp_path / "cache")) == 0


def test_a_failed_request_is_retried_per_prompt(tmp_path):
    with fake_openai_server(answer=echo_number, fail_every=3, fail_status=429, retry_after=0.01) as server:
        prompts = questions(40)
        results = asyncio.run(client(server, tmp_path, retries=8, concurrency=8, batch_size=4)
                              .complete_all(prompts))
        check_answers(prompts, results)
        sizes = server.request_sizes
        failed_prompts = sum(size for number, size in enumerate(sizes, 1) if number % 3 == 0)
        usage = Usage()
        for r in results:
            usage.add(r)
        assert server.failures >= 3 and usage.retries == failed_prompts and usage.errors == 0
        assert sum(sizes) == 40 + failed_prompts


def test_the_circuit_breaker_counts_requests_not_prompts(tmp_path):
    from tests.support.redis_server import free_port

    dead = f"http://127.0.0.1:{free_port()}/v1"  # a port nobody listens on
    params = ModelParams(model="openai/fake", mode="completion", api_base=dead, max_tokens=4)
    breaker = CircuitBreaker()
    c = ModelClient(params, concurrency=8, batch_size=8, retries=0, breaker=breaker)
    first = asyncio.run(c.complete_all(questions(8)))
    assert all(r.text is None and "not sent" not in r.error for r in first)
    assert breaker.in_a_row == 1 and breaker.error is None  # one request refused, not eight calls
    later = asyncio.run(c.complete_all(questions(64, start=8)))
    assert breaker.error is not None
    assert sum("not sent" in r.error for r in later) > 0


def test_chat_mode_and_other_providers_send_one_prompt_per_request(tmp_path):
    with fake_openai_server(answer=echo_number) as server:
        prompts = questions(12)
        results = asyncio.run(client(server, tmp_path, mode="chat").complete_all(prompts))
        check_answers(prompts, results)
        assert server.request_sizes == [1] * 12
    litellm = import_litellm()
    for model, mode in [("openai/fake", "chat"), ("openai/gpt-4o", "completion"),
                        ("ollama/llama3", "completion"), ("lpo-local/gemma", "completion")]:
        assert not text_endpoint(litellm, ModelParams(model=model, mode=mode)), model
    for model in ("openai/fake", "text-completion-openai/fake", "text-completion-openai/gpt-3.5-turbo-instruct"):
        assert text_endpoint(litellm, ModelParams(model=model, mode="completion")), model
        assert not text_endpoint(litellm, ModelParams(model=model, mode="completion"), router=object())


def test_a_priced_model_s_cost_is_shared_out_and_sums_to_the_request_s(tmp_path):
    model = "text-completion-openai/gpt-3.5-turbo-instruct"  # in litellm's price map
    with fake_openai_server(answer=echo_number) as server:
        prompts = questions(16)
        alone = asyncio.run(client(server, tmp_path / "one", model=model, batch_size=1).complete_all(prompts))
        batched = asyncio.run(client(server, tmp_path / "many", model=model, batch_size=8).complete_all(prompts))
        assert total(alone, "cost") > 0
        assert total(batched, "cost") == pytest.approx(total(alone, "cost"), rel=1e-9)
        assert all(r.cost > 0 for r in batched)


def completion_project(tmp_path, monkeypatch, rows: list[dict], settings: str = "") -> None:
    """A project scoring prompts/t.j2 on ``rows`` in completion mode; the working directory."""
    project = tmp_path / "project"
    (project / "prompts").mkdir(parents=True)
    (project / "pyproject.toml").write_text(
        '[tool.lpo_ci]\nmodel = "openai/fake"\nmode = "completion"\n' + settings)
    (project / "data.jsonl").write_text("".join(json.dumps(row) + "\n" for row in rows))
    (project / "prompts" / "t.j2").write_text(
        f"{{# lpo:\n  dataset: data.jsonl\n  scorer: exact\n  samples: {len(rows)}\n#}}\n{{{{ question }}}}\nAnswer:")
    monkeypatch.chdir(project)


def test_eval_with_batch_size_on_the_command_line(tmp_path, monkeypatch):
    from lpo_ci.cli import main

    completion_project(tmp_path, monkeypatch, [{"question": f"Question {i}:", "target": f"answer {i}"}
                                               for i in range(30)])
    with fake_openai_server(answer=echo_number) as server:
        code = main(["eval", "prompts/t.j2", "--api-base", server.url, "--batch-size", "10",
                     "--concurrency", "10", "--no-base", "--cache-dir", str(tmp_path / "cache"),
                     "--report", str(tmp_path / "r.json")])
        assert code == 0
        item = json.loads((tmp_path / "r.json").read_text())["templates"][0]
        assert item["head_accuracy"] == 1.0 and item["usage"]["calls"] == 30
        assert server.request_sizes == [10, 10, 10]
        assert item["usage"]["completion_tokens"] == 2 * 30


def test_eval_reports_the_same_batched_or_not(tmp_path, monkeypatch):
    """Same verdict, examples, outcomes and usage from the command line, batched or not, through
    a server that answers each prompt by its wording (some right, some wrong)."""
    from lpo_ci.cli import main

    completion_project(tmp_path, monkeypatch, [
        {"question": f"Question {i}:" + " word" * (i % 5), "target": f"answer {i if i % 4 else i + 1}"}
        for i in range(48)])
    reports = {}
    with fake_openai_server(answer=echo_number) as server:
        for size in (1, 8):
            code = main(["eval", "prompts/t.j2", "--api-base", server.url, "--batch-size", str(size),
                         "--concurrency", "16", "--no-base", "--cache-dir", str(tmp_path / f"cache-{size}"),
                         "--report", str(tmp_path / f"r{size}.json")])
            assert code == 0
            reports[size] = json.loads((tmp_path / f"r{size}.json").read_text())["templates"][0]
        assert max(server.request_sizes[:48]) == 1 and max(server.request_sizes[48:]) == 8
    alone, batched = reports[1], reports[8]
    assert 0 < alone["head_accuracy"] < 1
    for name in ("status", "head_accuracy", "examples"):
        assert batched[name] == alone[name], name
    for name, value in alone["usage"].items():
        if name != "latency":
            assert batched["usage"][name] == value, name


def test_batch_size_in_pyproject_and_the_option_that_turns_it_off(tmp_path, monkeypatch):
    from lpo_ci.cli import main

    completion_project(tmp_path, monkeypatch, [{"question": f"Question {i}:", "target": f"answer {i}"}
                                               for i in range(12)], "batch_size = 6\nconcurrency = 12\n")
    with fake_openai_server(answer=echo_number) as server:
        for extra, sizes in (([], [6, 6]), (["--batch-size", "1"], [1] * 12)):
            server.reset_counts()
            assert main(["eval", "prompts/t.j2", "--api-base", server.url, *extra, "--no-base", "--fresh",
                         "--cache-dir", str(tmp_path / "cache")]) == 0
            assert server.request_sizes == sizes


def test_batch_size_must_be_a_positive_integer(tmp_path, monkeypatch, capsys):
    from lpo_ci.cli import main

    (tmp_path / "pyproject.toml").write_text('[tool.lpo_ci]\nbatch_size = 0\n')
    (tmp_path / "t.j2").write_text("{{ question }}")
    monkeypatch.chdir(tmp_path)
    assert main(["eval", "t.j2", "--no-base"]) == 2
    err = capsys.readouterr().err
    assert "batch_size" in err and "pyproject.toml" in err and "positive integer" in err


@pytest.mark.parametrize("total_, weights, expected", [
    (10, [1, 1], [5, 5]),
    (10, [1, 2], [3, 7]),
    (7, [1, 1, 1], [3, 2, 2]),
    (5, [0, 0], [3, 2]),
    (0, [3, 4], [0, 0]),
    (1, [1, 1, 1], [1, 0, 0]),
])
def test_apportion_sums_exactly(total_, weights, expected):
    assert apportion(total_, weights) == expected
    assert sum(apportion(total_, weights)) == total_

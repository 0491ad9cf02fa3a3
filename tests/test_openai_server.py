"""The fake OpenAI server works with the real litellm client, over real sockets.

These tests also pin down the litellm behaviour the plugin relies on: which
model prefixes reach a custom api_base, how errors surface, and retries.
"""

from __future__ import annotations

import asyncio
import http.client
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

os.environ.setdefault("LITELLM_LOCAL_MODEL_COST_MAP", "True")  # no price-list download
import litellm  # noqa: E402

from tests.support.openai_server import (
    GOOD_WORDING, QUALITY_BAD, QUALITY_GOOD, FakeOpenAIServer, evaluate_boolean_expression,
    expected_correct, fake_openai_server, wording_sensitive_answer)

REPO_ROOT = Path(__file__).resolve().parents[1]
BBH_BOOLEAN = Path(os.environ["LPO_CI_DATA_DIR"]) / "bbh" / "boolean_expressions.json"  # set by conftest

GOOD_PROMPT = GOOD_WORDING + ".\n\nQ: {question}\nA:"
BAD_PROMPT = "Answer the following question.\n\nQ: {question}\nA:"

CHAT_MODEL = "openai/fake"                     # -> POST {api_base}/chat/completions
TEXT_MODEL = "text-completion-openai/fake"     # -> POST {api_base}/completions


@pytest.fixture
def server():
    with fake_openai_server() as running:
        yield running


def chat(server: FakeOpenAIServer, content: str, **options):
    return litellm.acompletion(model=CHAT_MODEL, api_base=server.url, api_key="sk-test",
                               messages=[{"role": "user", "content": content}], **options)


def text(server: FakeOpenAIServer, prompt: str, **options):
    return litellm.atext_completion(model=TEXT_MODEL, api_base=server.url, api_key="sk-test",
                                    prompt=prompt, **options)


def run(coroutine):
    return asyncio.run(coroutine)


# --- the answer function ---------------------------------------------------

@pytest.mark.parametrize("expression, value", [
    ("True", True),
    ("not ( True ) and ( True ) is", False),
    ("True and not not ( not False ) is", True),
    ("not True or False or ( False ) is", False),
    ("False or True and False", False),          # and binds tighter than or
    ("not False and False", False),              # not binds tighter than and
    ("( ( not False ) )", True),
])
def test_evaluates_boolean_expressions_with_python_precedence(expression, value):
    assert evaluate_boolean_expression(expression) is value


@pytest.mark.parametrize("expression", [
    "", "True and", "( True", "True )", "True False", "__import__('os')", "1 and True", "TRUE",
])
def test_rejects_anything_but_a_boolean_expression(expression):
    assert evaluate_boolean_expression(expression) is None


def test_answers_the_last_question_and_respects_the_wording():
    question = "not ( True ) and ( True ) is"   # False
    few_shot = "Q: True and True is\nA: True\n\n"
    for template in (GOOD_PROMPT, BAD_PROMPT):
        prompt = few_shot + template.format(question=question)
        correct = expected_correct(question, prompt)
        assert wording_sensitive_answer(prompt) == ("False" if correct else "True")
    # The verdict depends on the wording only through GOOD_WORDING.
    assert expected_correct(question, "x " + GOOD_WORDING) == expected_correct(question, GOOD_WORDING)


def test_answer_is_deterministic_and_ignores_spacing():
    prompt = GOOD_PROMPT.format(question="not (True) and (True) is")
    assert wording_sensitive_answer(prompt) == wording_sensitive_answer(prompt)
    assert expected_correct("not (True) and (True) is", prompt) == \
        expected_correct("not ( True ) and ( True )", prompt)


def test_finds_a_bare_expression_and_gives_up_on_anything_else():
    assert wording_sensitive_answer("True and True\nA:") in ("True", "False")
    assert wording_sensitive_answer("Q: What is the capital of France?\nA:") == "I don't know"
    assert wording_sensitive_answer("Hello there") == "I don't know"


@pytest.mark.skipif(not BBH_BOOLEAN.exists(), reason="BBH boolean_expressions data not available")
def test_good_wording_scores_about_95_percent_and_bad_about_55_on_bbh():
    examples = json.loads(BBH_BOOLEAN.read_text())["examples"]
    assert len(examples) == 250

    def accuracy(template: str) -> float:
        right = 0
        for example in examples:
            prompt = template.format(question=example["input"])
            answer = wording_sensitive_answer(prompt)
            assert answer in ("True", "False")
            assert (answer == example["target"]) == expected_correct(example["input"], prompt)
            right += answer == example["target"]
        return right / len(examples)

    good, bad = accuracy(GOOD_PROMPT), accuracy(BAD_PROMPT)
    assert abs(good - QUALITY_GOOD / 100) < 0.07, good
    assert abs(bad - QUALITY_BAD / 100) < 0.12, bad


# --- litellm against the server ----------------------------------------------

def test_litellm_chat_completion_round_trip(server):
    prompt = GOOD_PROMPT.format(question="not ( True ) and ( True ) is")
    response = run(chat(server, prompt, max_retries=0))
    assert response.choices[0].message.content == wording_sensitive_answer(prompt)
    assert response.choices[0].finish_reason == "stop"
    assert response.usage.prompt_tokens == len(prompt.split())
    assert response.usage.completion_tokens == 1
    assert response.id.startswith("chatcmpl-")
    assert (server.requests, server.failures, server.prompts) == (1, 0, [prompt])


def test_litellm_text_completion_round_trip(server):
    prompt = BAD_PROMPT.format(question="True and not not ( not False ) is")
    response = run(text(server, prompt, max_retries=0))
    assert response.choices[0].text == wording_sensitive_answer(prompt)
    assert response.usage.prompt_tokens == len(prompt.split())
    assert (server.requests, server.prompts) == (1, [prompt])


def test_custom_answer_and_max_tokens():
    with fake_openai_server(answer=lambda prompt: "one two three four") as server:
        response = run(chat(server, "hi", max_tokens=2, max_retries=0))
    assert response.choices[0].message.content == "one two"
    assert response.choices[0].finish_reason == "length"


def test_a_broken_answer_function_is_a_500_not_a_hang():
    def broken(prompt: str) -> str:
        raise RuntimeError("boom")

    with fake_openai_server(answer=broken) as server:
        with pytest.raises(litellm.InternalServerError, match="boom"):
            run(chat(server, "hi", max_retries=0))
    assert (server.requests, server.failures) == (1, 1)


def test_fail_every_fails_exactly_every_kth_request():
    with fake_openai_server(fail_every=3, fail_status=500) as server:
        async def calls():
            outcomes = []
            for _ in range(9):
                try:
                    await chat(server, "Q: True is", max_retries=0)
                    outcomes.append("ok")
                except litellm.InternalServerError as error:
                    assert error.status_code == 500
                    outcomes.append("fail")
            return outcomes
        assert run(calls()) == ["ok", "ok", "fail"] * 3
        assert (server.requests, server.failures) == (9, 3)
        server.reset_counts()
        assert (server.requests, server.failures, server.prompts) == (0, 0, [])


def test_retry_passes_answers_a_prompt_that_already_failed_once():
    with fake_openai_server(fail_every=1, fail_status=500, retry_passes=True) as server:
        async def calls():
            outcomes = []
            for prompt in ("Q: True is", "Q: True is", "Q: False is", "Q: True is"):
                try:
                    await chat(server, prompt, max_retries=0)
                    outcomes.append("ok")
                except litellm.InternalServerError:
                    outcomes.append("fail")
            return outcomes
        assert run(calls()) == ["fail", "ok", "fail", "ok"]
        assert (server.requests, server.failures) == (4, 2)


def test_rate_limit_exposes_retry_after():
    with fake_openai_server(fail_every=1, retry_after=0.05) as server:
        with pytest.raises(litellm.RateLimitError) as caught:
            run(chat(server, "Q: True is", max_retries=0))
    error = caught.value
    assert error.status_code == 429
    assert error.response.headers["retry-after"] == "0.05"
    assert error.litellm_response_headers["retry-after"] == "0.05"
    assert server.requests == 1


def test_openai_client_retries_twice_by_default_and_max_retries_zero_stops_it():
    with fake_openai_server(fail_every=1, retry_after=0.01) as server:
        with pytest.raises(litellm.RateLimitError):
            run(chat(server, "Q: True is"))          # default: 1 try + 2 retries
        assert server.requests == 3
        server.reset_counts()
        with pytest.raises(litellm.RateLimitError):
            run(text(server, "Q: True is", num_retries=0))   # alias of max_retries
        assert server.requests == 1


def test_outage_can_be_toggled_between_runs(server):
    server.outage = True
    with pytest.raises(litellm.ServiceUnavailableError):
        run(chat(server, "Q: True is", max_retries=0))
    server.outage = False
    assert run(chat(server, "Q: True is", max_retries=0)).choices[0].message.content in ("True", "False")
    assert (server.requests, server.failures) == (2, 1)


def test_64_concurrent_calls_overlap():
    with fake_openai_server(latency=0.1) as server:
        async def burst():
            started = time.perf_counter()
            responses = await asyncio.gather(*(chat(server, f"Q: True or {i % 2 == 0} is", max_retries=0)
                                               for i in range(64)))
            return responses, time.perf_counter() - started
        responses, elapsed = run(burst())
    assert len(responses) == 64 and server.requests == 64
    assert elapsed < 3.0, f"64 x 0.1 s calls took {elapsed:.2f} s: requests were serialised"


# --- raw HTTP -----------------------------------------------------------------

def test_keep_alive_routes_and_errors(server):
    connection = http.client.HTTPConnection("127.0.0.1", server.port, timeout=5)

    def request(method: str, path: str, body: bytes | None = None):
        connection.request(method, path, body=body, headers={"Content-Type": "application/json"})
        response = connection.getresponse()
        return response.status, json.loads(response.read())

    try:
        status, models = request("GET", "/v1/models")
        assert status == 200 and models["data"][0]["id"] == "fake"
        socket_before = connection.sock
        status, reply = request("POST", "/completions", json.dumps({"model": "m", "prompt": "Q: True is"}).encode())
        assert status == 200 and reply["choices"][0]["text"] in ("True", "False")
        status, reply = request("POST", "/chat/completions", json.dumps(
            {"model": "m",
             "messages": [{"role": "user", "content": [{"type": "text", "text": "Q: False is"}]}]}).encode())
        assert status == 200 and reply["model"] == "m"
        assert connection.sock is socket_before   # the same connection served all three
        assert request("POST", "/v1/nowhere", b"{}")[0] == 404
        status, reply = request("POST", "/v1/completions", b"not json")
        assert status == 400 and reply["error"]["type"] == "invalid_request_error"
    finally:
        connection.close()
    assert server.requests == 2   # only completion requests count


def test_stop_refuses_new_and_pooled_connections():
    server = FakeOpenAIServer().start()
    connection = http.client.HTTPConnection("127.0.0.1", server.port, timeout=5)
    connection.request("GET", "/v1/models")
    connection.getresponse().read()
    server.stop()
    with pytest.raises((ConnectionError, http.client.HTTPException, OSError)):
        connection.request("GET", "/v1/models")
        connection.getresponse().read()
    connection.close()


def test_runs_standalone_until_interrupted():
    process = subprocess.Popen([sys.executable, "-m", "tests.support.openai_server", "--latency", "0"],
                               cwd=REPO_ROOT, stdout=subprocess.PIPE, text=True,
                               env={**os.environ, "PYTHONPATH": str(REPO_ROOT)})
    try:
        url = process.stdout.readline().strip()
        assert url.startswith("http://127.0.0.1:") and url.endswith("/v1")
        port = int(url.rsplit(":", 1)[1].split("/")[0])
        connection = http.client.HTTPConnection("127.0.0.1", port, timeout=5)
        connection.request("GET", "/v1/models")
        assert connection.getresponse().status == 200
        connection.close()
        process.send_signal(signal.SIGINT)
        assert process.wait(timeout=60) == 0  # generous: a loaded machine can starve the child
    finally:
        if process.poll() is None:
            process.kill()
            process.wait()
        process.stdout.close()

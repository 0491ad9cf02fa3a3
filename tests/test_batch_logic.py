"""Unit tests of the prompt batcher's rules, with a scripted ``send`` in place of a server.

The end-to-end behaviour through litellm and a real loopback server is in test_batch.py.
"""

from __future__ import annotations

import asyncio

import pytest

from lpo_ci.batch import BatchMismatch, PromptBatcher, refused_list


class StatusError(Exception):
    def __init__(self, status: int):
        super().__init__(f"status {status}")
        self.status_code = status


class Script:
    """A ``send`` that records every request and answers each prompt with ``"re: " + prompt``,
    or with what ``fail(prompts)`` returns (an exception to raise, or a list to answer with)."""

    def __init__(self, fail=None, delay: float = 0.0):
        self.requests: list[list[str]] = []
        self.fail = fail or (lambda prompts: None)
        self.delay = delay

    async def __call__(self, prompts: list[str]) -> list[str]:
        self.requests.append(list(prompts))
        await asyncio.sleep(self.delay)
        outcome = self.fail(prompts)
        if isinstance(outcome, BaseException):
            raise outcome
        return outcome if isinstance(outcome, list) else [f"re: {p}" for p in prompts]


async def ask(batcher: PromptBatcher, prompts: list[str]) -> list:
    return await asyncio.gather(*(batcher.answer(p) for p in prompts), return_exceptions=True)


def run(coro):
    return asyncio.run(coro)


def test_prompts_waiting_together_go_in_one_request_in_order():
    send = Script()
    batcher = PromptBatcher(8, send)
    prompts = [f"p{i}" for i in range(5)]
    assert run(ask(batcher, prompts)) == [f"re: {p}" for p in prompts]
    assert send.requests == [prompts]


def test_a_full_batch_goes_at_once_and_the_rest_follows():
    send = Script()
    prompts = [f"p{i}" for i in range(10)]
    assert run(ask(PromptBatcher(4, send), prompts)) == [f"re: {p}" for p in prompts]
    assert send.requests == [prompts[:4], prompts[4:8], prompts[8:]]


def test_a_prompt_a_loop_iteration_late_still_joins():
    send = Script()
    batcher = PromptBatcher(8, send)

    async def late(prompt: str):
        await asyncio.sleep(0)  # arrives one iteration after the first ones
        return await batcher.answer(prompt)

    async def main():
        return await asyncio.gather(batcher.answer("a"), batcher.answer("b"), late("c"))

    assert run(main()) == ["re: a", "re: b", "re: c"]
    assert send.requests == [["a", "b", "c"]]


def test_a_failed_request_fails_each_of_its_prompts_with_the_same_error():
    error = StatusError(503)  # not a refusal of the list: each caller retries on its own
    send = Script(fail=lambda prompts: error)
    results = run(ask(PromptBatcher(8, send), ["a", "b", "c"]))
    assert all(r is error for r in results)
    assert send.requests == [["a", "b", "c"]]  # no resend: the list was not the problem


def test_a_refused_list_costs_one_resend_per_prompt_then_prompts_go_alone():
    send = Script(fail=lambda prompts: StatusError(400) if len(prompts) > 1 else None)
    batcher = PromptBatcher(8, send)
    first = [f"p{i}" for i in range(4)]
    assert run(ask(batcher, first)) == [f"re: {p}" for p in first]
    assert send.requests == [first] + [[p] for p in first]
    assert batcher.refused == "StatusError: status 400"
    later = [f"q{i}" for i in range(3)]
    assert run(ask(batcher, later)) == [f"re: {p}" for p in later]
    assert send.requests[5:] == [[p] for p in later]


def test_the_wrong_number_of_answers_is_a_refusal_never_a_shifted_answer():
    send = Script(fail=lambda prompts: [f"re: {prompts[0]}"] if len(prompts) > 1 else None)
    batcher = PromptBatcher(8, send)
    assert run(ask(batcher, ["a", "b", "c"])) == ["re: a", "re: b", "re: c"]
    assert send.requests == [["a", "b", "c"], ["a"], ["b"], ["c"]]
    assert batcher.refused.startswith("BatchMismatch")


def test_a_refusal_a_prompt_meets_alone_too_is_that_prompt_s_and_lists_stay_on():
    too_long = StatusError(400)
    send = Script(fail=lambda prompts: too_long if "long" in prompts else None)
    batcher = PromptBatcher(8, send)
    results = run(ask(batcher, ["a", "long", "b"]))
    assert results[0] == "re: a" and results[2] == "re: b" and results[1] is too_long
    assert batcher.refused is None
    assert run(ask(batcher, ["c", "d"])) == ["re: c", "re: d"]
    assert send.requests[-1] == ["c", "d"]


def test_a_prompt_failing_otherwise_alone_does_not_keep_lists_on():
    """A list refused with 400 whose prompts alone meet a 503 or an answer: the list was refused."""
    def fail(prompts):
        if len(prompts) > 1:
            return StatusError(400)
        return StatusError(503) if prompts == ["b"] else None

    send = Script(fail=fail)
    batcher = PromptBatcher(8, send)
    results = run(ask(batcher, ["a", "b"]))
    assert results[0] == "re: a" and isinstance(results[1], StatusError) and results[1].status_code == 503
    assert batcher.refused is not None


def test_one_prompt_is_sent_as_is_and_its_refusal_is_not_resent():
    send = Script(fail=lambda prompts: StatusError(400))
    batcher = PromptBatcher(8, send)
    [result] = run(ask(batcher, ["a"]))
    assert isinstance(result, StatusError)
    assert send.requests == [["a"]] and batcher.refused is None


def test_a_cancelled_caller_leaves_the_others_their_answers():
    send = Script(delay=0.05)
    batcher = PromptBatcher(8, send)

    async def main():
        tasks = [asyncio.ensure_future(batcher.answer(p)) for p in ("a", "b", "c")]
        await asyncio.sleep(0.01)
        tasks[1].cancel()
        return await asyncio.gather(*tasks, return_exceptions=True)

    results = run(main())
    assert results[0] == "re: a" and results[2] == "re: c"
    assert isinstance(results[1], asyncio.CancelledError)


@pytest.mark.parametrize("error, refused", [
    (StatusError(400), True), (StatusError(404), True), (StatusError(413), True), (StatusError(422), True),
    (StatusError(429), False), (StatusError(500), False), (StatusError(401), False),
    (BatchMismatch("2 answers to 3 prompts"), True), (ValueError("no status"), False),
])
def test_which_failures_may_be_a_refused_list(error, refused):
    assert refused_list(error) is refused

"""Several prompts in one completion request: per-example client CPU divided by the batch.

Every model call through litellm costs the client milliseconds of CPU (request
building, response parsing, cost and logging bookkeeping), whatever the prompt.
OpenAI-compatible ``/v1/completions`` servers (vLLM, llama.cpp's server,
OpenAI's legacy endpoint) accept a list of prompts in one request and answer
with one choice per prompt, and ``litellm.atext_completion(prompt=[...])``
passes such a list through. ``PromptBatcher`` collects the cache misses of one
client that wait at the same time (until a loop iteration passes with no new
one, or ``size`` are waiting) and sends them as one request; each prompt gets
its own answer back, split by choice index.

A server that refuses a list, or answers it with the wrong choices, costs one
resend of each prompt alone, and from then on the client sends one prompt per
request (unless a prompt alone is refused the same way: then the prompt, not
the list, was the problem).

Servers report usage for the whole request only: each prompt's tokens and cost
are its share of the request's (prompt tokens by prompt length, completion
tokens by answer length), so the sums per request, and so per template and per
run, are exactly what the server counted; a single prompt's split is an
estimate.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from typing import Any

# Statuses that mean "not this request", so a list may be what the server refused. Auth
# errors and rate limits say nothing about lists and are the caller's to handle.
_REFUSAL_STATUSES = frozenset({400, 404, 405, 413, 415, 422})


class BatchMismatch(Exception):
    """The answer to a list of prompts does not hold one choice per prompt."""


def apportion(total: int, weights: list[int]) -> list[int]:
    """``total`` split in proportion to ``weights`` in whole units that sum to ``total``
    (largest remainders; equal shares when every weight is 0)."""
    if not weights:
        return []
    weights = [max(0, w) for w in weights]
    if sum(weights) == 0:
        weights = [1] * len(weights)
    whole = sum(weights)
    shares = [total * w // whole for w in weights]
    by_remainder = sorted(range(len(weights)), key=lambda i: (-(total * weights[i] % whole), i))
    for i in by_remainder[:total - sum(shares)]:
        shares[i] += 1
    return shares


def refused_list(exc: BaseException) -> bool:
    """Whether a request failure may be the server refusing a list of prompts."""
    if isinstance(exc, BatchMismatch):
        return True
    status = getattr(exc, "status_code", None)
    return isinstance(status, int) and status in _REFUSAL_STATUSES


class BatchWarning(UserWarning):
    """``batch_size`` asked for lists of prompts and the server showed it takes one per request."""


class PromptBatcher:
    """Sends the prompts waiting at the same time as one request.

    ``send(prompts)`` makes one request (a list, or a single string for one prompt) and
    returns one answer per prompt in order, raising ``BatchMismatch`` when the server's
    choices do not match the prompts. A failed request fails every prompt in it with the
    same exception object, so each caller retries on its own and a circuit breaker can
    count the request once.
    """

    def __init__(self, size: int, send: Callable[[list[str]], Awaitable[list[Any]]]):
        self.size = size
        self._send = send
        self._pending: list[tuple[str, asyncio.Future]] = []
        self._arrivals = 0  # prompts queued so far: a flush waits while this keeps moving
        self._flush_scheduled = False
        self._requests: set[asyncio.Task] = set()
        self.refused: str | None = None  # why the server takes one prompt per request, once it showed it

    async def answer(self, prompt: str) -> Any:
        """The answer to ``prompt``, sent with whatever else is waiting."""
        if self.refused is not None:
            return (await self._send([prompt]))[0]
        loop = asyncio.get_running_loop()
        future = loop.create_future()
        self._pending.append((prompt, future))
        self._arrivals += 1
        if len(self._pending) >= self.size:
            self._flush(loop)
        elif not self._flush_scheduled:
            self._flush_scheduled = True
            loop.call_soon(self._flush_when_quiet, loop, self._arrivals)
        return await future

    def _flush_when_quiet(self, loop: asyncio.AbstractEventLoop, seen: int) -> None:
        """Flush once a loop iteration passed with no new prompt: the callers that a finished
        request set free run in the next iteration, so waiting one more picks them up."""
        if self._arrivals != seen and self._pending:
            loop.call_soon(self._flush_when_quiet, loop, self._arrivals)
            return
        self._flush_scheduled = False
        self._flush(loop)

    def _flush(self, loop: asyncio.AbstractEventLoop) -> None:
        while self._pending:
            chunk, self._pending = self._pending[:self.size], self._pending[self.size:]
            task = loop.create_task(self._request(chunk))
            self._requests.add(task)
            task.add_done_callback(self._requests.discard)

    async def _request(self, chunk: list[tuple[str, asyncio.Future]]) -> None:
        prompts = [prompt for prompt, _ in chunk]
        try:
            try:
                answers = await self._send(prompts)
                if len(answers) != len(prompts):
                    raise BatchMismatch(f"{len(answers)} answers to {len(prompts)} prompts")
            except Exception as exc:  # noqa: BLE001 - given to every caller, or resent prompt by prompt
                if len(prompts) == 1 or not refused_list(exc):
                    raise
                await self._resend_alone(chunk, exc)
                return
        except BaseException as exc:  # noqa: BLE001 - the callers raise it (cancellation too)
            for _, future in chunk:
                _fail(future, exc)
            if not isinstance(exc, Exception):
                raise
            return
        for (_, future), answer in zip(chunk, answers):
            if not future.done():
                future.set_result(answer)

    async def _resend_alone(self, chunk: list[tuple[str, asyncio.Future]], refusal: BaseException) -> None:
        """Each prompt of a refused list in a request of its own. From then on the client sends
        one prompt per request, unless a prompt alone was refused the same way as the list (a
        prompt too long for the model, say): then the refusal was that prompt's, and lists stay on."""
        results = await asyncio.gather(*(self._send([prompt]) for prompt, _ in chunk), return_exceptions=True)
        if self.refused is None and not any(_refused_alike(result, refusal) for result in results):
            self.refused = f"{type(refusal).__name__}: {str(refusal).strip()[:200]}"
            import warnings

            warnings.warn(BatchWarning(
                f"the model server refused a list of {len(chunk)} prompts ({self.refused}); this run sends "
                "one prompt per request: set batch_size = 1 for this server"), stacklevel=1)
        for (_, future), result in zip(chunk, results):
            if future.done():
                continue
            if isinstance(result, BaseException):
                _fail(future, result)
            else:
                future.set_result(result[0])


def _refused_alike(result: Any, refusal: BaseException) -> bool:
    """Whether a prompt sent alone met the refusal its list met (same status)."""
    if not isinstance(result, Exception) or isinstance(refusal, BatchMismatch):
        return False
    return getattr(result, "status_code", None) == getattr(refusal, "status_code", None) is not None


def _fail(future: asyncio.Future, exc: BaseException) -> None:
    if future.done():
        return
    if isinstance(exc, asyncio.CancelledError):
        future.cancel()
        return
    future.set_exception(exc)
    future.exception()  # retrieved: the caller re-raises it, nobody else must

"""Every model call, through litellm.

Bounded concurrency (evaluation is I/O-bound), retries with exponential
backoff that honour a provider's ``Retry-After``, timeouts, deterministic
parameters, our own response cache, and token / cost / latency accounting.
litellm is imported on first use, or ahead of it in a background thread
(``start_litellm_import``) while collection, git and data loading run: it
takes seconds to import and, unless told to use its bundled price list, tries
the network at import time.
"""

from __future__ import annotations

import asyncio
import gc
import os
import random
import re
import sys
import threading
import time
import weakref
from dataclasses import asdict, dataclass, field, replace
from collections.abc import Awaitable
from typing import Any, TypeVar

from .batch import BatchMismatch, PromptBatcher, apportion
from .breaker import CircuitBreaker
from .cache import CacheBackend, ResponseCache, cache_key

MAX_BACKOFF_SECONDS = 30.0
RETRY_AFTER_JITTER = 0.25  # a wait of Retry-After is lengthened by up to this fraction

_IMPORT_LOCK = threading.Lock()
_import_thread: threading.Thread | None = None


def start_litellm_import() -> None:
    """Begin importing litellm in a background thread, once: the first model call then finds it
    (nearly) ready instead of paying seconds of import after the other start-up work. Called as
    soon as calls are sure to come (an empty response cache, a cache miss), never on a warm
    rerun, which must not pay for an import it does not use.

    An error in the background is not raised there: ``import_litellm`` meets it again and
    raises it where the call needs litellm.
    """
    global _import_thread
    if "litellm" in sys.modules or _import_thread is not None:
        return

    def run() -> None:
        try:
            import_litellm()
        except BaseException:  # noqa: BLE001 - raised again by the caller's own import
            pass

    _import_thread = threading.Thread(target=run, name="lpo-ci-import-litellm", daemon=True)
    _import_thread.start()


def import_litellm():
    """Import litellm offline and quiet (waiting for a background import under way)."""
    os.environ.setdefault("LITELLM_LOCAL_MODEL_COST_MAP", "True")
    os.environ.setdefault("LITELLM_LOG", "ERROR")
    with _IMPORT_LOCK:
        return _import_litellm()


def _import_litellm():
    if "litellm" not in sys.modules:
        # litellm's import builds ~370k long-lived objects. With the collector on, the import
        # runs ~0.6 s of full collections, and every later full collection (one every few
        # hundred calls) rescans them all for ~0.2 s. So import with the collector paused,
        # then freeze what exists so collections skip it (GC per call 0.33 -> 0.12 ms).
        gc_was_enabled = gc.isenabled()
        gc.disable()
        try:
            import litellm  # noqa: F401
        finally:
            if gc_was_enabled:
                gc.enable()
        gc.freeze()
    import litellm

    from .local_model import register

    litellm.suppress_debug_info = True
    litellm.telemetry = False
    register(litellm)
    return litellm


T = TypeVar("T")


async def closing_clients(awaitable: Awaitable[T]) -> T:
    """Await ``awaitable`` on this event loop, then close the HTTP clients litellm cached for
    it and the text-completion clients shared on it. Some litellm paths (text completion
    without a shared client) open an aiohttp session per call and drop it unclosed: the
    loop's handler keeps aiohttp's "Unclosed client session" and "Unclosed connector"
    reports of those off the terminal; other loop errors are reported as usual."""
    loop = asyncio.get_running_loop()

    def handler(loop: asyncio.AbstractEventLoop, context: dict[str, Any]) -> None:
        if str(context.get("message", "")).startswith("Unclosed ") and \
                ("client_session" in context or "connector" in context):
            return
        loop.default_exception_handler(context)

    loop.set_exception_handler(handler)
    try:
        return await awaitable
    finally:
        try:
            await _close_text_clients(loop)
        except Exception:  # noqa: BLE001 - tidying up must never fail a run
            pass
        if "litellm" in sys.modules:
            try:
                from litellm.llms.custom_httpx.async_client_cleanup import close_litellm_async_clients

                await close_litellm_async_clients()
            except Exception:  # noqa: BLE001 - tidying up must never fail a run
                pass


@dataclass(frozen=True)
class ModelParams:
    """What determines a response: part of the cache key."""

    model: str
    mode: str = "chat"  # "chat" (messages) or "completion" (raw text prompt)
    temperature: float = 0.0
    max_tokens: int = 256
    stop: tuple[str, ...] | None = None
    api_base: str | None = None
    seed: int | None = 0

    def request(self, prompt: str) -> dict[str, Any]:
        return {**asdict(self), "stop": list(self.stop) if self.stop else None, "prompt": prompt}


@dataclass
class Completion:
    """One call's outcome: ``text`` is None when the call failed (``error`` says why)."""

    text: str | None
    error: str | None = None
    prompt_tokens: int = 0
    completion_tokens: int = 0
    cost: float = 0.0
    latency: float = 0.0
    cached: bool = False
    attempts: int = 0
    # What the provider says answered (litellm's response.model, system_fingerprint):
    # history records them so a change of the model behind a name can be told apart.
    model_id: str | None = None
    system_fingerprint: str | None = None


@dataclass
class Usage:
    """Counters for an item or a run; cached calls cost nothing."""

    calls: int = 0
    cache_hits: int = 0
    errors: int = 0
    retries: int = 0
    prompt_tokens: int = 0
    completion_tokens: int = 0
    cost: float = 0.0
    latency: float = 0.0

    def add(self, completion: Completion) -> None:
        if completion.cached:
            self.cache_hits += 1
        else:
            self.calls += 1
            self.retries += max(0, completion.attempts - 1)
            self.prompt_tokens += completion.prompt_tokens
            self.completion_tokens += completion.completion_tokens
            self.cost += completion.cost
            self.latency += completion.latency
        if completion.text is None:
            self.errors += 1

    def merge(self, other: "Usage") -> None:
        for name in self.__dataclass_fields__:
            setattr(self, name, getattr(self, name) + getattr(other, name))

    @property
    def tokens(self) -> int:
        return self.prompt_tokens + self.completion_tokens

    def to_dict(self) -> dict[str, Any]:
        return {**asdict(self), "tokens": self.tokens, "cost": round(self.cost, 6),
                "latency": round(self.latency, 3)}


def _retry_after(exc: BaseException) -> float | None:
    """Seconds the provider asked us to wait, from a ``Retry-After`` header."""
    for headers in (getattr(exc, "litellm_response_headers", None),
                    getattr(getattr(exc, "response", None), "headers", None)):
        if not headers:
            continue
        value = headers.get("retry-after") or headers.get("Retry-After")
        if value is None:
            continue
        try:
            return max(0.0, float(value))
        except (TypeError, ValueError):
            continue
    return None


def _is_transient(litellm, exc: BaseException) -> bool:
    """Rate limits, server errors, timeouts and dropped connections are worth a retry."""
    transient = tuple(getattr(litellm, name) for name in (
        "RateLimitError", "InternalServerError", "ServiceUnavailableError",
        "APIConnectionError", "Timeout") if hasattr(litellm, name))
    if isinstance(exc, transient):
        return True
    status = getattr(exc, "status_code", None)
    return isinstance(status, int) and (status == 429 or status >= 500)


_PRICE_CHECKED: set[tuple[str, str]] = set()


def text_endpoint(litellm, params: ModelParams, router=None) -> bool:
    """Whether calls go to an OpenAI-compatible ``/v1/completions`` endpoint, the one kind that
    takes several prompts in a request: completion mode, no router, and a model litellm sends
    there."""
    return params.mode == "completion" and router is None \
        and _text_completion_model(litellm, params.model) is not None


def _text_completion_model(litellm, model: str) -> str | None:
    """The name litellm sends a completion-mode call for ``model`` under when that is the
    OpenAI-compatible ``/v1/completions`` endpoint (which takes a list of prompts), else None.

    litellm's rule: ``text-completion-openai/...`` as given, and an ``openai/...`` model that
    is not one of OpenAI's chat models (a self-hosted one behind ``api_base``) goes there too.
    """
    try:
        name, provider = litellm.get_llm_provider(model=model)[:2]
    except Exception:  # noqa: BLE001 - litellm cannot route it: not for us to guess
        return None
    if provider == "text-completion-openai":
        return f"text-completion-openai/{name}"
    if provider == "openai" and name not in litellm.open_ai_chat_completion_models:
        return f"text-completion-openai/{name}"
    return None


def _price_unmapped_model(litellm, model: str, mode: str) -> None:
    """Register a zero price for a model missing from litellm's price map, once per model.

    litellm prices every response; for an unmapped model (a self-hosted one) it walks its
    fallback rules on every call and still finds no price (cost 0 for us either way).
    A zero-price entry takes the direct path instead: ~0.2-0.3 ms less CPU per call, and
    a quarter of a completion-mode call, which litellm prices under its text-completion
    name. Mapped models are left alone, and a response naming a mapped model (an alias or
    an Azure deployment answering as gpt-4o) is still priced by that name.
    """
    if (model, mode) in _PRICE_CHECKED:
        return
    _PRICE_CHECKED.add((model, mode))
    names = [model]
    if mode == "completion" and (text_name := _text_completion_model(litellm, model)) not in (None, model):
        names.append(text_name)
    for name in names:
        try:
            litellm.get_model_info(model=name)
            continue  # mapped: litellm knows its price
        except Exception:  # noqa: BLE001 - ModelNotMappedError and the like: unmapped
            pass
        try:
            provider = litellm.get_llm_provider(model=name)[1]
            # every price named, cache prices too: else litellm warns about them on each registration
            litellm.register_model({name: {"litellm_provider": provider, "mode": mode,
                                           "input_cost_per_token": 0.0, "output_cost_per_token": 0.0,
                                           "cache_creation_input_token_cost": 0.0,
                                           "cache_read_input_token_cost": 0.0}},
                                   add_to_provider_model_sets=False)
        except Exception:  # noqa: BLE001 - only a speed-up: never fail a call over it
            pass


# What providers say when the key or account is missing or refused, whatever the exception
# class (litellm raises a missing OpenAI key as a 500 InternalServerError, Gemini's as an
# APIConnectionError): retrying cannot help.
_MISSING_KEY = re.compile(r"missing credentials|missing [\w ]{0,20}api[ _]key|api_key client option must be set"
                          r"|no api[ _]key|api[ _]key (?:is )?(?:not set|missing|required)|invalid api[ _]key",
                          re.IGNORECASE)


def _is_configuration_error(litellm, exc: BaseException) -> bool:
    """A missing or refused key (or account): the same for every call, so never retried."""
    refused = tuple(getattr(litellm, name) for name in ("AuthenticationError", "PermissionDeniedError")
                    if hasattr(litellm, name))
    return isinstance(exc, refused) or getattr(exc, "status_code", None) in (401, 403) \
        or bool(_MISSING_KEY.search(str(exc)))


_ERROR_PREFIX = re.compile(r"^(?:(?:litellm\.)?\w*(?:Error|Exception)(?::| -)\s*)+")


def _configuration_message(litellm, exc: BaseException, params: "ModelParams") -> str:
    """The provider's own message, and the environment variable that would fix it."""
    text = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
    said = f"configuration error, not retried: {_ERROR_PREFIX.sub('', text)[:300]}"
    if params.api_base:
        return f"{said} (set LPO_CI_API_KEY to the key {params.api_base} expects)"
    try:
        missing = litellm.validate_environment(model=params.model).get("missing_keys") or []
    except Exception:  # noqa: BLE001 - only a hint
        missing = []
    if missing:
        return f"{said} (set {' or '.join(missing)} for {params.model})"
    return f"{said} (check the key and account for {params.model})"


def _describe(exc: BaseException) -> str:
    text = str(exc).strip().splitlines()[0] if str(exc).strip() else ""
    return f"{type(exc).__name__}: {text[:300]}"


@dataclass
class ModelClient:
    """Calls one model with bounded concurrency, retries and a response cache."""

    params: ModelParams
    cache: CacheBackend = field(default_factory=lambda: ResponseCache(None))
    concurrency: int = 8
    retries: int = 4
    timeout: float = 120.0
    backoff: float = 0.5
    breaker: CircuitBreaker = field(default_factory=CircuitBreaker, repr=False)  # shared per endpoint
    fresh: bool = False  # ask the model again (cache not read); new answers are still stored
    router: Any = None  # a litellm.Router serving params.model over several deployments
    # Completion mode: up to this many waiting prompts in one request, for servers that take a
    # list of prompts (see lpo_ci.batch). Each prompt still holds one of ``concurrency``.
    batch_size: int = 1
    _semaphore: asyncio.Semaphore | None = field(default=None, repr=False)
    _inflight: dict[str, asyncio.Future] = field(default_factory=dict, repr=False)
    _prefetched: dict[str, dict | None] = field(default_factory=dict, repr=False)
    _litellm: Any = field(default=None, repr=False)
    _batcher: PromptBatcher | None = field(default=None, repr=False)
    _text_endpoint: bool = field(default=False, repr=False)  # params.model is served by /v1/completions

    def _limit(self) -> asyncio.Semaphore:
        if self._semaphore is None:
            self._semaphore = asyncio.Semaphore(self.concurrency)
        return self._semaphore

    async def complete(self, prompt: str) -> Completion:
        """The model's answer to ``prompt``, from the cache when possible.

        Identical prompts in flight at once (base and head that render alike)
        share one call; the others count as cache hits.
        """
        key = cache_key(self.params.request(prompt))
        if self.fresh:
            hit = None
        else:
            hit = self._prefetched.pop(key) if key in self._prefetched else self.cache.get(key)
        if hit is not None:
            return Completion(text=hit["text"], prompt_tokens=hit.get("prompt_tokens", 0),
                              completion_tokens=hit.get("completion_tokens", 0), cached=True,
                              model_id=hit.get("model_id"), system_fingerprint=hit.get("system_fingerprint"))
        pending = self._inflight.get(key)
        if pending is not None:
            shared = await asyncio.shield(pending)
            return Completion(text=shared.text, error=shared.error, prompt_tokens=shared.prompt_tokens,
                              completion_tokens=shared.completion_tokens, cached=shared.text is not None,
                              model_id=shared.model_id, system_fingerprint=shared.system_fingerprint)
        future = asyncio.get_running_loop().create_future()
        self._inflight[key] = future
        try:
            async with self._limit():
                completion = await self._call_with_retries(prompt)
            if completion.text is not None:
                self.cache.put(key, {"text": completion.text, "prompt_tokens": completion.prompt_tokens,
                                     "completion_tokens": completion.completion_tokens,
                                     "cost": completion.cost, "model": self.params.model,
                                     "model_id": completion.model_id,
                                     "system_fingerprint": completion.system_fingerprint})
            future.set_result(completion)
            return completion
        except BaseException as exc:
            future.set_exception(exc)
            future.exception()  # mark retrieved: waiters re-raise it, nobody else must
            raise
        finally:
            del self._inflight[key]

    async def complete_all(self, prompts: list[str]) -> list[Completion]:
        self.prefetch(prompts)
        return list(await asyncio.gather(*(self.complete(p) for p in prompts)))

    def prefetch(self, prompts: list[str]) -> None:
        """Look up the cached answers to ``prompts`` at once: one round trip to a shared cache,
        not one per prompt. ``complete`` then takes each answer (or miss) from here."""
        if self.fresh:  # nothing is read from the cache: every prompt is a call
            if self.router is None and prompts:
                start_litellm_import()
            return
        keys = [cache_key(self.params.request(p)) for p in prompts]
        found = self.cache.get_many(keys)
        self._prefetched.update((key, found.get(key)) for key in keys)
        if self.router is None and len(found) < len(set(keys)):
            start_litellm_import()  # calls are coming: import while the rest of the set-up runs

    async def _call_with_retries(self, prompt: str) -> Completion:
        if self._litellm is None:
            self._litellm = import_litellm()
            self._text_endpoint = text_endpoint(self._litellm, self.params, self.router)
            self._batcher = self._make_batcher()
        litellm = self._litellm
        started = time.perf_counter()
        attempt = 0
        while True:
            attempt += 1
            if (tripped := self.breaker.check()) is not None:  # a dead endpoint: fail at once
                return Completion(text=None, error=tripped, attempts=attempt - 1,
                                  latency=time.perf_counter() - started)
            try:
                if self._batcher is not None:
                    answer = await self._batcher.answer(prompt)
                else:
                    answer = (await self._answers(litellm, [prompt]))[0]
            except Exception as exc:  # noqa: BLE001 - every provider failure is reported, not raised
                if _is_configuration_error(litellm, exc):  # the next call would fail alike: stop them all
                    message = _configuration_message(litellm, exc, self.params)
                    self.breaker.trip(message, "the same configuration error")
                    return Completion(text=None, error=message, attempts=attempt,
                                      latency=time.perf_counter() - started)
                if attempt <= self.retries and _is_transient(litellm, exc):
                    wait = _retry_after(exc)
                    if wait is None:
                        wait = self.backoff * (2 ** (attempt - 1)) * (0.5 + random.random())
                    else:  # spread the calls told the same time, or they collide again together
                        wait *= 1 + RETRY_AFTER_JITTER * random.random()
                    await asyncio.sleep(min(wait, MAX_BACKOFF_SECONDS))
                    continue
                return Completion(text=None, error=_describe(exc), attempts=attempt,
                                  latency=time.perf_counter() - started)
            return replace(answer, latency=time.perf_counter() - started, attempts=attempt)

    def _make_batcher(self) -> PromptBatcher | None:
        """A batcher when several prompts can share a request: batch_size > 1 and a model that
        litellm sends to an OpenAI-compatible /v1/completions endpoint (any other provider, and
        chat mode, would read a list of prompts as the turns of one conversation)."""
        if self.batch_size <= 1 or not self._text_endpoint:
            return None
        return PromptBatcher(self.batch_size, lambda prompts: self._answers(self._litellm, prompts))

    async def _answers(self, litellm, prompts: list[str]) -> list[Completion]:
        """One request for ``prompts`` (one prompt, or a list in completion mode): one answer
        each. The circuit breaker counts requests, whatever the number of prompts in them."""
        try:
            response = await self._call(litellm, prompts[0] if len(prompts) == 1 else prompts)
        except Exception as exc:
            self.breaker.record(exc, _describe(exc))
            raise
        self.breaker.record(None)
        return _read_answers(litellm, response, prompts, self.params.mode)

    async def _call(self, litellm, prompt: str | list[str]):
        p = self.params
        kwargs: dict[str, Any] = {
            "model": p.model, "temperature": p.temperature, "max_tokens": p.max_tokens,
            "timeout": self.timeout, "max_retries": 0,
        }
        if p.stop:
            kwargs["stop"] = list(p.stop)
        if p.seed is not None:
            kwargs["seed"] = p.seed
        kwargs["drop_params"] = True  # providers that lack seed or stop ignore them
        if self.router is not None:  # the deployments carry their own api_base and keys
            if p.mode == "completion":
                return await self.router.atext_completion(prompt=prompt, **kwargs)
            return await self.router.acompletion(messages=[{"role": "user", "content": prompt}], **kwargs)
        if p.api_base:
            kwargs["api_base"] = p.api_base
            key = os.environ.get("LPO_CI_API_KEY")
            if key is None and p.model.split("/")[0] in ("openai", "text-completion-openai") \
                    and not os.environ.get("OPENAI_API_KEY"):
                key = "no-key"  # self-hosted OpenAI-compatible servers accept any key
            if key is not None:
                kwargs["api_key"] = key
        _price_unmapped_model(litellm, p.model, p.mode)
        if p.mode == "completion":
            if self._text_endpoint and p.api_base and \
                    (client := _shared_text_client(litellm, p.api_base, kwargs.get("api_key"), self.timeout)):
                kwargs["client"] = client
            return await litellm.atext_completion(prompt=prompt, **kwargs)
        return await litellm.acompletion(messages=[{"role": "user", "content": prompt}], **kwargs)


# Per event loop, the OpenAI clients made for self-hosted /v1/completions servers:
# (api_base, key, timeout) -> client. closing_clients closes a loop's clients as it ends.
_TEXT_CLIENTS: "weakref.WeakKeyDictionary[asyncio.AbstractEventLoop, dict[tuple, Any]]" = \
    weakref.WeakKeyDictionary()


def _shared_text_client(litellm, api_base: str, api_key: str | None, timeout: float):
    """One OpenAI client per event loop and server for text completions, passed to litellm as
    ``client=``. Without one, litellm builds a client, an HTTP connection pool and a new
    connection for every text-completion request (about a fifth of its CPU per call, and an
    unclosed session each time). Built once by litellm's own builder from what litellm would
    use for the request (this api_base, the key it would find, no SDK retries, the timeout);
    None, leaving litellm to its own ways, when there is no key or this litellm builds its
    clients otherwise."""
    key = api_key or litellm.api_key or litellm.openai_key or os.environ.get("OPENAI_API_KEY")
    if not key:
        return None
    clients = _TEXT_CLIENTS.setdefault(asyncio.get_running_loop(), {})
    found = clients.get((api_base, key, timeout))
    if found is None:
        try:
            from litellm.llms.openai.common_utils import BaseOpenAILLM
            from litellm.llms.openai.workload_identity import build_async_openai_client

            found = build_async_openai_client(api_key=key, api_base=api_base, timeout=timeout, max_retries=0,
                                              static_key_http_client_factory=BaseOpenAILLM.get_async_http_client)
        except Exception:  # noqa: BLE001 - another litellm: it builds its own client per request
            found = False
        clients[(api_base, key, timeout)] = found
    return found or None


async def _close_text_clients(loop: asyncio.AbstractEventLoop) -> None:
    for client in (_TEXT_CLIENTS.pop(loop, None) or {}).values():
        if client:
            await client.close()


def _read_answers(litellm, response, prompts: list[str], mode: str) -> list[Completion]:
    """One answer per prompt from a litellm response, with that prompt's share of the request's
    usage (latency and attempts are the caller's to fill in). For a list of prompts, choice ``i``
    answers prompt ``i`` (``BatchMismatch`` if the choices do not line up), and the
    request's tokens and cost are shared out so that they sum to what the server reported."""
    if not response.choices:
        raise ValueError("the model's response holds no answer (no choices)")
    if len(prompts) == 1:
        choices = response.choices[:1]
    else:
        choices = sorted(response.choices, key=lambda c: getattr(c, "index", -1))
        if [getattr(c, "index", None) for c in choices] != list(range(len(prompts))):
            raise BatchMismatch(f"{len(prompts)} prompts in one request, but the answer's choices are "
                                f"{[getattr(c, 'index', None) for c in response.choices]}")
    if mode == "completion":
        texts = [getattr(c, "text", None) or "" for c in choices]
    else:
        texts = [getattr(getattr(c, "message", None), "content", None) or "" for c in choices]
    usage = getattr(response, "usage", None)
    # litellm priced it already: a dict for chat, a HiddenParams object for text completions
    # (which has no "in"; pricing it again cost a completion-mode call ~0.5 ms of CPU)
    cost = (getattr(response, "_hidden_params", None) or {}).get("response_cost")
    if cost is None:
        try:
            cost = litellm.completion_cost(completion_response=response)
        except Exception:  # noqa: BLE001 - unmapped (local) models have no price
            cost = 0.0
    cost = float(cost or 0.0)
    prompt_tokens = apportion(getattr(usage, "prompt_tokens", 0) or 0, [len(p) for p in prompts])
    completion_tokens = apportion(getattr(usage, "completion_tokens", 0) or 0, [len(t) for t in texts])
    tokens = [pt + ct for pt, ct in zip(prompt_tokens, completion_tokens)]
    total = sum(tokens)
    costs = [cost] if len(prompts) == 1 else [cost * t / total if total else cost / len(prompts) for t in tokens]
    model_id = getattr(response, "model", None) or None
    fingerprint = getattr(response, "system_fingerprint", None) or None
    return [Completion(text=text, prompt_tokens=pt, completion_tokens=ct, cost=c, model_id=model_id,
                       system_fingerprint=fingerprint)
            for text, pt, ct, c in zip(texts, prompt_tokens, completion_tokens, costs)]

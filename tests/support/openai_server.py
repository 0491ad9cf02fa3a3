"""A real OpenAI-compatible HTTP server for tests and benchmarks.

It speaks enough of the OpenAI REST API (chat completions, text completions,
model list) for litellm to talk to it over real sockets, so tests exercise the
same HTTP, retry and connection-pooling code paths as production runs, without
network access or API keys.

Stdlib only. Typical use::

    with FakeOpenAIServer(latency=0.1) as server:
        litellm.completion(model="openai/fake", api_base=server.url, api_key="sk-test", ...)

Run standalone with ``python -m tests.support.openai_server --port 8000``.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import re
import signal
import threading
import time
from collections.abc import Callable

from tests.support.loopback import LoopbackServer, TrackingHandler, TrackingServer

__all__ = [
    "FakeOpenAIServer",
    "GOOD_WORDING",
    "QUALITY_BAD",
    "QUALITY_GOOD",
    "evaluate_boolean_expression",
    "expected_correct",
    "fake_openai_server",
    "wording_sensitive_answer",
]

# --------------------------------------------------------------------------
# The fake "model": answers BIG-bench Hard boolean_expressions questions with
# an accuracy that depends on the prompt's wording, so prompt optimisation has
# something real to find.
# --------------------------------------------------------------------------

GOOD_WORDING = "Evaluate the result of a random Boolean expression"
QUALITY_GOOD = 95  # % of questions answered correctly when the prompt has GOOD_WORDING
QUALITY_BAD = 55   # % otherwise
UNKNOWN_ANSWER = "I don't know"

_QUESTION_MARKER = re.compile(r"\b(?:Question|Q):")
_TOKEN = re.compile(r"\(|\)|[A-Za-z]+|\S")
_BOOLEAN_TOKENS = {"True", "False", "not", "and", "or", "(", ")"}


def _tokens(expression: str) -> list[str] | None:
    """Split into boolean-expression tokens, or None if anything else appears."""
    tokens = _TOKEN.findall(expression)
    if not tokens or any(token not in _BOOLEAN_TOKENS for token in tokens):
        return None
    return tokens


def _strip_question(text: str) -> str:
    """'not ( True ) is?' -> 'not ( True )': drop the trailing 'is' of BBH questions."""
    text = text.strip().rstrip("?").rstrip()
    if text == "is" or text.endswith(" is"):
        text = text[:-2].rstrip()
    return text


def evaluate_boolean_expression(expression: str) -> bool | None:
    """Evaluate True/False/not/and/or/parentheses with Python precedence; None if invalid.

    A small recursive-descent parser instead of eval(), so prompt text can never
    run as code.
    """
    tokens = _tokens(_strip_question(expression))
    if tokens is None:
        return None
    position = 0

    def peek() -> str | None:
        return tokens[position] if position < len(tokens) else None

    def take() -> str:
        nonlocal position
        position += 1
        return tokens[position - 1]

    def parse_or() -> bool:
        value = parse_and()
        while peek() == "or":
            take()
            right = parse_and()
            value = value or right
        return value

    def parse_and() -> bool:
        value = parse_not()
        while peek() == "and":
            take()
            right = parse_not()
            value = value and right
        return value

    def parse_not() -> bool:
        if peek() == "not":
            take()
            return not parse_not()
        return parse_atom()

    def parse_atom() -> bool:
        token = take() if peek() is not None else None
        if token == "True":
            return True
        if token == "False":
            return False
        if token == "(":
            value = parse_or()
            if peek() != ")":
                raise ValueError("missing )")
            take()
            return value
        raise ValueError(f"unexpected token {token!r}")

    try:
        value = parse_or()
    except ValueError:
        return None
    return value if position == len(tokens) else None


def _normalise(question: str) -> str:
    """Canonical form of a question, so spacing and a trailing 'is' don't change its hash."""
    tokens = _tokens(_strip_question(question))
    return " ".join(tokens) if tokens else question.strip()


def _last_question(prompt: str) -> str | None:
    """The last boolean expression in the prompt.

    Normally the text after the last 'Q:' / 'Question:' up to the end of its line
    (or of the next line, if the marker ends its line).
    Prompts without such a marker fall back to the last line that parses, so a
    bare '{{ input }}' template still works.
    """
    markers = list(_QUESTION_MARKER.finditer(prompt))
    if markers:
        return prompt[markers[-1].end():].strip().split("\n", 1)[0].strip()
    for line in reversed(prompt.splitlines()):
        if evaluate_boolean_expression(line) is not None:
            return line.strip()
    return None


def _quality(prompt: str) -> int:
    return QUALITY_GOOD if GOOD_WORDING in prompt else QUALITY_BAD


def expected_correct(question: str, prompt: str) -> bool:
    """Whether the default server answers ``question`` correctly when asked with ``prompt``.

    Deterministic per question: sha256 of the normalised question, mod 100,
    below the wording's quality.
    """
    digest = hashlib.sha256(_normalise(question).encode("utf-8")).hexdigest()
    return int(digest, 16) % 100 < _quality(prompt)


def wording_sensitive_answer(prompt: str) -> str:
    """'True'/'False' for the last boolean expression in the prompt, right ~95% of
    the time with the good wording and ~55% without; "I don't know" if none parses.
    """
    question = _last_question(prompt)
    value = evaluate_boolean_expression(question) if question is not None else None
    if value is None:
        return UNKNOWN_ANSWER
    if not expected_correct(question, prompt):
        value = not value
    return str(value)


# --------------------------------------------------------------------------
# The HTTP server.
# --------------------------------------------------------------------------

def _word_count(text: str) -> int:
    return len(text.split())


def _content_text(content) -> str:
    """Message content as text: a string, or the text parts of a multi-part list."""
    if isinstance(content, str):
        return content
    if isinstance(content, list):
        return "\n".join(part.get("text", "") for part in content if isinstance(part, dict))
    return ""


def _truncate(answer: str, max_tokens) -> tuple[str, str]:
    """Cut the answer to max_tokens words, as a real model stops at its budget."""
    words = answer.split()
    if isinstance(max_tokens, int) and 0 < max_tokens < len(words):
        return " ".join(words[:max_tokens]), "length"
    return answer, "stop"


class _Server(TrackingServer):
    """TrackingServer sized for many concurrent keep-alive clients."""

    fake: FakeOpenAIServer
    request_queue_size = 1024    # listen() backlog: bursts of new connections aren't refused


class _Handler(TrackingHandler):
    protocol_version = "HTTP/1.1"    # keep-alive, so httpx can pool connections
    disable_nagle_algorithm = True   # headers and body are separate writes: avoid 40 ms stalls
    timeout = 120                    # idle keep-alive connections eventually free their thread
    server: _Server

    def log_message(self, format, *args) -> None:  # noqa: A002 - stdlib signature
        """Silent: per-request logging would flood test output."""

    # --- routing ---

    def do_GET(self) -> None:
        if self.path.rstrip("/") in ("/v1/models", "/models"):
            self._send_json(200, {
                "object": "list",
                "data": [{"id": "fake", "object": "model", "created": 0, "owned_by": "lpo-ci"}],
            })
        else:
            self._send_error(404, f"Unknown path {self.path}", "invalid_request_error")

    def do_POST(self) -> None:
        body = self._read_json()
        path = self.path.split("?", 1)[0].rstrip("/")
        if path.startswith("/v1/"):
            path = path[3:]
        if path not in ("/chat/completions", "/completions"):
            self._send_error(404, f"Unknown path {self.path}", "invalid_request_error")
        elif body is None:
            self._send_error(400, "Request body is not a JSON object", "invalid_request_error")
        elif path == "/chat/completions":
            self._complete(body, chat=True)
        else:
            self._complete(body, chat=False)

    # --- completions ---

    def _complete(self, body: dict, *, chat: bool) -> None:
        fake = self.server.fake
        if chat:
            prompts = ["\n".join(_content_text(m.get("content")) for m in body.get("messages") or []
                                 if isinstance(m, dict))]
        else:
            raw = body.get("prompt", "")
            prompts = [p for p in raw if isinstance(p, str)] if isinstance(raw, list) else [str(raw)]
            prompts = prompts or [""]
            if len(prompts) > 1 and fake.list_prompts == "refuse":
                fake._register(prompts, body, refused=True)
                self._send_error(400, "'prompt' must be a string", "invalid_request_error", code="invalid_prompt")
                return
            if fake.list_prompts == "first":
                prompts = prompts[:1]
        serial, status = fake._register(prompts, body)
        fake._in_flight_change(+1)
        try:
            if fake.latency > 0:
                time.sleep(fake.latency)   # per-thread sleep: concurrent requests overlap
        finally:
            fake._in_flight_change(-1)
        if status is not None:
            self._send_failure(status)
            return

        try:
            answers = [fake.answer(prompt) for prompt in prompts]
        except Exception as error:  # noqa: BLE001 - a broken answer() should fail the call visibly, not hang it
            fake._count_failure()
            self._send_error(500, f"answer() raised {error!r}", "server_error")
            return
        choices, completion_tokens = [], 0
        for index, answer in enumerate(answers):
            text, finish_reason = _truncate(answer, body.get("max_tokens"))
            completion_tokens += _word_count(text)
            if chat:
                choices.append({"index": index, "finish_reason": finish_reason, "logprobs": None,
                                "message": {"role": "assistant", "content": text}})
            else:
                choices.append({"index": index, "finish_reason": finish_reason, "logprobs": None,
                                "text": text})
        prompt_tokens = sum(_word_count(p) for p in prompts)
        self._send_json(200, {
            "id": f"{'chatcmpl' if chat else 'cmpl'}-fake-{serial}",
            "object": "chat.completion" if chat else "text_completion",
            "created": int(time.time()),
            "model": fake.reported_model or str(body.get("model") or "fake"),
            "system_fingerprint": fake.system_fingerprint,
            "choices": choices,
            "usage": {"prompt_tokens": prompt_tokens, "completion_tokens": completion_tokens,
                      "total_tokens": prompt_tokens + completion_tokens},
        })

    def _send_failure(self, status: int) -> None:
        fake = self.server.fake
        headers = {}
        if status == 429:
            if fake.retry_after is not None:
                # openai's client reads retry-after-ms first; both are standard-ish.
                headers["Retry-After"] = f"{fake.retry_after:g}"
                headers["retry-after-ms"] = f"{fake.retry_after * 1000:g}"
            self._send_error(status, "Rate limit reached for fake (simulated).",
                             "rate_limit_error", code="rate_limit_exceeded", headers=headers)
        else:
            self._send_error(status, f"Simulated server error {status}.", "server_error")

    # --- HTTP plumbing ---

    def _read_json(self) -> dict | None:
        length = int(self.headers.get("Content-Length") or 0)
        raw = self.rfile.read(length) if length > 0 else b""
        try:
            body = json.loads(raw or b"null")
        except ValueError:
            return None
        return body if isinstance(body, dict) else None

    def _send_error(self, status: int, message: str, error_type: str, *,
                    code: str | None = None, headers: dict[str, str] | None = None) -> None:
        self._send_json(status, {"error": {"message": message, "type": error_type,
                                           "param": None, "code": code}}, headers)

    def _send_json(self, status: int, payload: dict, headers: dict[str, str] | None = None) -> None:
        data = json.dumps(payload).encode("utf-8")
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        for name, value in (headers or {}).items():
            self.send_header(name, value)
        self.end_headers()
        self.wfile.write(data)


class FakeOpenAIServer(LoopbackServer):
    """OpenAI-compatible server on 127.0.0.1 with scripted answers, latency and failures.

    All knobs are plain attributes read per request, so tests can flip e.g.
    ``server.outage = True`` between runs without restarting.
    """

    server_class = _Server
    handler_class = _Handler
    thread_name = "fake-openai"

    def __init__(self, *, answer: Callable[[str], str] | None = None, latency: float = 0.0,
                 fail_every: int = 0, fail_status: int = 429, retry_after: float | None = 0.05,
                 retry_passes: bool = False,
                 outage: bool = False, outage_status: int = 503,
                 reported_model: str | None = None, system_fingerprint: str | None = "fp_fake",
                 list_prompts: str = "each", host: str = "127.0.0.1", port: int = 0):
        super().__init__(host=host, port=port)
        self.answer = answer or wording_sensitive_answer
        self.latency = latency
        self.fail_every = fail_every
        # A failure that is transient for real: a request whose prompts all failed once is answered.
        self.retry_passes = retry_passes
        self._failed_prompts: set[str] = set()
        self.fail_status = fail_status
        self.retry_after = retry_after
        self.outage = outage
        self.outage_status = outage_status
        self.reported_model = reported_model  # the model id answers name (default: the one asked for)
        self.system_fingerprint = system_fingerprint
        # A list of prompts on /v1/completions: "each" answered (one choice per prompt, usage for
        # the whole request, as vLLM, llama.cpp's server and OpenAI do), "refuse"d with a 400 (a
        # server that takes one string), or only the "first" answered (a server that ignores the rest).
        if list_prompts not in ("each", "refuse", "first"):
            raise ValueError(f"list_prompts must be 'each', 'refuse' or 'first', not {list_prompts!r}")
        self.list_prompts = list_prompts
        self._lock = threading.Lock()
        self._requests = 0
        self._failures = 0
        self._prompts: list[str] = []
        self._bodies: list[dict] = []
        self._sizes: list[int] = []
        self._in_flight = 0
        self._peak_in_flight = 0

    # --- counters ---

    @property
    def url(self) -> str:
        """Base URL to pass as litellm's ``api_base``."""
        return f"http://{self.host}:{self.port}/v1"

    @property
    def requests(self) -> int:
        """Completion requests received, failed ones included."""
        with self._lock:
            return self._requests

    @property
    def failures(self) -> int:
        """Completion requests answered with an error status."""
        with self._lock:
            return self._failures

    @property
    def prompts(self) -> list[str]:
        """A copy of the prompts received, in arrival order (failed requests included)."""
        with self._lock:
            return list(self._prompts)

    @property
    def bodies(self) -> list[dict]:
        """A copy of the completion requests' JSON bodies (max_tokens, stop ...), in arrival order."""
        with self._lock:
            return list(self._bodies)

    @property
    def request_sizes(self) -> list[int]:
        """Prompts in each completion request received, in arrival order (1 for a chat request)."""
        with self._lock:
            return list(self._sizes)

    @property
    def peak_in_flight(self) -> int:
        """The most completion requests being answered at once."""
        with self._lock:
            return self._peak_in_flight

    def reset_counts(self) -> None:
        """Zero the counters and prompts; fail_every counts from here again."""
        with self._lock:
            self._requests = 0
            self._failures = 0
            self._failed_prompts.clear()
            self._prompts.clear()
            self._bodies.clear()
            self._sizes.clear()
            self._peak_in_flight = 0

    def _in_flight_change(self, step: int) -> None:
        with self._lock:
            self._in_flight += step
            self._peak_in_flight = max(self._peak_in_flight, self._in_flight)

    def _register(self, prompts: list[str], body: dict | None = None,
                  refused: bool = False) -> tuple[int, int | None]:
        """Count an arriving request: its arrival number and the error status to answer with, if any."""
        with self._lock:
            self._requests += 1
            self._prompts.extend(prompts)
            self._bodies.append(body or {})
            self._sizes.append(len(prompts))
            if refused:
                self._failures += 1
                return self._requests, None
            status = None
            if self.outage:
                status = self.outage_status
            elif self.fail_every > 0 and self._requests % self.fail_every == 0:
                retried = self.retry_passes and all(p in self._failed_prompts for p in prompts)
                status = None if retried else self.fail_status
            if status is not None:
                self._failures += 1
                self._failed_prompts.update(prompts)
            return self._requests, status

    def _count_failure(self) -> None:
        with self._lock:
            self._failures += 1

    def __repr__(self) -> str:
        return f"<FakeOpenAIServer {self.url} requests={self.requests} failures={self.failures}>"


def fake_openai_server(**options) -> FakeOpenAIServer:
    """A server that ``with`` starts and stops, e.g. in a yield-fixture::

        @pytest.fixture
        def openai_server():
            with fake_openai_server(latency=0.01) as server:
                yield server
    """
    return FakeOpenAIServer(**options)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description="Run the fake OpenAI-compatible server until Ctrl-C.")
    parser.add_argument("--port", type=int, default=0, help="port on 127.0.0.1 (default: a free one)")
    parser.add_argument("--latency", type=float, default=0.0, help="seconds to wait before each answer")
    parser.add_argument("--fail-every", type=int, default=0, help="fail every k-th request")
    parser.add_argument("--fail-status", type=int, default=429, help="status for those failures")
    args = parser.parse_args(argv)
    # Ctrl-C stops it even when the parent ignored or blocked SIGINT (both are inherited).
    signal.signal(signal.SIGINT, signal.default_int_handler)
    signal.pthread_sigmask(signal.SIG_UNBLOCK, {signal.SIGINT})
    server = FakeOpenAIServer(port=args.port, latency=args.latency,
                              fail_every=args.fail_every, fail_status=args.fail_status)
    with server:
        try:  # print inside the try: Ctrl-C may come as soon as the URL is out
            print(server.url, flush=True)
            while True:
                time.sleep(3600)
        except KeyboardInterrupt:
            pass


if __name__ == "__main__":
    main()

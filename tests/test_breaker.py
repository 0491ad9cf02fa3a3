"""The circuit breaker, against a real closed port on loopback and the real server."""

from __future__ import annotations

import asyncio
import socket

from lpo_ci.breaker import CONNECTION_FAILURES_IN_A_ROW, CircuitBreaker, is_connection_failure
from lpo_ci.llm import ModelClient, ModelParams
from tests.support.openai_server import fake_openai_server


def closed_port() -> int:
    """A loopback port nothing listens on (bound, then released)."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def test_a_refused_endpoint_fails_fast_after_a_few_connection_failures():
    params = ModelParams(model="openai/fake", api_base=f"http://127.0.0.1:{closed_port()}/v1", max_tokens=4)
    breaker = CircuitBreaker()
    client = ModelClient(params, concurrency=8, retries=4, backoff=0.2, breaker=breaker)
    results = asyncio.run(client.complete_all([f"Q: {i} is\nA:" for i in range(120)]))

    assert all(r.text is None for r in results)
    sent = sum(r.attempts for r in results)
    # The first wave of concurrent attempts is all that reaches the socket; then nothing is sent.
    assert sent <= CONNECTION_FAILURES_IN_A_ROW + client.concurrency, sent
    assert breaker.short_circuited >= 120 - client.concurrency
    first = results[0].error
    assert "Connection" in first or "connect" in first.lower(), first
    fast = [r.error for r in results if "not sent" in r.error]
    assert len(fast) >= 100 and all(e.startswith(breaker.error) for e in fast)
    assert "5 connection failures in a row" in fast[0]


def test_answers_and_http_errors_keep_the_breaker_closed():
    with fake_openai_server(outage=True, outage_status=503) as server:
        params = ModelParams(model="openai/fake", api_base=server.url, max_tokens=4)
        breaker = CircuitBreaker()
        client = ModelClient(params, concurrency=4, retries=1, backoff=0.01, breaker=breaker)
        results = asyncio.run(client.complete_all([f"Q: {i} is\nA:" for i in range(12)]))
        assert all(r.text is None and "not sent" not in r.error for r in results)
        assert server.requests == 24  # every call and its retry were sent: the server is alive
        assert breaker.error is None and breaker.short_circuited == 0


def test_an_answer_resets_the_count():
    breaker = CircuitBreaker(threshold=3)
    refused = ConnectionRefusedError(111, "Connection refused")
    for _ in range(2):
        breaker.record(refused)
    breaker.record(None)
    for _ in range(2):
        breaker.record(refused)
    assert breaker.check() is None
    breaker.record(refused, "ConnectionRefusedError: refused")
    assert breaker.check() == "ConnectionRefusedError: refused [not sent: 3 connection failures in a row]"


def test_connection_failures_are_found_in_the_chain_of_causes():
    try:
        try:
            raise ConnectionRefusedError(111, "refused")
        except ConnectionRefusedError as cause:
            raise RuntimeError("InternalServerError: Connection error.") from cause
    except RuntimeError as wrapped:
        assert is_connection_failure(wrapped)
    assert not is_connection_failure(ValueError("bad request"))

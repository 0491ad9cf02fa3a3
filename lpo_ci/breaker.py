"""A circuit breaker: a dead endpoint is reported in seconds, not after every retry.

Every call to a refused port is otherwise retried with backoff, so 120 calls
took two minutes to say "connection refused". After ``threshold`` connection
failures in a row (refused, reset, unresolvable, timed out) with no answer in
between, the breaker opens for the rest of the run: the remaining calls fail at
once, with the error that opened it. Nothing failed is cached, so a rerun once
the endpoint is up resumes where the last answer was.
"""

from __future__ import annotations

import socket

CONNECTION_FAILURES_IN_A_ROW = 5

# What providers' client libraries call a failure to reach the server at all (httpx, aiohttp,
# openai, litellm): litellm re-raises a refused connection as an InternalServerError, so the
# chain of causes is what tells.
_CONNECTION_CLASS_NAMES = frozenset({
    "ConnectError", "ConnectTimeout", "ReadTimeout", "PoolTimeout", "ClientConnectorError",
    "ServerDisconnectedError", "APIConnectionError", "APITimeoutError", "Timeout",
})


def is_connection_failure(error: BaseException) -> bool:
    """Whether ``error``, or anything that caused it, is a failure to reach the endpoint."""
    seen: set[int] = set()
    current: BaseException | None = error
    while current is not None and id(current) not in seen and len(seen) < 20:
        seen.add(id(current))
        if isinstance(current, (ConnectionError, socket.gaierror, TimeoutError)):
            return True
        if any(cls.__name__ in _CONNECTION_CLASS_NAMES for cls in type(current).__mro__):
            return True
        current = current.__cause__ or current.__context__
    return False


class CircuitBreaker:
    """Counts connection failures in a row for one endpoint; shared by its clients."""

    def __init__(self, threshold: int = CONNECTION_FAILURES_IN_A_ROW):
        self.threshold = threshold
        self.in_a_row = 0
        self.error: str | None = None  # the failure that opened the breaker
        self.why = f"{threshold} connection failures in a row"
        self.short_circuited = 0  # calls failed at once since

    def check(self) -> str | None:
        """None while closed; once open, the error to fail a call with, without sending it."""
        if self.error is None:
            return None
        self.short_circuited += 1
        return f"{self.error} [not sent: {self.why}]"

    def trip(self, error: str, why: str) -> None:
        """Open at once: a failure every call would meet (a missing or refused key)."""
        if self.error is None:
            self.error, self.why = error, why

    def record(self, error: BaseException | None, description: str = "") -> None:
        """One attempt's outcome: an answer (``None``), or the exception it raised."""
        if error is None or not is_connection_failure(error):
            self.in_a_row = 0  # the endpoint answered, even if with an error
            return
        self.in_a_row += 1
        if self.in_a_row >= self.threshold and self.error is None:
            self.error = description or f"{type(error).__name__}: {error}"

"""How long a dead endpoint takes to report: with the circuit breaker and without.

120 calls to a closed loopback port (connection refused), concurrency 8, the
default retries (4) and backoff (0.5 s doubling). Without the breaker every
call is retried with backoff before it reports (about two minutes); with it,
after a few connection failures in a row the remaining calls fail at once.
Both are measured in this one run; the ratio is what counts.

Run from the repository root::

    python benchmarks/bench_dead_endpoint.py            # ~2 minutes (the run without the breaker)
    python benchmarks/bench_dead_endpoint.py --strict   # exit 2 if the breaker is not 10x faster

Exit status: 0 ok; 1 a call did not fail as it should; 2 (with --strict) the
speed-up is under the target.
"""

from __future__ import annotations

import argparse
import asyncio
import socket
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from lpo_ci.breaker import CircuitBreaker  # noqa: E402
from lpo_ci.llm import ModelClient, ModelParams, import_litellm  # noqa: E402


def closed_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def run(calls: int, threshold: int) -> tuple[float, int, int]:
    """(seconds, attempts sent, calls that failed) for ``calls`` calls to a refused port."""
    params = ModelParams(model="openai/fake", api_base=f"http://127.0.0.1:{closed_port()}/v1", max_tokens=4)
    client = ModelClient(params, concurrency=8, retries=4, breaker=CircuitBreaker(threshold))
    started = time.perf_counter()
    results = asyncio.run(client.complete_all([f"Q: {i} is\nA:" for i in range(calls)]))
    return time.perf_counter() - started, sum(r.attempts for r in results), sum(r.text is None for r in results)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--calls", type=int, default=120)
    parser.add_argument("--target-ratio", type=float, default=10.0)
    parser.add_argument("--strict", action="store_true")
    args = parser.parse_args()
    import_litellm()  # not part of either measurement
    rows = [("with breaker", *run(args.calls, CircuitBreaker().threshold)),
            ("without breaker", *run(args.calls, 10 ** 9))]
    print(f"{'':16} {'seconds':>8} {'attempts':>9} {'failed':>7}")
    for name, seconds, attempts, failed in rows:
        print(f"{name:16} {seconds:8.2f} {attempts:9d} {failed:7d}")
    ratio = rows[1][1] / rows[0][1]
    print(f"speed-up: {ratio:.1f}x (target >= {args.target_ratio:.0f}x)")
    if any(failed != args.calls for *_, failed in rows):
        print("error: every call to a closed port must fail")
        return 1
    return 2 if args.strict and ratio < args.target_ratio else 0


if __name__ == "__main__":
    sys.exit(main())

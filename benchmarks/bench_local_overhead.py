"""Harness overhead on the embedded local model: lpo-ci vs llama_cpp called directly.

The same prompts, the same greedy parameters, in one process: generated
tokens per second through lpo-ci's ModelClient (litellm custom provider,
cache off) against a plain loop over ``llama_cpp.Llama.create_completion``.
Rounds alternate the two so that machine noise hits both alike. Target:
lpo-ci reaches at least 90% of the direct tokens per second.

    python benchmarks/bench_local_overhead.py [--prompts 12] [--max-tokens 64] [--rounds 3]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import statistics
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

FEW_SHOT = """Evaluate the result of a random Boolean expression. Think step by step.

Q: not ( ( not not True ) ) is
A: Let's think step by step. not ( ( not not True ) ) = not ( ( True ) ) = not True = False. So the answer is False.

Q: True and False and not True and True is
A: Let's think step by step. True and False = False; False and not True = False; False and True = False. So the answer is False.

Q: {question}
A: Let's think step by step."""

QUESTIONS = [
    "not ( True ) and ( True ) is", "True and not not ( not False ) is", "not True or ( False and True ) is",
    "False or not ( True ) and False is", "not not ( True or False ) is", "True or False and not True is",
    "( not False ) and False or True is", "not ( False or True ) or True is", "False and ( not True ) is",
    "True and True and not False is", "not not not ( False ) is", "( True or True ) and not True is",
]


def prompts(n: int) -> list[str]:
    return [FEW_SHOT.format(question=QUESTIONS[i % len(QUESTIONS)]) for i in range(n)]


def direct(llm, batch: list[str], max_tokens: int) -> tuple[int, float]:
    """Completion tokens and seconds for a plain llama_cpp loop (fresh evaluation each, as lpo-ci does)."""
    tokens, started = 0, time.perf_counter()
    for prompt in batch:
        llm.reset()
        out = llm.create_completion(prompt, max_tokens=max_tokens, temperature=0.0, top_p=1.0, top_k=0,
                                    min_p=0.0, typical_p=1.0, repeat_penalty=1.0, seed=0)
        tokens += out["usage"]["completion_tokens"]
    return tokens, time.perf_counter() - started


def through_lpo_ci(batch: list[str], max_tokens: int) -> tuple[int, float]:
    from lpo_ci.cache import ResponseCache
    from lpo_ci.llm import ModelClient, ModelParams
    from lpo_ci.local_model import DEFAULT_LOCAL_MODEL

    client = ModelClient(ModelParams(model=DEFAULT_LOCAL_MODEL, mode="completion", max_tokens=max_tokens),
                         cache=ResponseCache(None), concurrency=8)
    started = time.perf_counter()
    results = asyncio.run(client.complete_all(batch))
    seconds = time.perf_counter() - started
    errors = [r.error for r in results if r.error]
    if errors:
        raise SystemExit(f"lpo-ci calls failed: {errors[0]}")
    return sum(r.completion_tokens for r in results), seconds


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--prompts", type=int, default=12)
    parser.add_argument("--max-tokens", type=int, default=64)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--strict", action="store_true", help="exit 2 when the 90% target is missed")
    args = parser.parse_args()

    from lpo_ci import local_model
    from lpo_ci.llm import import_litellm

    if not local_model.is_available():
        raise SystemExit(local_model.INSTALL_HINT)
    import_litellm()
    with local_model._lock:
        llm = local_model.load()  # the very same model instance both ways
    batch = prompts(args.prompts)
    through_lpo_ci(batch[:1], 4)  # warm up litellm's first-call set-up
    rows = []
    for round_ in range(args.rounds):
        order = ["direct", "lpo-ci"] if round_ % 2 == 0 else ["lpo-ci", "direct"]
        for way in order:
            if way == "direct":
                with local_model._lock:
                    tokens, seconds = direct(llm, batch, args.max_tokens)
            else:
                tokens, seconds = through_lpo_ci(batch, args.max_tokens)
            rows.append((round_, way, tokens, seconds, tokens / seconds))
    print(f"local model overhead: {args.prompts} prompts x {args.max_tokens} max tokens, greedy, "
          f"{args.rounds} alternating rounds, load average {os.getloadavg()[0]:.2f}")
    print(f"{'round':>5}  {'way':<7}  {'tokens':>6}  {'seconds':>7}  {'tok/s':>6}")
    for round_, way, tokens, seconds, rate in rows:
        print(f"{round_:>5}  {way:<7}  {tokens:>6}  {seconds:>7.2f}  {rate:>6.1f}")
    direct_rate = statistics.median(r[4] for r in rows if r[1] == "direct")
    lpo_rate = statistics.median(r[4] for r in rows if r[1] == "lpo-ci")
    ratio = lpo_rate / direct_rate
    verdict = "ok" if ratio >= 0.9 else "MISS"
    print(f"median tok/s: direct {direct_rate:.1f}, lpo-ci {lpo_rate:.1f}; ratio {ratio:.3f} "
          f"(target >= 0.90: {verdict})")
    print(json.dumps({"direct_tok_s": direct_rate, "lpo_ci_tok_s": lpo_rate, "ratio": ratio}))
    return 2 if args.strict and verdict == "MISS" else 0


if __name__ == "__main__":
    sys.exit(main())

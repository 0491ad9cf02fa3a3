"""The statistics behind a verdict: Wilson intervals and the exact McNemar test.

Base and head are scored on the same examples, so the right test is a paired
one: only the examples whose outcome flipped carry information.
"""

from __future__ import annotations

import math


def wilson_interval(correct: int, n: int, z: float = 1.959964) -> tuple[float, float]:
    """95% Wilson score interval for a proportion; (0, 1) when there is no data."""
    if n <= 0:
        return (0.0, 1.0)
    p = correct / n
    denominator = 1 + z * z / n
    centre = (p + z * z / (2 * n)) / denominator
    half = z * math.sqrt(p * (1 - p) / n + z * z / (4 * n * n)) / denominator
    return (max(0.0, centre - half), min(1.0, centre + half))


def mcnemar_one_sided(worse: int, better: int) -> float:
    """Exact one-sided McNemar p-value that head is worse than base.

    ``worse``: examples right on base and wrong on head; ``better``: the
    reverse. Under no difference each discordant pair is a fair coin, so the
    p-value is P(X >= worse) for X ~ Binomial(worse + better, 1/2).
    """
    n = worse + better
    if n == 0:
        return 1.0
    tail = sum(math.comb(n, k) for k in range(worse, n + 1))
    return min(1.0, tail / (1 << n))

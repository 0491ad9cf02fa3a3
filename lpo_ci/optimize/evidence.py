"""How strong the evidence for a fix can be, and how strong it is.

Before the search: the held-out split is sized from the whole dataset (beyond the gate's
sample when there is more data, so the held-out test is not run on the examples that
flagged the regression) and from the gate's own numbers: how many examples flipped, hence
how many held-out examples a fix that wins the base's accuracy back needs to show it. Then,
once the head's held-out answers are known, whether any candidate *could* pass the usual
test: a one-sided exact McNemar test against the head can only reach p = 0.5 ** k when the
head is wrong on k held-out examples. When it cannot, and the gate already showed base >>
head, a candidate is judged against the base instead (non-inferiority); when neither can
work, that is said before a single candidate is scored.

Routes and the strength they give a suggestion:

* ``superiority`` (strong): the candidate beats the head on held-out examples, one-sided
  exact McNemar, Holm-corrected over every candidate tested on held-out.
* ``non_inferiority`` (moderate): the gate showed base >> head on its sample; on held-out
  the candidate is right more often than the head, and it is not worse than the base by
  half the gate's drop or more (one-sided Clopper-Pearson bound on the share of examples
  the base gets right and the candidate wrong, Bonferroni over the candidates tested).
* otherwise the best candidate is weak evidence: shown, never suggested.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

from ..stats import mcnemar_one_sided

SUPERIORITY, NON_INFERIORITY, NO_ROUTE = "superiority", "non_inferiority", "none"
STRENGTH = {SUPERIORITY: "strong", NON_INFERIORITY: "moderate"}
MIN_DEV = 16
MIN_HELDOUT = 16
MAX_HELDOUT = 96


def best_p(head_wrong: int) -> float:
    """The smallest p-value any candidate can reach: every head error fixed, nothing broken."""
    return mcnemar_one_sided(head_wrong, 0)


def binomial_cdf(k: int, n: int, p: float) -> float:
    return sum(math.comb(n, i) * p ** i * (1 - p) ** (n - i) for i in range(k + 1))


def upper_bound(k: int, n: int, alpha: float) -> float:
    """One-sided Clopper-Pearson upper confidence bound (level 1 - alpha) of a share seen k of n times."""
    if n == 0 or k >= n:
        return 1.0
    low, high = k / n, 1.0
    for _ in range(60):  # bisection: P(X <= k | n, p) falls as p grows
        mid = (low + high) / 2
        if binomial_cdf(k, n, mid) > alpha:
            low = mid
        else:
            high = mid
    return high


def holm(p_values: list[float], alpha: float) -> list[bool]:
    """Which hypotheses Holm's step-down procedure rejects at family-wise level ``alpha``."""
    order = sorted(range(len(p_values)), key=lambda i: p_values[i])
    rejected = [False] * len(p_values)
    for rank, i in enumerate(order):
        if p_values[i] > alpha / (len(p_values) - rank):
            break
        rejected[i] = True
    return rejected


@dataclass
class GateEvidence:
    """What the gate measured on its sample: base vs head, paired."""

    n: int
    base_accuracy: float
    head_accuracy: float
    right_to_wrong: int
    wrong_to_right: int
    p_value: float

    @classmethod
    def from_verdict(cls, verdict) -> "GateEvidence | None":
        if verdict is None or verdict.reference != "base" or not verdict.n_paired \
                or verdict.base_accuracy is None or verdict.p_value is None:
            return None
        return cls(verdict.n_paired, verdict.base_accuracy, verdict.head_accuracy,
                   len(verdict.right_to_wrong), len(verdict.wrong_to_right), verdict.p_value)

    @property
    def drop(self) -> float:
        return self.base_accuracy - self.head_accuracy


def heldout_needed(gate: GateEvidence | None, alpha: float, tested: int) -> int:
    """Held-out examples for a fix as good as the base to pass the Holm-corrected test with
    room to spare, if the held-out flips look like the gate's (capped at MAX_HELDOUT)."""
    if gate is None or gate.right_to_wrong == 0:
        return 48
    gain, loss = gate.right_to_wrong / gate.n, gate.wrong_to_right / gate.n
    for n in range(MIN_HELDOUT, MAX_HELDOUT + 1, 8):
        if mcnemar_one_sided(round(n * gain), round(n * loss)) <= alpha / tested / 2:
            return n
    return MAX_HELDOUT


@dataclass
class SplitPlan:
    heldout: list
    dev: list
    beyond_gate: bool  # drawn from examples the gate did not score
    needed: int        # held-out size the gate's numbers call for
    reason: str        # how the sizes were chosen, for the announcement


def plan_splits(ordered: list, gate_size: int, *, dev_size: int, heldout_size: int | None,
                gate: GateEvidence | None, alpha: float, tested: int, max_calls: int | None) -> SplitPlan:
    """Disjoint held-out and dev splits from the examples in seeded order (the gate's sample first).

    Beyond the gate's sample when it leaves room for both; else from the whole dataset,
    held-out first (its size decides what the acceptance test can show), dev at least MIN_DEV.
    """
    needed = heldout_size or heldout_needed(gate, alpha, tested)
    if max_calls is not None and heldout_size is None:  # the head and every finalist on held-out
        needed = min(needed, max(MIN_HELDOUT, (max_calls - dev_size) // (2 * (tested + 1))))
    beyond = ordered[gate_size:]
    if len(beyond) >= needed + min(dev_size, 2 * MIN_DEV):
        n_dev = min(dev_size, len(beyond) - needed)
        return SplitPlan(beyond[:needed], beyond[needed:needed + n_dev], True, needed,
                         f"{needed} held-out and {n_dev} dev examples beyond the gate's {gate_size}")
    n_dev = min(max(MIN_DEV, min(dev_size, len(ordered) - needed)), len(ordered) // 2)
    n_held = min(needed, len(ordered) - n_dev)
    return SplitPlan(ordered[:n_held], ordered[n_held:n_held + n_dev], False, needed,
                     f"{n_held} held-out and {n_dev} dev examples from all {len(ordered)} (too few beyond the "
                     f"gate's {gate_size} for separate splits; the test wanted {needed} held-out)")


@dataclass
class Route:
    """How a candidate will be judged on held-out, chosen before the search."""

    name: str
    statement: str                      # what the data can show, in words

    @property
    def strength(self) -> str:
        return STRENGTH.get(self.name, "weak")


@dataclass(kw_only=True)
class NonInferiorityRoute(Route):
    """Judged against the base: only a gate that showed base >> head makes that route, so it carries
    the gate's evidence, and the margin is taken from it."""

    gate: GateEvidence

    @property
    def margin(self) -> float:
        """How much worse than the base a candidate may be (share of examples): half the gate's drop."""
        return self.gate.drop / 2


def choose_route(head_wrong: int, n_heldout: int, gate: GateEvidence | None, has_base: bool,
                 alpha: float, tested: int) -> Route:
    """Whether the usual test can pass at all on this held-out split; else the alternative."""
    p = best_p(head_wrong)
    if p <= alpha / tested:
        return Route(SUPERIORITY, f"the head is wrong on {head_wrong} of {n_heldout} held-out examples: a fix "
                                  f"can reach p = {p:.2g} (needs p <= {alpha / tested:.3g} with {tested} "
                                  f"candidates tested, Holm)")
    cannot = (f"the head is wrong on only {head_wrong} of {n_heldout} held-out examples, so no candidate can "
              f"beat it significantly (best possible p = {p:.2g})")
    if gate is not None and has_base and gate.p_value < alpha and gate.drop > 0:
        margin = gate.drop / 2
        reachable = upper_bound(0, n_heldout, alpha / tested) < margin
        if reachable:
            return NonInferiorityRoute(
                NON_INFERIORITY, f"{cannot}; the gate showed base >> head on {gate.n} examples "
                                 f"({gate.base_accuracy:.1%} vs {gate.head_accuracy:.1%}, "
                                 f"p = {gate.p_value:.2g}), so a candidate is accepted when it beats "
                                 f"the head on held-out and is not {margin:.1%} (half the drop) or more "
                                 f"worse than the base there (moderate evidence)",
                gate=gate)
        cannot += (f"; nor can {n_heldout} held-out examples bound a candidate within {margin:.1%} of the base")
    return Route(NO_ROUTE, f"{cannot}: any result is weak evidence and will not be suggested; "
                           f"more examples in the dataset would help")


@dataclass
class Assessment:
    """One candidate's held-out result under the route."""

    improved: int                 # right where the head was wrong
    worsened: int
    accuracy: float
    p_value: float                # one-sided McNemar against the head
    below_base: int | None = None  # right on base, wrong here
    bound: float | None = None     # upper bound on the share below the base
    accepted: bool = False
    strength: str = "none"


def assess(route: Route, head_right: set, base_right: set | None, candidates: list[set], n: int,
           alpha: float) -> list[Assessment]:
    """Judge every candidate tested on held-out (their sets of ids answered right) at once."""
    out = []
    for right in candidates:
        improved, worsened = len(right - head_right), len(head_right - right)
        out.append(Assessment(improved, worsened, len(right) / n, mcnemar_one_sided(improved, worsened)))
    tested = max(1, len(candidates))
    if route.name == SUPERIORITY:
        for a, ok in zip(out, holm([a.p_value for a in out], alpha)):
            a.accepted = ok and a.improved > a.worsened
    elif isinstance(route, NonInferiorityRoute) and base_right is not None:
        for a, right in zip(out, candidates):
            a.below_base = len(base_right - right)
            a.bound = upper_bound(a.below_base, n, alpha / tested)
            a.accepted = a.improved > a.worsened and a.bound < route.margin
    for a in out:
        if a.accepted:
            a.strength = route.strength
        elif a.improved > a.worsened:
            a.strength = "weak"
    return out

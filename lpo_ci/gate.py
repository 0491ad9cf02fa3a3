"""Base vs head on the same examples -> pass, regression, or error.

A template fails only when its accuracy drop is larger than its tolerance
and a one-sided exact McNemar test on the paired outcomes says the drop is
real at ``alpha``, or when it falls under ``min_accuracy``. A drop that is
not significant is reported, not failed. When too many calls failed the
evaluation cannot be trusted: that is an error, never a pass or a fail.
"""

from __future__ import annotations

from dataclasses import dataclass, field, asdict
from typing import Any

from .evaluate import EvalResult
from .scoring import Outcome
from .spec import TestSpec
from .stats import mcnemar_one_sided, wilson_interval

PASS, FAIL, ERROR = "pass", "fail", "error"
NO_REFERENCE = "no base version or stored baseline to compare with"


_DEFAULTS = TestSpec()  # the spec's defaults are the gate's: written once, in TestSpec


@dataclass
class GateRules:
    tolerance: float = _DEFAULTS.tolerance
    alpha: float = _DEFAULTS.alpha
    min_accuracy: float | None = _DEFAULTS.min_accuracy
    max_error_rate: float = _DEFAULTS.max_error_rate

    @classmethod
    def from_spec(cls, spec: TestSpec) -> GateRules:
        return cls(tolerance=spec.tolerance, alpha=spec.alpha, min_accuracy=spec.min_accuracy,
                   max_error_rate=spec.max_error_rate)


@dataclass
class Verdict:
    status: str
    reason: str
    reference: str  # "base", "baseline", "unchanged" (base == head) or "none"
    head_accuracy: float | None = None
    head_interval: tuple[float, float] | None = None
    base_accuracy: float | None = None
    base_interval: tuple[float, float] | None = None
    delta: float | None = None
    p_value: float | None = None
    n_paired: int = 0
    right_to_wrong: list[str] = field(default_factory=list)
    wrong_to_right: list[str] = field(default_factory=list)

    def to_dict(self) -> dict[str, Any]:
        data = asdict(self)
        for key in ("head_interval", "base_interval"):
            if data[key] is not None:
                data[key] = list(data[key])
        return data


def _error_share(outcomes: dict[str, Outcome]) -> float:
    return sum(o is Outcome.ERROR for o in outcomes.values()) / len(outcomes) if outcomes else 0.0


def decide(head: EvalResult, reference: dict[str, Outcome] | None, reference_kind: str,
           rules: GateRules, reference_error: str | None = None) -> Verdict:
    """The verdict for ``head`` against the reference outcomes (keyed by example id)."""
    if head.n == 0:
        return Verdict(ERROR, "no examples were evaluated", reference_kind)
    if head.error_rate > rules.max_error_rate or head.scored == 0:  # even at max_error_rate 1
        return Verdict(ERROR, f"{head.count(Outcome.ERROR)} of {head.n} calls failed "
                              f"({head.error_rate:.0%} > max_error_rate {rules.max_error_rate:.0%}); "
                              f"first error: {head.first_error()}", reference_kind)
    if reference is not None and reference_kind == "base" and _error_share(reference) > rules.max_error_rate:
        return Verdict(ERROR, f"the base version's calls failed too often "
                              f"({_error_share(reference):.0%}); first error: {reference_error}",
                       reference_kind)
    head_outcomes = head.outcomes()
    verdict = Verdict(PASS, "", reference_kind, head_accuracy=head.accuracy, head_interval=head.interval)
    if reference is not None:
        paired = [i for i, o in head_outcomes.items()
                  if o is not Outcome.ERROR and reference.get(i, Outcome.ERROR) is not Outcome.ERROR]
        verdict.n_paired = len(paired)
        if paired:
            base_right = [i for i in paired if reference[i] is Outcome.CORRECT]
            head_right = [i for i in paired if head_outcomes[i] is Outcome.CORRECT]
            verdict.right_to_wrong = [i for i in base_right if head_outcomes[i] is not Outcome.CORRECT]
            verdict.wrong_to_right = [i for i in head_right if reference[i] is not Outcome.CORRECT]
            verdict.base_accuracy = len(base_right) / len(paired)
            verdict.base_interval = wilson_interval(len(base_right), len(paired))
            verdict.head_accuracy = len(head_right) / len(paired)
            verdict.head_interval = wilson_interval(len(head_right), len(paired))
            verdict.delta = verdict.head_accuracy - verdict.base_accuracy
            verdict.p_value = mcnemar_one_sided(len(verdict.right_to_wrong), len(verdict.wrong_to_right))
        else:  # a reference that shares no scored example with the head compares nothing
            verdict.status = ERROR
            verdict.reason = f"no example could be paired with the {reference_kind}: nothing was compared"
            return verdict
    reasons = []
    if verdict.delta is not None and -verdict.delta > rules.tolerance:
        drop = f"accuracy dropped {-verdict.delta:.1%} (tolerance {rules.tolerance:.1%}), p = {verdict.p_value:.3g}"
        if verdict.p_value is not None and verdict.p_value < rules.alpha:
            verdict.status = FAIL
            reasons.append(f"regression: {drop} < alpha {rules.alpha}")
        else:
            reasons.append(f"{drop}: not significant at alpha {rules.alpha}")
    elif verdict.delta is not None and verdict.delta < 0:
        reasons.append(f"accuracy dropped {-verdict.delta:.1%}, within tolerance {rules.tolerance:.1%}")
    if rules.min_accuracy is not None and verdict.head_accuracy is not None \
            and verdict.head_accuracy < rules.min_accuracy:
        verdict.status = FAIL
        reasons.append(f"under min_accuracy: accuracy {verdict.head_accuracy:.1%} is under min_accuracy "
                       f"{rules.min_accuracy:.1%}")
    if not reasons:
        reasons.append({"none": NO_REFERENCE,
                        "unchanged": "template unchanged from the base version"}.get(
            reference_kind, "no significant drop"))
    verdict.reason = "; ".join(reasons)
    return verdict

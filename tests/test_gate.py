"""The statistics and the verdict rules of the gate."""

from __future__ import annotations

import math

import pytest

from lpo_ci.evaluate import EvalResult, ExampleResult
from lpo_ci.gate import ERROR, FAIL, PASS, GateRules, decide
from lpo_ci.scoring import Outcome
from lpo_ci.stats import mcnemar_one_sided, wilson_interval

C, W, F, E = Outcome.CORRECT, Outcome.WRONG, Outcome.FORMAT_FAILURE, Outcome.ERROR


def result(outcomes: list[Outcome]) -> EvalResult:
    return EvalResult([ExampleResult(id=str(i), outcome=o, target="t",
                                     error="RateLimitError: slow down" if o is E else None)
                       for i, o in enumerate(outcomes)])


def test_wilson_interval_known_values():
    low, high = wilson_interval(8, 10)
    assert low == pytest.approx(0.4902, abs=1e-4)
    assert high == pytest.approx(0.9433, abs=1e-4)
    assert wilson_interval(0, 0) == (0.0, 1.0)
    assert wilson_interval(10, 10)[1] == pytest.approx(1.0)


def test_mcnemar_is_the_binomial_tail():
    assert mcnemar_one_sided(0, 0) == 1.0
    assert mcnemar_one_sided(5, 0) == pytest.approx(1 / 32)
    assert mcnemar_one_sided(3, 1) == pytest.approx(5 / 16)
    # symmetric case: P(X >= 5 | n=10) = 638/1024
    assert mcnemar_one_sided(5, 5) == pytest.approx(638 / 1024)
    assert mcnemar_one_sided(20, 2) == pytest.approx(sum(math.comb(22, k) for k in range(20, 23)) / 2 ** 22)


def test_significant_drop_fails_and_lists_flips():
    base = result([C] * 40)
    head = result([C] * 30 + [W] * 10)
    verdict = decide(head, base.outcomes(), "base", GateRules())
    assert verdict.status == FAIL
    assert verdict.delta == pytest.approx(-0.25)
    assert verdict.p_value == pytest.approx(2 ** -10)
    assert verdict.right_to_wrong == [str(i) for i in range(30, 40)]
    assert "regression" in verdict.reason


def test_drop_within_tolerance_passes():
    verdict = decide(result([C] * 30 + [W] * 10), result([C] * 40).outcomes(), "base",
                     GateRules(tolerance=0.3))
    assert verdict.status == PASS


def test_non_significant_drop_is_reported_not_failed():
    base = result([C, C, C, C, W, W])
    head = result([C, C, W, W, C, W])  # 2 right->wrong, 1 wrong->right
    verdict = decide(head, base.outcomes(), "base", GateRules())
    assert verdict.status == PASS
    assert verdict.p_value == pytest.approx(0.5)
    assert "not significant" in verdict.reason


def test_min_accuracy_fails_without_a_reference():
    verdict = decide(result([C] * 3 + [W] * 7), None, "none", GateRules(min_accuracy=0.5))
    assert verdict.status == FAIL
    assert "min_accuracy" in verdict.reason


def test_errors_are_not_wrong_answers_and_too_many_make_an_error():
    head = result([C] * 19 + [E])
    verdict = decide(head, result([C] * 20).outcomes(), "base", GateRules(max_error_rate=0.1))
    assert verdict.status == PASS and verdict.n_paired == 19 and verdict.head_accuracy == 1.0
    verdict = decide(result([C] * 10 + [E] * 10), None, "none", GateRules(max_error_rate=0.1))
    assert verdict.status == ERROR
    assert "10 of 20 calls failed" in verdict.reason and "RateLimitError" in verdict.reason


def test_format_failures_count_as_not_correct():
    verdict = decide(result([C] * 20 + [F] * 20), result([C] * 40).outcomes(), "base", GateRules())
    assert verdict.status == FAIL
    assert result([C, F]).count(F) == 1


def test_a_reference_that_pairs_no_example_is_an_error_not_a_pass():
    head = result([C] * 10)
    reference = {str(i): E for i in range(10)}  # a stored baseline of failed calls only
    verdict = decide(head, reference, "baseline", GateRules())
    assert verdict.status == ERROR and "no example could be paired with the baseline" in verdict.reason
    assert decide(head, {"other": C}, "baseline", GateRules()).status == ERROR


def test_every_call_failed_is_an_error_even_at_max_error_rate_1():
    verdict = decide(result([E] * 10), None, "none", GateRules(max_error_rate=1.0))
    assert verdict.status == ERROR and "10 of 10 calls failed" in verdict.reason

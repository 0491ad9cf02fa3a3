"""The statistics and the verdict rules of the gate."""

from __future__ import annotations

import math

import pytest

from lpo_ci.evaluate import EvalResult, ExampleResult
from lpo_ci.gate import ERROR, FAIL, NO_REFERENCE, PASS, GateRules, decide
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


# --- every rule of the README at its boundary ------------------------------------
# Accuracies with exact binary fractions, so a boundary is the boundary.

def paired(base: list[Outcome], head: list[Outcome], rules: GateRules, kind: str = "base"):
    return decide(result(head), result(base).outcomes(), kind, rules)


def test_a_drop_of_exactly_the_tolerance_passes_and_more_fails():
    base, head = [C] * 32, [C] * 24 + [W] * 8  # -25%, p = 2**-8
    at = paired(base, head, GateRules(tolerance=0.25))
    assert at.status == PASS and at.delta == -0.25
    assert at.reason == "accuracy dropped 25.0%, within tolerance 25.0%"
    over = paired(base, head, GateRules(tolerance=0.24))
    assert over.status == FAIL
    assert over.reason == "regression: accuracy dropped 25.0% (tolerance 24.0%), p = 0.00391 < alpha 0.05"


def test_a_p_value_of_exactly_alpha_is_not_significant():
    base, head = [C] * 5, [W] * 5  # p = 1/32
    at = paired(base, head, GateRules(alpha=1 / 32))
    assert at.status == PASS and at.p_value == 1 / 32
    assert at.reason == "accuracy dropped 100.0% (tolerance 0.0%), p = 0.0312: not significant at alpha 0.03125"
    assert paired(base, head, GateRules(alpha=0.04)).status == FAIL


def test_min_accuracy_is_a_floor_the_head_may_touch():
    head = [C] * 3 + [W]  # 75%
    at = decide(result(head), None, "none", GateRules(min_accuracy=0.75))
    assert at.status == PASS and at.reason == NO_REFERENCE and at.head_accuracy == 0.75
    under = decide(result(head), None, "none", GateRules(min_accuracy=0.76))
    assert under.status == FAIL and under.reason == "under min_accuracy: accuracy 75.0% is under min_accuracy 76.0%"
    # with a reference too, and its reason after the comparison's
    both = paired([C] * 4, head, GateRules(min_accuracy=0.8, tolerance=0.5))
    assert both.status == FAIL
    assert both.reason == ("accuracy dropped 25.0%, within tolerance 50.0%; "
                           "under min_accuracy: accuracy 75.0% is under min_accuracy 80.0%")


def test_max_error_rate_is_the_most_failed_calls_allowed():
    head = [C] * 3 + [E]  # 25% failed
    at = decide(result(head), None, "none", GateRules(max_error_rate=0.25))
    assert at.status == PASS and at.head_accuracy == 1.0
    over = decide(result(head), None, "none", GateRules(max_error_rate=0.24))
    assert over.status == ERROR
    assert over.reason == ("1 of 4 calls failed (25% > max_error_rate 24%); first error: "
                           "RateLimitError: slow down")


def test_the_base_versions_failed_calls_make_an_error_not_a_verdict():
    head = [C] * 8
    base = [C] * 6 + [E] * 2  # 25% of the base's calls failed
    at = paired(base, head, GateRules(max_error_rate=0.25))
    assert at.status == PASS and at.n_paired == 6
    verdict = decide(result(head), result(base).outcomes(), "base", GateRules(max_error_rate=0.24),
                     reference_error="APIError: the base was down")
    assert verdict.status == ERROR and verdict.reference == "base"
    assert verdict.reason == "the base version's calls failed too often (25%); first error: APIError: the base was down"
    assert verdict.head_accuracy is None and verdict.delta is None
    # a stored baseline keeps its scored examples only: no such error, the pairs are what is left
    stored = paired(base, head, GateRules(max_error_rate=0.24), kind="baseline")
    assert stored.status == PASS and stored.n_paired == 6


def test_an_evaluation_of_no_examples_is_an_error():
    verdict = decide(EvalResult([]), None, "none", GateRules(max_error_rate=1.0))
    assert verdict.status == ERROR and verdict.reason == "no examples were evaluated"
    assert verdict.reference == "none"


def test_accuracies_are_recomputed_on_the_paired_examples_only():
    head = result([C] * 5 + [W] * 5)  # 50% on its own 10 examples
    reference = {str(i): C for i in range(5)}  # the reference knows the first 5, all right
    verdict = decide(head, reference, "baseline", GateRules())
    assert verdict.n_paired == 5 and verdict.head_accuracy == 1.0 and verdict.base_accuracy == 1.0
    assert verdict.delta == 0.0 and verdict.status == PASS and verdict.reason == "no significant drop"
    assert verdict.head_interval == wilson_interval(5, 5) == verdict.base_interval
    # a failed call on either side leaves its example out of the pairs
    head = result([C, C, E, W])
    reference = {"0": C, "1": E, "2": C, "3": C}
    verdict = decide(head, reference, "base", GateRules(max_error_rate=0.5))
    assert verdict.n_paired == 2 and verdict.head_accuracy == 0.5 and verdict.base_accuracy == 1.0
    assert verdict.right_to_wrong == ["3"] and verdict.wrong_to_right == []


def test_flips_both_ways_and_an_improvement():
    base = [C, C, W, W, C, F]
    head = [C, W, C, W, F, C]
    verdict = paired(base, head, GateRules(tolerance=0.5))
    assert verdict.right_to_wrong == ["1", "4"] and verdict.wrong_to_right == ["2", "5"]
    assert verdict.delta == 0.0 and verdict.p_value == mcnemar_one_sided(2, 2)
    better = paired([W] * 4, [C] * 4, GateRules())
    assert better.status == PASS and better.delta == 1.0 and better.reason == "no significant drop"
    assert better.base_interval == wilson_interval(0, 4) and better.head_interval == wilson_interval(4, 4)


def test_an_unchanged_template_says_so():
    head = result([C, W, C, C])
    verdict = decide(head, head.outcomes(), "unchanged", GateRules())
    assert verdict.status == PASS and verdict.reason == "template unchanged from the base version"
    assert verdict.delta == 0.0 and verdict.p_value == 1.0


def test_no_reference_reports_the_head_alone():
    verdict = decide(result([C, C, C, W]), None, "none", GateRules())
    assert verdict.status == PASS and verdict.reason == NO_REFERENCE
    assert verdict.head_accuracy == 0.75 and verdict.head_interval == wilson_interval(3, 4)
    assert verdict.base_accuracy is None and verdict.p_value is None and verdict.n_paired == 0


def test_verdict_to_dict_gives_lists_for_intervals():
    verdict = paired([C] * 4, [C] * 4, GateRules())
    data = verdict.to_dict()
    assert data["head_interval"] == list(wilson_interval(4, 4)) and data["base_interval"] == list(wilson_interval(4, 4))
    assert data["status"] == PASS and data["n_paired"] == 4
    assert decide(EvalResult([]), None, "none", GateRules()).to_dict()["head_interval"] is None


def test_gate_defaults_are_the_specs():
    from lpo_ci.spec import TestSpec

    spec = TestSpec(tolerance=0.1, alpha=0.01, min_accuracy=0.5, max_error_rate=0.2)
    assert GateRules.from_spec(spec) == GateRules(0.1, 0.01, 0.5, 0.2)
    defaults = TestSpec()
    assert GateRules() == GateRules(defaults.tolerance, defaults.alpha, defaults.min_accuracy, defaults.max_error_rate)
    assert GateRules() == GateRules(0.0, 0.05, None, 0.05)


def test_wilson_interval_edges():
    assert wilson_interval(0, -1) == (0.0, 1.0)
    low, high = wilson_interval(1, 1)
    assert low == pytest.approx(0.20654, abs=1e-5) and high == 1.0
    low, high = wilson_interval(0, 1)
    assert low == 0.0 and high == pytest.approx(0.79346, abs=1e-5)
    low, high = wilson_interval(5, 10, z=1.0)
    assert (low, high) == (pytest.approx(0.3492, abs=1e-4), pytest.approx(0.6508, abs=1e-4))
    low, high = wilson_interval(1, 2)
    assert low == pytest.approx(0.09453, abs=1e-5) and high == pytest.approx(0.90547, abs=1e-5)


def test_mcnemar_edges():
    assert mcnemar_one_sided(0, 3) == 1.0
    assert mcnemar_one_sided(1, 0) == 0.5
    assert mcnemar_one_sided(2, 1) == pytest.approx(4 / 8)
    assert mcnemar_one_sided(1, 2) == pytest.approx(7 / 8)


def test_wilson_interval_stays_within_0_and_1_where_rounding_would_leave_it():
    # computed, 20 of 20 gives an upper bound of 1.0000000000000002 and 0 of 7 a lower one just under 0
    assert wilson_interval(20, 20)[1] == 1.0 and wilson_interval(32, 32)[1] == 1.0
    assert wilson_interval(0, 7)[0] == 0.0 and wilson_interval(0, 9)[0] == 0.0


def test_an_empty_base_is_nothing_to_compare_not_a_base_that_failed():
    verdict = decide(result([C] * 4), {}, "base", GateRules())
    assert verdict.status == ERROR
    assert verdict.reason == "no example could be paired with the base: nothing was compared"

"""Tests for answer extraction and comparison.

The agreement tables check our verdicts against literal transcriptions of the
lm-evaluation-harness rules below, so accuracies stay comparable with
published numbers; the few deliberate differences are tested on their own.
"""

from __future__ import annotations

import pickle
import re
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest

from lpo_ci.errors import EvaluationError, LpoError, SpecError
from lpo_ci.scoring import (
    Outcome,
    Score,
    get_scorer,
    normalize_number,
    score_response,
)

# ---------------------------------------------------------------------------
# Reference: lm-evaluation-harness rules, transcribed literally.
# RegexFilter.apply (lm_eval/filters/extraction.py), the gsm8k-cot.yaml and
# bbh cot templates' filter_list, and exact_match with regexes_to_ignore.

LM_EVAL_FALLBACK = "[invalid]"
LM_EVAL_GSM8K_STRICT = r"#### (\-?[0-9\.\,]+)"
LM_EVAL_GSM8K_FLEXIBLE = r"(-?[$0-9.,]{2,})|(-?[0-9]+)"
LM_EVAL_GSM8K_IGNORE = [",", "\\$", "(?s).*#### ", "\\.$"]
LM_EVAL_BBH_COT_FEWSHOT = r"(?<=the answer is )(.*)(?=.)"
LM_EVAL_BBH_COT_ZEROSHOT = (
    r"((?<=The answer is )(.*)(?=.)|(?<=the answer is )(.*)(?=.)"
    r"|(?<=The answer: )(.*)(?=.)|(?<=The final answer: )(.*)(?=.))"
)
LM_EVAL_BBH_FLEXIBLE = {  # bbh cot_zeroshot per-task flexible-extract
    "True": r"\b(True|False)\b", "False": r"\b(True|False)\b",
    "valid": r"\b(valid|invalid)\b", "invalid": r"\b(valid|invalid)\b",
}


def lm_eval_regex_filter(pattern: str, resp: str, group_select: int = 0) -> str:
    regex = re.compile(pattern)
    match = regex.findall(resp)
    if match:
        match = match[group_select]
        if isinstance(match, tuple):
            match = [m for m in match if m][0]
        match = match.strip()
    else:
        match = LM_EVAL_FALLBACK
    return match


def lm_eval_exact_match(prediction: str, reference: str, regexes_to_ignore=(),
                        ignore_case: bool = False) -> bool:
    for s in regexes_to_ignore:
        prediction = re.sub(s, "", prediction)
        reference = re.sub(s, "", reference)
    if ignore_case:
        prediction, reference = prediction.lower(), reference.lower()
    return prediction == reference


def lm_eval_gsm8k_correct(response: str, target: str) -> bool:
    """strict-match when the response has "#### N", else flexible-extract."""
    answer = lm_eval_regex_filter(LM_EVAL_GSM8K_STRICT, response)
    if answer == LM_EVAL_FALLBACK:
        answer = lm_eval_regex_filter(LM_EVAL_GSM8K_FLEXIBLE, response, group_select=-1)
    return lm_eval_exact_match(answer, target, LM_EVAL_GSM8K_IGNORE, ignore_case=True)


def lm_eval_bbh_correct(response: str, target: str) -> bool:
    """CoT "the answer is" (strict-match), else the task's flexible-extract."""
    answer = lm_eval_regex_filter(LM_EVAL_BBH_COT_ZEROSHOT, response)
    if answer == LM_EVAL_FALLBACK and target in LM_EVAL_BBH_FLEXIBLE:
        answer = lm_eval_regex_filter(LM_EVAL_BBH_FLEXIBLE[target], response, group_select=-1)
    return lm_eval_exact_match(answer, target)


# ---------------------------------------------------------------------------
# Agreement with lm-eval

GSM8K_CASES = [
    # (response, target)
    ("Natalia sold 48/2 = 24 clips in May.\nShe sold 48+24 = 72 clips in total.\n#### 72", "72"),
    ("Natalia sold 48/2 = 24 clips in May.\nShe sold 48+24 = 73 clips in total.\n#### 73", "72"),
    ("The answer is $1,234.", "1234"),
    ("The answer is $1,234.", "1243"),
    ("She is short 5 dollars, so her balance is -5.", "-5"),
    ("#### -3", "-3"),
    ("#### -3", "3"),
    ("Each costs 2.5 dollars, so the total is 7.5.", "7.5"),
    ("Each costs 2.5 dollars, so the total is 7.5.", "2.5"),
    ("#### 1,000", "1000"),
    ("#### 1,000\n#### 2,000", "1000"),  # strict-match takes the first
    ("3 + 4 = 7, then 7 * 2 = 14", "14"),  # flexible-extract takes the last
    ("3 + 4 = 7, then 7 * 2 = 14", "7"),
    ("The total is $18", "18"),
    ("#### $42", "42"),  # strict needs a digit after "#### ": flexible reads "$42"
    ("It takes 1.5 hours, i.e. 90 minutes", "90"),
    ("I cannot solve this problem.", "5"),
    ("The answer is 42. Hope that helps...", "42"),  # last run is "..."
    ("So he has 3+4 = 7 apples.\n#### 7", "He has 3+4 = 7 apples.\n#### 7"),  # full target
    ("So he has 3+4 = 8 apples.\n#### 8", "He has 3+4 = 7 apples.\n#### 7"),
    ("The answer is 1,234,567.", "1234567"),
]

BBH_CASES = [
    ("Let's think step by step.\nParis is in France.\nSo the answer is (B).", "(B)"),
    ("Let's think step by step.\nParis is in France.\nSo the answer is (B).", "(C)"),
    ("not ( True ) and ( True ) = False and True = False. So the answer is False.", "False"),
    ("not ( True ) and ( True ) = False and True = False. So the answer is False.", "True"),
    ("The answer is True.", "True"),
    ("The ball ends up with Bob. So the answer is No.", "No"),
    ("The ball ends up with Bob. So the answer is No.", "Yes"),
    ("Premise 2 does not follow. So the answer is invalid.", "invalid"),
    ("Counting them: 4 + 3 = 7. So the answer is 7.", "7"),
    ("Sorted: apple banana cherry. So the answer is apple banana cherry.", "apple banana cherry"),
    ("We close the stack. So the answer is ] }.", "] }"),
    ("Step 1.\nSo the answer is (A).\nQ: the next question", "(A)"),
    ("False", "False"),  # zero-shot, bare answer
    ("False", "True"),
    ("True", "True"),
    ("invalid", "invalid"),
    ("valid", "invalid"),
]


@pytest.mark.parametrize(("response", "target"), GSM8K_CASES)
def test_numeric_agrees_with_lm_eval(response, target):
    ours = get_scorer("numeric")(response, target)
    assert (ours.outcome is Outcome.CORRECT) == lm_eval_gsm8k_correct(response, target)


@pytest.mark.parametrize(("response", "target"), BBH_CASES)
def test_bbh_agrees_with_lm_eval(response, target):
    ours = get_scorer("bbh")(response, target)
    assert (ours.outcome is Outcome.CORRECT) == lm_eval_bbh_correct(response, target)


def test_agreement_tables_cover_both_verdicts():
    gsm8k = [lm_eval_gsm8k_correct(r, t) for r, t in GSM8K_CASES]
    bbh = [lm_eval_bbh_correct(r, t) for r, t in BBH_CASES]
    assert len(gsm8k) + len(bbh) >= 25
    assert True in gsm8k and False in gsm8k
    assert True in bbh and False in bbh


# ---------------------------------------------------------------------------
# Deliberate differences from lm-eval


def test_numeric_compares_numbers_where_lm_eval_compares_strings():
    """Our one deliberate numeric difference: "18.00" is 18, not a miss."""
    response, target = "The answer is 18.00", "18"
    assert not lm_eval_gsm8k_correct(response, target)
    assert get_scorer("numeric")(response, target) == Score(Outcome.CORRECT, "18.00")


@pytest.mark.parametrize(("response", "target", "lm_eval_correct"), [
    # lm-eval reads the first "the answer is"; we read the conclusion.
    ("If the answer is (A), Bob would be first. He is not. So the answer is (B).", "(B)", False),
    # lm-eval drops the final character even when it is not a full stop.
    ("So the answer is (B)", "(B)", False),
])
def test_bbh_reads_the_final_statement_of_the_answer(response, target, lm_eval_correct):
    assert lm_eval_bbh_correct(response, target) is lm_eval_correct
    assert get_scorer("bbh")(response, target) == Score(Outcome.CORRECT, "(B)")


# ---------------------------------------------------------------------------
# numeric / integer


@pytest.mark.parametrize(("response", "target", "expected"), [
    ("#### 72", "72", Score(Outcome.CORRECT, "72")),
    ("So the total is 18.00", "18", Score(Outcome.CORRECT, "18.00")),
    ("#### 18", "18.0", Score(Outcome.CORRECT, "18")),
    ("The answer is $1,234.", "1,234", Score(Outcome.CORRECT, "$1,234.")),
    ("First 5, then #### 6, finally 7", "6", Score(Outcome.CORRECT, "6,")),
    ("First 5, then 6, finally 7", "6", Score(Outcome.WRONG, "7")),
    ("no digits here", "6", Score(Outcome.FORMAT_FAILURE, None)),
    ("Hmm...", "6", Score(Outcome.FORMAT_FAILURE, "...")),
    ("The answer is 1.2.3", "1.2.3", Score(Outcome.CORRECT, "1.2.3")),  # not a number: string equality
])
def test_numeric(response, target, expected):
    assert get_scorer("numeric")(response, target) == expected


@pytest.mark.parametrize(("response", "target", "expected"), [
    ("There are 3 + 5 = 8 apples.", "8", Score(Outcome.CORRECT, "8")),
    ("There are 3 + 5 = 8 apples.", "5", Score(Outcome.WRONG, "8")),
    ("#### 4 and then 9", "4", Score(Outcome.WRONG, "9")),  # no strict rule here
    ("She has 12.0 pies", "12", Score(Outcome.CORRECT, "12.0")),
    ("twelve", "12", Score(Outcome.FORMAT_FAILURE, None)),
])
def test_integer(response, target, expected):
    assert get_scorer("integer")(response, target) == expected


@pytest.mark.parametrize(("text", "expected"), [
    ("$1,234.", "1234"), (" -5 ", "-5"), ("7.5", "7.5"), ("18.", "18"), ("", ""),
])
def test_normalize_number(text, expected):
    assert normalize_number(text) == expected


# ---------------------------------------------------------------------------
# bbh


@pytest.mark.parametrize(("response", "target", "expected"), [
    # chain of thought
    ("So THE ANSWER IS (C).", "(C)", Score(Outcome.CORRECT, "(C)")),
    ("So the answer is  apple   banana .", "apple banana", Score(Outcome.CORRECT, "apple   banana")),
    ("So the answer is (B) Paris.", "(B)", Score(Outcome.WRONG, "(B) Paris")),
    # direct answers, by kind of target
    ("It is False, not True.", "False", Score(Outcome.CORRECT, "False")),
    ("the expression is false", "False", Score(Outcome.FORMAT_FAILURE, None)),
    ("yes, he did.", "Yes", Score(Outcome.CORRECT, "yes")),
    ("No.", "Yes", Score(Outcome.WRONG, "No")),
    ("Maybe.", "Yes", Score(Outcome.FORMAT_FAILURE, None)),
    ("Invalid, because premise 2 is missing.", "invalid", Score(Outcome.CORRECT, "Invalid")),
    ("I pick (D) since it fits.", "(D)", Score(Outcome.CORRECT, "(D)")),
    ("A) 03/12/2001", "(A)", Score(Outcome.CORRECT, "(A)")),
    ("B", "(A)", Score(Outcome.WRONG, "(B)")),
    ("\nC.\n", "(C)", Score(Outcome.CORRECT, "(C)")),
    ("I am not sure.", "(A)", Score(Outcome.FORMAT_FAILURE, None)),
    ("There are 12 objects, not 13.", "12", Score(Outcome.CORRECT, "12")),
    ("-37", "-37", Score(Outcome.CORRECT, "-37")),
    ("many", "12", Score(Outcome.FORMAT_FAILURE, None)),
    ("\n  apple  banana cherry \nsome notes", "apple banana cherry",
     Score(Outcome.CORRECT, "apple  banana cherry")),
    ("] ) }", "] } )", Score(Outcome.WRONG, "] ) }")),
])
def test_bbh(response, target, expected):
    assert get_scorer("bbh")(response, target) == expected


# ---------------------------------------------------------------------------
# exact / contains / regex


@pytest.mark.parametrize(("name", "options", "response", "target", "expected"), [
    ("exact", None, "  Paris \n", "Paris", Score(Outcome.CORRECT, "Paris")),
    ("exact", None, "Paris, France", "Paris", Score(Outcome.WRONG, "Paris, France")),
    ("contains", None, "I think it is PARIS.", " paris ", Score(Outcome.CORRECT, "paris")),
    ("contains", None, "I think it is Lyon.", "Paris", Score(Outcome.WRONG, None)),
    ("regex", {"pattern": r"Answer:\s*(\w+)"}, "Answer: Paris", "Paris",
     Score(Outcome.CORRECT, "Paris")),
    ("regex", {"pattern": r"Answer:\s*(\w+)"}, "Answer: Lyon\nAnswer: Paris", "Paris",
     Score(Outcome.WRONG, "Lyon")),
    ("regex", {"pattern": r"[A-Z][a-z]+"}, "  the city of Paris", "Paris",
     Score(Outcome.CORRECT, "Paris")),
    ("regex", {"pattern": r"Answer:\s*(\w+)"}, "Paris", "Paris",
     Score(Outcome.FORMAT_FAILURE, None)),
])
def test_simple_scorers(name, options, response, target, expected):
    assert get_scorer(name, options)(response, target) == expected


# ---------------------------------------------------------------------------
# Empty, failed and huge responses


ALL_BUILTINS = [("numeric", None), ("integer", None), ("bbh", None), ("exact", None),
                ("contains", None), ("regex", {"pattern": ".*"})]


@pytest.mark.parametrize(("name", "options"), ALL_BUILTINS)
@pytest.mark.parametrize("response", ["", "   ", "\n\t\n"])
def test_empty_response_is_a_format_failure(name, options, response):
    assert get_scorer(name, options)(response, "") == Score(Outcome.FORMAT_FAILURE, None)


@pytest.mark.parametrize(("name", "options"), ALL_BUILTINS)
def test_failed_call_is_an_error(name, options):
    scorer = get_scorer(name, options)
    assert score_response(scorer, None, "42") == Score(Outcome.ERROR, None)
    assert score_response(scorer, "42", "42").outcome is Outcome.CORRECT


HUGE = 1_000_000


@pytest.mark.parametrize(("name", "options"), ALL_BUILTINS)
@pytest.mark.parametrize("response", [
    "a" * HUGE,
    "1,2" * (HUGE // 3),
    "9" * HUGE,
    "the answer is " * (HUGE // 14),
    ("(" + "word " * 9 + "\n") * (HUGE // 51),
], ids=["letters", "digits-commas", "digits", "answer-is", "lines"])
def test_megabyte_response_is_scored_quickly(name, options, response):
    start = time.perf_counter()
    score = get_scorer(name, options)(response, "42")
    assert score.outcome in (Outcome.WRONG, Outcome.FORMAT_FAILURE)
    assert time.perf_counter() - start < 5  # linear scans take milliseconds


# ---------------------------------------------------------------------------
# User scorers


@pytest.fixture
def user_module(tmp_path, monkeypatch):
    """A real importable module of user scorers."""
    (tmp_path / "my_scorers.py").write_text(textwrap.dedent("""
        from lpo_ci.scoring import Outcome, Score

        def as_bool(response, target):
            return response.strip().lower() == target.lower()

        def as_tuple(response, target):
            answer = response.split()[-1]
            return answer == target, answer

        def as_score(response, target):
            return Score(Outcome.FORMAT_FAILURE, "custom")

        def explodes(response, target):
            raise ValueError("cannot parse " + response)

        def returns_junk(response, target):
            return "yes"

        class Holder:
            @staticmethod
            def check(response, target):
                return True

        NOT_CALLABLE = 3
    """))
    monkeypatch.syspath_prepend(str(tmp_path))
    yield "my_scorers"
    sys.modules.pop("my_scorers", None)


@pytest.mark.parametrize(("function", "response", "expected"), [
    ("as_bool", "PARIS", Score(Outcome.CORRECT, None)),
    ("as_bool", "Lyon", Score(Outcome.WRONG, None)),
    ("as_tuple", "It is Paris", Score(Outcome.CORRECT, "Paris")),
    ("as_tuple", "It is Lyon", Score(Outcome.WRONG, "Lyon")),
    ("as_score", "anything", Score(Outcome.FORMAT_FAILURE, "custom")),
    ("Holder.check", "anything", Score(Outcome.CORRECT, None)),
    ("as_bool", "  ", Score(Outcome.FORMAT_FAILURE, None)),  # never reaches the user code
])
def test_user_scorer(user_module, function, response, expected):
    assert get_scorer(f"{user_module}:{function}")(response, "Paris") == expected


def test_user_scorer_exception_becomes_evaluation_error(user_module):
    scorer = get_scorer(f"{user_module}:explodes", path="t.yaml", line=4)
    with pytest.raises(EvaluationError) as info:
        scorer("some text", "x")
    message = str(info.value)
    assert "my_scorers:explodes" in message
    assert "ValueError: cannot parse some text" in message
    assert "t.yaml:4" in message


def test_user_scorer_bad_return_type(user_module):
    with pytest.raises(EvaluationError, match="returned str"):
        get_scorer(f"{user_module}:returns_junk")("some text", "x")


@pytest.mark.parametrize(("name", "fragment"), [
    ("no_such_module_xyz:fn", "cannot import module 'no_such_module_xyz'"),
    ("my_scorers:missing", "has no attribute 'missing'"),
    ("my_scorers:Holder.missing", "has no attribute 'Holder.missing'"),
    ("my_scorers:NOT_CALLABLE", "is not callable"),
    ("my_scorers:", "invalid scorer name"),
    (":fn", "invalid scorer name"),
])
def test_user_scorer_spec_errors(user_module, name, fragment):
    with pytest.raises(SpecError) as info:
        get_scorer(name, path="templates/qa.yaml", line=7)
    error = info.value
    assert fragment in str(error)
    assert (error.path, error.line) == ("templates/qa.yaml", 7)
    assert error.hint


def test_user_module_that_fails_to_import(tmp_path, monkeypatch):
    (tmp_path / "broken_scorer.py").write_text("raise RuntimeError('boom')\n")
    monkeypatch.syspath_prepend(str(tmp_path))
    try:
        with pytest.raises(SpecError, match="RuntimeError: boom"):
            get_scorer("broken_scorer:fn", path="t.yaml", line=1)
    finally:
        sys.modules.pop("broken_scorer", None)


# ---------------------------------------------------------------------------
# Spec errors for built-ins


def test_unknown_scorer_lists_valid_names():
    with pytest.raises(SpecError) as info:
        get_scorer("numerik", path="templates/math.yaml", line=3)
    error = info.value
    assert "numerik" in str(error) and str(error).startswith("templates/math.yaml:3: ")
    for name in ("numeric", "integer", "bbh", "exact", "contains", "regex", "module:function"):
        assert name in error.hint


@pytest.mark.parametrize(("name", "options", "fragment"), [
    (None, None, "must be a string"),
    (["numeric"], None, "must be a string"),
    ("regex", "Answer: (.*)", "must be a mapping"),
])
def test_malformed_scorer_spec(name, options, fragment):
    with pytest.raises(SpecError, match=fragment) as info:
        get_scorer(name, options, path="t.yaml", line=5)
    assert (info.value.path, info.value.line) == ("t.yaml", 5)


@pytest.mark.parametrize("options", [None, {}, {"pattern": ""}, {"patern": "x"}])
def test_regex_scorer_requires_a_pattern(options):
    with pytest.raises(SpecError, match="pattern") as info:
        get_scorer("regex", options, path="t.yaml", line=9)
    assert (info.value.path, info.value.line) == ("t.yaml", 9)
    assert info.value.hint


def test_regex_scorer_rejects_a_bad_pattern():
    with pytest.raises(SpecError, match="invalid regex") as info:
        get_scorer("regex", {"pattern": "Answer: (\\d+"}, path="t.yaml", line=2)
    assert (info.value.path, info.value.line) == ("t.yaml", 2)
    assert isinstance(info.value, LpoError)


# ---------------------------------------------------------------------------
# Plumbing


def test_outcome_values_are_plain_strings():
    assert [o.value for o in Outcome] == ["correct", "wrong", "format_failure", "error"]
    assert Outcome("format_failure") is Outcome.FORMAT_FAILURE
    assert Outcome.CORRECT == "correct"


@pytest.mark.parametrize(("name", "options"), ALL_BUILTINS)
def test_scorers_survive_pickling_for_worker_processes(name, options):
    scorer = pickle.loads(pickle.dumps(get_scorer(name, options)))
    assert scorer("42", "42").outcome is Outcome.CORRECT


def test_importing_scoring_pulls_in_no_heavy_dependencies():
    code = ("import sys, lpo_ci.scoring; "
            "print(sorted(m for m in ('litellm', 'datasets', 'jinja2', 'yaml') if m in sys.modules))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         check=True, cwd=Path(__file__).parents[1])
    assert out.stdout.strip() == "[]"

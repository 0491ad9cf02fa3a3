"""Tests for answer extraction and comparison: every rule of the extractor, on
the response shapes that fool naive scorers (chain-of-thought, chatty answers,
base-model run-ons, option text, hedges, number words, decimal commas)."""

from __future__ import annotations

import pickle
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
from lpo_ci.scoring import _UserScorer
from lpo_ci.scoring.answers import Kind, answer_kind
from lpo_ci.scoring.numbers import find_numbers, parse_number
from lpo_ci.scoring.options import parse_options

C, W, F = Outcome.CORRECT, Outcome.WRONG, Outcome.FORMAT_FAILURE

DATE_INPUT = {"input": "Today is Christmas Eve of 2006. What is the date tomorrow in MM/DD/YYYY?\n"
                       "Options:\n(A) 12/20/2006\n(B) 01/01/2007\n(C) 12/23/2006\n(D) 12/25/2006"}
SHAPES_INPUT = {"input": "This SVG path element draws a\nOptions:\n(A) circle\n(B) heptagon\n"
                         "(C) hexagon\n(D) kite\n(E) line"}


def outcome(name, response, target, example=None):
    return get_scorer(name)(response, target, example)


# ---------------------------------------------------------------------------
# Kinds of answers


@pytest.mark.parametrize(("target", "kind"), [
    ("True", Kind.BOOLEAN), ("false", Kind.BOOLEAN), ("Yes", Kind.YES_NO), ("no", Kind.YES_NO),
    ("invalid", Kind.VALIDITY), ("(C)", Kind.OPTION), ("-37", Kind.NUMBER), ("1,234", Kind.NUMBER),
    ("] ) }", Kind.BRACKETS), ("apple banana cherry", Kind.TEXT), ("1.2.3", Kind.TEXT),
])
def test_answer_kind_follows_the_target(target, kind):
    assert answer_kind(target) is kind


def test_a_bare_letter_target_is_an_option_when_the_example_has_options():
    assert answer_kind("B", {"A": "x", "B": "y"}) is Kind.OPTION
    assert answer_kind("B") is Kind.TEXT


# ---------------------------------------------------------------------------
# Rule 1: a leading "A:" is the few-shot answer prefix


@pytest.mark.parametrize(("response", "target", "expected"), [
    ("A: (C)", "(C)", Score(C, "(C)")),
    ("A: (C)", "(A)", Score(W, "(C)")),
    (" A: False", "False", Score(C, "False")),
    ("A: So the answer is\n(B).", "(B)", Score(C, "(B)")),
    ("(A)", "(A)", Score(C, "(A)")),
])
def test_leading_answer_prefix_is_not_option_a(response, target, expected):
    assert outcome("bbh", response, target, DATE_INPUT) == expected


# ---------------------------------------------------------------------------
# Rule 2: explicit cues, the last one, answer allowed on the next line


@pytest.mark.parametrize(("response", "target", "expected"), [
    ("Let's think step by step. (A) is too early. So the answer is (D).", "(D)", Score(C, "(D)")),
    ("So the answer is\n\n(D)", "(D)", Score(C, "(D)")),
    ("So the answer is:\n**(B)**", "(D)", Score(W, "(B)")),
    ("So the answer is (A)!", "(A)", Score(C, "(A)")),
    ("The answer is (B).\nWait, I misread the date. The answer is (D).", "(D)", Score(C, "(D)")),
    ("If the answer is (A), the date would be in 2006. So the answer is (D).", "(D)", Score(C, "(D)")),
    ("The answer is (D). Note that the answer is not (A).", "(D)", Score(C, "(D)")),
    ("**Final answer:** (D)", "(D)", Score(C, "(D)")),
    ("Final Answer: D", "(D)", Score(C, "(D)")),
    ("After reasoning, I pick **(D)** as it is the day after.", "(D)", Score(C, "(D)")),
    ("**Step 1:** tomorrow follows (C) 12/23/2006? No.\n**Answer: (D)**", "(D)", Score(C, "(D)")),
    ("$\\boxed{D}$", "(D)", Score(C, "(D)")),
    ("The answer is 12/25/2006.", "(D)", Score(C, "(D)")),
])
def test_cues_for_options(response, target, expected):
    assert outcome("bbh", response, target, DATE_INPUT) == expected


@pytest.mark.parametrize(("response", "target", "expected"), [
    ("True and False = False. not False = True. So the answer is True.", "True", Score(C, "True")),
    ("So the answer is False", "False", Score(C, "False")),  # no final period
    ("The answer is:\nFalse", "False", Score(C, "False")),
    ("The answer is True or False, hard to say.", "True", Score(F, None)),
    ("\\boxed{\\text{False}}", "False", Score(C, "False")),
])
def test_cues_for_booleans(response, target, expected):
    assert outcome("bbh", response, target) == expected


# ---------------------------------------------------------------------------
# Rule 3: no cue, the last candidate


@pytest.mark.parametrize(("response", "target", "expected"), [
    # the restated question holds the first True/False: the conclusion is last
    ("not ( True ) and ( True ) is evaluated as False and True, which is False.", "False", Score(C, "False")),
    ("The expression not ( True ) and ( True ) evaluates to False.", "True", Score(W, "False")),
    ("It is False, not True.", "False", Score(W, "True")),  # last candidate, stated plainly
    ("the expression is false", "False", Score(C, "False")),
    # yes/no only where they stand alone
    ("There is no evidence he intended it. So, yes.", "Yes", Score(C, "yes")),
    ("No, this is not plausible.", "no", Score(C, "no")),
    ("Is Bob telling the truth? Let me check every claim... no reason to doubt it. Yes.", "Yes", Score(C, "yes")),
    ("I have no idea.", "Yes", Score(F, None)),
    ("Maybe.", "Yes", Score(F, None)),
    # validity, with "not valid" read as invalid
    ("Premise 2 is missing, so the argument is not valid.", "invalid", Score(C, "invalid")),
    ("We must decide if it is valid or invalid. Checking the premises, it is deductively valid.",
     "valid", Score(C, "valid")),
    # numbers
    ("There are 12 objects, not 13.", "12", Score(W, "13")),
    ("I count 3 apples, 4 pears and 5 plums, so 12 objects in total.", "12", Score(C, "12")),
])
def test_last_candidate_without_a_cue(response, target, expected):
    assert outcome("bbh", response, target) == expected


@pytest.mark.parametrize(("response", "target", "expected"), [
    ("Today is 12/24/2006, so tomorrow is 12/25/2006.", "(D)", Score(C, "(D)")),
    ("12/25/2006", "(D)", Score(C, "(D)")),
    ("(D) 12/25/2006", "(D)", Score(C, "(D)")),
    ("B", "(D)", Score(W, "(B)")),
    ("D.", "(D)", Score(C, "(D)")),
    ("Options:\n(A) 12/20/2006\n(B) 01/01/2007\nThe day after Christmas Eve is (D).", "(D)", Score(C, "(D)")),
    ("The day after Christmas Eve is (D).\nOptions:\n(A) 12/20/2006\n(B) 01/01/2007", "(D)", Score(C, "(D)")),
    ("Is it (A) or (D)? It is the 25th.", "(D)", Score(F, None)),
    ("I am not sure.", "(A)", Score(F, None)),
])
def test_options_and_option_text(response, target, expected):
    assert outcome("bbh", response, target, DATE_INPUT) == expected


def test_option_text_prefers_the_longest_option():
    example = {"input": "Which movie?\nOptions:\n(A) Guilty\n(B) Guilty of Romance"}
    assert outcome("bbh", "I recommend Guilty of Romance.", "(B)", example) == Score(C, "(B)")
    assert outcome("bbh", "I recommend Guilty.", "(B)", example) == Score(W, "(A)")
    assert outcome("bbh", "It draws a hexagon.", "(C)", SHAPES_INPUT) == Score(C, "(C)")


def test_options_from_a_choices_list():
    example = {"question": "Capital of France?", "choices": ["Lyon", "Paris", "Nice"]}
    assert outcome("answer", "It is Paris.", "B", example) == Score(C, "(B)")
    assert parse_options(example) == {"A": "Lyon", "B": "Paris", "C": "Nice"}
    assert parse_options(DATE_INPUT)["D"] == "12/25/2006"
    assert parse_options({"input": "no options here"}) == {}


# ---------------------------------------------------------------------------
# Rule 4: hedges are format failures


@pytest.mark.parametrize(("response", "target"), [
    ("The answer is 8-9.", "8"), ("It is about 8 or 9 apples.", "9"), ("Somewhere between 8 and 9.", "8"),
    ("The answer is (A) or (D).", "(D)"), ("Final answer: 8–9", "9"),
])
def test_hedges_are_format_failures(response, target):
    score = outcome("bbh", response, target, DATE_INPUT)
    assert score.outcome is F and score.extracted is None
    assert "hedged" in score.note


def test_arithmetic_is_not_a_hedge():
    assert outcome("numeric", "16 - 3 = 13. The answer is 13.", "13") == Score(C, "13")
    assert outcome("numeric", "The answer is 5 + 3 = 8.", "8") == Score(C, "8")


# ---------------------------------------------------------------------------
# Numbers


@pytest.mark.parametrize(("response", "target", "expected"), [
    ("#### 72", "72", Score(C, "72")),
    ("She sold 48/2 = 24 clips in May and 48+24 = 72 in all.\n#### 72", "72", Score(C, "72")),
    ("So the total is 18.00", "18", Score(C, "18")),
    ("The answer is $1,234.", "1234", Score(C, "1234")),
    ("The answer is 1,234,567.", "1234567", Score(C, "1234567")),
    ("She has eight apples left.", "8", Score(C, "8")),
    ("The answer is twenty-one.", "21", Score(C, "21")),
    ("The answer is one.", "1", Score(C, "1")),
    ("Each one costs 4 dollars.", "4", Score(C, "4")),  # "one" as a pronoun is no answer
    ("The answer is 0,3.", "3", Score(W, "0.3")),  # a decimal comma, not 3
    ("It costs 2,50 €.", "2.5", Score(C, "2.5")),
    ("Total: 1.234,50", "1234.5", Score(C, "1234.5")),
    ("The answer is 50%.", "50", Score(C, "50")),
    ("The answer is -5.", "-5", Score(C, "-5")),
    ("Steps:\n1. add\n2. subtract\nShe has 7 left.", "7", Score(C, "7")),
    ("The answer is \\boxed{42}.", "42", Score(C, "42")),
    ("So the answer is 42. Hope that helps...", "42", Score(C, "42")),
    ("First 5, then 6, finally 7", "6", Score(W, "7")),
    ("no digits here", "6", Score(F, None)),
    ("He has 3+4 = 7 apples.\n#### 7", "He has 3+4 = 7 apples.\n#### 7", Score(C, "7")),  # full target
])
def test_numeric(response, target, expected):
    assert outcome("numeric", response, target) == expected


@pytest.mark.parametrize(("text", "values"), [
    ("1,234 and 0,3 and 1.234,5", ["1234", "3/10", "2469/2"]),
    ("3,4,5", ["3", "4", "5"]),
    ("1.2.3 and 12/25/2006 and the 3rd", []),
    ("$-5 and −7", ["-5", "-7"]),
    ("one hundred and five, three four", ["105", "3", "4"]),
])
def test_find_numbers(text, values):
    assert [str(m.value) for m in find_numbers(text)] == values


@pytest.mark.parametrize(("text", "expected"), [
    ("$1,234.", "1234"), (" -5 ", "-5"), ("7.5", "7.5"), ("18.", "18"), ("eight", "8"), ("x", "x"),
])
def test_normalize_number(text, expected):
    assert normalize_number(text) == expected
    assert parse_number("8 apples") is None


# ---------------------------------------------------------------------------
# Free text and bracket sequences


@pytest.mark.parametrize(("response", "target", "expected"), [
    ("So the answer is apple banana cherry.", "apple banana cherry", Score(C, "apple banana cherry")),
    ("**Apple, banana, cherry**", "apple banana cherry", Score(C, "apple, banana, cherry")),
    ("Sorted: apple banana cherry", "apple banana cherry", Score(C, "apple banana cherry")),
    ("The sorted list is\n\"apple banana cherry\"", "apple banana cherry", Score(C, "apple banana cherry")),
    ("So the answer is apple cherry banana.", "apple banana cherry", Score(W, "apple cherry banana")),
    ("So the answer is ] ) }.", "] ) }", Score(C, "] ) }")),
    ("We close ( then [ : ]) }", "] ) }", Score(C, "]) }")),
    ("] } )", "] ) }", Score(W, "] } )")),
])
def test_free_text_and_brackets(response, target, expected):
    assert outcome("bbh", response, target) == expected

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


def test_user_scorer_is_imported_from_the_project_root_without_changing_sys_path(tmp_path):
    (tmp_path / "project_helpers.py").write_text("def last_word(text):\n    return text.split()[-1]\n")
    (tmp_path / "project_scorers.py").write_text(
        "from project_helpers import last_word\n\n"
        "def check(response, target):\n    return last_word(response) == target, last_word(response)\n")
    before = list(sys.path)
    try:
        scorer = get_scorer("project_scorers:check", root=tmp_path)
        assert sys.path == before
        assert scorer("so it is Paris", "Paris") == Score(Outcome.CORRECT, "Paris")
        with pytest.raises(SpecError, match="cannot import module 'no_such_project_module'"):
            get_scorer("no_such_project_module:fn", root=tmp_path)
        assert sys.path == before  # restored after a failed import too
    finally:
        for name in ("project_scorers", "project_helpers"):
            sys.modules.pop(name, None)


@pytest.mark.parametrize("returned", [
    "(True, 'a', 'b')", "('yes', 'a')", "(1, 'a')", "None", "1", "[True, 'a']", "()", "(True,)"])
def test_user_scorer_malformed_returns_are_errors(tmp_path, returned):
    (tmp_path / "malformed_scorer.py").write_text(f"def fn(response, target):\n    return {returned}\n")
    try:
        scorer = get_scorer("malformed_scorer:fn", root=tmp_path, path="p.j2", line=3)
        with pytest.raises(EvaluationError) as info:
            scorer("text", "t")
        assert "expected a bool, a Score or a (bool, extracted) tuple" in str(info.value)
        assert (info.value.path, info.value.line) == ("p.j2", 3) and info.value.hint
    finally:
        sys.modules.pop("malformed_scorer", None)


def test_user_scorer_tuple_with_no_extracted_answer():
    scorer = _UserScorer("m:f", lambda response, target: (False, None))
    assert scorer("x", "t") == Score(Outcome.WRONG, None)
    assert _UserScorer("m:f", lambda response, target: (True, 12))("x", "t") == Score(Outcome.CORRECT, "12")


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


# ---------------------------------------------------------------------------
# The scoring glue, rule by rule (what the verdicts are made of)

def test_score_equality_is_outcome_and_answer_only_and_scores_are_values():
    import dataclasses

    assert Score(Outcome.CORRECT, "a", note="x", judge={"v": 1}, call=1) == Score(Outcome.CORRECT, "a", note="y")
    assert Score(Outcome.CORRECT, "a") != Score(Outcome.CORRECT, "b")
    assert "call" not in repr(Score(Outcome.CORRECT, "a", call="secret-call"))
    with pytest.raises(dataclasses.FrozenInstanceError):
        Score(Outcome.WRONG, None).outcome = Outcome.CORRECT  # type: ignore[misc]
    assert len({Score(Outcome.CORRECT, "a"), Score(Outcome.CORRECT, "a", note="n")}) == 1


def test_builtin_scorers_are_hashable_values():
    from lpo_ci.scoring import BUILTIN_SCORERS

    for scorer in BUILTIN_SCORERS.values():
        assert hash(scorer) == hash(scorer)
        assert pickle.loads(pickle.dumps(scorer)) == scorer
    assert hash(get_scorer("regex", {"pattern": "a"})) == hash(get_scorer("regex", {"pattern": "a"}))


def test_example_variables_reads_examples_mappings_and_nothing():
    from types import SimpleNamespace

    from lpo_ci.scoring import example_variables

    assert example_variables(None) == {}
    assert example_variables({"input": "x"}) == {"input": "x"}
    assert example_variables(SimpleNamespace(variables={"q": 1})) == {"q": 1}
    assert example_variables(SimpleNamespace(variables=["not", "a", "mapping"])) == {}
    assert example_variables(42) == {}


def test_a_gsm8k_target_is_cut_at_its_marker_for_numbers_only():
    numeric, text = get_scorer("numeric"), get_scorer("answer")
    assert numeric("The answer is 18.", "She sold 16 - 3 - 4 = 9 eggs.\n#### 18").outcome is Outcome.CORRECT
    # the marker is GSM8K's: other kinds compare the whole target, marker and all
    assert text("The answer is #### 18", "#### 18") == Score(Outcome.WRONG, "18")


def test_a_number_scorer_compares_a_target_that_is_no_number_as_text():
    scorer = get_scorer("numeric")
    assert scorer("1.2.3", "1.2.3") == Score(Outcome.CORRECT, "1.2.3")
    assert scorer("1.2.4", "1.2.3").outcome is Outcome.WRONG


def test_exact_contains_and_regex_rules():
    exact, contains = get_scorer("exact"), get_scorer("contains")
    assert exact("  Paris \n", " Paris") == Score(Outcome.CORRECT, "Paris")
    assert exact("Paris.", "Paris") == Score(Outcome.WRONG, "Paris.")
    assert contains("It is PARIS, I think", "paris ") == Score(Outcome.CORRECT, "paris")
    assert contains("It is Lyon", "Paris") == Score(Outcome.WRONG, None)
    grouped = get_scorer("regex", {"pattern": r"Answer: (\w+)"})
    assert grouped("x Answer: Paris y", " Paris") == Score(Outcome.CORRECT, "Paris")
    whole = get_scorer("regex", {"pattern": r"\d+"})
    assert whole("it is 42 and 7", " 42 ") == Score(Outcome.CORRECT, "42")
    optional = get_scorer("regex", {"pattern": r"Answer:(\d+)?"})
    assert optional("Answer: none", "") == Score(Outcome.CORRECT, "")  # an empty group is ""
    missing = grouped("no cue here", "Paris")
    assert missing.outcome is Outcome.FORMAT_FAILURE and missing.note == "no match of 'Answer: (\\\\w+)'"
    versions = {get_scorer("regex", {"pattern": p}).version for p in ("a", "b")}
    assert len(versions) == 2 and all(v.startswith("regex-") and len(v) == 18 for v in versions)
    assert exact.version == "1" and exact.name == "exact"


def test_the_blank_response_rule_wraps_every_scorer():
    from lpo_ci.scoring import _NonEmpty

    calls = []
    inner = _UserScorer("m:f", lambda response, target: calls.append((response, target)) or True)
    wrapped = _NonEmpty(inner)
    assert wrapped.name == "m:f" and wrapped.version == "user"
    assert wrapped("", "t") == wrapped(" \n", "t") == Score(Outcome.FORMAT_FAILURE, None)
    assert wrapped("", "t").note == "empty response" and calls == []
    assert wrapped("yes", 5) == Score(Outcome.CORRECT, None) and calls == [("yes", "5")]
    bare = _NonEmpty(lambda response, target, example=None: Score(Outcome.WRONG, response))
    assert bare.name == "scorer" and bare.version == "1"


def test_async_scoring_uses_the_scorers_own_async_path():
    import asyncio

    from lpo_ci.scoring import _NonEmpty, score_response_async

    class Judged:
        name, version = "j", "1"

        def __call__(self, response, target, example=None):
            return Score(Outcome.WRONG, "sync")

        async def ascore(self, response, target, example=None):
            return Score(Outcome.CORRECT, f"async {target} {example}")

    def run(scorer, response, target="t", example=None):
        return asyncio.run(score_response_async(scorer, response, target, example))

    assert run(Judged(), None) == Score(Outcome.ERROR, None)
    assert run(Judged(), "r", "t", "e") == Score(Outcome.CORRECT, "async t e")
    assert run(_NonEmpty(Judged()), "r", 7) == Score(Outcome.CORRECT, "async 7 None")
    assert run(_NonEmpty(Judged()), "  ") == Score(Outcome.FORMAT_FAILURE, None)
    plain = get_scorer("exact")
    assert run(plain, "t") == Score(Outcome.CORRECT, "t") and run(plain, None).outcome is Outcome.ERROR
    assert run(lambda r, t, e=None: Score(Outcome.WRONG, r), "x") == Score(Outcome.WRONG, "x")
    assert score_response(plain, None, "t") == Score(Outcome.ERROR, None)
    assert score_response(plain, "t", "t", None) == Score(Outcome.CORRECT, "t")


def test_user_scorers_see_the_example_when_they_ask_for_it():
    from lpo_ci.scoring import _takes_example

    def two(response, target):
        return True

    def three(response, target, example):
        return example == {"q": 1}

    def keyword(response, target, *, example=None):
        return example is not None

    def varargs(*args):
        return len(args) == 3

    assert [_takes_example(f) for f in (two, three, keyword, varargs, len)] == \
        [None, "positional", "keyword", "positional", None]
    for fn in (two, three, keyword):
        scorer = _UserScorer("m:f", fn, with_example=_takes_example(fn))
        assert scorer("r", "t", {"q": 1}) == Score(Outcome.CORRECT, None)
    assert _UserScorer("m:f", keyword, with_example="keyword")("r", "t", None) == Score(Outcome.WRONG, None)


def test_a_user_scorers_version_follows_its_source():
    from lpo_ci.scoring import _source_digest

    def first(response, target):
        return True

    def second(response, target):
        return False

    assert _source_digest(first) != _source_digest(second) and len(_source_digest(first)) == 12
    assert _source_digest(len) == _source_digest(len)  # no source: its name stands in
    assert _source_digest(len) != _source_digest(print)


def spec_with(**values):
    from lpo_ci.spec import TestSpec

    origins = values.pop("origins", {})
    return TestSpec(**values, origins=origins)


def test_build_scorer_passes_the_spec_options():
    from lpo_ci.scoring import build_scorer

    regex = build_scorer(spec_with(pattern=r"A: (\w+)"), "regex")
    assert regex("A: yes", "yes") == Score(Outcome.CORRECT, "yes")
    lm_eval = build_scorer(spec_with(benchmark="bbh/boolean_expressions"), "lm-eval:bbh-zeroshot-flexible")
    assert lm_eval("so it is False.", "False").outcome is Outcome.CORRECT
    with pytest.raises(SpecError, match="depends on the BIG-bench Hard task") as info:  # no bbh benchmark
        build_scorer(spec_with(dataset="d.jsonl", origins={"scorer": ("p.j2", 3)}),
                     "lm-eval:bbh-zeroshot-flexible")
    assert (info.value.path, info.value.line) == ("p.j2", 3)


@pytest.mark.parametrize("key, origin, refused", [
    ("rubric", ("prompts/p.j2", 2), True),
    ("judge_model", ("prompts/p.j2", 2), True),
    ("judge_api_base", ("prompts/p.j2", 2), True),
    ("judge_model", ("pyproject.toml", 9), False),  # a project default for the templates that judge
    ("judge_model", ("command line", None), False),
])
def test_judge_keys_without_the_judge_scorer(key, origin, refused):
    from lpo_ci.scoring import build_scorer

    spec = spec_with(**{key: "x"}, origins={key: origin})
    if refused:
        with pytest.raises(SpecError, match=f"'{key}' is set but the scorer is 'exact', not 'judge'") as info:
            build_scorer(spec, "exact")
        assert (info.value.path, info.value.line) == origin and info.value.hint
    else:
        assert build_scorer(spec, "exact")("x", "x").outcome is Outcome.CORRECT


def test_builtin_scorers_take_a_target_that_is_not_a_string():
    # datasets give integer answers; a scorer called directly (not through get_scorer) reads them too
    from lpo_ci.scoring import BUILTIN_SCORERS

    assert BUILTIN_SCORERS["numeric"]("It is 5", 5) == Score(Outcome.CORRECT, "5")
    assert BUILTIN_SCORERS["answer"]("The answer is 42", 42) == Score(Outcome.CORRECT, "42")
    assert BUILTIN_SCORERS["exact"]("42", 42) == Score(Outcome.CORRECT, "42")
    assert BUILTIN_SCORERS["contains"]("it is 42", 42) == Score(Outcome.CORRECT, "42")


def test_a_regex_answer_is_stripped_before_it_is_compared():
    scorer = get_scorer("regex", {"pattern": r"Answer:(.*)"})
    assert scorer("Answer:  Paris \nthanks", "Paris") == Score(Outcome.CORRECT, "Paris")


def test_the_project_root_comes_first_during_the_import_only(tmp_path, monkeypatch):
    # the project's module wins over one of the same name elsewhere on the path; no root, no change
    recorder = "import sys\nPATH = list(sys.path)\n\ndef fn(response, target):\n    return True\n"
    (tmp_path / "root_first_scorer.py").write_text(recorder)
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    (elsewhere / "no_root_scorer.py").write_text(recorder)
    monkeypatch.syspath_prepend(str(elsewhere))
    before = list(sys.path)
    try:
        get_scorer("root_first_scorer:fn", root=tmp_path)
        assert sys.modules["root_first_scorer"].PATH == [str(tmp_path), *before] and sys.path == before
        get_scorer("no_root_scorer:fn", root=None)
        assert sys.modules["no_root_scorer"].PATH == before and sys.path == before
    finally:
        for name in ("root_first_scorer", "no_root_scorer"):
            sys.modules.pop(name, None)


def test_a_root_already_on_the_path_stays_where_it_is(tmp_path, monkeypatch):
    (tmp_path / "on_path_scorer.py").write_text("import sys\nPATH = list(sys.path)\n\n"
                                                "def fn(response, target):\n    return True\n")
    monkeypatch.syspath_prepend(str(tmp_path / "first"))
    monkeypatch.syspath_prepend(str(tmp_path))
    monkeypatch.syspath_prepend(str(tmp_path / "zeroth"))
    before = list(sys.path)
    try:
        get_scorer("on_path_scorer:fn", root=tmp_path)
        assert sys.modules["on_path_scorer"].PATH == before and sys.path == before
    finally:
        sys.modules.pop("on_path_scorer", None)


def test_a_scorer_whose_module_takes_its_root_off_the_path_is_no_error(tmp_path):
    (tmp_path / "unpathing_scorer.py").write_text(
        f"import sys\nsys.path.remove({str(tmp_path)!r})\n\ndef fn(response, target):\n    return True\n")
    before = list(sys.path)
    try:
        assert get_scorer("unpathing_scorer:fn", root=tmp_path)("x", "t").outcome is Outcome.CORRECT
        assert sys.path == before
    finally:
        sys.modules.pop("unpathing_scorer", None)


def test_user_scorers_are_values():
    import dataclasses

    def fn(response, target):
        return True

    scorer = _UserScorer("m:f", fn)
    assert hash(scorer) == hash(_UserScorer("m:f", fn)) and scorer == _UserScorer("m:f", fn)
    with pytest.raises(dataclasses.FrozenInstanceError):
        scorer.name = "other"  # type: ignore[misc]


def test_the_judge_is_not_built_by_name_alone():
    with pytest.raises(SpecError, match="the 'judge' scorer needs a judge model client") as info:
        get_scorer("judge", path="p.j2", line=2)
    assert (info.value.path, info.value.line) == ("p.j2", 2) and "build_judge" in info.value.hint


def test_build_scorer_builds_the_judge_behind_the_blank_response_rule(monkeypatch):
    from lpo_ci import llm
    from lpo_ci.scoring import _NonEmpty, build_scorer
    from lpo_ci.scoring.judge import JudgeScorer

    monkeypatch.setattr(llm, "start_litellm_import", lambda: None)  # no model is called here
    scorer = build_scorer(spec_with(judge_model="openai/gpt-4o-mini"), "judge")
    assert isinstance(scorer, _NonEmpty) and isinstance(scorer.score, JudgeScorer)
    assert scorer.score.client.params.model == "openai/gpt-4o-mini"
    assert scorer(" ", "t") == Score(Outcome.FORMAT_FAILURE, None)

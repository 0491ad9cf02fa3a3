"""The ``lm-eval:*`` scorers reproduce lm-evaluation-harness exactly: lm-eval's own
filter, metric and YAML code (a test-only dependency, imported only here through
``tests.support.lm_eval_reference``) scores the same responses, and every outcome
and every filtered answer must be identical."""

from __future__ import annotations

import itertools

import pytest

from lpo_ci.benchmarks import BBH_TASKS
from lpo_ci.errors import SpecError
from lpo_ci.scoring import Outcome, get_scorer
from lpo_ci.scoring.lm_eval_modes import FALLBACK, MODES, word_to_number
from tests.support.lm_eval_reference import INSTALL_HINT, MODE_YAMLS

lm_eval = pytest.importorskip("lm_eval", reason=f"lm-eval is a test-only dependency: {INSTALL_HINT}")
from tests.support.lm_eval_reference import LmEvalReference  # noqa: E402

DATE = ("Today is Christmas Eve of 2006. What is the date tomorrow in MM/DD/YYYY?\nOptions:\n"
        "(A) 12/20/2006\n(B) 01/01/2007\n(C) 12/23/2006\n(D) 12/25/2006")
MOVIES = "Find a movie similar to Heat:\nOptions:\n(A) Guilty\n(B) Guilty of Romance\n(C) Up!"
WORDS = "Sort the following words alphabetically: List: cherry apple banana"

ANSWERS = ["(A)", "(D)", "(B) Guilty of Romance", "12/25/2006", "guilty of romance", "Up!", "D", ": C",
           "True", "false", "Yes", "no", "valid", "invalid", "plausible", "not plausible",
           "Bob tells the truth", "Bob does not tell the truth", "8", "-3", "1,234", "$18.00", "18.",
           "eight", "twenty-one", "two hundred and five", "thirteen, four",
           "apple banana cherry", "banana apple cherry", "] ) }", "\"] )\"", "nothing"]
WRAPPERS = ["{}", " {}\n\nQ: next question\nA: (C)", "So the answer is {}.", "the answer is {}",
            "The answer is {}!", "The answer: {}.", "The final answer: {}\n", "Let's think.\n#### {}",
            "A: {}", "Answer: {}", "I'd say {} or maybe (A). So the answer is {}.",
            "**{}**\n\nQuestion: what next?", "Queen {} is it.", "{}<|im_end|>The answer is (B).",
            "step 1, step 2, {}\n\n", "\\boxed{{{}}}", "{}\x00"]
RESPONSES = sorted({w.format(a, a) for w, a in itertools.product(WRAPPERS, ANSWERS)}
                   | {"", " ", "...", "1.", "The answer is .", "(", "Q"})
TARGETS = ["(A)", "(D)", "(B)", "True", "False", "Yes", "no", "valid", "invalid", "8", "-3", "1234",
           "18", "205", "apple banana cherry", "] ) }"]
SOURCES = [DATE, MOVIES, WORDS]

TASK_MODES = [m for m, (path, _) in MODE_YAMLS.items() if "<task>" in path and MODES[m].needs_task]
FIXED_MODES = [m for m in MODE_YAMLS if m not in TASK_MODES]


def _compare(mode: str, task: str, sources: list[str]) -> int:
    reference = LmEvalReference(mode, task)
    ours = get_scorer(f"lm-eval:{mode}", {"task": task})
    cases = [(r, s) for r in RESPONSES for s in sources]
    filtered = reference.filtered([r for r, _ in cases], [s for _, s in cases])
    checked = 0
    for (response, source), theirs in zip(cases, filtered):
        for target in TARGETS:
            score = ours(response, target, {"input": source})
            their_correct = reference.correct(theirs, target)
            if not response.strip():  # lpo-ci answers a blank response before any rule runs
                assert score.outcome is Outcome.FORMAT_FAILURE and not their_correct
                continue
            assert (score.outcome is Outcome.CORRECT) == their_correct, (mode, task, response, target, theirs)
            assert score.extracted == (None if theirs == FALLBACK else theirs), (mode, task, response, theirs)
            checked += 1
    return checked


@pytest.mark.parametrize("mode", FIXED_MODES)
def test_fixed_filter_modes_match_lm_eval(mode):
    assert _compare(mode, "boolean_expressions", SOURCES) > 2000


@pytest.mark.parametrize("mode", TASK_MODES)
@pytest.mark.parametrize("task", BBH_TASKS)
def test_task_filter_modes_match_lm_eval(mode, task):
    sources = [WORDS] if task == "word_sorting" else SOURCES
    assert _compare(mode, task, sources) > 500


def test_modes_cover_lm_eval_yaml_filters():
    """Every filter the YAMLs define for these tasks has a mode, with the YAML's stops."""
    assert set(MODE_YAMLS) == set(MODES)
    for mode in MODES:
        reference = LmEvalReference(mode, "date_understanding")
        assert tuple(reference.until) == MODES[mode].until, mode


@pytest.mark.parametrize("words", ["eight", "twenty one", "two hundred and five", "one thousand two hundred",
                                   "three million four thousand and one", "ninety nine thousand",
                                   "seven hundred thousand", "twelve hundred"])
def test_number_words_as_word2number_reads_them(words):
    w2n = pytest.importorskip("word2number.w2n")
    assert word_to_number(words) == w2n.word_to_num(words)


def test_number_words_lm_eval_cannot_read_are_a_format_failure():
    """lm-eval's own run stops with an error on these words; lpo-ci reports no answer."""
    reference = LmEvalReference("bbh-zeroshot-flexible", "object_counting")
    with pytest.raises(ValueError):
        reference.filtered(["one thousand thousand"], [""])
    score = get_scorer("lm-eval:bbh-zeroshot-flexible", {"task": "object_counting"})(
        "one thousand thousand", "1000", {"input": ""})
    assert score.outcome is Outcome.FORMAT_FAILURE


def test_aliases_and_errors():
    assert get_scorer("lm-eval:bbh-zeroshot").score.mode is MODES["bbh-zeroshot-strict"]
    with pytest.raises(SpecError, match="unknown lm-eval mode") as info:
        get_scorer("lm-eval:gsm8k-loose", path="p.j2", line=3)
    assert "lm-eval:gsm8k-strict" in info.value.hint and info.value.line == 3
    with pytest.raises(SpecError, match="BIG-bench Hard task"):
        get_scorer("lm-eval:bbh-zeroshot-flexible", {"task": None}, path="p.j2", line=2)

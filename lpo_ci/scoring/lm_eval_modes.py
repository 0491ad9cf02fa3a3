"""lm-evaluation-harness's scoring, reproduced exactly, for numbers comparable with
published ones.

Each mode is one ``filter_list`` entry of an lm-evaluation-harness task YAML
(version ``LM_EVAL_VERSION``) with that task's ``exact_match`` settings, and
the task's ``until`` stop strings applied to the response first, as its
generation does. The YAML is the specification; a test runs lm-eval's own
filter code on the same responses and requires identical outcomes.

Nothing here imports lm-eval: it is a test-only dependency.
"""

from __future__ import annotations

import collections
import functools
import re
import string
import sys
import unicodedata
from dataclasses import dataclass, field
from typing import Any, Callable

from ..errors import SpecError
from . import Outcome, Score, example_variables

LM_EVAL_VERSION = "0.4.13"
FALLBACK = "[invalid]"


# --------------------------------------------------------------------------
# exact_match (lm_eval.api.metrics.exact_match_hf_evaluate, one prediction)


@dataclass(frozen=True)
class ExactMatch:
    ignore_case: bool = False
    ignore_punctuation: bool = False
    regexes_to_ignore: tuple[str, ...] = ()

    def __call__(self, prediction: str, reference: str) -> bool:
        # lm-eval holds the strings in numpy arrays, which drop trailing NULs at every step
        if not self.regexes_to_ignore:
            prediction, reference = prediction.rstrip("\x00"), reference.rstrip("\x00")
        for pattern in self.regexes_to_ignore:
            prediction = re.sub(pattern, "", prediction).rstrip("\x00")
            reference = re.sub(pattern, "", reference).rstrip("\x00")
        if self.ignore_case:
            prediction, reference = prediction.lower().rstrip("\x00"), reference.lower().rstrip("\x00")
        if self.ignore_punctuation:
            table = str.maketrans("", "", string.punctuation)
            prediction, reference = prediction.translate(table), reference.translate(table)
        return prediction.rstrip("\x00") == reference.rstrip("\x00")


GSM8K_MATCH = ExactMatch(ignore_case=True, regexes_to_ignore=(",", "\\$", "(?s).*#### ", "\\.$"))
BBH_COT_ZEROSHOT_MATCH = ExactMatch(ignore_case=True,
                                    regexes_to_ignore=("\\.$", ",", "\\\\", "\n", '"'))
BBH_ZEROSHOT_MATCH = ExactMatch(ignore_case=True, regexes_to_ignore=("\\.$", ",", "\n", "\\\\", '"'))
PLAIN_MATCH = ExactMatch()


# --------------------------------------------------------------------------
# Filters: each maps (response, example input) to the filtered answer


def _pick(found: list, group_select: int) -> Any:
    """``findall``'s chosen match; of a tuple of groups, the first non-empty one."""
    match = found[group_select]
    if isinstance(match, tuple):
        non_empty = [m for m in match if m]
        match = non_empty[0] if non_empty else None
    return match


@dataclass(frozen=True)
class RegexFilter:
    """``regex``: the ``group_select``-th match, stripped, or the fallback."""

    pattern: str
    group_select: int = 0

    def __call__(self, response: str, source: str) -> str:
        found = re.findall(self.pattern, response)
        if not found:
            return FALLBACK
        match = _pick(found, self.group_select)
        return FALLBACK if match is None else match.strip()


@dataclass(frozen=True)
class Identity:
    """No filter (``take_first`` alone): the whole response."""

    def __call__(self, response: str, source: str) -> str:
        return response


@functools.lru_cache(maxsize=1)
def _unicode_punctuation() -> dict[int, None]:
    return dict.fromkeys(i for i in range(sys.maxunicode)
                         if unicodedata.category(chr(i)).startswith("P"))


def _ignores(text: str, ignore_case: bool, ignore_punctuation: bool) -> str:
    if ignore_case:
        text = text.lower()
    if ignore_punctuation:
        text = text.translate(_unicode_punctuation())
    return text


def _find(pattern: re.Pattern[str], text: str, group_select: int,
          convert: dict[str, str] | None = None) -> Any:
    """The BBH tasks' ``find_match``: a falsy value when nothing matches."""
    found = pattern.findall(text)
    if not found:
        return found
    match = _pick(found, group_select)
    if match is None:
        raise IndexError("list index out of range")  # lm-eval fails the same way here
    match = match.strip()
    if match and convert and match in convert:
        match = convert[match]
    return match


@dataclass(frozen=True)
class MultiChoiceFilter:
    """BBH's ``MultiChoiceRegexFilter``: an ``(X)`` letter, else an option's text
    (case and punctuation ignored), else ``: X``."""

    group_select: int
    pattern: str = r"(\([A-Z]\))"

    def __call__(self, response: str, source: str) -> str:
        texts, to_letter, letters = [], {}, []
        for index, text in enumerate(re.findall(r"\([A-Z]\)([^\n^(]*)", source)):
            text = _ignores(text.strip(), True, True)
            letter = chr(ord("A") + index)
            texts.append(re.escape(text))
            to_letter[text] = f"({letter})"
            letters.append(letter)
        by_text = re.compile("|".join(sorted(texts, key=len, reverse=True)))
        by_colon = re.compile(rf":[\s]*({'|'.join(letters)})")
        match = _find(re.compile(self.pattern), response, self.group_select)
        if not match:
            match = _find(by_text, _ignores(response, True, True), self.group_select, to_letter)
            if not match:
                match = _find(by_colon, response, self.group_select,
                              {letter: f"({letter})" for letter in letters})
        return match if match else FALLBACK


@dataclass(frozen=True)
class MapFilter:
    """BBH's ``MapRegexFilter``: the first pattern that matches the chosen match names the answer."""

    to_value: tuple[tuple[str, str], ...]
    group_select: int

    def __call__(self, response: str, source: str) -> str:
        whole = _find(re.compile("|".join(p for p, _ in self.to_value)), response.lower(),
                      self.group_select)
        match: Any = None
        if whole:
            for pattern, value in self.to_value:
                match = _find(re.compile(pattern), whole.lower(), self.group_select)
                if match:
                    match = value
                    break
        return match if whole and match else FALLBACK


_W = ("(?:zero|one|two|three|four|five|(?:twen|thir|for|fif|six|seven|nine)(?:teen|ty)"
      "|eight(?:|een|y)|ten|eleven|twelve|fourteen|hundred|thousand|(?:m|b|tr)illion)")
_W_TAIL = ("(?:zero|one|two|three|four|five|(?:twen|thir|for|fif|six|seven|nine)(?:|teen|ty)"
           "|eight(?:een|y)|ten|eleven|twelve|fourteen|hundred|thousand|(?:m|b|tr)illion"
           r"|[^\S\r\n]|,|and|&)")
_W_LAST = ("(?:zero|one|two|three|four|five|(?:twen|thir|for|fif|six|seven|nine)(?:teen|ty)"
           "|eight(?:een|y)|ten|eleven|twelve|fourteen|hundred|thousand|(?:m|b|tr)illion)")
_ENGLISH_NUMBER = re.compile(f"((?:{_W}{_W_TAIL}+)?{_W_LAST})")
_WORD_VALUES = {w: i for i, w in enumerate(
    "zero one two three four five six seven eight nine ten eleven twelve thirteen fourteen "
    "fifteen sixteen seventeen eighteen nineteen".split())}
_WORD_VALUES.update({w: 10 * (i + 2) for i, w in enumerate(
    "twenty thirty forty fifty sixty seventy eighty ninety".split())})
_WORD_VALUES.update({"hundred": 100, "thousand": 1000, "million": 10**6, "billion": 10**9})


def _group_value(words: list[str]) -> int:
    """word2number's multiplier of a group of up to four words (its exact arithmetic)."""
    values = [_WORD_VALUES[w] for w in words]
    if len(values) == 4:
        return values[0] * values[1] + values[2] + values[3]
    if len(values) == 3:
        return values[0] * values[1] + values[2]
    if len(values) == 2:
        return values[0] * values[1] if 100 in values else values[0] + values[1]
    return values[0]


def word_to_number(text: str) -> int:
    """What the ``word2number`` package (1.1) makes of number words; ValueError when it refuses."""
    text = text.replace("-", " ").lower()
    if text.isdigit():
        return int(text)
    words = [w for w in text.split() if w in _WORD_VALUES or w == "point"]
    if not words or any(words.count(w) > 1 for w in ("thousand", "million", "billion", "point")):
        raise ValueError(f"not a number: {text!r}")
    if "point" in words:
        raise ValueError("decimals are not produced by this filter's pattern")
    index = {w: (words.index(w) if w in words else -1) for w in ("billion", "million", "thousand")}
    b, m, t = index["billion"], index["million"], index["thousand"]
    if (t > -1 and (t < m or t < b)) or (m > -1 and m < b):
        raise ValueError(f"malformed number: {text!r}")
    if len(words) == 1:
        return _WORD_VALUES[words[0]]
    total = 0
    if b > -1:
        total += _group_value(words[:b]) * 10**9
    if m > -1:
        total += _group_value(words[b + 1:m] if b > -1 else words[:m]) * 10**6
    if t > -1:
        start = m + 1 if m > -1 else (b + 1 if b > -1 else 0)
        total += _group_value(words[start:t]) * 1000
    last = len(words) - 1
    if t > -1 and t != last:
        total += _group_value(words[t + 1:])
    elif m > -1 and m != last:
        total += _group_value(words[m + 1:])
    elif b > -1 and b != last:
        total += _group_value(words[b + 1:])
    elif t == m == b == -1:
        total += _group_value(words)
    return total


@dataclass(frozen=True)
class NumberFilter:
    """BBH's ``NumberParseRegexFilter``: digits, else English number words."""

    group_select: int
    pattern: str = r"([-0-9]+)"

    def __call__(self, response: str, source: str) -> str:
        match = _find(re.compile(self.pattern), response, self.group_select)
        if not match:
            match = _find(_ENGLISH_NUMBER, response.lower(), self.group_select)
            if match:
                try:
                    match = str(word_to_number(match))
                except ValueError:
                    return FALLBACK  # where lm-eval's run stops with this error: no answer
        return match if match else FALLBACK


@dataclass(frozen=True)
class WordSortFilter:
    """BBH's ``WordSortFilter``: the input's words in the order of their last mention."""

    def __call__(self, response: str, source: str) -> str:
        words = source.split("List:")[1].strip().split()
        found = re.findall("|".join(f"\\b{w}\\b" for w in words), response)
        found.reverse()
        ordered = reversed(collections.OrderedDict(zip(found, [None] * len(found))))
        return " ".join(ordered)


# --------------------------------------------------------------------------
# The modes


_COT_ZEROSHOT_STRICT = ("((?<=The answer is )(.*)(?=.)|(?<=the answer is )(.*)(?=.)"
                        "|(?<=The answer: )(.*)(?=.)|(?<=The final answer: )(.*)(?=.))")
_MULTIPLE_CHOICE = ("date_understanding disambiguation_qa geometric_shapes hyperbaton "
                    "logical_deduction_five_objects logical_deduction_seven_objects "
                    "logical_deduction_three_objects movie_recommendation penguins_in_a_table "
                    "reasoning_about_colored_objects ruin_names salient_translation_error_detection "
                    "snarks temporal_sequences tracking_shuffled_objects_five_objects "
                    "tracking_shuffled_objects_seven_objects tracking_shuffled_objects_three_objects").split()
_YES_NO = r"\b(Yes|No|yes|no)\b"


def bbh_flexible_filter(task: str | None, group_select: int) -> Callable[[str, str], str]:
    """The ``flexible-extract`` filter of a BBH task in the (cot_)zeroshot YAMLs."""
    if task in _MULTIPLE_CHOICE:
        return MultiChoiceFilter(group_select)
    if task in ("multistep_arithmetic_two", "object_counting"):
        return NumberFilter(group_select)
    if task == "word_sorting":
        return WordSortFilter()
    if task == "sports_understanding":
        return MapFilter(((r"\b(no|not plausible)\b", "no"), (r"\b(yes|plausible)\b", "yes")),
                         group_select)
    if task == "web_of_lies":
        return MapFilter(((r"\b(no|does not tell the truth|is not telling the truth)\b", "no"),
                          (r"\b(yes|tells the truth|is telling the truth)\b", "yes")), group_select)
    patterns = {"boolean_expressions": r"\b(True|False)\b", "causal_judgement": _YES_NO,
                "navigate": _YES_NO, "formal_fallacies": r"\b(valid|invalid)\b",
                "dyck_languages": r"(?<= )([\" \[\(<{}>\)\]]+)|([\" \[\(<{}>\)\]]+)"}
    return RegexFilter(patterns[task or ""], group_select)


@dataclass(frozen=True)
class Mode:
    """One lm-eval filter pipeline with its task's metric settings and stop strings."""

    task_yaml: str  # where the specification lives in lm-eval's tasks/
    filter_name: str
    until: tuple[str, ...]
    match: ExactMatch
    make_filter: Callable[[str | None], Callable[[str, str], str]]
    needs_task: bool = False
    doc: str = field(default="", compare=False)


def _fixed(filter_: Callable[[str, str], str]) -> Callable[[str | None], Callable[[str, str], str]]:
    return lambda task: filter_


_GSM8K_UNTIL = ("Question:", "</s>", "<|im_end|>")
_GSM8K_COT_UNTIL = ("Q:", "</s>", "<|im_end|>")
_BBH_FEWSHOT_UNTIL = ("</s>", "Q", "\n\n")
_BBH_ZEROSHOT_UNTIL = ("</s>", "Q:", "<|im_end|>")
_GSM8K_STRICT = RegexFilter(r"#### (\-?[0-9\.\,]+)")
_GSM8K_FLEXIBLE = RegexFilter(r"(-?[$0-9.,]{2,})|(-?[0-9]+)", -1)

MODES: dict[str, Mode] = {
    "gsm8k-strict": Mode("gsm8k/gsm8k.yaml", "strict-match", _GSM8K_UNTIL, GSM8K_MATCH,
                         _fixed(_GSM8K_STRICT)),
    "gsm8k-flexible": Mode("gsm8k/gsm8k.yaml", "flexible-extract", _GSM8K_UNTIL, GSM8K_MATCH,
                           _fixed(_GSM8K_FLEXIBLE)),
    "gsm8k-cot-strict": Mode("gsm8k/gsm8k-cot.yaml", "strict-match", _GSM8K_COT_UNTIL, GSM8K_MATCH,
                             _fixed(RegexFilter(r"The answer is (\-?[0-9\.\,]+)."))),
    "gsm8k-cot-flexible": Mode("gsm8k/gsm8k-cot.yaml", "flexible-extract", _GSM8K_COT_UNTIL,
                               GSM8K_MATCH, _fixed(_GSM8K_FLEXIBLE)),
    "bbh-cot-fewshot": Mode("bbh/cot_fewshot/<task>.yaml", "get-answer", _BBH_FEWSHOT_UNTIL,
                            PLAIN_MATCH, _fixed(RegexFilter(r"(?<=the answer is )(.*)(?=.)"))),
    "bbh-cot-zeroshot-strict": Mode("bbh/cot_zeroshot/<task>.yaml", "strict-match",
                                    _BBH_ZEROSHOT_UNTIL, BBH_COT_ZEROSHOT_MATCH,
                                    _fixed(RegexFilter(_COT_ZEROSHOT_STRICT))),
    "bbh-cot-zeroshot-flexible": Mode("bbh/cot_zeroshot/<task>.yaml", "flexible-extract",
                                      _BBH_ZEROSHOT_UNTIL, BBH_COT_ZEROSHOT_MATCH,
                                      lambda task: bbh_flexible_filter(task, -1), needs_task=True),
    "bbh-zeroshot-strict": Mode("bbh/zeroshot/<task>.yaml", "strict-match", _BBH_ZEROSHOT_UNTIL,
                                BBH_ZEROSHOT_MATCH, _fixed(Identity())),
    "bbh-zeroshot-flexible": Mode("bbh/zeroshot/<task>.yaml", "flexible-extract", _BBH_ZEROSHOT_UNTIL,
                                  BBH_ZEROSHOT_MATCH, lambda task: bbh_flexible_filter(task, 0),
                                  needs_task=True),
    "bbh-fewshot": Mode("bbh/fewshot/<task>.yaml", "none", _BBH_FEWSHOT_UNTIL, PLAIN_MATCH,
                        _fixed(Identity())),
}
# Short names: the strict-match filter, lm-eval's literal reading.
ALIASES = {"bbh-zeroshot": "bbh-zeroshot-strict", "bbh-cot-zeroshot": "bbh-cot-zeroshot-strict"}


def cut_at_until(response: str, until: tuple[str, ...]) -> str:
    """lm-eval's post-processing of a generation: split at each stop string in turn."""
    for term in until:
        if term:
            response = response.split(term)[0]
    return response


@dataclass(frozen=True)
class LmEvalScorer:
    """Scores like lm-eval: cut at ``until``, filter, ``exact_match`` against the target.
    The filter's ``[invalid]`` fallback is a format failure (lm-eval counts it as a miss)."""

    name: str
    mode: Mode
    task: str | None = None

    @property
    def version(self) -> str:
        return f"lm-eval-{LM_EVAL_VERSION}"

    def __call__(self, response: str, target: str, example: Any = None) -> Score:
        source = str(example_variables(example).get("input", ""))
        text = cut_at_until(response, self.mode.until)
        filtered = self.mode.make_filter(self.task)(text, source)
        if filtered == FALLBACK:
            return Score(Outcome.FORMAT_FAILURE, None, f"lm-eval filter {self.mode.filter_name}: no match")
        correct = self.mode.match(filtered, str(target))
        return Score(Outcome.CORRECT if correct else Outcome.WRONG, filtered)


def get_mode(name: str, task: str | None, *, path=None, line=None) -> LmEvalScorer:
    """The ``lm-eval:<mode>`` scorer; BBH flexible modes need the BBH task."""
    from ..benchmarks import BBH_TASKS

    key = name.removeprefix("lm-eval:")
    key = ALIASES.get(key, key)
    if key not in MODES:
        raise SpecError(f"unknown lm-eval mode {name!r}", path=path, line=line,
                        hint="use one of: " + ", ".join(f"lm-eval:{m}" for m in [*MODES, *ALIASES]))
    mode = MODES[key]
    if mode.needs_task and task not in BBH_TASKS:
        raise SpecError(f"scorer {name!r} depends on the BIG-bench Hard task, and this template's "
                        "data is not one", path=path, line=line,
                        hint="use it with 'benchmark: bbh/<task>', or use lm-eval:bbh-zeroshot-strict")
    return LmEvalScorer(name, mode, task)

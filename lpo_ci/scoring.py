"""Answer extraction and comparison, one scorer per benchmark.

The built-in rules follow lm-evaluation-harness so that accuracies reported
here can be compared with published numbers. Every rule is a single forward
regex scan or a string search, so a runaway megabyte-long response is scored
in linear time.
"""

from __future__ import annotations

import enum
import functools
import importlib
import re
from collections.abc import Callable
from dataclasses import dataclass
from decimal import Decimal, InvalidOperation

from .errors import EvaluationError, SpecError


class Outcome(str, enum.Enum):
    """How one response fared; FORMAT_FAILURE and ERROR are kept apart from
    WRONG so a prompt that breaks the answer format is diagnosed as such."""

    CORRECT = "correct"
    WRONG = "wrong"
    FORMAT_FAILURE = "format_failure"
    ERROR = "error"


@dataclass(frozen=True)
class Score:
    """The verdict on one response and the answer that was read from it."""

    outcome: Outcome
    extracted: str | None  # None when no answer could be found


Scorer = Callable[[str, str], Score]  # (response_text, target) -> Score


# --------------------------------------------------------------------------
# Shared helpers

# lm-eval gsm8k "strict-match" and "flexible-extract" filters.
_STRICT_ANSWER = re.compile(r"#### (\-?[0-9\.\,]+)")
_FLEXIBLE_NUMBER = re.compile(r"(-?[$0-9.,]{2,})|(-?[0-9]+)")
_GSM8K_MARKER = "#### "


def _verdict(correct: bool, extracted: str) -> Score:
    return Score(Outcome.CORRECT if correct else Outcome.WRONG, extracted)


def _format_failure(extracted: str | None = None) -> Score:
    return Score(Outcome.FORMAT_FAILURE, extracted)


def _normalize_space(text: str) -> str:
    """Collapse runs of whitespace so "a  b\\n" matches "a b"."""
    return " ".join(text.split())


def normalize_number(text: str) -> str:
    """Drop what lm-eval's gsm8k ``regexes_to_ignore`` drops: thousands commas,
    dollar signs and a trailing full stop ("$1,234." -> "1234")."""
    text = text.strip().replace(",", "").replace("$", "")
    if text.endswith("."):
        text = text[:-1]
    return text.strip()


def _numbers_equal(extracted: str, target: str) -> bool:
    """Compare as decimals so "18.00" equals "18"; if either side is not a
    number (e.g. "1.2.3"), fall back to comparing the normalised strings."""
    left, right = normalize_number(extracted), normalize_number(target)
    try:
        return Decimal(left) == Decimal(right)
    except (InvalidOperation, ValueError):
        return left == right


def _last_flexible_number(response: str) -> str | None:
    """The last number-like run, as lm-eval's flexible-extract picks it."""
    last = None
    for last in _FLEXIBLE_NUMBER.finditer(response):
        pass
    if last is None:
        return None
    return (last.group(1) or last.group(2)).strip()


def _score_number(extracted: str | None, target: str) -> Score:
    if extracted is None:
        return _format_failure()
    if not any(ch.isdigit() for ch in extracted):
        # The flexible pattern also matches runs like "..." or "$,": that is
        # no answer at all rather than a wrong one.
        return _format_failure(extracted)
    return _verdict(_numbers_equal(extracted, target), extracted)


# --------------------------------------------------------------------------
# Built-in scorers


def score_numeric(response: str, target: str) -> Score:
    """GSM8K: "#### N" if present (strict-match), else the last number."""
    strict = _STRICT_ANSWER.search(response)
    extracted = strict.group(1).strip() if strict else _last_flexible_number(response)
    if _GSM8K_MARKER in target:  # a full gsm8k answer with its reasoning
        target = target.rpartition(_GSM8K_MARKER)[2]
    return _score_number(extracted, target)


def score_integer(response: str, target: str) -> Score:
    """MultiArith: the last number in the response, compared as a number."""
    return _score_number(_last_flexible_number(response), target)


_ANSWER_IS = re.compile(r"the answer is", re.IGNORECASE)
_TRUE_FALSE = re.compile(r"\b(True|False)\b")
_YES_NO = re.compile(r"\b(Yes|No)\b", re.IGNORECASE)
_VALID_INVALID = re.compile(r"\b(valid|invalid)\b", re.IGNORECASE)
_OPTION = re.compile(r"\([A-Z]\)")
# A bare letter opening the answer: "A", "A)", "A.", "A:" or "A,".
_BARE_OPTION = re.compile(r"([A-Z])(?:[).:,]|$)")
_NUMBER = re.compile(r"-?\d+(?:\.\d+)?")


def _after_last_answer_is(response: str) -> str | None:
    """lm-eval BBH CoT rule: the rest of the line after "the answer is",
    without the final full stop. The last occurrence wins, so a model that
    reconsiders ("if the answer is (A)... so the answer is (B).") is read
    at its conclusion."""
    last = None
    for last in _ANSWER_IS.finditer(response):
        pass
    if last is None:
        return None
    end = response.find("\n", last.end())
    answer = response[last.end(): end if end >= 0 else len(response)].strip()
    if answer.endswith("."):
        answer = answer[:-1].rstrip()
    return answer or None


def _first_nonempty_line(response: str) -> str | None:
    for line in response.splitlines():
        if line.strip():
            return line.strip()
    return None


def _extract_option(response: str) -> str | None:
    found = _OPTION.search(response)
    if found:
        return found.group(0)
    first_line = _first_nonempty_line(response)
    bare = _BARE_OPTION.match(first_line) if first_line else None
    return f"({bare.group(1)})" if bare else None


def score_bbh(response: str, target: str) -> Score:
    """BIG-bench Hard: the CoT "the answer is X." rule, or else an extraction
    chosen by the kind of target (True/False, Yes/No, valid/invalid, option
    letter, number, free text) for direct, zero-shot answers."""
    target = _normalize_space(target)
    stated = _after_last_answer_is(response)
    if stated is not None:
        return _verdict(_normalize_space(stated) == target, stated)

    if target in ("True", "False"):
        found = _TRUE_FALSE.search(response)
        if not found:
            return _format_failure()
        return _verdict(found.group(1) == target, found.group(1))
    if target.lower() in ("yes", "no", "valid", "invalid"):
        pattern = _YES_NO if target.lower() in ("yes", "no") else _VALID_INVALID
        found = pattern.search(response)
        if not found:
            return _format_failure()
        return _verdict(found.group(1).lower() == target.lower(), found.group(1))
    if _OPTION.fullmatch(target):
        option = _extract_option(response)
        if option is None:
            return _format_failure()
        return _verdict(option == target, option)
    if _NUMBER.fullmatch(target):
        found = _NUMBER.search(response)
        if not found:
            return _format_failure()
        return _verdict(_numbers_equal(found.group(0), target), found.group(0))
    line = _first_nonempty_line(response)
    if line is None:
        return _format_failure()
    return _verdict(_normalize_space(line) == target, line)


def score_exact(response: str, target: str) -> Score:
    """The whole response, stripped, must equal the target."""
    answer = response.strip()
    return _verdict(answer == target.strip(), answer)


def score_contains(response: str, target: str) -> Score:
    """The target appears anywhere in the response, ignoring case."""
    needle = target.strip()
    found = needle.casefold() in response.casefold()
    return _verdict(found, needle if found else None)


def score_regex(pattern: re.Pattern[str], response: str, target: str) -> Score:
    """The first match of a user pattern (group 1 if it has groups)."""
    found = pattern.search(response)
    if not found:
        return _format_failure()
    extracted = (found.group(1) if pattern.groups else found.group(0)) or ""
    extracted = extracted.strip()
    return _verdict(extracted == target.strip(), extracted)


BUILTIN_SCORERS: dict[str, Scorer] = {
    "numeric": score_numeric,
    "integer": score_integer,
    "bbh": score_bbh,
    "exact": score_exact,
    "contains": score_contains,
}
SCORER_NAMES = (*BUILTIN_SCORERS, "regex", "module:function")


# --------------------------------------------------------------------------
# Wrappers shared by all scorers


@dataclass(frozen=True)
class _NonEmpty:
    """Answers FORMAT_FAILURE for a blank response before any rule runs, so an
    empty reply is never counted as a wrong answer. A class rather than a
    closure so scorers can be pickled to worker processes."""

    score: Scorer

    def __call__(self, response: str, target: str) -> Score:
        if not response or response.isspace():
            return _format_failure()
        return self.score(response, str(target))


@dataclass(frozen=True)
class _UserScorer:
    """Calls a project's own ``fn(response, target)`` and turns what it
    returns (bool, Score or (bool, extracted)) into a Score."""

    name: str
    fn: Callable[[str, str], object]
    path: str | None = None
    line: int | None = None

    def __call__(self, response: str, target: str) -> Score:
        try:
            result = self.fn(response, target)
        except Exception as exc:
            raise EvaluationError(
                f"scorer {self.name!r} raised {type(exc).__name__}: {exc}",
                path=self.path, line=self.line,
                hint="fix the scorer function; it must not raise on any response",
            ) from exc
        return self._to_score(result)

    def _to_score(self, result: object) -> Score:
        if isinstance(result, Score):
            return result
        if isinstance(result, bool):
            return _verdict(result, None)
        if isinstance(result, tuple) and len(result) == 2 and isinstance(result[0], bool):
            extracted = None if result[1] is None else str(result[1])
            return _verdict(result[0], extracted)
        raise EvaluationError(
            f"scorer {self.name!r} returned {type(result).__name__}, "
            "expected a bool, a Score or a (bool, extracted) tuple",
            path=self.path, line=self.line,
            hint="return True/False, or (correct, extracted_answer)",
        )


def _load_user_scorer(name: str, path, line) -> _UserScorer:
    module_name, _, attr_path = name.partition(":")
    hint = ("write it as 'package.module:function', with the module importable "
            "from the project root, defining def function(response, target) -> bool")
    if not module_name or not attr_path or ":" in attr_path:
        raise SpecError(f"invalid scorer name {name!r}", path=path, line=line, hint=hint)
    try:
        target = importlib.import_module(module_name)
    except Exception as exc:  # ImportError, or an error raised while importing
        raise SpecError(
            f"cannot import module {module_name!r} for scorer {name!r}: "
            f"{type(exc).__name__}: {exc}", path=path, line=line, hint=hint,
        ) from exc
    for part in attr_path.split("."):
        if not hasattr(target, part):
            raise SpecError(
                f"scorer {name!r}: module {module_name!r} has no attribute {attr_path!r}",
                path=path, line=line, hint=hint,
            )
        target = getattr(target, part)
    if not callable(target):
        raise SpecError(f"scorer {name!r} is not callable", path=path, line=line, hint=hint)
    return _UserScorer(name, target, None if path is None else str(path), line)


def _compile_regex_scorer(options: dict, path, line) -> Scorer:
    pattern = options.get("pattern")
    if not isinstance(pattern, str) or not pattern:
        raise SpecError(
            "the 'regex' scorer needs a 'pattern' option",
            path=path, line=line,
            hint="add options: {pattern: 'Answer: (.*)'}; group 1 is the answer if present",
        )
    try:
        compiled = re.compile(pattern)
    except re.error as exc:
        raise SpecError(
            f"invalid regex pattern {pattern!r}: {exc}",
            path=path, line=line, hint="fix the pattern (Python 're' syntax)",
        ) from exc
    return functools.partial(score_regex, compiled)


# --------------------------------------------------------------------------
# Public entry points


def get_scorer(name: str, options: dict | None = None, *, path=None, line=None) -> Scorer:
    """The scorer called ``name``; spec errors point at ``path``:``line``, the
    place the scorer was named, so they are reported before any model call."""
    valid = "use one of: " + ", ".join(SCORER_NAMES)
    if not isinstance(name, str):
        raise SpecError(f"scorer name must be a string, got {name!r}",
                        path=path, line=line, hint=valid)
    if options is not None and not isinstance(options, dict):
        raise SpecError(f"scorer options must be a mapping, got {options!r}",
                        path=path, line=line, hint="e.g. options: {pattern: 'Answer: (.*)'}")
    options = options or {}
    if name in BUILTIN_SCORERS:
        scorer = BUILTIN_SCORERS[name]
    elif name == "regex":
        scorer = _compile_regex_scorer(options, path, line)
    elif ":" in name:
        scorer = _load_user_scorer(name, path, line)
    else:
        raise SpecError(f"unknown scorer {name!r}", path=path, line=line, hint=valid)
    return _NonEmpty(scorer)


def score_response(scorer: Scorer, response: str | None, target: str) -> Score:
    """Score one response; None means the model call itself failed."""
    if response is None:
        return Score(Outcome.ERROR, None)
    return scorer(response, target)

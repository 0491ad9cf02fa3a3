"""Answer extraction and comparison.

Built-in scorers read the final answer by the kind of answer the target is
(``answers``: True/False, Yes/No, valid/invalid, option letter, number,
bracket sequence, free text); ``lm-eval:*`` scorers reproduce
lm-evaluation-harness's filters exactly (``lm_eval_modes``); ``judge`` asks a
model (``judge``). A scorer is called ``scorer(response, target, example)``;
``example`` (its input variables) is optional, so ``fn(response, target)``
user scorers keep working.

Scores change when extraction changes: every scorer has a ``version``, and
``SCORER_VERSION`` is the built-in extractor's. The run's fingerprint and
report record it, so outcomes made under older rules are never compared with
new ones as if nothing happened.
"""

from __future__ import annotations

import contextlib
import enum
import hashlib
import importlib
import inspect
import re
import sys
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass, field
from typing import Any

from ..errors import EvaluationError, SpecError
from .answers import Kind, answer_kind, extract, matches
from .options import parse_options

# Bump when a built-in rule changes what is extracted or how it is compared.
SCORER_VERSION = "2"


class Outcome(str, enum.Enum):
    """How one response fared; FORMAT_FAILURE and ERROR are kept apart from
    WRONG so a prompt that breaks the answer format is diagnosed as such."""

    CORRECT = "correct"
    WRONG = "wrong"
    FORMAT_FAILURE = "format_failure"
    ERROR = "error"


@dataclass(frozen=True)
class Score:
    """The verdict on one response and the answer that was read from it.

    ``note`` says why an answer is a format failure (or how it was read);
    ``judge`` holds a judge model's verdict and reason; ``call`` is the judge's
    model call, for accounting. None of them takes part in equality.
    """

    outcome: Outcome
    extracted: str | None  # None when no answer could be found
    note: str | None = field(default=None, compare=False)
    judge: dict[str, Any] | None = field(default=None, compare=False)
    call: Any = field(default=None, compare=False, repr=False)


# (response_text, target, example=None) -> Score; ``example`` has ``.variables``
# (an ``lpo_ci.benchmarks.Example``) or is the variables mapping itself.
Scorer = Callable[..., Score]


def example_variables(example: Any) -> Mapping[str, Any]:
    """The input variables of ``example`` (an Example, a mapping, or None)."""
    if example is None:
        return {}
    variables = getattr(example, "variables", example)
    return variables if isinstance(variables, Mapping) else {}


def _verdict(correct: bool, extracted: str | None, note: str | None = None) -> Score:
    return Score(Outcome.CORRECT if correct else Outcome.WRONG, extracted, note)


def _format_failure(extracted: str | None = None, note: str | None = None) -> Score:
    return Score(Outcome.FORMAT_FAILURE, extracted, note)


# --------------------------------------------------------------------------
# The built-in extractor


_GSM8K_MARKER = "#### "


@dataclass(frozen=True)
class AnswerScorer:
    """Reads the final answer of the target's kind (``answers.extract``) and compares it.

    ``kind`` forces a kind (``numeric``/``integer`` always read a number);
    otherwise it follows the target, with the example's options in view.
    """

    name: str
    kind: Kind | None = None
    version: str = f"answer-{SCORER_VERSION}"

    def __call__(self, response: str, target: str, example: Any = None) -> Score:
        target = str(target)
        if self.kind is Kind.NUMBER and _GSM8K_MARKER in target:
            target = target.rpartition(_GSM8K_MARKER)[2]  # a full gsm8k answer with its reasoning
        options = parse_options(example_variables(example))
        kind = self.kind or answer_kind(target, options)
        if kind is Kind.NUMBER and answer_kind(target) is not Kind.NUMBER:
            kind = Kind.TEXT  # a "number" target that is not one ("1.2.3"): compare as text
        found = extract(response, kind, options)
        if found.value is None:
            return _format_failure(None, found.note)
        return _verdict(matches(found.value, target, kind), found.value, found.note)


def normalize_number(text: str) -> str:
    """A number as lpo-ci spells it ("$1,234." -> "1234"), or the text stripped if it is none."""
    from .numbers import format_number, parse_number

    value = parse_number(text)
    return format_number(value) if value is not None else text.strip()


# --------------------------------------------------------------------------
# Simple scorers


@dataclass(frozen=True)
class _Simple:
    """A rule with no extraction: ``exact``, ``contains`` or ``regex``."""

    name: str
    rule: Callable[[str, str], Score]
    version: str = "1"

    def __call__(self, response: str, target: str, example: Any = None) -> Score:
        return self.rule(response, str(target))


def score_exact(response: str, target: str) -> Score:
    """The whole response, stripped, must equal the target."""
    answer = response.strip()
    return _verdict(answer == target.strip(), answer)


def score_contains(response: str, target: str) -> Score:
    """The target appears anywhere in the response, ignoring case."""
    needle = target.strip()
    found = needle.casefold() in response.casefold()
    return _verdict(found, needle if found else None)


@dataclass(frozen=True)
class _Regex:
    """The first match of a user pattern (group 1 if it has groups)."""

    pattern: re.Pattern[str]

    def __call__(self, response: str, target: str) -> Score:
        found = self.pattern.search(response)
        if not found:
            return _format_failure(None, f"no match of {self.pattern.pattern!r}")
        extracted = (found.group(1) if self.pattern.groups else found.group(0)) or ""
        extracted = extracted.strip()
        return _verdict(extracted == target.strip(), extracted)


BUILTIN_SCORERS: dict[str, Scorer] = {
    "answer": AnswerScorer("answer"),
    "bbh": AnswerScorer("bbh"),
    "numeric": AnswerScorer("numeric", Kind.NUMBER),
    "integer": AnswerScorer("integer", Kind.NUMBER),
    "exact": _Simple("exact", score_exact),
    "contains": _Simple("contains", score_contains),
}
SCORER_NAMES = (*BUILTIN_SCORERS, "regex", "judge", "lm-eval:<mode>", "module:function")


# --------------------------------------------------------------------------
# Wrappers shared by all scorers


@dataclass(frozen=True)
class _NonEmpty:
    """Answers FORMAT_FAILURE for a blank response before any rule runs, so an
    empty reply is never counted as a wrong answer. A class rather than a
    closure so scorers can be pickled to worker processes."""

    score: Scorer

    @property
    def name(self) -> str:
        return getattr(self.score, "name", "scorer")

    @property
    def version(self) -> str:
        return getattr(self.score, "version", "1")

    def __call__(self, response: str, target: str, example: Any = None) -> Score:
        if not response or response.isspace():
            return _format_failure(None, "empty response")
        return self.score(response, str(target), example)

    async def ascore(self, response: str, target: str, example: Any = None) -> Score:
        if not response or response.isspace():
            return _format_failure(None, "empty response")
        inner = getattr(self.score, "ascore", None)
        if inner is None:
            return self.score(response, str(target), example)
        return await inner(response, str(target), example)


def _source_digest(fn: Callable) -> str:
    """A digest of a user function's source: its scores change when it is edited."""
    try:
        source = inspect.getsource(fn)
    except (OSError, TypeError):
        source = getattr(fn, "__qualname__", repr(fn))
    return hashlib.sha256(source.encode()).hexdigest()[:12]


def _takes_example(fn: Callable) -> str | None:
    """How ``fn`` takes the example: as its third argument ("positional"), only as
    ``example=`` ("keyword"), or not at all (None)."""
    try:
        signature = inspect.signature(fn)
    except (TypeError, ValueError):
        return None
    for how, args, kwargs in (("positional", ("response", "target", None), {}),
                              ("keyword", ("response", "target"), {"example": None})):
        try:
            signature.bind(*args, **kwargs)
        except TypeError:
            continue
        return how
    return None


@dataclass(frozen=True)
class _UserScorer:
    """Calls a project's own ``fn(response, target)`` or ``fn(response, target, example)``
    and turns what it returns (bool, Score or (bool, extracted)) into a Score."""

    name: str
    fn: Callable[..., object]
    path: str | None = None
    line: int | None = None
    with_example: str | None = None  # "positional", "keyword" (example=...), or None
    version: str = "user"

    def __call__(self, response: str, target: str, example: Any = None) -> Score:
        try:
            if self.with_example == "keyword":
                result = self.fn(response, target, example=example)
            elif self.with_example:
                result = self.fn(response, target, example)
            else:
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


@contextlib.contextmanager
def _importable_from(root: Any) -> Iterator[None]:
    """The project root on ``sys.path`` for the length of one import, then as it was:
    a user scorer is found in the project without changing the process's import path."""
    if root is None or str(root) in sys.path:
        yield
        return
    entry = str(root)
    sys.path.insert(0, entry)
    try:
        yield
    finally:
        with contextlib.suppress(ValueError):
            sys.path.remove(entry)


def _load_user_scorer(name: str, path, line, root: Any = None) -> _UserScorer:
    module_name, _, attr_path = name.partition(":")
    hint = ("write it as 'package.module:function', with the module importable "
            "from the project root, defining def function(response, target) -> bool "
            "(or function(response, target, example) to see the example's input)")
    if not module_name or not attr_path or ":" in attr_path:
        raise SpecError(f"invalid scorer name {name!r}", path=path, line=line, hint=hint)
    try:
        with _importable_from(root):
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
    return _UserScorer(name, target, None if path is None else str(path), line,
                       with_example=_takes_example(target), version=f"user-{_source_digest(target)}")


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
    digest = hashlib.sha256(pattern.encode()).hexdigest()[:12]
    return _Simple("regex", _Regex(compiled), version=f"regex-{digest}")


# --------------------------------------------------------------------------
# Public entry points


def get_scorer(name: str, options: dict | None = None, *, path=None, line=None, root=None) -> Scorer:
    """The scorer called ``name``; spec errors point at ``path``:``line``, the
    place the scorer was named, so they are reported before any model call.

    ``options``: ``pattern`` for ``regex``; ``task`` (a BIG-bench Hard task) for the
    ``lm-eval:bbh-*`` modes whose filter depends on it. The judge is built by
    ``lpo_ci.scoring.judge.build_judge``, since it needs a model client. ``root``: the
    project root, where a ``module:function`` scorer is imported from.
    """
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
    elif name.startswith("lm-eval:"):
        from .lm_eval_modes import get_mode

        scorer = get_mode(name, options.get("task"), path=path, line=line)
    elif name == "judge":
        raise SpecError("the 'judge' scorer needs a judge model client", path=path, line=line,
                        hint="build it with lpo_ci.scoring.judge.build_judge")
    elif ":" in name:
        scorer = _load_user_scorer(name, path, line, root)
    else:
        raise SpecError(f"unknown scorer {name!r}", path=path, line=line, hint=valid)
    return _NonEmpty(scorer)


def score_response(scorer: Scorer, response: str | None, target: str, example: Any = None) -> Score:
    """Score one response; None means the model call itself failed."""
    if response is None:
        return Score(Outcome.ERROR, None)
    return scorer(response, target, example)


async def score_response_async(scorer: Scorer, response: str | None, target: str,
                               example: Any = None) -> Score:
    """``score_response`` for scorers that may call a model (the judge)."""
    if response is None:
        return Score(Outcome.ERROR, None)
    ascore = getattr(scorer, "ascore", None)
    if ascore is None:
        return scorer(response, target, example)
    return await ascore(response, target, example)


def build_scorer(spec: Any, name: str, settings: Any = None, cache: Any = None) -> Scorer:
    """The scorer a template's spec asks for, with what it needs from the spec: the
    ``pattern`` of ``regex``, the BIG-bench Hard task of the ``lm-eval:bbh-*`` modes,
    the rubric and judge model of ``judge`` (sharing the run's response cache)."""
    where = spec.where("scorer")
    if name == "judge":
        from .judge import build_judge

        return _NonEmpty(build_judge(spec, settings, cache))
    options: dict[str, Any] = {}
    if spec.pattern:
        options["pattern"] = spec.pattern
    if spec.benchmark and spec.benchmark.startswith("bbh/"):
        options["task"] = spec.benchmark.removeprefix("bbh/")
    for key in ("rubric", "judge_model", "judge_api_base"):
        if getattr(spec, key, None) and key in spec.origins and spec.origins[key][0] != "command line":
            own = spec.where(key)
            if own["path"] and not str(own["path"]).endswith("pyproject.toml"):
                raise SpecError(f"'{key}' is set but the scorer is {name!r}, not 'judge'",
                                **own, hint="add 'scorer: judge', or remove the key")
    return get_scorer(name, options, **where, root=getattr(settings, "root", None))

"""Read the final answer out of a model response, by the kind of answer expected.

The rules, in order (the README states them for users):

1. A leading ``A:`` is the few-shot answer prefix, not option (A): it is dropped.
2. Explicit final-answer cues win, and the **last** cue in the response counts:
   "the answer is" (also "the final/correct answer is", "would be"),
   "answer:", "final answer:", ``####``, ``\\boxed{...}``, and **bold** text
   that starts with an answer. The answer is the first candidate of the
   expected kind after the cue, on the same line or, when the cue ends its
   line, on the next non-empty line. A cue in a conditional ("if the answer
   is") or a negation ("the answer is not") is not a cue.
3. With no cue, the **last** candidate of the expected kind counts; candidates
   inside questions (sentences ending in "?"), in an echoed list of options,
   and list markers ("1.") are skipped.
4. An answer joined to a different one by "or", "-", "to", "/" ("8-9",
   "True or False") is a hedge: a format failure, never a right answer.

Every scan is a forward regex pass, linear in the response's length.
"""

from __future__ import annotations

import enum
import re
from dataclasses import dataclass
from fractions import Fraction

from .numbers import find_numbers, format_number, parse_number


class Kind(str, enum.Enum):
    """What a target looks like, and so what to look for in a response."""

    BOOLEAN = "True/False"
    YES_NO = "Yes/No"
    VALIDITY = "valid/invalid"
    OPTION = "option letter"
    NUMBER = "number"
    BRACKETS = "bracket sequence"
    TEXT = "free text"


_OPTION_TARGET = re.compile(r"\(([A-Z])\)")
_BRACKETS_TARGET = re.compile(r"[\s\[\](){}<>]+")


def answer_kind(target: str, options: dict[str, str] | None = None) -> Kind:
    """The kind of answer ``target`` is; a bare letter is an option when the example has options."""
    text = target.strip()
    lowered = text.lower()
    if lowered in ("true", "false"):
        return Kind.BOOLEAN
    if lowered in ("yes", "no"):
        return Kind.YES_NO
    if lowered in ("valid", "invalid"):
        return Kind.VALIDITY
    if _OPTION_TARGET.fullmatch(text) or (options and len(text) == 1 and text in options):
        return Kind.OPTION
    if parse_number(text) is not None:
        return Kind.NUMBER
    if _BRACKETS_TARGET.fullmatch(text):
        return Kind.BRACKETS
    return Kind.TEXT


@dataclass(frozen=True)
class Candidate:
    start: int
    end: int
    value: str  # canonical: "True", "yes", "(B)", "8", normalised text


@dataclass(frozen=True)
class Extraction:
    """The answer read from a response: ``value`` is None when there is none (``note`` says why)."""

    value: str | None
    note: str | None = None


# --------------------------------------------------------------------------
# Candidates of each kind

_BOOLEAN = re.compile(r"\b(true|false)\b", re.IGNORECASE)
_YES_NO = re.compile(r"\b(yes|no)\b", re.IGNORECASE)
_VALIDITY = re.compile(r"\b(?:(not)\s+)?(valid|invalid)\b", re.IGNORECASE)
_PAREN_LETTER = re.compile(r"\(([A-Z])\)")
_NAMED_LETTER = re.compile(r"\b(?:option|choice)\s+\(?([A-Z])\b\)?", re.IGNORECASE)
_LINE_LETTER = re.compile(r"^[ \t>*_\"'`]*([A-Z])(?:[).](?=\s|$)|[ \t*_\"'`.!]*$)", re.MULTILINE)
_SPAN_LETTER = re.compile(r"[\s*_\"'`]*([A-Z])(?![\w'’:(])")
_LIST_MARKER = re.compile(r"^[ \t]*\d+[.)](?=\s)", re.MULTILINE)
_OPTION_LIST_LINE = re.compile(r"^[ \t*_-]*\(?[A-Z]\)[^\n]*$", re.MULTILINE)
_QUESTION = re.compile(r"(?:^|(?<=[.!?\n]))[^.!?\n]*\?")  # anchored: one pass, not one per start
_SENTENCE_START = re.compile(r"(?:^|[.!?:;\n])[\s*_\"'(]*$")
_SENTENCE_END = re.compile(r"^[*_\"')\]]*[ \t]*(?:[.!]|\n|$)")
_IS_BEFORE = re.compile(r"\bis\s+(?:\w+ly\s+)?$", re.IGNORECASE)
_BRACKET_RUN = re.compile(r"[\[\](){}<>](?:[ \t]*[\[\](){}<>])*")


def _standalone(text: str, start: int, end: int) -> bool:
    """The word opens or closes its sentence ("No, …", "… so yes.")."""
    return bool(_SENTENCE_START.search(text[max(0, start - 40):start])
                or _SENTENCE_END.match(text[end:end + 40]))


def _binary(pattern: re.Pattern[str], canonical, text: str, scan: bool) -> list[Candidate]:
    found = []
    for match in pattern.finditer(text):
        if scan and not _standalone(text, match.start(), match.end()):
            continue
        found.append(Candidate(match.start(), match.end(), canonical(match.group(1))))
    return found


def _validity(text: str, scan: bool) -> list[Candidate]:
    found = []
    for match in _VALIDITY.finditer(text):
        start = match.start(2)
        if scan and not (_standalone(text, start, match.end())
                         or _IS_BEFORE.search(text[max(0, match.start() - 30):match.start()])):
            continue
        value = match.group(2).lower()
        if match.group(1):  # "not valid" is "invalid"
            value = "invalid" if value == "valid" else "valid"
        found.append(Candidate(match.start(), match.end(), value))
    return found


def _option_text_pattern(options: dict[str, str]) -> tuple[re.Pattern[str] | None, dict[str, str]]:
    """One regex matching any option's text (longest first), tolerant to case and punctuation."""
    by_key: dict[str, str] = {}
    branches = []
    for letter, text in options.items():
        tokens = re.findall(r"\w+", text)
        key = " ".join(tokens).lower() if tokens else text.strip()
        if not key or key in by_key:
            by_key.pop(key, None)  # two options with one text: it names neither
            continue
        by_key[key] = f"({letter})"
        body = r"\W+".join(re.escape(t) for t in tokens) if tokens else re.escape(text.strip())
        branches.append((len(key), body))
    if not branches:
        return None, {}
    branches.sort(key=lambda b: b[0], reverse=True)
    pattern = re.compile(r"(?<!\w)(?:" + "|".join(f"({b})" for _, b in branches) + r")(?!\w)",
                         re.IGNORECASE)
    return pattern, by_key


def _options(text: str, options: dict[str, str], scan: bool) -> list[Candidate]:
    found: list[Candidate] = []
    patterns = [_PAREN_LETTER, _NAMED_LETTER] + ([_LINE_LETTER] if scan else [])
    for pattern in patterns:
        for match in pattern.finditer(text):
            letter = match.group(1).upper()
            if pattern is not _PAREN_LETTER and options and letter not in options:
                continue
            found.append(Candidate(match.start(), match.end(), f"({letter})"))
    if not scan:
        bare = _SPAN_LETTER.match(text)
        if bare and (not options or bare.group(1) in options):
            found.append(Candidate(bare.start(1), bare.end(1), f"({bare.group(1)})"))
    text_pattern, by_key = _option_text_pattern(options)
    if text_pattern is not None:
        for match in text_pattern.finditer(text):
            key = " ".join(re.findall(r"\w+", match.group(0))).lower() or match.group(0).strip()
            if key in by_key:
                found.append(Candidate(match.start(), match.end(), by_key[key]))
    found.sort(key=lambda c: c.start)
    return found


def _numbers(text: str, scan: bool) -> list[Candidate]:
    markers = {m.end() - 1 for m in _LIST_MARKER.finditer(text)} if scan else set()
    found = []
    for number in find_numbers(text):
        if scan and number.word and number.text.lower() == "one":
            continue  # "one of them": a pronoun far more often than an answer
        if number.end in markers:
            continue  # "1." opening a numbered line
        found.append(Candidate(number.start, number.end, format_number(number.value)))
    return found


def _brackets(text: str) -> list[Candidate]:
    return [Candidate(m.start(), m.end(), m.group(0)) for m in _BRACKET_RUN.finditer(text)]


def candidates(text: str, kind: Kind, options: dict[str, str], *, scan: bool) -> list[Candidate]:
    """Candidates of ``kind`` in ``text`` in order; ``scan`` applies the stricter rules for
    reading a whole response (no bare letters mid-text, "yes"/"no" only where they stand alone)."""
    if kind is Kind.BOOLEAN:
        return _binary(_BOOLEAN, lambda v: v.capitalize(), text, scan=False)
    if kind is Kind.YES_NO:
        return _binary(_YES_NO, str.lower, text, scan)
    if kind is Kind.VALIDITY:
        return _validity(text, scan)
    if kind is Kind.OPTION:
        return _options(text, options, scan)
    if kind is Kind.NUMBER:
        return _numbers(text, scan)
    if kind is Kind.BRACKETS:
        return _brackets(text)
    return []


# --------------------------------------------------------------------------
# Hedges

_HEDGE_JOIN = re.compile(r"[ \t]*(?:-|–|—|~|/|to|or|,?[ \t]*or|and/or)[ \t]*", re.IGNORECASE)
_BETWEEN = re.compile(r"\bbetween\s+$", re.IGNORECASE)


def _hedge(text: str, found: list[Candidate], index: int) -> Candidate | None:
    """The different answer ``found[index]`` is hedged with ("8-9", "(A) or (B)"), if any."""
    chosen = found[index]
    for other in (found[index - 1] if index > 0 else None,
                  found[index + 1] if index + 1 < len(found) else None):
        if other is None or other.value == chosen.value:
            continue
        first, second = (other, chosen) if other.start < chosen.start else (chosen, other)
        gap = text[first.end:second.start]
        if _HEDGE_JOIN.fullmatch(gap):
            return other
        if re.fullmatch(r"\s+and\s+", gap) and _BETWEEN.search(text[max(0, first.start - 12):first.start]):
            return other
    return None


# --------------------------------------------------------------------------
# Cues

_PHRASE_CUE = re.compile(
    r"\b(?:the\s+|my\s+|our\s+)?(?:final\s+|correct\s+|right\s+|best\s+)?answer\s+"
    r"(?:is|would\s+be|will\s+be|should\s+be|must\s+be)\b[ \t]*:?"
    r"|\b(?:final\s+)?answer[ \t]*(?:\*\*)?[ \t]*[:：]"
    r"|####",
    re.IGNORECASE)
_CONDITIONAL = re.compile(r"\b(?:if|whether|unless|suppose|supposing|assume|assuming)\b[^.!?\n]*$",
                          re.IGNORECASE)
_NEGATED = re.compile(r"[ \t]*(?:not\b|n't\b|never\b)", re.IGNORECASE)
_BOLD = re.compile(r"\*\*([^*\n]{1,200})\*\*|__([^_\n]{1,200})__")
_BOXED = re.compile(r"\\(?:boxed|fbox)\s*\{((?:[^{}\n]|\{[^{}\n]*\})*)\}")
_EMPTY_SPAN = re.compile(r"[\s*_`:.\-]*")
_LEADING_PREFIX = re.compile(r"\A\s*A[ \t]*:[ \t]*(?=\S)")


def _cue_span(text: str, end: int) -> tuple[int, int]:
    """Where the answer after a cue ending at ``end`` is: the rest of its line, or the next
    non-empty line when the cue ends its line (looking at most MAX_SPAN characters ahead)."""
    window = text[end:end + MAX_SPAN]
    newline = window.find("\n")
    if newline < 0 or not _EMPTY_SPAN.fullmatch(window[:newline]):
        return end, end + (len(window) if newline < 0 else newline)
    for line in re.finditer(r"[^\n]+", window[newline:]):
        if line.group(0).strip():
            return end + newline + line.start(), end + newline + line.end()
    return end, end + newline


def _first_sentence(span: str) -> str:
    """A cue's answer ends with its sentence ("The answer is 18. Then …" -> "The answer is 18")."""
    cut = re.search(r"(?<!\d)[.!?](?!\d)|(?<=\d)\.(?=\s|$)", span)
    return span[:cut.start()] if cut else span


MAX_SPAN = 1000  # an answer after a cue is short; the cap keeps many cues on a line linear
MAX_CUES = 50  # the last cues are tried; a response with thousands of cues is no answer


@dataclass(frozen=True)
class _Reading:
    """What one cue, or the whole-text scan, says: a candidate, or a hedge between two."""

    position: int
    value: str | None
    note: str | None = None


def _read_span(text: str, start: int, end: int, kind: Kind, options: dict[str, str],
               position: int) -> _Reading | None:
    """The first candidate in ``text[start:end]``, or None when the span holds none."""
    span = text[start:min(end, start + MAX_SPAN)]
    if kind is Kind.TEXT:
        value = normalize_text(span)
        return _Reading(position, value) if value else None
    offset = start
    if kind is Kind.NUMBER:
        sentence = _first_sentence(span)
        equals = sentence.rfind("=")
        offset += equals + 1 if equals >= 0 else 0
        span = sentence[equals + 1:] if equals >= 0 else sentence
    found = candidates(span, kind, options, scan=False)
    if not found:
        return None
    partner = _hedge(span, found, 0)
    if partner is not None:
        return _Reading(position, None, f"hedged between {found[0].value} and {partner.value}")
    return _Reading(position, found[0].value)


def _last_cue_reading(text: str, kind: Kind, options: dict[str, str]) -> _Reading | None:
    """What the last cue that holds an answer of ``kind`` says (cues are tried from the end)."""
    cues = [(m.start(), "phrase", m) for m in _PHRASE_CUE.finditer(text)]
    cues += [(m.start(), "boxed", m) for m in _BOXED.finditer(text)]
    cues += [(m.start(), "bold", m) for m in _BOLD.finditer(text)]
    for position, cue, match in sorted(cues, key=lambda c: c[0], reverse=True)[:MAX_CUES]:
        if cue == "phrase":
            before = text[max(0, position - 80):position]
            if _CONDITIONAL.search(before) or _NEGATED.match(text, match.end()):
                continue
            start, end = _cue_span(text, match.end())
        elif cue == "boxed":
            start, end = match.start(1), match.end(1)
        else:
            group = 1 if match.group(1) is not None else 2
            content = match.group(group)
            if kind is Kind.TEXT or content.rstrip().endswith(":") or text.startswith(":", match.end()):
                continue  # a heading ("**Step 1:**"), not an answer
            found = candidates(content, kind, options, scan=False)
            leading = len(content) - len(content.lstrip(" \t\"'`(["))
            if not found or found[0].start > leading:
                continue  # bold that does not open with an answer ("**Step 1**")
            start, end = match.start(group), match.end(group)
        reading = _read_span(text, start, end, kind, options, position)
        if reading is not None:
            return reading
    return None


# --------------------------------------------------------------------------
# Whole-text scan


def _excluded_spans(text: str, kind: Kind) -> list[tuple[int, int]]:
    """Questions, and echoed option lists (two or more "(X) …" lines in a row)."""
    spans = [(m.start(), m.end()) for m in _QUESTION.finditer(text)]
    if kind is Kind.OPTION:
        lines = list(_OPTION_LIST_LINE.finditer(text))
        for i, line in enumerate(lines):
            neighbours = [lines[j] for j in (i - 1, i + 1) if 0 <= j < len(lines)]
            if any(text[min(n.end(), line.end()):max(n.start(), line.start())].strip() == ""
                   for n in neighbours):
                spans.append((line.start(), line.end()))
    return spans


def _scan(text: str, kind: Kind, options: dict[str, str]) -> _Reading | None:
    if kind is Kind.TEXT:
        lines = [line for line in text.splitlines() if line.strip() and not line.rstrip().endswith("?")]
        if not lines:
            return None
        last = lines[-1]
        if ": " in last:  # "Sorted: apple banana" -> the part after the label
            last = last.rsplit(": ", 1)[1]
        value = normalize_text(last)
        return _Reading(len(text), value) if value else None
    spans = _excluded_spans(text, kind)
    found = [c for c in candidates(text, kind, options, scan=True)
             if not any(s <= c.start < e for s, e in spans)]
    if not found:
        return None
    partner = _hedge(text, found, len(found) - 1)
    if partner is not None:
        return _Reading(found[-1].start, None, f"hedged between {partner.value} and {found[-1].value}")
    return _Reading(found[-1].start, found[-1].value)


def extract(response: str, kind: Kind, options: dict[str, str] | None = None) -> Extraction:
    """The final answer of ``kind`` in ``response`` by the rules in the module docstring."""
    options = options or {}
    text = _LEADING_PREFIX.sub("", response, count=1)
    reading = _last_cue_reading(text, kind, options) or _scan(text, kind, options)
    if reading is None:
        return Extraction(None, f"no {kind.value} answer found")
    return Extraction(reading.value, reading.note)


# --------------------------------------------------------------------------
# Comparison

_MARKUP = re.compile(r"^[\s*_`\"'“”‘’]+|[\s*_`\"'“”‘’]+$")


def normalize_text(text: str, *, keep_commas: bool = True) -> str:
    """Free text as compared: markup and quotes around it, trailing punctuation and
    runs of whitespace removed, case folded."""
    text = _MARKUP.sub("", text)
    text = re.sub(r"[.!?;:]+$", "", text)
    text = _MARKUP.sub("", text)
    if not keep_commas:
        text = text.replace(",", " ")
    return " ".join(text.split()).casefold()


def canonical_target(target: str, kind: Kind) -> str:
    """The target spelled as extractions are: "True", "yes", "(B)", "8", normalised text."""
    text = target.strip()
    if kind is Kind.BOOLEAN:
        return text.capitalize()
    if kind in (Kind.YES_NO, Kind.VALIDITY):
        return text.lower()
    if kind is Kind.OPTION:
        return text if text.startswith("(") else f"({text})"
    if kind is Kind.NUMBER:  # a number kind comes from a target that parses as one
        value = parse_number(text)
        return format_number(value) if value is not None else text
    if kind is Kind.BRACKETS:
        return "".join(text.split())
    return normalize_text(text)


def matches(extracted: str, target: str, kind: Kind) -> bool:
    """Whether an extracted answer is the target."""
    expected = canonical_target(target, kind)
    if kind is Kind.NUMBER:
        return Fraction(extracted) == Fraction(expected)
    if kind is Kind.BRACKETS:
        return "".join(extracted.split()) == expected
    if kind is Kind.TEXT:
        keep = "," in target
        return normalize_text(extracted, keep_commas=keep) == normalize_text(target, keep_commas=keep)
    return extracted == expected

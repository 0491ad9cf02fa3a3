"""Numbers as people write them: numerals with separators, currency and
percent signs, simple fractions, and English number words.

The separator rule, stated once (the README repeats it):

* a comma followed by exactly three digits is a thousands separator
  (``1,234`` is 1234, ``12,345,678`` is 12345678);
* a single comma followed by one, two or more than three digits is a decimal
  comma (``0,3`` is 0.3, ``2,50`` is 2.5);
* with both marks, the last one is the decimal mark (``1,234.5`` and
  ``1.234,5`` are both 1234.5);
* a single dot is a decimal point (``1.234`` is 1.234); repeated dots with
  three-digit groups are thousands separators (``1.234.567``);
* anything else (``3,4,5``, ``1.2.3``) is a list, not one number.

Values are exact fractions, so ``18.00`` equals ``18`` and ``1/2`` equals
``0.5``. Every scan is a single forward regex pass.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from fractions import Fraction

_NUMERAL = re.compile(
    r"(?<![\w.,/])"                          # not the tail of a word or of another number
    r"(?P<sign>[-\u2212])?"
    r"(?P<currency>[$€£¥₹])?"
    r"(?P<sign2>[-\u2212])?"
    r"(?P<digits>\d+(?:[.,]\d+)*)"
    r"(?:/(?P<denominator>\d+)(?![/\d]))?"    # 3/4, but not a date 12/25/2006
    r"(?P<percent>\s?%)?"
    r"(?!\d|[.,/]\d|(?:st|nd|rd|th)\b)"      # whole runs only; no date, no ordinal (3rd)
)
_SMALL = {
    "zero": 0, "one": 1, "two": 2, "three": 3, "four": 4, "five": 5, "six": 6, "seven": 7,
    "eight": 8, "nine": 9, "ten": 10, "eleven": 11, "twelve": 12, "thirteen": 13,
    "fourteen": 14, "fifteen": 15, "sixteen": 16, "seventeen": 17, "eighteen": 18,
    "nineteen": 19, "twenty": 20, "thirty": 30, "forty": 40, "fifty": 50, "sixty": 60,
    "seventy": 70, "eighty": 80, "ninety": 90,
}
_SCALES = {"hundred": 100, "thousand": 1000, "million": 10**6, "billion": 10**9}
_WORD = "|".join(sorted([*_SMALL, *_SCALES], key=len, reverse=True))
_AFTER_SCALE_AND = "|".join(rf"(?<={scale})\s+and\s+" for scale in _SCALES)
_NUMBER_WORDS = re.compile(
    rf"\b(?:{_WORD})(?:(?:[\s-]+|{_AFTER_SCALE_AND})(?:{_WORD}))*\b", re.IGNORECASE)
MAX_DIGITS = 100
_DATE_LIKE = re.compile(r"\d+/\d+/\d+")


@dataclass(frozen=True)
class NumberMatch:
    """One number found in a text: where it is, what it is worth, how it was written."""

    start: int
    end: int
    value: Fraction
    text: str
    word: bool = False  # written in words ("eight")


def _separated(digits: str) -> list[Fraction] | None:
    """The value(s) of a digit run with separators, by the rule in the module docstring."""
    if len(digits) > MAX_DIGITS:
        return None  # no answer is that long; int() refuses such strings anyway
    commas, dots = digits.count(","), digits.count(".")
    if not commas and not dots:
        return [Fraction(int(digits))]
    if commas and dots:
        decimal = "," if digits.rfind(",") > digits.rfind(".") else "."
        thousands = "." if decimal == "," else ","
        whole, _, fraction = digits.rpartition(decimal)
        if decimal in whole or not _thousands_groups(whole, thousands):
            return None
        return [Fraction(whole.replace(thousands, "") + "." + fraction)]
    mark = "," if commas else "."
    groups = digits.split(mark)
    if _thousands_groups(digits, mark) and (mark == "," or len(groups) > 2):
        return [Fraction(int("".join(groups)))]
    if len(groups) == 2:
        return [Fraction(groups[0] + "." + groups[1])]
    if mark == ",":
        return [Fraction(int(g)) for g in groups]  # "3,4,5": a list
    return None  # "1.2.3": a version, a date, not a number


def _thousands_groups(whole: str, mark: str) -> bool:
    groups = whole.split(mark)
    return 1 <= len(groups[0]) <= 3 and all(len(g) == 3 for g in groups[1:])


def words_value(text: str) -> int | None:
    """The value of an English cardinal such as "two hundred and five"; None when the
    words do not form one number ("three four")."""
    total, current, last = 0, 0, ""
    for token in re.split(r"[\s-]+", text.lower()):
        if not token or token == "and":
            continue
        if token in _SMALL:
            value = _SMALL[token]
            kind = "tens" if value >= 20 else "unit"
            if last == "unit" or (last == "tens" and kind == "tens") or (last == "tens" and value >= 10):
                return None
            current += value
        elif token == "hundred":
            if last not in ("unit", "tens") or current >= 100:
                return None
            current *= 100
            kind = "scale"
        elif token in _SCALES:
            if last == "" or (last == "scale" and current == 0):
                return None
            total += current * _SCALES[token]
            current, kind = 0, "scale"
        else:
            return None
        last = kind
    return total + current if last else None


def find_numbers(text: str, *, words: bool = True) -> list[NumberMatch]:
    """Every number in ``text``, in order of position."""
    found: list[NumberMatch] = []
    for match in _NUMERAL.finditer(text):
        negative = bool(match.group("sign") or match.group("sign2"))
        values = _separated(match.group("digits"))
        if values is None:
            continue
        if match.group("denominator"):
            denominator = int(match.group("denominator"))
            if len(values) != 1 or denominator == 0:
                continue
            values = [values[0] / denominator]
        if len(values) > 1:  # a comma list: each item is a number of its own
            offset = match.start("digits")
            for item in match.group("digits").split(","):
                found.append(NumberMatch(offset, offset + len(item), Fraction(int(item)), item))
                offset += len(item) + 1
            continue
        value = -values[0] if negative else values[0]
        found.append(NumberMatch(match.start(), match.end(), value, match.group(0)))
    if words:
        for match in _NUMBER_WORDS.finditer(text):
            word_value = words_value(match.group(0))
            if word_value is not None:
                found.append(NumberMatch(match.start(), match.end(), Fraction(word_value),
                                         match.group(0), word=True))
                continue
            for single in re.finditer(r"[A-Za-z]+", match.group(0)):  # "three four": two numbers
                single_value = words_value(single.group(0))
                if single_value is not None:
                    start = match.start() + single.start()
                    found.append(NumberMatch(start, start + len(single.group(0)), Fraction(single_value),
                                             single.group(0), word=True))
        found.sort(key=lambda m: m.start)
    return found


def parse_number(text: str) -> Fraction | None:
    """The value of a text that is one number and nothing else ("$1,234.", "-5", "eight")."""
    stripped = text.strip().rstrip(".").strip()
    if not stripped or _DATE_LIKE.search(stripped):
        return None
    numbers = find_numbers(stripped)
    if len(numbers) != 1:
        return None
    number = numbers[0]
    rest = (stripped[:number.start] + stripped[number.end:]).strip()
    return number.value if rest == "" else None


def format_number(value: Fraction) -> str:
    """A short canonical spelling: "8", "-2.5", "1/3"."""
    if value.denominator == 1:
        return str(value.numerator)
    as_float = float(value)
    if Fraction(repr(as_float)) == value:
        return repr(as_float)
    return f"{value.numerator}/{value.denominator}"

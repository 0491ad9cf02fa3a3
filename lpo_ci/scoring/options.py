"""The options of a multiple-choice example, read from its input.

BIG-bench Hard writes them as ``(A) text`` lines under ``Options:``; a user
dataset may do the same in any text field, or give a ``choices``/``options``
list (lettered A, B, C… in order). Knowing the options lets the scorer map an
answer given as option text ("12/25/2006") to its letter ("(D)").
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from typing import Any

_OPTION_LINE = re.compile(r"\(([A-Z])\)[ \t]*([^\n(]*)")
_LIST_FIELDS = ("choices", "options")


def parse_options(variables: Mapping[str, Any] | None) -> dict[str, str]:
    """Letter -> option text, e.g. {"A": "12/14/2026", "B": "12/14/1950"}; {} when the
    example is not multiple choice. Letters must run A, B, C… without gaps."""
    if not variables:
        return {}
    for name in _LIST_FIELDS:
        value = variables.get(name)
        if isinstance(value, (list, tuple)) and len(value) >= 2 and len(value) <= 26:
            return {chr(ord("A") + i): str(text).strip() for i, text in enumerate(value)}
    for value in variables.values():
        if not isinstance(value, str):
            continue
        options: dict[str, str] = {}
        for match in _OPTION_LINE.finditer(value):
            letter = match.group(1)
            if letter != chr(ord("A") + len(options)):
                if letter == "A":  # a second list starts: the last one is the example's
                    options = {}
                else:
                    continue
            options[letter] = match.group(2).strip()
        if len(options) >= 2:
            return options
    return {}

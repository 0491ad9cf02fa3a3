"""Markdown for GitHub, safe by default.

Model answers, dataset fields and even template paths are untrusted here: a
model can answer ``<img src=x>``, ``</details>``, ``@org/team`` or a table
pipe. Every ``{{ value }}`` in the comment templates is therefore escaped
(HTML special characters, Markdown punctuation, @-mentions) unless a filter
of this module made it ``Safe``: ``code`` for inline code, ``fenced`` for a
code block whose fence outgrows any backtick run inside. Secrets are redacted
before any of this (``lpo_ci.redaction``), so no escaping can disguise one.
"""

from __future__ import annotations

import re
from typing import Any

from ..resources import resource_environment

MENTION_BREAK = "@&#8203;"  # a zero-width space after @: shown as @, notifies nobody
_PUNCTUATION = re.compile(r"([\\`*_{}\[\]()#+\-.!|~:=])")


class Safe(str):
    """Markdown that is already safe to emit as it is."""


def escape(value: object) -> Safe:
    """Plain text for inline Markdown: no HTML, no formatting, no mention, one line."""
    if isinstance(value, Safe):
        return value
    text = " ".join(str(value).split())
    text = _PUNCTUATION.sub(r"\\\1", text)
    text = text.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")
    return Safe(text.replace("@", MENTION_BREAK))


def shorten(text: str, limit: int) -> str:
    text = str(text)
    return text if len(text) <= limit else text[: max(0, limit - 1)] + "…"


def code(value: object, limit: int = 80) -> Safe:
    """Inline code on one line, safe in a table cell: a code span shows its content
    literally (no HTML, no mention); only a table pipe needs escaping."""
    text = shorten(" ".join(str(value).split()), limit) or " "
    ticks = max((len(run) for run in re.findall(r"`+", text)), default=0) + 1
    pad = " " if text.startswith("`") or text.endswith("`") else ""
    return Safe(f"{'`' * ticks}{pad}{text.replace('|', chr(92) + '|')}{pad}{'`' * ticks}")


def fenced(value: object, info: str = "", limit: int = 20000) -> Safe:
    """A fenced code block (contents literal) whose fence no line inside can close."""
    text = shorten(str(value).replace("\r\n", "\n"), limit)
    ticks = max((len(run) for run in re.findall(r"`{3,}", text)), default=2) + 1
    fence = "`" * max(3, ticks)
    return Safe(f"{fence}{info}\n{text.rstrip(chr(10))}\n{fence}")


def _pct(value: Any) -> Safe:
    return Safe("–" if value is None else f"{float(value):.1%}")


def _signed_pct(value: Any) -> Safe:
    return Safe("–" if value is None else f"{float(value):+.1%}")


def _p(value: Any) -> Safe:
    return Safe("–" if value is None else f"{float(value):.2g}")


def _count(value: Any) -> Safe:
    return Safe(f"{int(value):,}")


def _usd(value: Any) -> Safe:
    return Safe(f"${float(value or 0):.4f}")


def _interval(value: Any) -> Safe:
    if not value:
        return Safe("")
    low, high = value
    return Safe(f"[{float(low):.0%}, {float(high):.0%}]")


def environment():
    """The Jinja environment for the GitHub templates: every output escaped unless Safe."""
    env = resource_environment(
        finalize=lambda value: value if isinstance(value, Safe) else escape("" if value is None else value))
    env.filters.update(code=code, fenced=fenced, pct=_pct, signed_pct=_signed_pct, p=_p, interval=_interval, usd=_usd,
                       count=_count, shorten=shorten, safe_md=Safe)
    return env

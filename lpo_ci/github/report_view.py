"""The JSON report read as untrusted input, reduced to what publishing shows.

In the fork-safe set-up the report is an artifact uploaded by a run of the
pull request's own code, so nothing in it is trusted: every field is type
checked, paths must stay inside the repository, and text is kept as plain
strings for the escaping templates. A malformed report is an error naming
the file and the field.
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass
from functools import cached_property
from pathlib import Path, PurePosixPath
from typing import Any, Callable

from ..errors import LpoError

STATUSES = ("pass", "fail", "error")
MAX_TEXT = 20000
MAX_SOURCE = 1_000_000  # a template's text


class ReportError(LpoError):
    """The report file cannot be read or is not an lpo-ci report."""


@dataclass
class OptimizationView:
    status: str
    reason: str
    mode: str
    dev_head: float | None
    dev_winner: float | None
    heldout_head: float | None
    heldout_winner: float | None
    heldout_n: int | None
    p_value: float | None
    calls: int
    usd: float
    head_source: str | None
    winner_source: str | None
    revert_heldout: float | None = None  # held-out accuracy of reverting the PR's change
    evidence: str = ""                   # strong, moderate, weak or none


@dataclass
class Flip:
    id: str
    target: str
    base_answer: str
    head_answer: str


@dataclass
class TemplateView:
    template: str          # relative to the project root
    path: str              # relative to the repository root (annotations, review comments)
    line: int
    data: str
    model: str
    status: str
    reason: str
    n: int | None
    base_accuracy: float | None
    head_accuracy: float | None
    base_interval: list[float] | None
    head_interval: list[float] | None
    delta: float | None
    p_value: float | None
    calls: int
    cache_hits: int
    cost: float
    flips: list[Flip]
    optimization: OptimizationView | None
    withheld: str = ""     # why the suggested fix may not be shown or posted (targets.py)
    trend: Any = None  # lpo_ci.history.trend.Trend: the base branch's last records and this head

    @property
    def has_fix(self) -> bool:
        o = self.optimization
        return bool(o and o.status == "suggested" and o.head_source and o.winner_source and not self.withheld)

    @cached_property
    def _patch(self) -> str:
        from ..patch import unified_diff

        o = self.optimization
        if o is None or not o.head_source or not o.winner_source:
            return ""
        return unified_diff(o.head_source, o.winner_source, self.path)

    @property
    def fix_patch(self) -> str:
        """The suggested fix as a patch on the repository path, rebuilt here from the two
        texts (never the report's own patch text), or "" when there is none to show."""
        return self._patch if self.has_fix else ""

    @cached_property
    def _suggestions(self) -> list:
        from ..patch import suggestions

        o = self.optimization
        if o is None or not o.head_source or not o.winner_source:
            return []
        return suggestions(o.head_source, o.winner_source)

    @property
    def fix_suggestions(self) -> list:
        """The fix as line-range suggestions (``patch.Suggestion``), derived here from the two
        texts (never the report's own lines and replacement text)."""
        return self._suggestions if self.has_fix else []


@dataclass
class ReportView:
    file: str
    tool: str
    base_rev: str | None
    templates: list[TemplateView]
    prefix: str = ""  # the project's folder in the repository, as the report says ("" or "sub/dir/")

    @property
    def regressed(self) -> list[TemplateView]:
        return [t for t in self.templates if t.status == "fail"]

    @property
    def errored(self) -> list[TemplateView]:
        return [t for t in self.templates if t.status == "error"]


class _Reader:
    """Typed access to one JSON object, with errors that say where."""

    def __init__(self, file: str, data: Any, where: str, cleaners: tuple[Callable[[str], str], ...] = ()):
        self.cleaners = cleaners  # (secrets out, then machine paths out)
        if not isinstance(data, dict):
            raise ReportError(f"{where or 'the report'}: expected an object", path=file,
                              hint="pass the file written by --lpo-report or lpo-ci eval --report")
        self.file, self.data, self.where = file, data, where

    def fail(self, key: str, expected: str) -> ReportError:
        where = f"{self.where}.{key}" if self.where else key
        return ReportError(f"{where}: expected {expected}, got {json.dumps(self.data.get(key))[:60]}",
                           path=self.file, hint="the report was not written by this lpo-ci, or was altered")

    def text(self, key: str, default: str | None = "", limit: int = MAX_TEXT, *, source: bool = False) -> str:
        """A string field, cleaned before any escaping can disguise a secret; ``source``: a
        template's text, whose paths are its own (only secrets are taken out)."""
        value = self.data.get(key, default)
        if value is None and default is None:
            return ""
        if not isinstance(value, str):
            raise self.fail(key, "a string")
        return self.clean(value, source=source)[:limit]

    def clean(self, text: str, *, source: bool = False) -> str:
        for cleaner in self.cleaners[:1] if source else self.cleaners:
            text = cleaner(text)
        return text

    def number(self, key: str, low: float = -math.inf, high: float = math.inf) -> float | None:
        value = self.data.get(key)
        if value is None:
            return None
        if isinstance(value, bool) or not isinstance(value, (int, float)) or not low <= value <= high:
            raise self.fail(key, f"a number in [{low}, {high}]")
        return float(value)

    def integer(self, key: str, default: int | None = 0, low: int = 0) -> int | None:
        value = self.data.get(key, default)
        if value is None:
            return default
        if isinstance(value, bool) or not isinstance(value, int) or value < low:
            raise self.fail(key, f"an integer >= {low}")
        return value

    def interval(self, key: str) -> list[float] | None:
        value = self.data.get(key)
        if value is None:
            return None
        if (not isinstance(value, list) or len(value) != 2
                or not all(isinstance(v, (int, float)) and not isinstance(v, bool) and 0 <= v <= 1 for v in value)):
            raise self.fail(key, "two numbers in [0, 1]")
        return [float(v) for v in value]

    def child(self, key: str) -> "_Reader | None":
        value = self.data.get(key)
        if value is None:
            return None
        where = f"{self.where}.{key}" if self.where else key
        return _Reader(self.file, value, where, self.cleaners)

    def items(self, key: str) -> list["_Reader"]:
        value = self.data.get(key) or []
        if not isinstance(value, list):
            raise self.fail(key, "a list")
        where = f"{self.where}.{key}" if self.where else key
        return [_Reader(self.file, v, f"{where}[{i}]", self.cleaners) for i, v in enumerate(value)]


def _relative_path(reader: _Reader, key: str) -> str:
    value = reader.text(key, limit=1000, source=True)  # checked as written, not made relative
    path = PurePosixPath(value)
    if not value or path.is_absolute() or ".." in path.parts or "\\" in value or any(ord(c) < 32 for c in value):
        raise reader.fail(key, "a relative path inside the repository")
    return value


def _flips(item: _Reader, limit: int = 50) -> list[Flip]:
    verdict_ids = item.data.get("right_to_wrong") or []
    if not isinstance(verdict_ids, list):
        raise item.fail("right_to_wrong", "a list of example ids")
    wanted = {str(i) for i in verdict_ids}
    flips = []
    for example in item.items("examples"):
        if str(example.data.get("id")) not in wanted:
            continue
        head, base = example.child("head"), example.child("base")
        flips.append(Flip(example.clean(str(example.data.get("id")))[:200],
                          example.clean(str(example.data.get("target", "")))[:2000],
                          base.text("response", None, 2000) if base else "",
                          head.text("response", None, 2000) if head else ""))
        if len(flips) >= limit:
            break
    return flips


def _optimization(reader: _Reader | None) -> OptimizationView | None:
    if reader is None:
        return None
    status = reader.text("status")
    if status not in ("suggested", "no_suggestion"):
        raise reader.fail("status", "'suggested' or 'no_suggestion'")
    dev, held, revert = reader.child("dev"), reader.child("heldout"), reader.child("revert")
    spent = (reader.child("budget") or _Reader(reader.file, {}, "")).child("spent")
    return OptimizationView(
        status=status, reason=reader.text("reason", limit=500), mode=reader.text("mode", limit=20),
        dev_head=dev.number("head", 0, 1) if dev else None, dev_winner=dev.number("winner", 0, 1) if dev else None,
        heldout_head=held.number("head", 0, 1) if held else None,
        heldout_winner=held.number("winner", 0, 1) if held else None,
        heldout_n=held.integer("n", None) if held else None,
        p_value=held.number("p_value", 0, 1) if held else None,
        calls=(spent.integer("calls") or 0) if spent else 0, usd=(spent.number("usd", 0) or 0.0) if spent else 0.0,
        head_source=reader.text("head_source", None, MAX_SOURCE, source=True) or None,
        winner_source=reader.text("winner_source", None, MAX_SOURCE, source=True) or None,
        revert_heldout=revert.number("heldout", 0, 1) if revert else None,
        evidence=_evidence(reader))


def _evidence(reader: _Reader) -> str:
    evidence = reader.child("evidence")
    if evidence is None:
        return ""
    strength = evidence.text("strength", None, 20)
    if strength not in ("", "strong", "moderate", "weak", "none"):
        raise evidence.fail("strength", "strong, moderate, weak or none")
    return strength


def _template(item: _Reader, prefix: str) -> TemplateView:
    template = _relative_path(item, "template")
    status = item.text("status")
    if status not in STATUSES:
        raise item.fail("status", "one of " + ", ".join(STATUSES))
    usage = item.child("usage") or _Reader(item.file, {}, "")
    head = item.child("head")
    return TemplateView(
        template=template, path=prefix + template, line=item.integer("line", 1, low=1) or 1,
        data=item.text("data", None, 200), model=item.text("model", None, 200), status=status,
        reason=item.text("reason", None, 2000), n=head.integer("n", None) if head else None,
        base_accuracy=item.number("base_accuracy", 0, 1), head_accuracy=item.number("head_accuracy", 0, 1),
        base_interval=item.interval("base_interval"), head_interval=item.interval("head_interval"),
        delta=item.number("delta", -1, 1), p_value=item.number("p_value", 0, 1),
        calls=usage.integer("calls") or 0, cache_hits=usage.integer("cache_hits") or 0,
        cost=usage.number("cost", 0) or 0.0, flips=_flips(item) if status == "fail" else [],
        optimization=_optimization(item.child("optimization")), trend=_trend(item))


def _trend(item: _Reader):
    """The template's trend from the history (``history.trend``), checked like every field."""
    from ..history.trend import parse

    history = item.child("history")
    if history is None:
        return None
    try:
        return parse(history.data.get("trend"))
    except ValueError as exc:
        raise history.fail("trend", str(exc)) from None


def load_report(path: str | Path, redact: Callable[[str], str] | None = None,
                scrub_paths: Callable[[str], str] | None = None) -> ReportView:
    """The report, checked field by field; every text goes through ``redact`` (secrets out)
    and, except a template's own text, ``scrub_paths`` (machine paths out)."""
    file = str(path)
    try:
        data = json.loads(Path(path).read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise ReportError("no such report file", path=file,
                          hint="write one with pytest --lpo --lpo-report FILE or lpo-ci eval --report FILE") from None
    except (OSError, UnicodeDecodeError) as exc:
        raise ReportError(f"cannot read the report: {exc}", path=file) from None
    except json.JSONDecodeError as exc:
        raise ReportError(f"not JSON: {exc.msg} (column {exc.colno})", path=file, line=exc.lineno,
                          hint="pass the file written by --lpo-report") from None
    root = _Reader(file, data, "", (redact or (lambda t: t), scrub_paths or (lambda t: t)))
    if not isinstance(data.get("templates"), list):
        raise root.fail("templates", "a list (is this an lpo-ci report?)")
    prefix = root.text("repo_prefix", None, 1000, source=True)
    if prefix:
        _relative_path(root, "repo_prefix")
        prefix = prefix.rstrip("/") + "/"
    return ReportView(file=file, tool=root.text("tool", None, 100), base_rev=root.text("base_rev", None, 64) or None,
                      templates=[_template(item, prefix) for item in root.items("templates")], prefix=prefix or "")

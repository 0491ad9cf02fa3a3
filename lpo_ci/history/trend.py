"""A template's trend in the pull-request comment: the base branch's last records with the
pull request's head as the last point.

The report carries the points (``history.trend`` of each template), so the
comment can be posted by a job that has no checkout (the fork-safe pair); read
back from the report they are untrusted: ``parse`` checks every field. The
block is a Mermaid ``xychart-beta`` line chart, which GitHub draws, under a
plain sparkline line that reads anywhere.
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass, field
from typing import Any

from . import record as rec
from .series import changes
from .sparkline import sparkline

POINTS = 12  # records of the base branch in a trend
_COMMIT = re.compile(r"\A[0-9a-f]{4,64}\Z")
_DATE = re.compile(r"\A\d{4}-\d{2}-\d{2}\Z")
_MARKS = re.compile(r"\A[TMD]{0,3}\Z")


@dataclass
class Point:
    commit: str
    date: str
    accuracy: float
    changes: str = ""


@dataclass
class Trend:
    points: list[Point] = field(default_factory=list)
    head: float | None = None
    left_out: int = 0  # recent records not comparable with the head (another fingerprint)

    def to_dict(self) -> dict[str, Any]:
        return {"points": [vars(p) for p in self.points], "head": self.head, "left_out": self.left_out}


def build(recent: list[dict[str, Any]], head: dict[str, Any]) -> Trend:
    """The trend from the base branch's last records (oldest first) and the head's record."""
    same = [r for r in recent if r["fingerprint"] == head["fingerprint"] and r["accuracy"] is not None
            and r["commit"]]
    points, previous = [], None
    for r in same[-POINTS:]:
        points.append(Point(r["commit"], rec.day(r["commit_date"] or r["run_date"]), r["accuracy"],
                            changes(previous, r) if previous is not None else ""))
        previous = r
    left_out = sum(r["fingerprint"] != head["fingerprint"] for r in recent[-POINTS:])
    return Trend(points, head["accuracy"], left_out)


def parse(value: Any) -> Trend | None:
    """A trend read from an untrusted report; ValueError says which field is wrong."""
    if value is None:
        return None
    if not isinstance(value, dict) or not isinstance(value.get("points", []), list):
        raise ValueError("an object with a list of points")
    points = []
    for index, p in enumerate(value.get("points", [])[:POINTS * 4]):
        ok = (isinstance(p, dict) and isinstance(p.get("commit"), str) and _COMMIT.match(p["commit"])
              and isinstance(p.get("date"), str) and _DATE.match(p["date"]) and _share(p.get("accuracy"))
              and isinstance(p.get("changes", ""), str) and _MARKS.match(p.get("changes", "")))
        if not ok:
            raise ValueError(f"point {index}: a commit id, a YYYY-MM-DD date, an accuracy in [0, 1] and T/M/D marks")
        points.append(Point(p["commit"], p["date"], float(p["accuracy"]), p.get("changes", "")))
    head = value.get("head")
    if head is not None and not _share(head):
        raise ValueError("head: an accuracy in [0, 1]")
    left_out = value.get("left_out", 0)
    if not isinstance(left_out, int) or isinstance(left_out, bool) or left_out < 0:
        raise ValueError("left_out: an integer >= 0")
    return Trend(points[-POINTS:], None if head is None else float(head), left_out)


def _share(value: Any) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value) and 0 <= value <= 1


def _axis(values: list[float]) -> tuple[int, int]:
    low = max(0, math.floor((min(values) * 100 - 5) / 10) * 10)
    high = min(100, math.ceil((max(values) * 100 + 5) / 10) * 10)
    return low, max(high, low + 10)


def markdown(title: str, trend: Trend) -> str:
    """The block for one template: a sparkline line, then the Mermaid chart. ``title`` must be
    safe Markdown already (the caller escapes it)."""
    values = [p.accuracy for p in trend.points] + ([trend.head] if trend.head is not None else [])
    if len(values) < 2:
        return ""
    labels = _unique([p.commit[:7] for p in trend.points] + (["head"] if trend.head is not None else []))
    first, last = values[0], values[-1]
    where = "this pull request's head" if trend.head is not None else "the latest record"
    note = f"; {trend.left_out} recent record{'s' * (trend.left_out != 1)} with other settings left out" \
        if trend.left_out else ""
    low, high = _axis(values)
    numbers = ", ".join(f"{v * 100:.1f}" for v in values)
    return (f"{title} `{sparkline(values)}` {first:.1%} → **{last:.1%}** at {where} "
            f"({len(trend.points)} earlier record{'s' * (len(trend.points) != 1)} of the base branch{note})\n\n"
            "```mermaid\nxychart-beta\n"
            f"  x-axis [{', '.join(repr_label(label) for label in labels)}]\n"
            f"  y-axis \"accuracy (%)\" {low} --> {high}\n"
            f"  line [{numbers}]\n```\n")


def _unique(labels: list[str]) -> list[str]:
    """Mermaid draws equal category labels at one place: number the repeats (a commit run twice)."""
    seen: dict[str, int] = {}
    result = []
    for label in labels:
        seen[label] = seen.get(label, 0) + 1
        result.append(label if seen[label] == 1 else f"{label}-{seen[label]}")
    return result


def repr_label(label: str) -> str:
    """A Mermaid string; labels are commit prefixes (hex), 'head' and '-N', checked before."""
    return '"' + re.sub(r"[^0-9A-Za-z-]", "", label) + '"'


def comment_section(blocks: list[tuple[str, Trend]]) -> str:
    """The trend blocks of a comment (``(safe Markdown title, trend)`` per template), or ""."""
    return "\n".join(text for text in (markdown(title, trend) for title, trend in blocks) if text)

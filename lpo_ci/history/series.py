"""A template's records over time, across renames, and what changed between them.

A record made right after a rename names the old path (``renamed_from``); the
old path's records from before that moment then belong to the new path's
series, so a renamed template keeps its history. A path that is created again
after it was renamed away starts a series of its own.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import Any

from .store import Shard, template_key

MAX_RENAMES = 50  # a chain longer than this is a loop in hand-edited data

Keep = Callable[[dict[str, Any]], bool]


@dataclass
class Part:
    """The records of one shard whose run date is in [low, high) (None: unbounded)."""

    shard: Shard
    low: str | None = None
    high: str | None = None

    def holds(self, record: dict[str, Any]) -> bool:
        date = record["run_date"]
        return (self.low is None or date >= self.low) and (self.high is None or date < self.high)


@dataclass
class Series:
    """One template's history: its parts newest first (the current path, then older paths)."""

    template: str
    parts: list[Part] = field(default_factory=list)

    @property
    def paths(self) -> list[str]:
        return [p.shard.key for p in self.parts]

    def newest_first(self) -> Iterator[dict[str, Any]]:
        for part in self.parts:
            for found in part.shard.reversed():
                if part.holds(found):
                    yield found

    def records(self) -> list[dict[str, Any]]:
        """Every record, oldest first."""
        result = []
        for part in reversed(self.parts):
            records = part.shard.records()
            result += records if part.low is None and part.high is None else [r for r in records if part.holds(r)]
        return result

    def tail(self, count: int | None, keep: Keep | None = None) -> list[dict[str, Any]]:
        """The last ``count`` records that ``keep`` accepts (all of them for None), oldest first."""
        if count is None:
            return [r for r in self.records() if keep is None or keep(r)]
        found: list[dict[str, Any]] = []
        for candidate in self.newest_first():
            if len(found) >= count:
                break
            if keep is None or keep(candidate):
                found.append(candidate)
        return found[::-1]


def _links(shards: dict[str, Shard]) -> dict[str, tuple[str, str]]:
    """New path -> (old path, run date of the first record under the new path), from the
    ``renamed_from`` of each shard's first record and of every record parsed so far."""
    links: dict[str, tuple[str, str]] = {}
    for name, shard in shards.items():
        for found in [shard.first()] + shard.parsed():
            if found and found.get("renamed_from"):
                old = template_key(found["renamed_from"], found.get("repo_prefix", ""))
                if old != name and old in shards and (name not in links or found["run_date"] < links[name][1]):
                    links[name] = (old, found["run_date"])
    return links


def build(shards: dict[str, Shard]) -> dict[str, Series]:
    """Repository path of a template -> its series, for every template with a series of its own."""
    links = _links(shards)
    away: dict[str, list[str]] = {}  # old shard -> the times it was renamed away, sorted
    for old, date in links.values():
        away.setdefault(old, []).append(date)
    for dates in away.values():
        dates.sort()
    result = {}
    for name, shard in shards.items():
        low = away[name][-1] if name in away else None
        newest = next(shard.reversed(), None)
        if newest is None or (low is not None and newest["run_date"] < low):
            continue  # everything here belongs to the series of the path it was renamed to
        series = Series(name, [Part(shard, low=low)])
        current, seen = name, {name}
        while current in links and len(series.parts) <= MAX_RENAMES:
            old, date = links[current]
            if old in seen:
                break
            seen.add(old)
            earlier = [d for d in away.get(old, []) if d < date]
            series.parts.append(Part(shards[old], low=earlier[-1] if earlier else None, high=date))
            current = old
        result[series.template] = series
    return result


def select(all_series: dict[str, Series], wanted: list[str] | None) -> list[Series]:
    """The series for the templates asked for (by current or former path), else all, by path."""
    if not wanted:
        return [all_series[k] for k in sorted(all_series)]
    chosen = []
    for template in wanted:
        match = all_series.get(template) or next(
            (s for s in all_series.values() if template in s.paths
             or any(p.endswith("/" + template) for p in s.paths)), None)
        if match is not None and match not in chosen:
            chosen.append(match)
    return chosen


# --- what changed between two consecutive records ---------------------------------

TEMPLATE, MODEL, DATA = "T", "M", "D"
CHANGE_NAMES = {TEMPLATE: "template text changed", MODEL: "model changed",
                DATA: "data, scorer or spec changed"}


def changes(previous: dict[str, Any] | None, current: dict[str, Any]) -> str:
    """Markers for what changed since ``previous``: T template text, M model (as configured
    or as the provider reported it), D data/scorer/spec (a new fingerprint with the same model)."""
    if previous is None:
        return ""
    marks = ""
    if previous["template_sha"] != current["template_sha"]:
        marks += TEMPLATE
    before, after = previous["reported_models"], current["reported_models"]
    model_changed = previous["model"] != current["model"] or bool(before and after and before.keys() != after.keys())
    if model_changed:
        marks += MODEL
    elif previous["fingerprint"] != current["fingerprint"]:
        marks += DATA
    return marks


def comparable(a: dict[str, Any] | None, b: dict[str, Any]) -> bool:
    """Same fingerprint: same data, sample, scorer and model settings, so pairable."""
    return a is not None and a["fingerprint"] == b["fingerprint"]


def reported(record: dict[str, Any]) -> str:
    """The provider-reported model ids and fingerprints of a record, for messages."""
    models = ", ".join(record.get("reported_models") or {}) or "no model id"
    prints = ", ".join(record.get("system_fingerprints") or {})
    return f"{models} ({prints})" if prints else models

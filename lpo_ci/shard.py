"""Split a run's templates over N CI jobs, and join the jobs' reports into one.

Each job of a CI matrix runs ``--lpo-shard K/N`` on the same checkout and
computes the same plan: templates ordered by expected cost (samples, twice
when the base version differs and both versions are scored), each given to
the shard with the least work so far. Nothing is coordinated at run time,
so the plan must be a pure function of what every job sees.

A shard's report says which shard it is, which plan it followed and which
commits it evaluated; ``lpo-ci report merge`` refuses to join reports that
disagree on any of it, or that leave a shard out or bring one twice, since a
merged report that silently lacks a template would pass a gate it never ran.
"""

from __future__ import annotations

import hashlib
import json
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Iterable

from .errors import LpoError, SpecError

SHARD_SPEC = re.compile(r"^\s*(\d+)\s*/\s*(\d+)\s*$")
SHARD_HINT = "write K/N with 1 <= K <= N, e.g. 2/4 for the second of four jobs"


class MergeError(LpoError):
    """Shard reports that cannot be joined into one trustworthy report."""


@dataclass(frozen=True)
class Shard:
    index: int  # 1-based, as CI matrices count
    count: int

    @classmethod
    def parse(cls, text: str, option: str = "--lpo-shard") -> "Shard":
        match = SHARD_SPEC.match(str(text))
        if not match:
            raise SpecError(f"{option}: '{text}' is not K/N", hint=SHARD_HINT)
        index, count = int(match[1]), int(match[2])
        if count < 1 or not 1 <= index <= count:
            raise SpecError(f"{option}: shard {index} of {count} does not exist", hint=SHARD_HINT)
        return cls(index, count)

    def __str__(self) -> str:
        return f"{self.index}/{self.count}"


def expected_cost(template, base_source: str | None) -> int:
    """Model calls the template will take: its samples, twice when base and head differ."""
    changed = base_source is not None and base_source != template.source
    return template.spec.samples * (2 if changed else 1)


def plan(costs: dict[str, int], count: int) -> list[list[str]]:
    """Templates per shard: costliest first, each to the least loaded shard (ties: lowest index).

    The order is fixed by (cost, path) alone, so every job derives the same plan.
    """
    loads = [0] * count
    shards: list[list[str]] = [[] for _ in range(count)]
    for relpath in sorted(costs, key=lambda p: (-costs[p], p)):
        target = min(range(count), key=lambda i: (loads[i], i))
        shards[target].append(relpath)
        loads[target] += costs[relpath]
    return [sorted(s) for s in shards]


def plan_digest(costs: dict[str, int], count: int) -> str:
    """What every shard of one run must agree on: the templates, their costs and N."""
    canonical = json.dumps({"count": count, "costs": sorted(costs.items())}, separators=(",", ":"))
    return hashlib.sha256(canonical.encode()).hexdigest()[:16]


def assign(session, templates: Iterable[tuple[str, Any]], shard: Shard) -> tuple[set[str], dict[str, Any]]:
    """This shard's templates (by relative path) and the record its report carries.

    ``templates`` are (relative path, template) pairs; a template that could not be read
    (None) still belongs to exactly one shard, whose report lists it as an error.
    """
    from . import __version__, vcs

    root = session.settings.root
    base_rev = None if session.base.error is not None else session.base_rev
    templates = list(templates)
    readable = {relpath: t for relpath, t in templates if t is not None}
    repo_paths = {relpath: vcs.repo_path(t.path) for relpath, t in readable.items()}
    bases = vcs.show_many(root, base_rev, [p for p in repo_paths.values() if p]) if base_rev else {}
    costs = {relpath: expected_cost(t, bases.get(repo_paths.get(relpath) or "")) if t is not None else 1
             for relpath, t in templates}
    mine = plan(costs, shard.count)[shard.index - 1]
    record = {
        "index": shard.index, "count": shard.count, "templates": mine,
        "cost": sum(costs[p] for p in mine), "plan": plan_digest(costs, shard.count),
        "base_rev": base_rev, "head_rev": vcs.head_rev(root), "tool": f"lpo-ci {__version__}",
    }
    return set(mine), record


def shard_note(record: dict[str, Any]) -> str:
    from .report import plural

    return (f"shard {record['index']}/{record['count']}: {plural(len(record['templates']), 'template')}, "
            f"{record['cost']} expected calls; join the shards' reports with lpo-ci report merge")


# --------------------------------------------------------------------------
# Joining shard reports.
# --------------------------------------------------------------------------

def _read(path: Path) -> dict[str, Any]:
    if not path.is_file():
        raise MergeError("no such report file", path=path, hint="check the artifact download and the file names")
    try:
        data = json.loads(path.read_bytes())
    except (OSError, ValueError) as exc:  # ValueError: JSON or UTF-8 decoding
        raise MergeError(f"not a readable JSON report: {getattr(exc, 'msg', exc)}", path=path,
                         line=getattr(exc, "lineno", None),
                         hint="the shard job may have died while writing it: rerun that job") from None
    if not isinstance(data, dict) or not isinstance(data.get("templates"), list):
        raise MergeError("not an lpo-ci report (no 'templates' list)", path=path,
                         hint="pass the files written by --lpo-report / lpo-ci eval --report")
    shard = data.get("shard")
    if not isinstance(shard, dict) or not all(
            isinstance(shard.get(k), int) and not isinstance(shard.get(k), bool) for k in ("index", "count")) \
            or not isinstance(shard.get("templates"), list):
        raise MergeError("not a shard report (no 'shard' record)", path=path,
                         hint="write the reports with pytest --lpo --lpo-shard K/N or lpo-ci eval --shard K/N")
    return data


# Fields every shard of one run must share: (where to read it, what it means to a user).
_SAME = (
    (lambda d: d["shard"]["count"], "shard count"),
    (lambda d: d.get("tool"), "lpo-ci version"),
    (lambda d: d.get("version"), "report format version"),
    (lambda d: d["shard"].get("base_rev"), "base commit"),
    (lambda d: d["shard"].get("head_rev"), "evaluated commit"),
    (lambda d: d["shard"].get("plan"), "shard plan (the set of templates or their sample sizes differ)"),
    (lambda d: d.get("repo_prefix"), "project directory in the repository"),
)


# pytest exit statuses that no template verdict explains: interrupted (collection errors),
# internal error, usage error.
PYTEST_TROUBLE = (2, 3, 4)


def troubled_shards(paths: list[str | Path]) -> list[str]:
    """Shards whose pytest run failed outside the templates' verdicts, as messages naming the file."""
    found = []
    for path in paths:
        record = _read(Path(path))["shard"]
        status = record.get("pytest_exit_status")
        if status in PYTEST_TROUBLE:
            found.append(f"{path}: shard {record['index']}/{record['count']}'s pytest run ended with status "
                         f"{status} (a collection or usage error outside the templates' verdicts: see that "
                         f"job's log)")
    return found


def merge_reports(paths: list[str | Path]) -> dict[str, Any]:
    """One report equal to an unsharded run's, from the reports of shards 1..N of one run."""
    from .report import build_report

    if not paths:
        raise MergeError("no shard reports given", hint="lpo-ci report merge shard-*.json -o report.json")
    reports = [(Path(p), _read(Path(p))) for p in paths]
    first_path, first = reports[0]
    for path, data in reports[1:]:
        for read, what in _SAME:
            if read(data) != read(first):
                raise MergeError(f"{what} differs from {first_path.name}'s: {read(data)!r} here, "
                                 f"{read(first)!r} there", path=path,
                                 hint="merge only the shard reports of one run of one commit")
    count = first["shard"]["count"]
    by_index: dict[int, Path] = {}
    for path, data in reports:
        index = data["shard"]["index"]
        if not 1 <= index <= count:
            raise MergeError(f"shard {index}/{count} does not exist", path=path)
        if index in by_index:
            raise MergeError(f"shard {index}/{count} given twice: also in {by_index[index]}", path=path,
                             hint="pass each shard's report once")
        by_index[index] = path
    missing = sorted(set(range(1, count + 1)) - set(by_index))
    if missing:
        raise MergeError(f"shard report(s) missing: {', '.join(f'{i}/{count}' for i in missing)} "
                         f"(got {', '.join(f'{by_index[i].name} = {i}/{count}' for i in sorted(by_index))})",
                         hint="every shard job must upload its report, even a failing one (if: always())")
    items: list[dict[str, Any]] = []
    owner: dict[str, Path] = {}
    for path, data in reports:
        assigned = set(data["shard"]["templates"])
        for item in data["templates"]:
            name = item.get("template") if isinstance(item, dict) else None
            if not isinstance(name, str):
                raise MergeError("a template entry without a 'template' path", path=path)
            if name in owner:
                raise MergeError(f"template {name} is also in {owner[name]}", path=path,
                                 hint="merge only the shard reports of one run")
            if name not in assigned:
                raise MergeError(f"template {name} was not assigned to shard {data['shard']['index']}/{count}",
                                 path=path, hint="merge only the shard reports of one run")
            owner[name] = path
            items.append(item)
    base_rev = first["shard"].get("base_rev")
    warnings = list(dict.fromkeys(w for _, d in reports for w in d.get("warnings") or []))
    merged = build_report(items, base_rev=base_rev if items else None,
                          reference=first.get("reference") if items else None, extra={"warnings": warnings})
    merged["repo_prefix"] = first.get("repo_prefix", "")
    merged["created"] = max(str(d.get("created") or "") for _, d in reports) or merged["created"]
    return merged

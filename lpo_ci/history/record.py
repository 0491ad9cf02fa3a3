"""One history record per template per evaluated commit: one line of JSON.

A record says what was measured (template path and a hash of its text, the
spec fingerprint, the model as configured and as the provider reported it),
where (commit, parent, commit date and subject, ref, event), when (run date),
what came out (n, correct, accuracy with its 95% interval, format failures,
errors, tokens, cost, seconds), and, last on the line, the per-example
outcomes: the example ids in sample order and one character per example
(``c`` correct, ``w`` wrong, ``f`` format failure, ``e`` error). Two records
with the same fingerprint can so be compared pair by pair without a model
call.

Ids are stored as one space-separated string (a JSON list when an id holds
whitespace or is empty): a list of a hundred strings costs a JSON parser
several times what the rest of the record does, and histories are read whole.
"""

from __future__ import annotations

import functools
import hashlib
import json
import re
from pathlib import PurePosixPath
from typing import Any

FORMAT = 1  # bump when the shape changes; readers upgrade older records (see ``upgrade``)

OUTCOME_CODES = {"correct": "c", "wrong": "w", "format_failure": "f", "error": "e"}
CORRECT, WRONG, FORMAT_FAILURE, ERROR = "c", "w", "f", "e"
EVENTS = ("push", "schedule", "manual", "pull_request")
# Fields an older writer may lack, with what a reader assumes (``renamed_from`` and ``dirty`` are
# written only when they apply: read them with ``.get``).
DEFAULTS: dict[str, Any] = {
    "run": "", "tool": "", "repo_prefix": "", "commit": None,
    "parent": None, "commit_date": None, "subject": "", "ref": "", "event": "manual", "data": "",
    "model": "", "reported_models": {}, "system_fingerprints": {}, "status": "", "correct": None,
    "accuracy": None, "interval": None, "format_failures": 0, "errors": 0, "tokens": 0, "cost": 0.0,
    "seconds": 0.0, "ids": None, "outcomes": None,
}
_DEFAULT_KEYS = frozenset(DEFAULTS)
_EMPTY: dict = {}
_TEXTS = ("model", "subject", "ref", "event", "data", "status")  # read as text by the views
_OPTIONAL_TEXTS = ("commit_date", "parent")
_OUTCOME_STRING = re.compile(r"\A[cwfe]*\Z")
_HEX = re.compile(r"\A[0-9a-f]{4,64}\Z")


class RecordError(ValueError):
    """A line that is not a usable record; the message says why."""


class NewerFormat(RecordError):
    """A record written by a newer lpo-ci: readable only after an upgrade."""


def text_sha(text: str) -> str:
    """The hash that says whether a template's text changed (16 hex digits of sha256)."""
    return hashlib.sha256(text.encode("utf-8")).hexdigest()[:16]


def pack_ids(ids: list[str]) -> str | list[str]:
    if all(i and not any(c.isspace() for c in i) for i in ids):
        return " ".join(ids)
    return list(ids)


def unpack_ids(value: str | list[str] | None) -> list[str]:
    if value is None:
        return []
    if isinstance(value, str):
        return value.split(" ") if value else []
    return list(value)


def outcomes(record: dict[str, Any]) -> dict[str, str]:
    """Example id -> outcome code; empty for a record without per-example outcomes."""
    packed = record.get("outcomes")
    if not packed:
        return {}
    return dict(zip(unpack_ids(record.get("ids")), packed))


def relative_path(value: Any) -> bool:
    """Whether ``value`` is a relative path that stays inside the repository."""
    return isinstance(value, str) and _relative_path(value)


@functools.lru_cache(maxsize=4096)  # a history names few paths, each many times
def _relative_path(value: str) -> bool:
    if not value or "\\" in value or any(ord(c) < 32 for c in value):
        return False
    path = PurePosixPath(value)
    return not path.is_absolute() and ".." not in path.parts and ".git" not in path.parts


def build(item: dict[str, Any], context: dict[str, Any], *, template_sha: str,
          renamed_from: str | None = None, dirty: bool = False) -> dict[str, Any] | None:
    """The record of one report item (``None`` for an item without a trustworthy head result).

    ``context`` holds what is common to a run: run, tool, repo_prefix, commit, parent,
    commit_date, subject, run_date, ref, event.
    """
    head = item.get("head")
    if item.get("status") not in ("pass", "fail") or not head or not item.get("fingerprint"):
        return None
    examples = item.get("examples") or []
    ids = [str(e["id"]) for e in examples]
    packed = "".join(OUTCOME_CODES.get((e.get("head") or {}).get("outcome") or "", ERROR) for e in examples)
    usage = head.get("usage") or {}
    record = {
        "format": FORMAT, "run": context.get("run", ""), "tool": context.get("tool", ""),
        "template": item["template"], "repo_prefix": context.get("repo_prefix", ""),
    }
    if renamed_from:
        record["renamed_from"] = renamed_from
    record["template_sha"] = template_sha
    if dirty:
        record["dirty"] = True
    record.update({key: context.get(key, DEFAULTS.get(key)) for key in
                   ("commit", "parent", "commit_date", "subject", "run_date", "ref", "event")})
    record.update({"fingerprint": item["fingerprint"], "data": item.get("data") or ""})
    for key, value in item.items():  # the scorer and its version, as the report carries them
        if key.startswith("scorer") and isinstance(value, (str, int, float)):
            record[key] = value
    record.update({
        "model": item.get("model") or "", "reported_models": head.get("reported_models") or {},
        "system_fingerprints": head.get("system_fingerprints") or {}, "status": item["status"],
        "n": head.get("n", len(ids)), "correct": head.get("correct"), "accuracy": _round(head.get("accuracy")),
        "interval": [_round(v) for v in head["interval"]] if head.get("interval") else None,
        "format_failures": head.get("format_failures", 0),
        "errors": head.get("errors", 0), "tokens": usage.get("tokens", 0), "cost": usage.get("cost", 0.0),
        "seconds": head.get("seconds", 0.0), "ids": pack_ids(ids), "outcomes": packed,
    })
    return record


def _round(value: float | None) -> float | None:
    """Six decimals: exact enough for any accuracy, and quicker to read back than seventeen."""
    return None if value is None else round(value, 6)


def dumps(record: dict[str, Any]) -> str:
    """One line, no spaces, non-ASCII kept: the store's line format."""
    return json.dumps(record, ensure_ascii=False, separators=(",", ":"))


def _number(value: Any) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool)


def upgrade(data: dict[str, Any]) -> dict[str, Any]:
    """Bring a record of an older format to this one (format 1 is the first: defaults only)."""
    if _DEFAULT_KEYS.issubset(data):  # as written by this version
        return data
    for key in _DEFAULT_KEYS - data.keys():
        value = DEFAULTS[key]
        data[key] = dict(value) if isinstance(value, dict) else value
    return data


def check(data: Any) -> dict[str, Any]:
    """The record, upgraded, or a RecordError that says what is wrong with it."""
    if _well_formed(data):
        return upgrade(data)
    _explain(data)
    return upgrade(data)  # only what ``_explain`` accepts gets here (a list of ids, an int accuracy, ...)


def _share(value: Any) -> bool:
    return (type(value) is float or type(value) is int) and 0 <= value <= 1


@functools.lru_cache(maxsize=65536)  # many records name each commit (one per template)
def _commit_id(value: str) -> bool:
    return bool(_HEX.match(value))


def _well_formed(data: Any) -> bool:
    """The common case, checked cheaply (histories are read whole): what this lpo-ci writes."""
    if type(data) is not dict:
        return False
    version, sha, fingerprint, date = data.get("format"), data.get("template_sha"), data.get("fingerprint"), \
        data.get("run_date")
    if not (type(version) is int and 1 <= version <= FORMAT and type(sha) is str and sha
            and type(fingerprint) is str and fingerprint and type(date) is str and date):
        return False
    template, commit, n = data.get("template"), data.get("commit"), data.get("n")
    if not (type(template) is str and _relative_path(template) and type(n) is int and n >= 0
            and (commit is None or (type(commit) is str and _commit_id(commit)))):
        return False
    accuracy, interval = data.get("accuracy"), data.get("interval")
    if not (accuracy is None or _share(accuracy)):
        return False
    if interval is not None and not (type(interval) is list and len(interval) == 2
                                     and _share(interval[0]) and _share(interval[1])):
        return False
    if not (type(data.get("reported_models", _EMPTY)) is dict and type(data.get("system_fingerprints", _EMPTY)) is dict
            and type(data.get("tokens", 0)) is int and type(data.get("cost", 0.0)) in (float, int)
            and all(type(data.get(key, "")) is str for key in _TEXTS)
            and all(type(data.get(key)) in (str, type(None)) for key in _OPTIONAL_TEXTS)
            and data.get("renamed_from") is None and data.get("dirty", False) in (True, False)):
        return False
    packed, ids = data.get("outcomes"), data.get("ids")
    return packed is None or (type(packed) is str and not packed.strip("cwfe") and type(ids) is str
                              and (ids.count(" ") + 1 if ids else 0) == len(packed))


def _explain(data: Any) -> None:
    """Raise the RecordError that says what is wrong (or return for an unusual but valid record)."""
    if not isinstance(data, dict):
        raise RecordError("not a JSON object")
    version = data.get("format")
    if not isinstance(version, int) or isinstance(version, bool) or version < 1:
        raise RecordError("no record format number ('format')")
    if version > FORMAT:
        raise NewerFormat(f"written in record format {version} by a newer lpo-ci "
                          f"(this one reads up to format {FORMAT})")
    for key in ("template_sha", "fingerprint", "run_date"):
        if not isinstance(data.get(key), str) or not data[key]:
            raise RecordError(f"'{key}' must be a non-empty string")
    if not relative_path(data.get("template")):
        raise RecordError("'template' must be a relative path inside the repository")
    commit = data.get("commit")
    if commit is not None and not (isinstance(commit, str) and _HEX.match(commit)):
        raise RecordError("'commit' must be a hexadecimal commit id")
    n = data.get("n")
    if not isinstance(n, int) or isinstance(n, bool) or n < 0:
        raise RecordError("'n' must be an integer >= 0")
    accuracy = data.get("accuracy")
    if accuracy is not None and not (_number(accuracy) and 0 <= accuracy <= 1):
        raise RecordError("'accuracy' must be a number between 0 and 1")
    interval = data.get("interval")
    if interval is not None and not (isinstance(interval, list) and len(interval) == 2
                                     and all(_number(v) and 0 <= v <= 1 for v in interval)):
        raise RecordError("'interval' must be two numbers between 0 and 1")
    for key in ("reported_models", "system_fingerprints"):
        value = data.get(key, _EMPTY)
        if not isinstance(value, dict) or not all(isinstance(k, str) and _number(v) for k, v in value.items()):
            raise RecordError(f"'{key}' must map names to counts")
    for key in ("tokens", "cost", "seconds"):
        if not _number(data.get(key, 0)):
            raise RecordError(f"'{key}' must be a number")
    for key in _TEXTS + _OPTIONAL_TEXTS:
        value = data.get(key, "")
        if not (isinstance(value, str) or (value is None and key in _OPTIONAL_TEXTS)):
            raise RecordError(f"'{key}' must be a string")
    if data.get("renamed_from") is not None and not relative_path(data["renamed_from"]):
        raise RecordError("'renamed_from' must be a relative path inside the repository")
    if not isinstance(data.get("dirty", False), bool):
        raise RecordError("'dirty' must be true or false")
    packed = data.get("outcomes")
    if packed is not None:
        if not isinstance(packed, str) or not _OUTCOME_STRING.match(packed):
            raise RecordError("'outcomes' must be a string of c, w, f and e")
        ids = data.get("ids")
        if not (isinstance(ids, str) or (isinstance(ids, list) and all(isinstance(i, str) for i in ids))):
            raise RecordError("'ids' must be a string of space-separated ids or a list of strings")
        if len(unpack_ids(ids)) != len(packed):
            raise RecordError("'ids' and 'outcomes' differ in length")


def loads(line: str | bytes) -> dict[str, Any]:
    try:
        data = json.loads(line.decode("utf-8") if isinstance(line, bytes) else line)
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise RecordError(f"not JSON ({getattr(exc, 'msg', exc)})") from None
    return check(data)


def short(commit: str | None) -> str:
    return commit[:8] if commit else "-"


def day(date: str | None) -> str:
    """The date part of an ISO timestamp, for tables and messages."""
    return date[:10] if date else "-"

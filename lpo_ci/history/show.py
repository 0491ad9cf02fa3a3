"""``lpo-ci history show``: per template, the last records as a table with a sparkline.

Marks say what changed from one record to the next (T template text, M model,
D data, scorer or spec); records with different fingerprints are not
comparable, so the sparkline leaves a gap between them instead of joining them.
"""

from __future__ import annotations

import csv
import io
import json
from collections.abc import Callable
from datetime import datetime
from typing import Any

from ..errors import LpoError
from . import record as rec
from .series import CHANGE_NAMES, Series, changes
from .sparkline import sparkline

DEFAULT_LAST = 20
FORMATS = ("table", "json", "csv")
CSV_COLUMNS = ("template", "commit", "commit_date", "run_date", "ref", "event", "accuracy", "interval_low",
               "interval_high", "n", "correct", "format_failures", "errors", "model", "reported_models",
               "system_fingerprints", "tokens", "cost", "seconds", "fingerprint", "template_sha", "changes")


def parse_since(value: str) -> str:
    """A date or date-time (ISO 8601), as the prefix that run dates compare with."""
    try:
        parsed = datetime.fromisoformat(value.replace("Z", "+00:00"))
    except ValueError:
        raise LpoError(f"--since {value!r} is not a date", hint="write it as 2026-01-31 or 2026-01-31T12:00") from None
    if parsed.tzinfo is not None:
        from datetime import timezone

        parsed = parsed.astimezone(timezone.utc).replace(tzinfo=None)
    return parsed.strftime("%Y-%m-%dT%H:%M:%S") if "T" in value or " " in value else parsed.strftime("%Y-%m-%d")


def ref_filter(ref: str | None) -> Callable[[dict[str, Any]], bool] | None:
    if not ref:
        return None
    wanted = {ref, f"refs/heads/{ref}", f"refs/tags/{ref}"}
    return lambda r: r["ref"] in wanted


def rows(series: Series, last: int | None, keep=None) -> list[tuple[dict[str, Any], str]]:
    """(record, change marks) for the last records; the marks compare with the record before,
    even when that one is not shown."""
    found = series.tail(None if last is None else last + 1, keep)
    shown = found if last is None or len(found) <= last else found[1:]
    previous = None if len(shown) == len(found) else found[0]
    result = []
    for current in shown:
        result.append((current, changes(previous, current)))
        previous = current
    return result


def _model(record: dict[str, Any]) -> str:
    ids = [m for m in record["reported_models"] if m != record["model"] and not record["model"].endswith("/" + m)]
    return record["model"] + (f" ({', '.join(ids)})" if ids else "")


def _line(record: dict[str, Any], marks: str) -> list[str]:
    interval = record["interval"]
    accuracy = record["accuracy"]
    return [rec.short(record["commit"]) + ("*" if record.get("dirty") else ""),
            rec.day(record["commit_date"] or record["run_date"]),
            "-" if accuracy is None else f"{accuracy:.1%}",
            f"[{interval[0]:.1%}, {interval[1]:.1%}]" if interval else "-",
            str(record["n"]), _model(record), f"${record['cost']:.4f}", marks]


def spark(lines: list[tuple[dict[str, Any], str]]) -> str:
    values = [r["accuracy"] for r, _ in lines]
    breaks = {i for i, (r, _) in enumerate(lines) if i and r["fingerprint"] != lines[i - 1][0]["fingerprint"]}
    return sparkline(values, breaks)


def table(selected: list[Series], last: int | None, keep=None) -> str:
    out = []
    header = ["commit", "date", "accuracy", "95% interval", "n", "model", "cost", "changes"]
    dirty = False
    for series in selected:
        lines = rows(series, last, keep)
        if not lines:
            continue
        first, latest = lines[0][0]["accuracy"], lines[-1][0]["accuracy"]
        title = series.template
        if len(series.paths) > 1:
            title += f" (formerly {', '.join(series.paths[1:])})"
        trend = f"{first:.1%} -> {latest:.1%}" if first is not None and latest is not None else ""
        out.append(f"{title}  {spark(lines)}  {trend}, {len(lines)} record{'s' * (len(lines) != 1)}")
        cells = [header] + [_line(r, marks) for r, marks in lines]
        dirty = dirty or any(r.get("dirty") for r, _ in lines)
        widths = [max(len(row[c]) for row in cells) for c in range(len(header))]
        for row in cells:
            parts = [cell.rjust(w) if c in (2, 4, 6) else cell.ljust(w) for c, (cell, w) in enumerate(zip(row, widths))]
            out.append("  " + "  ".join(parts).rstrip())
        out.append("")
    if not out:
        return "no history records match\n"
    legend = "changes: " + "; ".join(f"{k} {v}" for k, v in CHANGE_NAMES.items())
    out.append(legend + "; a gap in a sparkline separates records that are not comparable"
               + ("; * uncommitted changes" if dirty else ""))
    return "\n".join(out) + "\n"


def as_json(selected: list[Series], last: int | None, keep=None) -> str:
    data = {"format": rec.FORMAT, "templates": [
        {"template": s.template, "paths": s.paths,
         "records": [{**r, "changes": marks} for r, marks in rows(s, last, keep)]} for s in selected]}
    return json.dumps(data, indent=1, ensure_ascii=False) + "\n"


def as_csv(selected: list[Series], last: int | None, keep=None) -> str:
    buffer = io.StringIO()
    writer = csv.writer(buffer, lineterminator="\n")
    writer.writerow(CSV_COLUMNS)
    for series in selected:
        for r, marks in rows(series, last, keep):
            interval = r["interval"] or [None, None]
            values = {**r, "template": series.template, "interval_low": interval[0], "interval_high": interval[1],
                      "reported_models": ";".join(r["reported_models"]),
                      "system_fingerprints": ";".join(r["system_fingerprints"]), "changes": marks}
            writer.writerow(["" if values.get(c) is None else values.get(c) for c in CSV_COLUMNS])
    return buffer.getvalue()


def render(selected: list[Series], fmt: str = "table", last: int | None = DEFAULT_LAST,
           since: str | None = None, ref: str | None = None) -> str:
    by_ref = ref_filter(ref)
    since_prefix = parse_since(since) if since else None

    def keep(r: dict[str, Any]) -> bool:
        return (since_prefix is None or r["run_date"] >= since_prefix) and (by_ref is None or by_ref(r))

    chosen = keep if (since_prefix or by_ref) else None
    return {"table": table, "json": as_json, "csv": as_csv}[fmt](selected, last, chosen)

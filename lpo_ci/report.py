"""The terminal summary table and the JSON report.

The JSON report is the contract with the GitHub Action and the optimizer:
its shape is documented in the README (``REPORT_VERSION`` bumps on change).
"""

from __future__ import annotations

import json
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

from . import __version__

REPORT_VERSION = 1

COLUMNS = ("template", "data", "n", "base", "head", "delta", "p", "verdict",
           "calls", "cached", "tokens", "cost", "seconds")


def _pct(value: float | None) -> str:
    return "-" if value is None else f"{value:.1%}"


STORED = " (stored)"  # marks a base accuracy read from the stored baseline, not from git
PLAIN_REASONS = ("no significant drop", "template unchanged from the base version")


def plural(count: int, word: str) -> str:
    return f"{count} {word}{'' if count == 1 else 's'}"


def row_cells(item: dict[str, Any]) -> list[str]:
    usage = item.get("usage") or {}
    head = item.get("head") or {}
    delta = item.get("delta")
    p = item.get("p_value")
    base = _pct(item.get("base_accuracy"))
    if item.get("reference") == "baseline" and item.get("base_accuracy") is not None:
        base += STORED
    return [
        item["template"], item.get("data") or "-", str(head.get("n", "-")),
        base, _pct(item.get("head_accuracy")),
        "-" if delta is None else f"{delta:+.1%}", "-" if p is None else f"{p:.3g}",
        item["status"].upper(), str(usage.get("calls", 0)), str(usage.get("cache_hits", 0)),
        str(usage.get("tokens", 0)), f"${usage.get('cost', 0.0):.4f}", f"{item.get('seconds', 0.0):.1f}",
    ]


def table(items: list[dict[str, Any]]) -> list[str]:
    """Rows of a plain aligned table (numbers right-aligned)."""
    cells = [list(COLUMNS)] + [row_cells(i) for i in items]
    widths = [max(len(r[c]) for r in cells) for c in range(len(COLUMNS))]
    lines = []
    for index, row in enumerate(cells):
        parts = [cell.ljust(w) if c < 2 or c == 7 else cell.rjust(w)
                 for c, (cell, w) in enumerate(zip(row, widths))]
        lines.append("  ".join(parts).rstrip())
        if index == 0:
            lines.append("  ".join("-" * w for w in widths))
    return lines


def totals(items: list[dict[str, Any]]) -> dict[str, Any]:
    keys = ("calls", "cache_hits", "errors", "retries", "prompt_tokens", "completion_tokens",
            "tokens", "cost", "latency")
    usage = {k: sum((i.get("usage") or {}).get(k, 0) for i in items) for k in keys}
    usage["cost"] = round(usage["cost"], 6)
    status = [i["status"] for i in items]
    spent = [((i.get("optimization") or {}).get("budget") or {}).get("spent") or {} for i in items]
    optimization = {k: sum(s.get(k, 0) for s in spent) for k in ("calls", "tokens", "usd", "seconds")}
    optimization["usd"] = round(optimization["usd"], 6)
    optimization["seconds"] = round(optimization["seconds"], 3)
    return {"templates": len(items), "passed": status.count("pass"), "failed": status.count("fail"),
            "errors": status.count("error"), "usage": usage, "optimization": optimization,
            "seconds": round(sum(i.get("seconds", 0.0) for i in items), 3)}


def reason_lines(items: list[dict[str, Any]]) -> list[str]:
    """Under the table, the reason of each verdict that says more than "no significant drop":
    a drop that is not significant, the rule a failure broke, no reference. (An error's
    reason is its own section above, with its hint.)"""
    lines = []
    for item in items:
        reason = (item.get("reason") or "").strip().splitlines()
        if item["status"] != "error" and reason and reason[0] not in PLAIN_REASONS:
            status = "passed" if item["status"] == "pass" else "FAILED"
            lines.append(f"{item['template']}: {status}: {reason[0]}")
    return lines


def capped_note(items: list[dict[str, Any]], cap: int, option: str) -> str | None:
    """The line saying a run was capped by ``option`` (None when no template asked for more)."""
    capped = [f"{i['template']} {i['samples_asked']}" for i in items if i.get("samples_asked")]
    if not capped:
        return None
    return (f"samples capped at {cap} by {option}: {plural(len(capped), 'template')} asked for more "
            f"({', '.join(capped[:5])}{', ...' if len(capped) > 5 else ''}); a smoke run, not the gate's sample")


def terminal_summary(items: list[dict[str, Any]], notes: list[str] | None = None) -> str:
    from .local_model import DEFAULT_LOCAL_MODEL
    from .resources import render_resource

    run = totals(items)
    usage = run["usage"]
    notes = list(notes or [])
    for item in items:
        if item.get("renamed_from"):
            notes.append(f"{item['template']}: compared with {item['renamed_from']} (renamed)")
        notes += [f"{item['template']}: warning: {warning}" for warning in item.get("warnings") or []]
    for item in items:
        optimization = item.get("optimization")
        if optimization:
            budget = optimization["budget"]["spent"]
            notes.append(f"{item['template']}: LPO {optimization['status'].replace('_', ' ')} "
                         f"({optimization['reason']}; {budget['calls']} calls, ${budget['usd']:.4f})")
    for model in sorted({i["model"] for i in items if i.get("model")}):
        if model == DEFAULT_LOCAL_MODEL:
            notes.append(f"model: {model}, the embedded local model (offline, no key); "
                         "set model = \"provider/name\" under [tool.lpo_ci] to use another")
        else:
            notes.append(f"model: {model}")
    if any(item.get("reference") == "baseline" and item.get("base_accuracy") is not None for item in items):
        notes.append(f"base{STORED}: the stored baseline (--lpo-update-baseline), for templates without a git base")
    spend = (f"{plural(usage['calls'], 'call')}, {plural(usage['cache_hits'], 'cache hit')}, "
             f"{usage['tokens']} tokens, ${usage['cost']:.4f}")
    lpo = run["optimization"]
    if lpo["calls"] or lpo["tokens"]:
        spend = (f"gate: {spend}; LPO search: {plural(lpo['calls'], 'call')}, {lpo['tokens']} tokens, "
                 f"${lpo['usd']:.4f}")
    notes.append(f"{plural(run['templates'], 'template')}: {run['passed']} passed, {run['failed']} failed, "
                 f"{plural(run['errors'], 'error')}; {spend}")
    return render_resource("report/terminal.txt.j2", rows=table(items), reasons=reason_lines(items), notes=notes)


def build_report(items: list[dict[str, Any]], *, base_rev: str | None = None, root: Path | None = None,
                 extra: dict[str, Any] | None = None, reference: dict[str, Any] | None = None) -> dict[str, Any]:
    """``root``, the project root, gives ``repo_prefix``: template paths are relative to the
    project, GitHub wants them relative to the repository. ``reference`` says what the run
    compared with (``Session.reference``)."""
    from .vcs import repo_prefix

    return {
        "version": REPORT_VERSION, "tool": f"lpo-ci {__version__}",
        "created": datetime.now(timezone.utc).isoformat(timespec="seconds"),
        "base_rev": base_rev, "reference": reference,
        "repo_prefix": repo_prefix(root) if root else "", "summary": totals(items),
        "templates": sorted(items, key=lambda i: i["template"]), **(extra or {}),
    }


def check_output(path: str | Path | None, option: str) -> None:
    """Refuse an output path that cannot be written as a file, before any work is done."""
    from .errors import SpecError

    if path is not None and Path(path).is_dir():
        raise SpecError(f"{option} {path}: is a directory", hint=f"give {option} a file name, e.g. lpo-report.json")


def write_json(path: str | Path, report: dict[str, Any]) -> Path:
    from .redaction import redact_report

    report = redact_report(report)  # the report is shared (a CI artifact): no secret of the environment in it
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(report, indent=2, ensure_ascii=False) + "\n", encoding="utf-8")
    return path

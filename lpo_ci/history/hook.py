"""History in a run: the gates after the base-vs-head gate, and recording at the end.

The runner calls ``HistoryGates.after_gate`` for every scored template: it
reads the template's series once, applies the creeping-drift gate (when the
spec sets ``drift_window``) and the model-drift gate (with ``--lpo-fresh``),
and attaches the trend that the pull-request comment draws. ``record_report``
turns a finished report into records and appends them.
"""

from __future__ import annotations

import functools
import threading
import warnings
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from . import drift, record as rec
from . import series as ser
from . import trend as tr
from .context import Ancestry, dirty_paths, former_paths, run_context
from .store import HistoryError, LocalStore, Store, template_key


class HistoryWarning(UserWarning):
    """Something about the history that a user should see but that does not change a verdict."""


def open_store(settings, branch: str | None = None, *, remote: str = "origin", push: bool = False) -> Store:
    """The git-branch store when a branch is named, else the local directory."""
    if branch:
        from .gitstore import GitBranchStore

        return GitBranchStore(settings.root, branch, remote=remote, push=push)
    return LocalStore(settings.history_dir)


class HistoryGates:
    """Reads the store once per run; called by the runner after each template's gate."""

    def __init__(self, root: Path, store: Store, *, fresh: bool = False):
        self.root, self.store, self.fresh = Path(root), store, fresh
        self._lock = threading.Lock()
        self._series: dict[str, ser.Series] | None = None
        self._ancestry: dict[str | None, Ancestry] = {}
        self._context: dict[str, Any] | None = None
        self._warned: set[str] = set()

    @functools.cached_property
    def prefix(self) -> str:
        """Where the project sits in its repository: records are keyed by repository paths."""
        from ..vcs import repo_prefix

        return repo_prefix(self.root)

    def _load(self) -> dict[str, ser.Series]:
        with self._lock:
            if self._series is None:
                try:
                    self._series = ser.build(self.store.shards())
                except HistoryError as exc:
                    self._warn(f"history not read: {exc}")
                    self._series = {}
            return self._series

    def _warn(self, message: str) -> None:
        if message not in self._warned:
            self._warned.add(message)
            warnings.warn(HistoryWarning(message), stacklevel=3)

    def _on(self, rev: str | None):
        """A filter for records in the history of ``rev`` (all records when git cannot say)."""
        if rev not in self._ancestry:
            self._ancestry[rev] = Ancestry(self.root, rev)
        ancestry = self._ancestry[rev]
        if not ancestry.known:
            return lambda r: r["event"] != "pull_request"
        return lambda r: ancestry.contains(r["commit"])

    def _series_of(self, every: dict[str, ser.Series], relpath: str) -> ser.Series | None:
        """The template's series; for a path new to the history, the series of a path it had
        before a rename (``git log --follow``)."""
        series = every.get(template_key(relpath, self.prefix))
        if series is None and every:
            for former in former_paths(self.root, relpath):
                series = every.get(template_key(former, self.prefix))
                if series is not None:
                    break
        return series

    def after_gate(self, report, template) -> None:
        """Apply the history gates to ``report`` (an ItemReport) and attach its trend."""
        if report.status not in (drift.PASS, drift.FAIL) or report.head is None:
            return
        spec = template.spec
        gated = bool(spec.drift_window) or self.fresh
        every = self._load()
        series = self._series_of(every, template.relpath) if every else None
        if series is None and not gated:
            return  # no history of this template, and no gate that needs to say so
        if self._context is None:
            self._context = run_context(self.root, repo_prefix=self.prefix)
        head = rec.build(report.to_dict(), self._context, template_sha=rec.text_sha(template.source))
        if head is None:
            return
        recent = []
        if series is not None:
            for part in series.parts:
                for message in part.shard.warnings():
                    self._warn(message)
            on_base = self._on(report.base_rev or self._context["commit"])
            recent = series.tail(max(tr.POINTS, spec.drift_window or 0), on_base)
        findings = self._findings(spec, series, recent, head)
        report.history = {"trend": tr.build(recent, head).to_dict(), **{f.gate: f.to_dict() for f in findings}}
        apply(report.verdict, findings)
        for finding in findings:
            if finding.status == drift.UNCHECKED:
                self._warn(f"{template.relpath}: {finding.message}")

    def _findings(self, spec, series: ser.Series | None, recent: list[dict[str, Any]],
                  head: dict[str, Any]) -> list[drift.Finding]:
        """The creeping-drift gate (``drift_window``) and the model-drift gate (``--lpo-fresh``)."""
        findings = []
        if spec.drift_window:
            tolerance = spec.tolerance if spec.drift_tolerance is None else spec.drift_tolerance
            findings.append(drift.creeping(recent[-spec.drift_window:], head, tolerance=tolerance,
                                           alpha=spec.alpha, size=spec.drift_window))
        if self.fresh:
            on_head = self._on(self._context["commit"] if self._context else None)
            previous = next((r for r in (series.newest_first() if series else [])
                             if r["fingerprint"] == head["fingerprint"] and r["outcomes"] and on_head(r)), None)
            findings.append(drift.model_drift(previous, head, tolerance=spec.tolerance, alpha=spec.alpha))
        return findings


def apply(verdict, findings: list[drift.Finding]) -> None:
    """A failing history gate fails the item; its message joins the verdict's reason."""
    failed = [f for f in findings if f.status == drift.FAIL]
    if not failed:
        return
    verdict.status = drift.FAIL
    kept = [] if verdict.reason in ("", "no significant drop", "template unchanged from the base version") \
        else [f"this change: {verdict.reason}"]
    verdict.reason = "; ".join([f.message for f in failed] + kept)


def install(session, *, branch: str | None = None, fresh: bool = False) -> HistoryGates:
    """Turn history on for a runner session: the gates after each template, fresh answers."""
    session.fresh = fresh
    session.history = HistoryGates(session.settings.root, open_store(session.settings, branch), fresh=fresh)
    return session.history


def record_items(items: list[dict[str, Any]], session, branch: str | None = None) -> list[str]:
    """Record a pytest run's items (``--lpo-history``); returns lines for the terminal summary."""
    from ..report import build_report

    store = open_store(session.settings, branch)
    report = build_report(items, base_rev=session.base_rev if items else None, root=session.settings.root)
    try:
        done = record_report(report, session.settings.root, store)
    except HistoryError as exc:
        return [f"history: nothing recorded: {exc}"]
    notes = [f"history: {len(done.records)} record{'s' * (len(done.records) != 1)} appended to "
             f"{store.description}"]
    return notes + [f"history: {text}" for text in done.skipped + done.warnings]


@dataclass
class Recorded:
    records: list[dict[str, Any]] = field(default_factory=list)
    skipped: list[str] = field(default_factory=list)   # templates not recorded, and why
    warnings: list[str] = field(default_factory=list)  # corrupt lines read, a refused push, ...


def check_report(report: Any, file: str | None = None) -> list[dict[str, Any]]:
    """The report's template items, or an error that names the file."""
    where: dict[str, Any] = {"path": file} if file else {}
    if not isinstance(report, dict) or not isinstance(report.get("templates"), list):
        raise HistoryError("not an lpo-ci report (no list of templates)", **where,
                           hint="pass the file written by pytest --lpo --lpo-report FILE")
    items = report["templates"]
    for index, item in enumerate(items):
        if not isinstance(item, dict) or not rec.relative_path(item.get("template")):
            raise HistoryError(f"templates[{index}]: no relative template path", **where,
                               hint="the report was not written by lpo-ci, or was altered")
    return items


def record_report(report: dict[str, Any], root: Path, store: Store, *, event: str | None = None,
                  file: str | None = None) -> Recorded:
    """Append one record per evaluated template of ``report`` (templates that errored are skipped)."""
    items = check_report(report, file)
    prefix = report.get("repo_prefix") or ""
    if not isinstance(prefix, str) or (prefix and not rec.relative_path(prefix.rstrip("/"))):
        raise HistoryError("repo_prefix is not a relative path", path=file)
    context = run_context(root, event=event, repo_prefix=prefix)
    dirty = dirty_paths(root, [i["template"] for i in items])
    existing = set(store.keys())
    done = Recorded()
    for item in items:
        relpath = item["template"]
        try:
            text = (Path(root) / relpath).read_text(encoding="utf-8")
        except (OSError, UnicodeDecodeError) as exc:
            done.skipped.append(f"{relpath}: not recorded: cannot read the template ({exc})")
            continue
        renamed = None
        if template_key(relpath, prefix) not in existing:
            told = [item.get(k) for k in ("renamed_from", "base_template") if item.get(k) != relpath]
            candidates = [str(p) for p in told if rec.relative_path(p)] + former_paths(root, relpath)
            renamed = next((p for p in candidates if template_key(p, prefix) in existing), None)
        built = rec.build(item, context, template_sha=rec.text_sha(text), renamed_from=renamed,
                          dirty=relpath in dirty)
        if built is None:
            done.skipped.append(f"{relpath}: not recorded: {item.get('status', 'no')} status "
                                "(only templates that were evaluated are recorded)")
        else:
            done.records.append(built)
    if done.records:
        done.warnings += store.append(done.records)
    return done


def warn_all(messages: list[str]) -> None:
    for message in messages:
        warnings.warn(HistoryWarning(message), stacklevel=2)

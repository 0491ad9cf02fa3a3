"""The Python API: score a template, gate two results, search for a fix, read and write reports.

Each piece of work has an ``async`` function, for callers that run an event loop,
and a plain function that runs it to the end. The plain functions work anywhere:
with no event loop running they use ``asyncio.run``; inside a running loop (a
Jupyter notebook, an async web app) they run the work on a fresh event loop in a
worker thread and block the calling thread until it is done, so in async code
``await`` the ``*_async`` function instead.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import json
import os
from collections.abc import Coroutine, Iterable, Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Any, TypeVar

from .errors import LpoError, SpecError
from .gate import GateRules, Verdict, decide

if TYPE_CHECKING:
    from .evaluate import EvalResult
    from .optimize import OptimizationResult, OptimizeOptions
    from .runner import ItemReport, Session
    from .scoring import Outcome
    from .spec import TemplateFile

T = TypeVar("T")
StrPath = str | os.PathLike[str]


def run_sync(work: Coroutine[Any, Any, T]) -> T:
    """Run a coroutine to the end from synchronous code, with or without a running event loop."""
    try:
        asyncio.get_running_loop()
    except RuntimeError:
        return asyncio.run(work)
    with concurrent.futures.ThreadPoolExecutor(1, thread_name_prefix="lpo-ci") as worker:
        return worker.submit(asyncio.run, work).result()


async def evaluate_template_async(template: StrPath, *, root: StrPath | None = None, base: str | None = None,
                         use_git: bool = True, settings: Mapping[str, Any] | None = None) -> ItemReport:
    """Score ``template`` against its reference and decide its verdict, as ``pytest --lpo`` does.

    ``root`` is the project root (default: the nearest folder above the template with a
    pyproject.toml or .git); its ``[tool.lpo_ci]`` applies, then ``settings``, which takes
    the same keys (``model``, ``api_base``, ``samples``, ``cache_dir`` ...) the way
    command-line options do. The reference is the base version from git (``base``, a git
    ref; by default found as the plugin finds it), else the stored baseline; with
    ``use_git=False`` only the stored baseline. Bad input raises ``LpoError``.
    """
    session, template_file = _open(template, root, base, use_git, settings)
    try:
        return await session.run_async(template_file)
    finally:
        session.cache.close()


def _open(template: StrPath, root: StrPath | None, base: str | None, use_git: bool,
          settings: Mapping[str, Any] | None) -> tuple[Session, TemplateFile]:
    """The run's session and the template read with its spec (reading files: not async)."""
    from .cli import _project_root
    from .runner import Session
    from .spec import load_settings, read_template

    path = Path(template).resolve()
    if not path.is_file():
        raise SpecError(f"{template}: no such template file", hint="give the path of a prompt template")
    project = Path(root).resolve() if root is not None else _project_root(path.parent)
    loaded = load_settings(project, dict(settings or {}))
    return Session(loaded, base_ref=base, use_git=use_git, base_option="base"), read_template(loaded, path)


def evaluate_template(template: StrPath, *, root: StrPath | None = None, base: str | None = None,
             use_git: bool = True, settings: Mapping[str, Any] | None = None) -> ItemReport:
    """``evaluate_template_async`` run to the end (see the module's note on running event loops)."""
    return run_sync(evaluate_template_async(template, root=root, base=base, use_git=use_git, settings=settings))


def gate_results(head: EvalResult, reference: EvalResult | Mapping[str, Outcome] | None,
         rules: GateRules | None = None, *, reference_kind: str = "base") -> Verdict:
    """The verdict for ``head`` against ``reference`` (a result, or outcomes by example id),
    paired on the examples both scored: pass, fail (a real drop) or error (too many failed calls)."""
    from .evaluate import EvalResult

    outcomes = reference.outcomes() if isinstance(reference, EvalResult) else reference
    first_error = reference.first_error() if isinstance(reference, EvalResult) else None
    kind = reference_kind if reference is not None else "none"
    return decide(head, dict(outcomes) if outcomes is not None else None, kind, rules or GateRules(),
                  first_error)


async def suggest_fix_async(report: ItemReport, options: OptimizeOptions | None = None) -> OptimizationResult:
    """Search for a small fix of a template scored by ``evaluate_template``: a bounded LPO search whose
    winner must beat the head on held-out examples (``result.patch`` is a git-apply patch)."""
    from .optimize import OptimizeOptions, optimize_template

    if report.prepared is None or report.status == "error":
        raise LpoError(f"{report.template}: there is nothing to optimize: the template was not scored "
                       f"({report.verdict.reason})", hint="fix the error evaluate_template reported first")
    return await optimize_template(
        head_source=report.prepared.template.source, base_source=report.base_source,
        relpath=report.template, prepared=report.prepared, options=options or OptimizeOptions())


def suggest_fix(report: ItemReport, options: OptimizeOptions | None = None) -> OptimizationResult:
    """``suggest_fix_async`` run to the end (see the module's note on running event loops)."""
    return run_sync(suggest_fix_async(report, options))


def write_report(path: StrPath, items: Iterable[ItemReport | Mapping[str, Any]], *,
                 root: StrPath | None = None) -> Path:
    """Write the JSON report of ``pytest --lpo-report`` for these results (secrets redacted)."""
    from .report import build_report, write_json

    entries = [dict(item) if isinstance(item, Mapping) else item.to_dict() for item in items]
    return write_json(Path(path), build_report(entries, root=Path(root) if root is not None else None))


def read_report(path: StrPath) -> dict[str, Any]:
    """A JSON report written by lpo-ci, checked to be one of a shape this version reads."""
    from .report import REPORT_VERSION

    try:
        data = json.loads(Path(path).read_text(encoding="utf-8"))
    except OSError as exc:
        raise SpecError(f"cannot read the report: {exc.strerror or exc}", path=str(path)) from None
    except ValueError as exc:
        raise SpecError(f"the report is not JSON: {exc}", path=str(path)) from None
    if not isinstance(data, dict) or data.get("version") != REPORT_VERSION:
        found = data.get("version") if isinstance(data, dict) else type(data).__name__
        raise SpecError(f"not an lpo-ci report of version {REPORT_VERSION} (found {found!r})", path=str(path),
                        hint="write it with this version of lpo-ci (--lpo-report, lpo-ci eval --report)")
    return data

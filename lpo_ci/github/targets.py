"""Which files a suggested fix may be shown for and posted on, decided from trusted input.

In the fork-safe set-up the report is an artifact written by the pull
request's own code: it could claim that ``install.sh`` regressed and that the
fix is ``curl … | sh``. A fix is therefore shown (in the comment, the patch
file) and posted (as a one-click suggestion) only when

* the report's project folder is the one this publisher was told to publish;
* the file is a prompt template by the project's configured globs, read from a
  trusted source;
* the fix changes only the template's literal text, never its Jinja syntax;
* its lines and replacement text are derived here from the two texts of the
  template (the evaluated one and the winner), never taken from the report.

The trusted source of the globs: when the report was written in this job, the
checkout (the pull request's code has already run in this job, so its
configuration is as trusted as the job, and a pull request that adds a glob
gets suggestions for its new templates); when the report comes from another
run (``workflow_run``, ``pull_request_target``, an explicit ``--pr``), the base
branch's ``pyproject.toml`` through the contents API, at the base commit
GitHub names for the pull request: the configuration the maintainers merged,
which the pull request cannot change. The ``prompts`` input, when given, comes
from the publishing workflow itself and is trusted in both cases.
"""

from __future__ import annotations

import tempfile
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path
from typing import TYPE_CHECKING

from ..errors import LpoError
from .report_view import ReportView, TemplateView

if TYPE_CHECKING:
    from ..spec import Settings


@dataclass
class TemplateGlobs:
    prefix: str                  # the project's folder in the repository ("" or "sub/dir/")
    source: str                  # where the globs were read, for messages
    settings: Settings | None    # None when they could not be read
    problem: str | None = None   # why no file can be trusted

    def is_template(self, repo_path: str) -> bool:
        from ..spec import matches

        if self.settings is None or not repo_path.startswith(self.prefix):
            return False
        return matches(self.settings, self.settings.root / repo_path[len(self.prefix):])


def _overrides(globs: list[str]) -> dict | None:
    return {"prompts": list(globs)} if globs else None


def from_checkout(project_root: Path, prefix: str, globs: list[str]) -> TemplateGlobs:
    from ..spec import load_settings

    try:
        settings = load_settings(project_root, _overrides(globs))
    except LpoError as exc:
        return TemplateGlobs(prefix, "the checkout", None, f"the project's configuration cannot be read: {exc}")
    return TemplateGlobs(prefix, "the checkout", settings)


def from_base_branch(api, repo: str, base_sha: str, prefix: str, globs: list[str]) -> TemplateGlobs:
    """The globs of ``prefix``/pyproject.toml at the base commit (the defaults without one)."""
    from ..spec import load_settings
    from .api import GitHubError

    source = f"the base branch's {prefix}pyproject.toml at {base_sha[:12]}"
    try:
        text = api.file_text(repo, f"{prefix}pyproject.toml", base_sha)
    except GitHubError as exc:
        return TemplateGlobs(prefix, source, None, f"the base branch's configuration cannot be read: {exc}")
    with tempfile.TemporaryDirectory(prefix="lpo-ci-base-") as folder:
        if text is not None:
            (Path(folder) / "pyproject.toml").write_text(text, encoding="utf-8")
        try:
            settings = load_settings(Path(folder), _overrides(globs))
        except LpoError as exc:
            return TemplateGlobs(prefix, source, None, f"the base branch's pyproject.toml is invalid: {exc.message}")
    return TemplateGlobs(prefix, source, settings)


def withhold_untrusted_fixes(view: ReportView, globs: TemplateGlobs) -> None:
    """Mark each suggested fix that may not be shown or posted, with why (``TemplateView.withheld``)."""
    for t in view.templates:
        o = t.optimization
        if o is None or o.status != "suggested":
            continue
        t.withheld = _why_withheld(view, t, globs) or ""


@lru_cache(maxsize=512)
def _skeleton(source: str) -> tuple:
    from ..editable import syntax_skeleton

    return tuple(syntax_skeleton(source))


def _why_withheld(view: ReportView, t: TemplateView, globs: TemplateGlobs) -> str | None:
    o = t.optimization
    if view.prefix != globs.prefix:
        return (f"the report's project folder {view.prefix or '(the top)'!r} is not this publisher's "
                f"{globs.prefix or '(the top)'!r} (set working-directory, or --project-dir)")
    if globs.problem:
        return globs.problem
    if not globs.is_template(t.path):
        return f"{t.path} is not a prompt template by the project's globs ({globs.source})"
    if o is None or not o.head_source or not o.winner_source:
        return "the report lacks the template's texts the fix is derived from"
    try:
        if _skeleton(o.head_source) != _skeleton(o.winner_source):
            return "the fix would change the template's Jinja syntax, which the optimizer never does"
    except LpoError:
        return "the template's texts in the report are not valid Jinja"
    return None

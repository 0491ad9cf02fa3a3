"""What a template is compared with, and what makes that comparison less sure than it looks.

The reference is the template's base version from git, following renames as
``git diff --find-renames`` does; else its stored baseline, under its own path
or the one it had before a rename. The warnings name what a verdict alone
would hide: a sample the data cut, one too small to ever fail, a change to the
gate's own settings, a stored baseline of another setup.
"""

from __future__ import annotations

import math
from pathlib import Path

from . import vcs
from .baseline import Baseline
from .gate import Verdict
from .spec import Settings, TemplateFile, TestSpec

GATE_KEYS = ("samples", "tolerance", "alpha", "min_accuracy", "max_error_rate")


def _project_path(root: Path, path: str) -> str:
    """A repository path as the project names it (relative to the project root)."""
    prefix = vcs.repo_prefix(root)
    return path[len(prefix):] if prefix and path.startswith(prefix) else path


def base_version(root: Path, base: vcs.BaseRef, template: TemplateFile) -> tuple[str | None, str | None, list[str]]:
    """(the base version's text, the project path it had if renamed since, warnings)."""
    if base.rev is None:
        return None, None, []
    path = vcs.repo_path(template.path)
    if path is None:
        return None, None, [f"the template's file is outside the git repository: no base version from {base.ref}"]
    source = vcs.show(root, base.rev, path)
    if source is not None:
        return source, None, []
    old = vcs.renamed_from(root, base.rev, path)
    if old is None:
        return None, None, []
    return vcs.show(root, base.rev, old), _project_path(root, old), []


def stored_baseline(root: Path, base: vcs.BaseRef, baseline: Baseline, template: TemplateFile,
                    fingerprint: str) -> tuple[dict | None, str | None, list[str]]:
    """(stored outcomes, the project path they were stored under if renamed since, warnings)."""
    keys = [template.relpath]
    path = vcs.repo_path(template.path) if base.rev is not None else None
    if path is not None:  # renamed since the last commit (the baseline's entries are committed)
        old = vcs.renamed_from(root, "HEAD", path)
        if old is not None:
            keys.append(_project_path(root, old))
    outcomes, key, warning = baseline.lookup(keys, fingerprint)
    warnings = [warning] if warning else []
    if outcomes is None and not warning and base.rev is None:
        missing = sorted(k for k in baseline.entries if not (root / k).exists())
        if missing:
            warnings.append(f"no stored baseline for {template.relpath}, but the baseline has entries for "
                            f"templates that no longer exist ({', '.join(missing[:3])}): if this template "
                            f"was renamed, compare it by hand or record it with --lpo-update-baseline")
    return outcomes, (key if key != template.relpath else None), warnings


def why_none(base: vcs.BaseRef) -> str:
    """Why a template has no git reference, for its reason."""
    if base.rev is None:
        return base.how
    return f"new since {base.ref} at {base.rev[:12]}"


def sample_warnings(spec: TestSpec, available: int, data: str, verdict: Verdict) -> list[str]:
    """A sample cut by the data's size, or too small for the paired test to ever fail."""
    warnings = []
    if spec.samples > available:
        warnings.append(f"samples is {spec.samples}, but {data} has {available} examples: all {available} were used")
    needed = math.floor(math.log2(1 / spec.alpha)) + 1  # the fewest pairs whose p can reach alpha
    if verdict.reference in ("base", "baseline") and 0 < verdict.n_paired < needed:
        warnings.append(f"{verdict.n_paired} paired examples cannot show a significant drop at alpha "
                        f"{spec.alpha} (at least {needed} are needed): raise samples")
    return warnings


def loosened_gate(settings: Settings, template: TemplateFile, base_source: str) -> list[str]:
    """The change edits the gate's own settings in its spec: say so (the head's are used)."""
    from .errors import LpoError
    from .spec import read_template

    try:
        base_spec = read_template(settings, template.path, source=base_source).spec
    except LpoError:
        return []
    changes = [f"{key} {getattr(base_spec, key)} -> {getattr(template.spec, key)}" for key in GATE_KEYS
               if getattr(base_spec, key) != getattr(template.spec, key)]
    return [f"this change edits the gate's own settings ({', '.join(changes)}); "
            f"the new values were used"] if changes else []

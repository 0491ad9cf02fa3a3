"""``lpo-ci demo``: the whole job, end to end, offline, on the embedded model.

Copies an example project into a throwaway git repository, commits its good
template as the base branch, applies a plausible bad edit as the "pull
request", and runs the gate: the regression it finds is shown with the
statistics behind it. Nothing is faked: the model is the real local one.
"""

from __future__ import annotations

import shutil
import subprocess
import tempfile
from pathlib import Path

DEFAULT_EXAMPLE = "review-sentiment"
PATCH_NAME = "demo-pr.patch"


def examples_dir() -> Path:
    """The example projects: packaged in the wheel, or the checkout's ``examples/``."""
    packaged = Path(__file__).parent / "examples"
    return packaged if packaged.is_dir() else Path(__file__).resolve().parent.parent / "examples"


def available_examples() -> list[str]:
    """The shipped example projects that have a demo scenario (a ``demo-pr.patch``)."""
    folder = examples_dir()
    return sorted(p.name for p in folder.iterdir() if (p / PATCH_NAME).is_file()) if folder.is_dir() else []


def default_cache_dir() -> Path:
    """Responses outlive the throwaway repository, so a second demo is instant."""
    import os

    base = os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache"
    return Path(base) / "lpo-ci" / "demo-responses"


def _git(cwd: Path, *args: str) -> str:
    env_args = ["-c", "user.name=lpo-ci demo", "-c", "user.email=demo@lpo-ci.invalid",
                "-c", "commit.gpgsign=false", "-c", "init.defaultBranch=main"]
    result = subprocess.run(["git", *env_args, *args], cwd=cwd, capture_output=True, text=True)
    if result.returncode != 0:
        raise RuntimeError(f"git {' '.join(args)} failed: {result.stderr.strip()}")
    return result.stdout


def _say(text: str = "") -> None:
    print(text, flush=True)


def run_demo(example: str = DEFAULT_EXAMPLE, keep: Path | None = None, cache_dir: Path | None = None) -> int:
    from .errors import LpoError
    from .report import terminal_summary
    from .optimize import OptimizeOptions
    from .progress import progress_bar
    from .runner import Session, failure_text, optimization_text
    from .spec import discover, load_settings, read_template

    if example not in available_examples():
        raise LpoError(f"no demo example named '{example}'",
                       hint="choose one of: " + (", ".join(available_examples()) or "(none found)"))
    source = examples_dir() / example
    workdir = Path(keep) if keep else Path(tempfile.mkdtemp(prefix="lpo-ci-demo-"))
    repo = workdir / example
    if repo.exists():
        shutil.rmtree(repo)
    shutil.copytree(source, repo, ignore=shutil.ignore_patterns(PATCH_NAME, ".lpo-ci", "__pycache__"))
    _say(f"1. A throwaway git repository with the example '{example}': {repo}")
    _git(repo, "init", "-q")
    _git(repo, "add", "-A")
    _git(repo, "commit", "-q", "-m", "base: the prompt as it is on main")
    _say("   committed the good template as the base branch (main)")
    _git(repo, "apply", str(source / PATCH_NAME))
    _say("2. The pull request, a plausible edit that shortens the prompt:")
    _say("   " + _git(repo, "diff", "--stat").strip())
    for line in _git(repo, "diff", "-U1").splitlines()[4:]:
        _say("   " + line)
    _say("3. The gate: base and head scored on the same examples, paired test")
    settings = load_settings(repo, {"cache_dir": str(cache_dir or default_cache_dir())})
    session = Session(settings)
    items, status = [], 0
    for path in discover(settings):
        template = read_template(settings, path)
        with progress_bar(f"   {template.relpath}") as bar:
            result = session.run(template, bar)
        item = result.to_dict()
        items.append(item)
        _say()
        _say(failure_text(result))
        status = max(status, {"pass": 0, "fail": 1, "error": 3}[result.status])
        if result.status == "fail":
            _say()
            _say("4. The fix: a bounded Local Prompt Optimization search over the tokens the pull request changed")
            optimization = session.optimize(template, result, OptimizeOptions(), say=lambda t: _say("   " + t))
            item["optimization"] = optimization.to_dict()
            _say(optimization_text(item["optimization"]))
    _say()
    _say(terminal_summary(items).rstrip())
    _say()
    if status == 1:
        _say("The gate caught the regression: in CI, `pytest --lpo` fails this pull request.")
        if any((i.get("optimization") or {}).get("status") == "suggested" for i in items):
            _say("LPO found the fix above; `pytest --lpo --lpo-optimize` adds it to the report, "
                 "and the GitHub Action posts it as a one-click suggestion.")
    elif status == 0:
        _say("No significant regression this time.")
    _say(f"Try it yourself: cd {repo} && pytest --lpo")
    return 0 if status in (0, 1) else status

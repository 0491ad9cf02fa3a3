"""Static checks of the composite action and the example workflows.

Each tool runs from the test environment's own scripts directory (they are test
dependencies): the GitHub schemas vendored by check-jsonschema, actionlint (with
shellcheck on the run: scripts), zizmor offline, and the pinning and permission rules
that the examples promise to whoever copies them.
"""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

REPO = Path(__file__).resolve().parents[1]
BIN = Path(sys.executable).parent
ACTION = REPO / "action.yml"
WORKFLOWS = sorted(REPO.glob("examples/*/.github/workflows/*.yml"))
OWN_WORKFLOWS = sorted(REPO.glob(".github/workflows/*.yml"))  # the project's own CI and release
DEPENDABOT = REPO / ".github" / "dependabot.yml"
EVALUATE = REPO / "examples" / "bbh-boolean" / ".github" / "workflows" / "lpo-ci-evaluate.yml"

# This project's own action, as the examples refer to it.
OWN_ACTION = re.compile(r"^(lpo-ci/lpo-ci@|\./?$)")
USES_LINE = re.compile(r"""^\s*(?:-\s+)?uses:\s*["']?([^\s"'#]+)["']?\s*(?:#\s*(.*))?$""")
SHA_PIN = re.compile(r"^[^@\s]+@[0-9a-f]{40}$")
VERSION_COMMENT = re.compile(r"^v\d+(\.\d+)*\b")


def rel(path: Path) -> str:
    return path.relative_to(REPO).as_posix()


def tool(name: str) -> str:
    path = BIN / name
    assert path.is_file(), f"{name} is missing from {BIN}: install the test extra (pip install -e '.[test]')"
    return str(path)


def run(name: str, *args: str, stdin: str | None = None) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "PATH": f"{BIN}{os.pathsep}{os.environ.get('PATH', '')}", "NO_COLOR": "1"}
    return subprocess.run([tool(name), *args], cwd=REPO, input=stdin, capture_output=True,
                          text=True, env=env, timeout=120)


def output(result: subprocess.CompletedProcess[str]) -> str:
    return f"exit code {result.returncode}\n--- stdout\n{result.stdout}\n--- stderr\n{result.stderr}"


def load(path: Path) -> dict:
    return yaml.safe_load(path.read_text(encoding="utf-8"))


def triggers(workflow: dict) -> dict:
    # YAML 1.1 reads a bare `on` key as the boolean true.
    on = workflow.get("on", workflow.get(True))
    if isinstance(on, str):
        return {on: None}
    if isinstance(on, list):
        return dict.fromkeys(on)
    return dict(on or {})


def test_there_are_example_workflows():
    assert WORKFLOWS, "no workflow under examples/*/.github/workflows"
    assert EVALUATE in WORKFLOWS
    assert {p.name for p in OWN_WORKFLOWS} >= {"ci.yml", "release.yml"}


@pytest.mark.parametrize("path", OWN_WORKFLOWS, ids=rel)
def test_own_workflows_grant_least_privilege(path: Path):
    workflow = load(path)
    assert "pull_request_target" not in triggers(workflow), f"{rel(path)} uses pull_request_target"
    assert workflow.get("permissions") == {}, f"{rel(path)}: top-level permissions must be {{}}"
    for name, job in workflow["jobs"].items():
        writes = {scope for scope, level in job["permissions"].items() if level == "write"}
        # only the release writes: it creates the release and uploads its files
        assert writes == ({"contents"} if path.name == "release.yml" else set()), f"{rel(path)} job {name}"


def test_ci_workflow_runs_what_ci_run_runs():
    """The GitHub workflow and .ci/run check the same things: every supported Python, lint, types."""
    ci = load(REPO / ".github" / "workflows" / "ci.yml")
    script = (REPO / ".ci" / "run").read_text(encoding="utf-8")
    runs = [step.get("run", "") for job in ci["jobs"].values() for step in job["steps"]]
    assert "bash .ci/run" in runs and "bash .ci/lint" in runs
    assert re.search(r"^bash \.ci/lint$", script, re.M), script
    lint = (REPO / ".ci" / "lint").read_text(encoding="utf-8")
    assert re.search(r"^ruff check$", lint, re.M) and re.search(r"^mypy$", lint, re.M)
    assert re.search(r"^mypy --strict ", lint, re.M)
    pythons = ci["jobs"]["tests"]["strategy"]["matrix"]["python"]
    classifiers = load_pyproject()["project"]["classifiers"]
    version = re.compile(r"Programming Language :: Python :: (3\.\d+)")
    supported = [m[1] for m in map(version.fullmatch, classifiers) if m]
    assert pythons == supported


def load_pyproject() -> dict:
    import tomllib

    return tomllib.loads((REPO / "pyproject.toml").read_text(encoding="utf-8"))


# --- schemas ------------------------------------------------------------------

@pytest.mark.parametrize(
    "path, schema",
    [(ACTION, "vendor.github-actions"), (DEPENDABOT, "vendor.dependabot")]
    + [(w, "vendor.github-workflows") for w in WORKFLOWS + OWN_WORKFLOWS],
    ids=lambda v: rel(v) if isinstance(v, Path) else v,
)
def test_schema(path: Path, schema: str):
    result = run("check-jsonschema", "--builtin-schema", schema, rel(path))
    assert result.returncode == 0, output(result)


# --- actionlint -----------------------------------------------------------------

def actionlint(*args: str, stdin: str | None = None) -> subprocess.CompletedProcess[str]:
    return run("actionlint", "-no-color", "-oneline", "-shellcheck", tool("shellcheck"),
               "-pyflakes", "", *args, stdin=stdin)


def action_as_workflow() -> str:
    """action.yml's steps as the one job of a reusable workflow, on the same lines.

    actionlint reads workflows only; this lets it check the action's expressions and, through
    shellcheck, its run: scripts, and its line numbers are those of action.yml.
    """
    text = ACTION.read_text(encoding="utf-8")
    lines = text.splitlines()
    runs = lines.index("runs:")
    assert lines[runs + 1:runs + 3] == ["  using: composite", "  steps:"], lines[runs:runs + 3]
    inputs = {name: {"type": "string", "required": False} for name in yaml.safe_load(text)["inputs"]}
    head = ["on: " + json.dumps({"workflow_call": {"inputs": inputs}})] + [""] * (runs - 1)
    # The steps keep their indentation: a block sequence may sit level with its key.
    job = ["jobs:", "  action:", "    steps:", *lines[runs + 3:], "    runs-on: ubuntu-latest"]
    return "\n".join(head + job) + "\n"


@pytest.mark.parametrize("path", WORKFLOWS + OWN_WORKFLOWS, ids=rel)
def test_actionlint_workflow(path: Path):
    # The remote lpo-ci/lpo-ci@v0 cannot be read offline; actionlint must accept it as is.
    result = actionlint(rel(path))
    assert result.returncode == 0, output(result)


def test_actionlint_composite_action_steps():
    result = actionlint("-stdin-filename", rel(ACTION), "-", stdin=action_as_workflow())
    assert result.returncode == 0, output(result)


def test_actionlint_checks_run_scripts_with_shellcheck():
    # Without shellcheck actionlint would skip the scripts silently.
    broken = "on: push\njobs:\n  a:\n    runs-on: ubuntu-latest\n    steps:\n      - run: echo $UNQUOTED\n"
    result = actionlint("-stdin-filename", "broken.yml", "-", stdin=broken)
    assert result.returncode == 1 and "SC2086" in result.stdout, output(result)


# --- zizmor ---------------------------------------------------------------------

@pytest.mark.parametrize("path", [ACTION, *WORKFLOWS, *OWN_WORKFLOWS], ids=rel)
def test_zizmor(path: Path):
    # Suppressions live next to the finding as `# zizmor: ignore[rule]` with a reason;
    # no configuration file may switch audits off.
    result = run("zizmor", "--offline", "--no-config", "--no-progress", "--color", "never",
                 "--format", "plain", rel(path))
    assert result.returncode == 0, output(result)


# --- pinning and permissions ----------------------------------------------------

def uses_in(data: dict) -> list[str]:
    if "runs" in data:
        return [s["uses"] for s in data["runs"].get("steps", []) if "uses" in s]
    found = []
    for job in data["jobs"].values():
        if "uses" in job:
            found.append(job["uses"])
        found += [s["uses"] for s in job.get("steps", []) if "uses" in s]
    return found


@pytest.mark.parametrize("path", [ACTION, *WORKFLOWS, *OWN_WORKFLOWS], ids=rel)
def test_actions_are_pinned_by_sha_with_version_comment(path: Path):
    lines = [m for m in map(USES_LINE.match, path.read_text(encoding="utf-8").splitlines()) if m]
    # Every uses: is on a line of its own, so its comment can be read next to it.
    assert sorted(m[1] for m in lines) == sorted(uses_in(load(path)))
    for match in lines:
        ref, comment = match[1], (match[2] or "").strip()
        if ref.startswith("actions/"):
            assert SHA_PIN.match(ref), f"{rel(path)}: {ref} is not pinned to a commit SHA"
            assert VERSION_COMMENT.match(comment), f"{rel(path)}: {ref} lacks a '# vX' comment"
        else:
            assert OWN_ACTION.match(ref), f"{rel(path)}: unexpected third-party action {ref}"


def posts(job: dict, defaults: dict[str, str]) -> bool:
    """Whether a job runs the lpo-ci action with commenting or suggestions on."""
    for step in job.get("steps", []):
        if OWN_ACTION.match(step.get("uses", "")):
            given = {k: str(v) for k, v in (step.get("with") or {}).items()}
            if any(given.get(k, defaults[k]) != "false" for k in ("comment", "suggestions")):
                return True
    return False


RECORDING_EVENTS = {"push", "schedule", "workflow_dispatch"}  # where history: "true" records and pushes


def records_history(job: dict, workflow: dict) -> bool:
    """Whether a job runs the lpo-ci action with history on, in a workflow that records (pushes)."""
    return bool(RECORDING_EVENTS & set(triggers(workflow))) and any(
        OWN_ACTION.match(step.get("uses", "")) and str((step.get("with") or {}).get("history")) == "true"
        for step in job.get("steps", []))


def deploys_pages(job: dict) -> bool:
    return any(step.get("uses", "").startswith("actions/deploy-pages@") for step in job.get("steps", []))


@pytest.mark.parametrize("path", WORKFLOWS, ids=rel)
def test_workflow_permissions_are_least_privilege(path: Path):
    workflow = load(path)
    assert "pull_request_target" not in triggers(workflow), f"{rel(path)} uses pull_request_target"
    assert workflow.get("permissions") == {}, f"{rel(path)}: top-level permissions must be {{}}"
    defaults = {k: str(v.get("default", "")) for k, v in load(ACTION)["inputs"].items()}
    for name, job in workflow["jobs"].items():
        where = f"{rel(path)} job {name}"
        perms = job.get("permissions")
        assert isinstance(perms, dict), f"{where}: needs its own permissions mapping, got {perms!r}"
        assert set(perms.values()) <= {"read", "write", "none"}, f"{where}: {perms}"
        writes = {scope for scope, level in perms.items() if level == "write"}
        expected = ({"pull-requests"} if posts(job, defaults) else set()) \
            | ({"contents"} if records_history(job, workflow) else set()) \
            | ({"pages", "id-token"} if deploys_pages(job) else set())
        assert writes == expected, f"{where}: needs to write {sorted(expected)} but permissions are {perms}"
        if path == EVALUATE:
            assert not writes, f"{where} runs the pull request's code and must be read-only"

"""A real git project whose pull request regresses a prompt, for the GitHub tests.

``main`` holds a template with the wording the loopback model rewards; the
``feature`` branch rewords it (a real, significant regression). ``pr_files``
gives the pull request's files as GitHub's pulls/files API does: the diff
hunks of each changed file, from git itself.
"""

from __future__ import annotations

import os
import subprocess
from pathlib import Path

from tests.support.openai_server import GOOD_WORDING

TASK = "bbh/boolean_expressions"
SPEC = "{# lpo:\n  benchmark: " + TASK + "\n  samples: 40\n#}\n"
GOOD = SPEC + f"{GOOD_WORDING}.\n\nQ: {{{{ input }}}}\nA:\n"
BAD = SPEC + "Work out the following.\n\nQ: {{ input }}\nA:\n"
SPEC_LINE = 1
EDITED_LINE = 5  # the line the feature branch rewords


def git(cwd: Path, *args: str) -> str:
    env = {**os.environ, "GIT_AUTHOR_NAME": "t", "GIT_AUTHOR_EMAIL": "t@example.com",
           "GIT_COMMITTER_NAME": "t", "GIT_COMMITTER_EMAIL": "t@example.com"}
    return subprocess.run(["git", "-C", str(cwd), *args], check=True, capture_output=True,
                          text=True, env=env).stdout


def make_regressed_project(root: Path, openai_url: str) -> tuple[str, str]:
    """The project on branch ``feature`` (checked out); returns (base sha, head sha)."""
    root.mkdir(parents=True, exist_ok=True)
    (root / "pyproject.toml").write_text(
        f'[tool.lpo_ci]\nmodel = "openai/fake"\napi_base = "{openai_url}"\n', encoding="utf-8")
    (root / "prompts").mkdir(exist_ok=True)
    template = root / "prompts" / "x.j2"
    template.write_text(GOOD, encoding="utf-8")
    (root / "tests").mkdir(exist_ok=True)
    (root / "tests" / "test_app.py").write_text("def test_app():\n    assert False, 'not a prompt test'\n",
                                                 encoding="utf-8")
    git(root, "init", "-q", "-b", "main")
    git(root, "add", "-A")
    git(root, "commit", "-q", "-m", "base")
    base = git(root, "rev-parse", "HEAD").strip()
    git(root, "checkout", "-q", "-b", "feature")
    template.write_text(BAD, encoding="utf-8")
    git(root, "commit", "-q", "-am", "reword the prompt")
    return base, git(root, "rev-parse", "HEAD").strip()


def pr_files(root: Path, base: str, head: str) -> list[dict]:
    """[{"filename", "status", "patch"}] as GitHub lists a pull request's files, plus each
    file's ``content`` at the head (what the contents API serves)."""
    files = []
    for name in git(root, "diff", "--name-only", base, head).split():
        diff = git(root, "diff", "-U3", base, head, "--", name)
        patch = diff[diff.index("@@"):].rstrip("\n")
        files.append({"filename": name, "status": "modified", "patch": patch,
                      "content": git(root, "show", f"{head}:{name}")})
    return files


def pull_request_event(number: int, base: str, head: str, repo: str = "octo/prompts") -> dict:
    """The parts of a ``pull_request`` event payload a runner hands to a step."""
    return {
        "action": "synchronize", "number": number,
        "pull_request": {"number": number, "state": "open", "head": {"sha": head, "ref": "feature"},
                         "base": {"sha": base, "ref": "main"}, "user": {"login": "author"}},
        "repository": {"full_name": repo, "default_branch": "main"},
    }

"""The history on an orphan git branch: real bare remotes, real clones, real pushes.

A bare repository stands for GitHub; clones of it record with ``lpo-ci history
record --branch --push`` as CI jobs do, some of them at the same time; a
pre-receive hook plays a branch protection rule.
"""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

from lpo_ci.history import record as rec
from lpo_ci.history.gitstore import MARKER
from tests.conftest import git
from tests.support.history_data import item

pytestmark = pytest.mark.slow
BRANCH = "lpo-ci-history"
TEMPLATE = "{# lpo:\n  benchmark: bbh/boolean_expressions\n#}\nQ: {{ input }}\nA:\n"


@pytest.fixture
def remote(tmp_path: Path) -> Path:
    """A bare remote holding a project with one template on main."""
    seed = tmp_path / "seed"
    (seed / "prompts").mkdir(parents=True)
    (seed / "pyproject.toml").write_text("[tool.lpo_ci]\n", encoding="utf-8")
    (seed / "prompts" / "x.j2").write_text(TEMPLATE, encoding="utf-8")
    git(seed, "init", "-q", "-b", "main")
    git(seed, "add", "-A")
    git(seed, "commit", "-q", "-m", "prompts")
    bare = tmp_path / "remote.git"
    git(tmp_path, "clone", "-q", "--bare", str(seed), str(bare))
    return bare


def clone(remote: Path, where: Path) -> Path:
    git(remote.parent, "clone", "-q", str(remote), str(where))
    return where


def no_identity_env(tmp_path: Path) -> dict:
    """A CI runner's environment: no git identity configured."""
    empty = tmp_path / "empty-gitconfig"
    empty.write_text("", encoding="utf-8")
    env = {k: v for k, v in os.environ.items() if not k.startswith("GIT_")}
    return {**env, "GIT_CONFIG_GLOBAL": str(empty), "GIT_CONFIG_NOSYSTEM": "1"}


def write_report(checkout: Path, outcomes: str = "ccw", name: str = "report.json") -> Path:
    path = checkout.parent / f"{checkout.name}-{name}"
    path.write_text(json.dumps({"version": 1, "repo_prefix": "", "templates": [item("prompts/x.j2", outcomes)]}),
                    encoding="utf-8")
    return path


def lpo(checkout: Path, *args: str, env: dict | None = None) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "lpo_ci.cli", *args], cwd=checkout, capture_output=True,
                          text=True, env=env or os.environ.copy(), timeout=300)


def month_files(repo: Path, ref: str = BRANCH, template: str = "prompts/x.j2") -> list[str]:
    """The template's month files on the history branch, oldest first."""
    names = git(repo, "ls-tree", "-r", "--name-only", ref, "--", template + "/").split()
    assert all(re.fullmatch(re.escape(template) + r"/\d{4}-\d{2}\.jsonl", n) for n in names), names
    return sorted(names)


def remote_lines(remote: Path, ref: str = BRANCH) -> list[str]:
    return [line for name in month_files(remote, ref) for line in git(remote, "show", f"{ref}:{name}").splitlines()]


def test_the_first_record_creates_the_orphan_branch_and_pushes_it(remote, tmp_path):
    work = clone(remote, tmp_path / "work")
    result = lpo(work, "history", "record", "--report", str(write_report(work)), "--branch", "--push",
                 env=no_identity_env(tmp_path))
    assert result.returncode == 0, result.stderr
    assert f"1 history record appended to branch {BRANCH} (pushed to origin)" in result.stdout

    assert git(remote, "rev-list", "--count", BRANCH).strip() == "1"
    assert git(remote, "rev-list", "--parents", "-n", "1", BRANCH).split()[1:] == []  # an orphan
    files = git(remote, "ls-tree", "-r", "--name-only", BRANCH).split()
    assert sorted(files) == sorted([".gitattributes", MARKER, "README.md", *month_files(remote)])
    assert len(month_files(remote)) == 1
    assert git(remote, "log", "-1", "--format=%an", BRANCH).strip() == "lpo-ci"  # no identity configured
    (line,) = remote_lines(remote)
    record = rec.loads(line)
    assert record["commit"] == git(work, "rev-parse", "HEAD").strip() and record["outcomes"] == "ccw"
    # the checkout itself is untouched: same branch, clean status, no new commit on main
    assert git(work, "status", "--porcelain") == "" and git(work, "branch", "--show-current").strip() == "main"
    assert git(remote, "rev-list", "--count", "main").strip() == "1"


def test_appends_never_rewrite(remote, tmp_path):
    work = clone(remote, tmp_path / "work")
    for outcomes in ("ccc", "ccw", "cww"):
        assert lpo(work, "history", "record", "--report", str(write_report(work, outcomes)), "--branch",
                   "--push").returncode == 0
    commits = git(remote, "rev-list", "--reverse", BRANCH).split()
    assert len(commits) == 3
    contents = ["".join(git(remote, "show", f"{c}:{n}") for n in month_files(remote, c)) for c in commits]
    assert all(later.startswith(earlier) for earlier, later in zip(contents, contents[1:]))
    assert [rec.loads(line)["outcomes"] for line in contents[-1].splitlines()] == ["ccc", "ccw", "cww"]


def test_two_clones_appending_at_the_same_time_lose_nothing(remote, tmp_path):
    clones = [clone(remote, tmp_path / f"job{i}") for i in range(2)]
    rounds = 6
    script = ("import sys; from lpo_ci.cli import main\n"
              "codes = [main(['history', 'record', '--report', sys.argv[1], '--branch', '--push'])"
              f" for _ in range({rounds})]\n"
              "sys.exit(max(codes))\n")
    jobs = [subprocess.Popen([sys.executable, "-c", script, str(write_report(c))], cwd=c, stdout=subprocess.PIPE,
                             stderr=subprocess.PIPE, text=True) for c in clones]
    outputs = [job.communicate(timeout=300) for job in jobs]
    assert [job.returncode for job in jobs] == [0, 0], outputs
    assert not any("warning" in err for _, err in outputs), outputs  # every push landed, none given up

    lines = remote_lines(remote)
    assert len(lines) == 2 * rounds == len(set(lines))
    runs = {rec.loads(line)["run"] for line in lines}
    assert len(runs) == 2 * rounds
    # history only moved forward: every commit's file starts with its parent's
    commits = git(remote, "rev-list", "--reverse", "--first-parent", BRANCH).split()
    contents = ["".join(git(remote, "show", f"{c}:{n}") for n in month_files(remote, c)) for c in commits]
    assert all(later.startswith(earlier) for earlier, later in zip(contents, contents[1:]))
    # both clones read the same history afterwards
    for c in clones:
        shown = lpo(c, "history", "show", "--branch", "--fetch", "--format", "json", "--last", "100")
        assert shown.returncode == 0, shown.stderr
        assert len(json.loads(shown.stdout)["templates"][0]["records"]) == 2 * rounds


def test_a_branch_with_foreign_content_is_refused(remote, tmp_path):
    other = clone(remote, tmp_path / "other")
    git(other, "checkout", "-q", "--orphan", BRANCH)
    git(other, "rm", "-rq", "--cached", ".")
    (other / "notes.txt").write_text("someone else's branch\n", encoding="utf-8")
    git(other, "add", "notes.txt")
    git(other, "commit", "-q", "-m", "notes")
    git(other, "push", "-q", "origin", BRANCH)
    before = git(remote, "rev-parse", BRANCH)

    work = clone(remote, tmp_path / "work")
    result = lpo(work, "history", "record", "--report", str(write_report(work)), "--branch", "--push")
    assert result.returncode == 2
    assert f"the branch '{BRANCH}' exists but lpo-ci did not create it (no {MARKER} at its root" in result.stderr
    assert "hint: name another branch for the history" in result.stderr
    assert git(remote, "rev-parse", BRANCH) == before
    shown = lpo(work, "history", "show", "--branch", "--fetch")
    assert shown.returncode == 2 and "lpo-ci did not create it" in shown.stderr
    # another branch name works
    assert lpo(work, "history", "record", "--report", str(write_report(work)), "--branch", "prompt-history",
               "--push").returncode == 0
    assert len(remote_lines(remote, "prompt-history")) == 1


def test_a_refused_push_is_a_warning_and_the_records_go_with_the_next_push(remote, tmp_path):
    hook = remote / "hooks" / "pre-receive"
    hook.write_text("#!/bin/sh\nwhile read old new ref; do\n  if [ \"$ref\" = \"refs/heads/" + BRANCH + "\" ]; "
                    "then echo 'protected branch hook declined' >&2; exit 1; fi\ndone\n", encoding="utf-8")
    hook.chmod(0o755)
    work = clone(remote, tmp_path / "work")
    refused = lpo(work, "history", "record", "--report", str(write_report(work, "ccc")), "--branch", "--push")
    assert refused.returncode == 0  # a warning, not a failure
    assert "warning: lpo-ci: history: the history push to origin/" + BRANCH + " was refused" in refused.stderr
    assert "pre-receive hook declined" in refused.stderr and "the verdict is unchanged" in refused.stderr
    assert git(remote, "branch", "--list", BRANCH).strip() == ""
    assert len(remote_lines(work)) == 1  # kept locally

    hook.unlink()  # the rule is lifted: the next push carries both records
    assert lpo(work, "history", "record", "--report", str(write_report(work, "ccw")), "--branch",
               "--push").returncode == 0
    assert [rec.loads(line)["outcomes"] for line in remote_lines(remote)] == ["ccc", "ccw"]


def test_a_local_branch_that_diverged_from_the_remote_is_merged(remote, tmp_path):
    first, second = clone(remote, tmp_path / "first"), clone(remote, tmp_path / "second")
    assert lpo(first, "history", "record", "--report", str(write_report(first, "ccc")), "--branch",
               "--push").returncode == 0
    # the second clone commits locally without pushing, while the remote moves on
    assert lpo(second, "history", "record", "--report", str(write_report(second, "www")), "--branch").returncode == 0
    assert lpo(first, "history", "record", "--report", str(write_report(first, "ccw")), "--branch",
               "--push").returncode == 0
    git(second, "fetch", "-q", "origin", f"+refs/heads/{BRANCH}:refs/remotes/origin/{BRANCH}")
    shown = lpo(second, "history", "show", "--branch", "--format", "json")
    assert sorted(r["outcomes"] for r in json.loads(shown.stdout)["templates"][0]["records"]) == ["ccc", "ccw", "www"]
    assert lpo(second, "history", "record", "--report", str(write_report(second, "cww")), "--branch",
               "--push").returncode == 0
    assert sorted(rec.loads(line)["outcomes"] for line in remote_lines(remote)) == ["ccc", "ccw", "cww", "www"]
    parents = git(remote, "rev-list", "--parents", "-n", "1", BRANCH).split()[1:]
    assert len(parents) == 2  # a merge: neither side was rewritten


def test_record_bad_inputs(remote, tmp_path):
    work = clone(remote, tmp_path / "work")
    garbage = tmp_path / "garbage.json"
    garbage.write_text("{not json", encoding="utf-8")
    result = lpo(work, "history", "record", "--report", str(garbage), "--branch")
    assert result.returncode == 2 and f"{garbage}:1: not JSON" in result.stderr
    alien = tmp_path / "alien.json"
    alien.write_text(json.dumps({"templates": [{"template": "/etc/passwd"}]}), encoding="utf-8")
    result = lpo(work, "history", "record", "--report", str(alien), "--branch")
    assert result.returncode == 2 and "templates[0]: no relative template path" in result.stderr
    result = lpo(work, "history", "record", "--report", str(write_report(work)), "--push")
    assert result.returncode == 2 and "--push needs --branch" in result.stderr
    result = lpo(work, "history", "record", "--report", str(write_report(work)), "--branch", "bad..name")
    assert result.returncode == 2 and "'bad..name' is not a valid git branch name" in result.stderr
    git(work, "checkout", "-q", "--orphan", BRANCH)  # the history branch checked out by mistake
    result = lpo(work, "history", "record", "--report", str(write_report(work)), "--branch")
    assert result.returncode == 2 and "is checked out here" in result.stderr


def test_ancestry_is_unknown_in_a_shallow_clone(remote, tmp_path):
    """A shallow clone cannot say which records are of the base branch: the gates then fall back
    to the records' own events instead of calling every record foreign."""
    from lpo_ci.history.context import Ancestry

    full = clone(remote, tmp_path / "full")
    head = git(full, "rev-parse", "HEAD").strip()
    assert Ancestry(full, head).known and Ancestry(full, head).contains(head)
    shallow = tmp_path / "shallow"
    git(tmp_path, "clone", "-q", "--depth", "1", f"file://{remote}", str(shallow))
    assert not Ancestry(shallow, head).known


def test_in_actions_the_token_reaches_git_through_the_environment_only(remote, tmp_path, monkeypatch):
    import base64

    from lpo_ci.history.gitstore import GitBranchStore

    work = clone(remote, tmp_path / "work")
    store = GitBranchStore(work, BRANCH)
    assert store._auth() == {}  # not in Actions
    monkeypatch.setenv("GITHUB_ACTIONS", "true")
    monkeypatch.setenv("GITHUB_TOKEN", "ghs_secret")
    monkeypatch.setenv("GITHUB_SERVER_URL", "https://github.example.com")
    monkeypatch.setenv("GIT_CONFIG_COUNT", "1")  # a setting of the caller's own comes first
    monkeypatch.setenv("GIT_CONFIG_KEY_0", "core.abbrev")
    monkeypatch.setenv("GIT_CONFIG_VALUE_0", "12")
    header = "AUTHORIZATION: basic " + base64.b64encode(b"x-access-token:ghs_secret").decode()
    assert store._auth() == {"GIT_CONFIG_COUNT": "2", "GIT_CONFIG_KEY_1": "http.https://github.example.com/.extraheader",
                             "GIT_CONFIG_VALUE_1": header}
    assert "ghs_secret" not in (work / ".git" / "config").read_text(encoding="utf-8")
    # a checkout that persisted its credentials already sends a header: no second one
    git(work, "config", "http.https://github.example.com/.extraheader", "AUTHORIZATION: basic xyz")
    assert store._auth() == {}

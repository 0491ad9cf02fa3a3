"""The action's ``history`` input, run step by step from action.yml: push and schedule runs record
to the history branch of a real bare remote, a pull request reads it and gets the trend in its
comment, a protected branch turns the push into a warning and leaves the verdict alone."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from lpo_ci.history import record as rec
from tests.support.action_runner import run_composite
from tests.support.github_server import fake_github
from tests.support.pr_project import git, make_regressed_project, pr_files, pull_request_event
from tests.test_action import REPO, run_action, runner_env

pytestmark = pytest.mark.slow
BRANCH = "lpo-ci-history"


def project_with_remote(tmp_path: Path, url: str) -> tuple[Path, Path, str, str]:
    """The regressed project, pushed to a bare remote that is its origin; main checked out."""
    workspace = tmp_path / "workspace"
    base, head = make_regressed_project(workspace, url)
    origin = tmp_path / "origin.git"
    git(tmp_path, "init", "-q", "--bare", str(origin))
    git(workspace, "remote", "add", "origin", str(origin))
    git(workspace, "push", "-q", "origin", "main", "feature")
    git(workspace, "checkout", "-q", "main")
    return workspace, origin, base, head


def run_on_main(tmp_path: Path, workspace: Path, gh, event_name: str, **inputs):
    """The action on a push (or schedule) event of main."""
    env = runner_env(tmp_path, workspace, {}, gh.url)
    env.pop("GITHUB_BASE_REF")
    env.pop("GITHUB_HEAD_REF")
    env.update(GITHUB_EVENT_NAME=event_name, GITHUB_REF="refs/heads/main")
    runner_temp = tmp_path / "runner"
    runner_temp.mkdir(exist_ok=True)
    return run_composite(REPO, inputs={"github-token": gh.token, "history": "true", "optimize": "false", **inputs},
                         env=env, github={"token": "ghs_default_job_token", "run_id": "42", "run_attempt": "1",
                                          "event_name": event_name, "server_url": "https://github.com"},
                         runner_temp=runner_temp, skip_ids=("install",))


def history_lines(origin: Path) -> list[dict]:
    names = sorted(git(origin, "ls-tree", "-r", "--name-only", BRANCH, "--", "prompts/x.j2/").split())
    return [rec.loads(line) for name in names for line in git(origin, "show", f"{BRANCH}:{name}").splitlines()]


def test_push_records_and_a_pull_request_gets_the_trend(tmp_path, openai_server, data_dir):
    workspace, origin, base, head = project_with_remote(tmp_path, openai_server.url)
    with fake_github() as gh:
        first = run_on_main(tmp_path, workspace, gh, "push")
        assert first.steps[-1].returncode == 0, first.log
        assert "no history branch 'lpo-ci-history' yet" in first.step("history-fetch").stdout
        assert first.step("history-record").returncode == 0
        (record,) = history_lines(origin)
        assert record["commit"] == base and record["event"] == "push" and record["ref"] == "refs/heads/main"
        dashboard = Path(first.outputs["history-dashboard"]) / "index.html"
        assert "prompts/x.j2" in dashboard.read_text(encoding="utf-8")

        second = run_on_main(tmp_path, workspace, gh, "push")
        assert second.steps[-1].returncode == 0, second.log
        assert len(history_lines(origin)) == 2

        # the pull request only reads the branch: its comment has the trend, the branch is unchanged
        git(workspace, "checkout", "-q", "feature")
        git(workspace, "branch", "-q", "-D", BRANCH)  # a fresh runner's clone has no local history branch
        gh.add_pull(7, head_sha=head, files=pr_files(workspace, base, head))
        pr = run_action(tmp_path, workspace, gh, pull_request_event(7, base, head), history="true",
                        optimize="false")
        assert pr.steps[-1].returncode == 1, pr.log  # the regression itself still fails
        assert pr.step("history-record").skipped == "if: false"
        assert len(history_lines(origin)) == 2
        body = gh.issue_comments[7][0]["body"]
        assert "#### Accuracy over time" in body and "```mermaid\nxychart-beta\n" in body
        assert f'x-axis ["{base[:7]}", "{base[:7]}-2", "head"]' in body
        item = json.loads(Path(pr.outputs["report"]).read_text(encoding="utf-8"))["templates"][0]
        points = item["history"]["trend"]["points"]
        assert [p["commit"] for p in points] == [base, base] and item["history"]["trend"]["head"] < 0.8


def test_a_protected_history_branch_is_a_warning_and_the_verdict_stands(tmp_path, openai_server, data_dir):
    workspace, origin, base, _ = project_with_remote(tmp_path, openai_server.url)
    hook = origin / "hooks" / "pre-receive"
    hook.write_text("#!/bin/sh\nwhile read old new ref; do\n  case \"$ref\" in refs/heads/" + BRANCH + ") "
                    "echo 'GH006: Protected branch update failed' >&2; exit 1;; esac\ndone\n", encoding="utf-8")
    hook.chmod(0o755)
    with fake_github() as gh:
        run = run_on_main(tmp_path, workspace, gh, "push")
    assert run.steps[-1].returncode == 0, run.log  # the templates passed: so does the check
    assert run.step("history-record").returncode == 0
    warnings = [message for name, props, message in run.commands if name == "warning"]
    assert any("was refused" in m and "the verdict is unchanged" in m for m in warnings), run.log
    assert git(origin, "branch", "--list", BRANCH).strip() == ""


def test_a_scheduled_run_asks_the_model_again_and_records_it(tmp_path, openai_server, data_dir):
    workspace, origin, base, _ = project_with_remote(tmp_path, openai_server.url)
    with fake_github() as gh:
        assert run_on_main(tmp_path, workspace, gh, "push").steps[-1].returncode == 0
        asked = openai_server.requests
        scheduled = run_on_main(tmp_path, workspace, gh, "schedule")
    assert scheduled.steps[-1].returncode == 0, scheduled.log
    assert openai_server.requests == asked + 40  # the warm cache was not read
    assert [r["event"] for r in history_lines(origin)] == ["push", "schedule"]
    report = json.loads(Path(scheduled.outputs["report"]).read_text(encoding="utf-8"))
    assert report["templates"][0]["history"]["model_drift"]["status"] == "pass"

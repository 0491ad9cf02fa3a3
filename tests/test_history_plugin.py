"""History end to end: ``pytest --lpo --lpo-history`` in a real git project against the real
loopback OpenAI-compatible server, then the creeping-drift and model-drift gates, renames,
and the trend the report carries for the pull-request comment.
"""

from __future__ import annotations

import hashlib
import json
import re

import pytest

from lpo_ci.cli import main
from lpo_ci.history import record as rec
from lpo_ci.history.store import LocalStore
from tests.conftest import git
from tests.support.openai_server import evaluate_boolean_expression, fake_openai_server
from tests.test_plugin import (  # noqa: F401 - the fixtures apply here too
    BAD, GOOD, TASK, _hermetic_env, _preload_heavy_modules, entry, init_repo, project, report, write_template)

pytestmark = pytest.mark.slow


def commit(pytester, message: str) -> str:
    git(pytester.path, "add", "-A")
    git(pytester.path, "commit", "-q", "-m", message)
    return git(pytester.path, "rev-parse", "HEAD").strip()


def records(pytester, template: str = "prompts/x.j2") -> list[dict]:
    shard = LocalStore(pytester.path / ".lpo-ci" / "history").shards().get(template)
    return shard.records() if shard else []


def test_lpo_history_appends_one_record_per_template(pytester, openai_server):
    project(pytester, openai_server.url)
    write_template(pytester, "prompts/x.j2", GOOD, samples=20)
    write_template(pytester, "prompts/y.j2", BAD, samples=10)
    write_template(pytester, "prompts/broken.j2", GOOD, benchmark="bbh/no_such_task", samples=5)
    first = init_repo(pytester)

    result = pytester.runpytest("--lpo", "--lpo-history")
    result.assert_outcomes(passed=2, errors=1)
    result.stdout.fnmatch_lines(["history: 2 records appended to *.lpo-ci*history",
                                 "history: prompts/broken.j2: not recorded: error status*"])
    (x,) = records(pytester)
    text = (pytester.path / "prompts" / "x.j2").read_text(encoding="utf-8")
    assert x["commit"] == first and x["parent"] is None and x["subject"] == "base"
    assert x["ref"] == "refs/heads/main" and x["event"] == "manual" and not x.get("dirty")
    assert x["template_sha"] == rec.text_sha(text) and x["model"] == "openai/fake"
    assert x["reported_models"] == {"fake": 20} and x["system_fingerprints"] == {"fp_fake": 20}
    assert x["n"] == 20 and len(rec.outcomes(x)) == 20 and x["accuracy"] > 0.8
    assert x["tokens"] > 0 and x["fingerprint"] and x["run_date"].endswith("Z")
    assert len(records(pytester, "prompts/y.j2")) == 1

    # an uncommitted edit is recorded as such, on the commit it sits on
    write_template(pytester, "prompts/x.j2", BAD, samples=20)
    pytester.runpytest("--lpo", "--lpo-history", "-k", "x.j2")
    latest = records(pytester)[-1]
    assert latest["commit"] == first and latest["dirty"] is True and latest["template_sha"] != x["template_sha"]


def test_history_show_after_runs(pytester, openai_server, capsys, monkeypatch):
    project(pytester, openai_server.url)
    write_template(pytester, "prompts/x.j2", GOOD, samples=20)
    init_repo(pytester)
    pytester.runpytest("--lpo", "--lpo-history").assert_outcomes(passed=1)
    write_template(pytester, "prompts/x.j2", BAD, samples=20)
    second = commit(pytester, "reword")
    pytester.runpytest("--lpo", "--lpo-history", "--lpo-base", "HEAD").assert_outcomes(passed=1)

    monkeypatch.chdir(pytester.path)
    capsys.readouterr()
    assert main(["history", "show"]) == 0
    out = capsys.readouterr().out
    header, columns, _, latest = out.splitlines()[:4]
    assert header.startswith("prompts/x.j2  ") and "2 records" in header
    assert latest.split()[0] == second[:8] and latest.split()[-1] == "T"


def leveled_answer(prompt: str) -> str:
    """Right on a question unless its hash falls under 2 points per 'Level N' of the prompt:
    each level loses the questions of the one before and a few more (monotone, deterministic)."""
    level = int(re.search(r"Level (\d+)", prompt).group(1))
    question = prompt.rsplit("Q:", 1)[1].split("\n", 1)[0].strip()
    value = evaluate_boolean_expression(question)
    if value is None:
        return "I don't know"
    wrong = int(hashlib.sha256(question.encode()).hexdigest(), 16) % 100 < 5 + 2 * level
    return str(value != wrong)


def leveled(level: int) -> str:
    return f"Level {level}. Evaluate the expression.\n\nQ: {{{{ input }}}}\nA:\n"


def test_creeping_regression_fails_where_each_change_passed(pytester):
    """Each change loses ~2 points and passes the per-change gate; the drift gate adds them up."""
    with fake_openai_server(answer=leveled_answer) as server:
        project(pytester, server.url)
        options = dict(samples=100, tolerance=0.05, drift_window=10, drift_tolerance=0.05)
        write_template(pytester, "prompts/x.j2", leveled(0), **options)
        base = init_repo(pytester)
        pytester.runpytest("--lpo", "--lpo-history").assert_outcomes(passed=1)
        outcome, level = None, 0
        while outcome is None and level < 12:
            level += 1
            write_template(pytester, "prompts/x.j2", leveled(level), **options)
            commit(pytester, f"level {level}")
            result = pytester.runpytest("--lpo", "--lpo-history", "--lpo-base", "HEAD~1", "--lpo-report", "r.json")
            item = entry(report(pytester, "r.json"), "prompts/x.j2")
            # the change itself passes the base-vs-head gate
            assert item["reference"] == "base" and not re.search(r"(^|; )regression:", item["reason"])
            drift = item["history"]["drift"]
            if item["status"] == "fail":
                outcome = result, item, drift
            else:
                result.assert_outcomes(passed=1)
                assert drift["status"] == "pass"
    result, item, drift = outcome
    result.assert_outcomes(failed=1)
    assert level >= 3  # the first changes passed both gates
    assert drift["reference"]["commit"] == base and drift["changes"] == level
    assert drift["paired"]["drop"] > 0.05 and drift["paired"]["p_value"] < 0.05 and drift["paired"]["better"] == 0
    day = rec.day(drift["reference"]["date"])
    points = f"{drift['paired']['drop'] * 100:.1f} points"
    expected = f"accuracy fell {points} since {base[:8]} ({day}), over {level} changes"
    assert expected in item["reason"]
    result.stdout.fnmatch_lines([f"*FAIL: creeping regression: {expected}*"])
    # the trend of the report: the recorded levels, then the head
    trend = item["history"]["trend"]
    assert [p["commit"] for p in trend["points"]][0] == base and trend["head"] == pytest.approx(item["head_accuracy"])
    assert len(trend["points"]) == min(level, 12) and all(p["changes"] == "T" for p in trend["points"][1:])


def test_model_drift_is_told_apart_from_a_prompt_change(pytester):
    with fake_openai_server(reported_model="fake-2026-01", system_fingerprint="fp_jan") as server:
        project(pytester, server.url)
        write_template(pytester, "prompts/x.j2", GOOD, samples=40)
        first = init_repo(pytester)
        pytester.runpytest("--lpo", "--lpo-history").assert_outcomes(passed=1)
        assert server.requests == 40

        # the same answers from a fresh run: asked again (cache not read), no drift
        fresh = pytester.runpytest("--lpo", "--lpo-history", "--lpo-fresh", "--lpo-report", "same.json")
        fresh.assert_outcomes(passed=1)
        assert server.requests == 80
        assert entry(report(pytester, "same.json"), "prompts/x.j2")["history"]["model_drift"]["status"] == "pass"

        # the provider swaps the model behind the name: worse answers, a new model id
        server.reported_model, server.system_fingerprint = "fake-2026-02", "fp_feb"
        server.answer = lambda prompt: "True"
        plain = pytester.runpytest("--lpo", "--lpo-report", "cached.json")
        plain.assert_outcomes(passed=1)  # from the cache: the old answers, nothing noticed
        assert server.requests == 80
        drifted = pytester.runpytest("--lpo", "--lpo-history", "--lpo-fresh", "--lpo-report", "drift.json")
        assert server.requests == 120
    drifted.assert_outcomes(failed=1)
    item = entry(report(pytester, "drift.json"), "prompts/x.j2")
    finding = item["history"]["model_drift"]
    assert finding["status"] == "fail" and finding["reference"]["commit"] == first
    assert "the model changed, not the prompt" in item["reason"]
    assert "the provider reported fake-2026-01 (fp_jan) then and fake-2026-02 (fp_feb) now" in item["reason"]
    drifted.stdout.fnmatch_lines(["*FAIL: model drift: the template is unchanged since*"])
    # the new answers were stored: a cached run now sees the new model's answers
    again = pytester.runpytest("--lpo", "--lpo-report", "after.json")
    again.assert_outcomes(passed=1)
    after = entry(report(pytester, "after.json"), "prompts/x.j2")
    assert after["usage"]["calls"] == 0 and after["head_accuracy"] == pytest.approx(item["head_accuracy"])
    assert records(pytester)[-1]["reported_models"] == {"fake-2026-02": 40}


def test_a_changed_template_is_not_called_model_drift(pytester, openai_server):
    project(pytester, openai_server.url)
    write_template(pytester, "prompts/x.j2", GOOD, samples=40)
    init_repo(pytester)
    pytester.runpytest("--lpo", "--lpo-history").assert_outcomes(passed=1)
    write_template(pytester, "prompts/x.j2", BAD, samples=40)
    commit(pytester, "reword")
    result = pytester.runpytest("--lpo", "--lpo-fresh", "--lpo-base", "HEAD", "--lpo-report", "r.json")
    result.assert_outcomes(passed=1)
    finding = entry(report(pytester, "r.json"), "prompts/x.j2")["history"]["model_drift"]
    assert finding["status"] == "unchecked" and "the template text changed since" in finding["message"]


def test_a_renamed_template_keeps_its_history_end_to_end(pytester, openai_server, capsys, monkeypatch):
    project(pytester, openai_server.url)
    write_template(pytester, "prompts/a.j2", GOOD, samples=20, drift_window=5)
    first = init_repo(pytester)
    pytester.runpytest("--lpo", "--lpo-history").assert_outcomes(passed=1)
    git(pytester.path, "mv", "prompts/a.j2", "prompts/b.j2")
    commit(pytester, "rename the prompt")
    result = pytester.runpytest("--lpo", "--lpo-history", "--lpo-report", "r.json")
    result.assert_outcomes(passed=1)
    drift = entry(report(pytester, "r.json"), "prompts/b.j2")["history"]["drift"]
    assert drift["status"] == "pass" and drift["reference"]["commit"] == first  # compared across the rename
    (b,) = records(pytester, "prompts/b.j2")
    assert b["renamed_from"] == "prompts/a.j2"
    monkeypatch.chdir(pytester.path)
    capsys.readouterr()
    assert main(["history", "show", "prompts/b.j2"]) == 0
    out = capsys.readouterr().out
    assert out.startswith("prompts/b.j2 (formerly prompts/a.j2)") and "2 records" in out.splitlines()[0]


def test_drift_window_without_history_warns_and_passes(pytester, openai_server):
    project(pytester, openai_server.url)
    write_template(pytester, "prompts/x.j2", GOOD, samples=10, drift_window=5)
    init_repo(pytester)
    result = pytester.runpytest("--lpo", "--lpo-report", "r.json")
    result.assert_outcomes(passed=1, warnings=1)
    result.stdout.fnmatch_lines(["*HistoryWarning: prompts/x.j2: drift check: none of the base branch's last 5*"])
    assert entry(report(pytester, "r.json"), "prompts/x.j2")["history"]["drift"]["status"] == "unchecked"


def test_bad_drift_keys_are_errors_at_their_line(pytester, openai_server):
    project(pytester, openai_server.url)
    write_template(pytester, "prompts/x.j2", GOOD, samples=10, drift_window=0)
    result = pytester.runpytest("--lpo")
    result.stdout.fnmatch_lines(["*prompts/x.j2:4: 'drift_window' must be a positive integer*"])
    project(pytester, openai_server.url, lpo="drift_tolerance = 2\n")
    write_template(pytester, "prompts/x.j2", GOOD, samples=10)
    result = pytester.runpytest("--lpo")
    result.stderr.fnmatch_lines(["*pyproject.toml:4: 'drift_tolerance' must be a number between 0 and 1*"])


def test_lpo_history_on_a_branch_commits_without_touching_the_checkout(pytester, openai_server, capsys,
                                                                        monkeypatch):
    project(pytester, openai_server.url)
    write_template(pytester, "prompts/x.j2", GOOD, samples=10)
    first = init_repo(pytester)
    result = pytester.runpytest("--lpo", "--lpo-history", "--lpo-history-branch", "prompt-history")
    result.assert_outcomes(passed=1)
    result.stdout.fnmatch_lines(["history: 1 record appended to branch prompt-history"])
    assert git(pytester.path, "rev-parse", "HEAD").strip() == first  # main did not move
    assert git(pytester.path, "branch", "--show-current").strip() == "main"
    files = git(pytester.path, "ls-tree", "-r", "--name-only", "prompt-history").split()
    assert "lpo-ci-history.json" in files and any(f.startswith("prompts/x.j2/") for f in files)
    assert not (pytester.path / ".lpo-ci" / "history").exists()
    monkeypatch.chdir(pytester.path)
    capsys.readouterr()
    assert main(["history", "show", "--branch", "prompt-history", "--format", "json"]) == 0
    (shown,) = json.loads(capsys.readouterr().out)["templates"]
    assert shown["template"] == "prompts/x.j2" and shown["records"][0]["commit"] == first


def test_cli_eval_fresh_asks_again(pytester, openai_server, monkeypatch, capsys):
    project(pytester, openai_server.url)
    write_template(pytester, "prompts/x.j2", GOOD, samples=10)
    monkeypatch.chdir(pytester.path)
    assert main(["eval", "prompts/x.j2", "--no-base"]) == 0
    assert main(["eval", "prompts/x.j2", "--no-base"]) == 0
    assert openai_server.requests == 10  # the second run read the cache
    assert main(["eval", "prompts/x.j2", "--no-base", "--fresh"]) == 0
    assert openai_server.requests == 20  # asked again

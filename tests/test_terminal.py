"""What the terminal shows: live progress per item on a terminal (and none in a pipe, a CI
log or under xdist), the reasons under the summary table, no noise, and a missing key that
fails at once with the variable to set.

pytest and ``lpo-ci`` run as subprocesses, on a real pseudo-terminal where a terminal is the
subject, against the loopback OpenAI-compatible server.
"""

from __future__ import annotations

import json
import os
import pty
import re
import select
import subprocess
import sys
import time

import pytest

from tests.support.openai_server import fake_openai_server
from tests.test_plugin import (  # noqa: F401 - the two autouse fixtures apply here too
    BAD, GOOD, TASK, _hermetic_env, _preload_heavy_modules, entry, init_repo, project, report, write_template)

pytestmark = pytest.mark.slow


def _env(**extra) -> dict:
    env = {k: v for k, v in os.environ.items() if k not in ("CI", "GITHUB_ACTIONS", "PYTEST_ADDOPTS",
                                                             "PYTEST_XDIST_WORKER", "OPENAI_API_KEY")}
    env.update(extra)
    return env


def run_on_a_terminal(args: list[str], cwd, env: dict, timeout: float = 120) -> str:
    """Run ``args`` with stdout and stderr on a pseudo-terminal; everything it wrote."""
    main, child = pty.openpty()
    process = subprocess.Popen(args, cwd=cwd, env=env, stdin=subprocess.DEVNULL, stdout=child, stderr=child)
    os.close(child)
    chunks, deadline = [], time.monotonic() + timeout
    try:
        while time.monotonic() < deadline:
            ready, _, _ = select.select([main], [], [], 0.5)
            if ready:
                try:
                    data = os.read(main, 65536)
                except OSError:  # the child closed the terminal
                    break
                if not data:
                    break
                chunks.append(data)
            elif process.poll() is not None:
                break
    finally:
        process.wait(timeout=30)
        os.close(main)
    return b"".join(chunks).decode("utf-8", "replace")


def slow_project(pytester, url: str) -> None:
    project(pytester, url)
    write_template(pytester, "prompts/a.j2", GOOD, samples=40)
    write_template(pytester, "prompts/b.j2", GOOD.replace("Q:", "Question:"), samples=40)


def test_progress_on_a_terminal_is_drawn_and_erased(pytester):
    with fake_openai_server(latency=0.05) as server:
        slow_project(pytester, server.url)
        out = run_on_a_terminal([sys.executable, "-m", "pytest", "-p", "no:cacheprovider", "--lpo",
                                 "--lpo-concurrency=2"], pytester.path, _env())
    assert re.search(r"\[\d+/40 calls, \d+\.\d s\]", out), out
    # once erased, the line reads as pytest wrote it: progress is backspaced over, never left
    visible = _as_seen(out)
    assert re.search(r"prompts/a\.j2 \.\s+\[ 50%\]", visible), visible
    assert re.search(r"prompts/b\.j2 \.\s+\[100%\]", visible), visible
    assert "calls, " not in visible.split("lpo-ci summary")[0]


def _as_seen(text: str) -> str:
    """What a terminal shows: backspaces move left and later characters overwrite."""
    lines, line, col = [], [], 0
    for ch in text.replace("\r\n", "\n"):
        if ch == "\n":
            lines.append("".join(line).rstrip())
            line, col = [], 0
        elif ch == "\r":
            col = 0
        elif ch == "\b":
            col = max(0, col - 1)
        else:
            if col < len(line):
                line[col] = ch
            else:
                line.append(ch)
            col += 1
    lines.append("".join(line).rstrip())
    return "\n".join(re.sub(r"\x1b\[[0-9;]*m", "", text) for text in lines)


@pytest.mark.parametrize("how", ["pipe", "ci", "xdist", "quiet"])
def test_no_progress_in_a_pipe_a_ci_log_under_xdist_or_with_qq(pytester, how):
    with fake_openai_server(latency=0.01) as server:
        slow_project(pytester, server.url)
        args = [sys.executable, "-m", "pytest", "-p", "no:cacheprovider", "--lpo"]
        if how == "pipe":
            out = subprocess.run(args, cwd=pytester.path, env=_env(), capture_output=True, text=True).stdout
        else:
            env = _env(CI="true") if how == "ci" else _env()
            extra = {"xdist": ["-n", "2"], "quiet": ["-qq"]}.get(how, [])
            out = run_on_a_terminal(args + extra, pytester.path, env)
    assert "calls, " not in out.split("lpo-ci summary")[0] and "\b" not in out, out


def test_the_reasons_and_the_run_are_said_under_the_table(pytester, openai_server):
    """A drop that is not significant shows under the table; failures name their rule; a run
    capped by --lpo-max-samples says so; no '1 templates', '1 errors'."""
    project(pytester, openai_server.url)
    write_template(pytester, "prompts/weak.j2", BAD, samples=20, min_accuracy=0.9)
    write_template(pytester, "prompts/drop.j2", GOOD, samples=10)
    init_repo(pytester)
    write_template(pytester, "prompts/drop.j2", BAD, samples=10)  # loses the wording: 8 pairs cannot say much
    result = pytester.runpytest("--lpo", "--lpo-max-samples=4")  # 4 pairs: never significant
    out = result.stdout.str()
    assert "prompts/weak.j2: FAILED: under min_accuracy: accuracy" in out
    assert re.search(r"prompts/drop\.j2: passed: accuracy dropped [\d.]+% \(tolerance 0\.0%\), p = [\d.e-]+: "
                     r"not significant at alpha 0\.05", out), out
    assert "samples capped at 4 by --lpo-max-samples: 2 templates asked for more (prompts/drop.j2 10, " \
           "prompts/weak.j2 20)" in out
    assert "2 templates: 1 passed, 1 failed, 0 errors;" in out
    assert "accuracy regression" not in out and "regression: regression" not in out


def test_the_summary_counts_the_search_and_marks_a_stored_baseline(pytester, openai_server):
    project(pytester, openai_server.url)
    write_template(pytester, "prompts/x.j2", GOOD, samples=40)
    init_repo(pytester)
    pytester.runpytest("--lpo").assert_outcomes(passed=1)  # every base answer cached
    write_template(pytester, "prompts/x.j2", BAD, samples=40)
    result = pytester.runpytest("--lpo", "--lpo-optimize", "--lpo-budget-calls=120", "--lpo-report=r.json")
    spent = entry(report(pytester, "r.json"), "prompts/x.j2")["optimization"]["budget"]["spent"]["calls"]
    assert spent > 0
    assert re.search(rf"; gate: \d+ calls?, \d+ cache hits?, \d+ tokens, \$[\d.]+; LPO search: {spent} calls?, ",
                     result.stdout.str()), result.stdout.str()
    assert report(pytester, "r.json")["summary"]["optimization"]["calls"] == spent

    # no git: the stored baseline is the reference, and the base column says so
    (pytester.path / ".git").rename(pytester.path / "not-git")
    pytester.runpytest("--lpo", "--lpo-update-baseline")
    result = pytester.runpytest("--lpo")
    result.stdout.fnmatch_lines(["prompts/x.j2 *  * (stored) *PASS*",
                                 "base (stored): the stored baseline (--lpo-update-baseline)*"])


def test_a_missing_api_key_fails_at_once_with_the_variable_to_set(pytester):
    pytester.makepyprojecttoml('[tool.lpo_ci]\nmodel = "openai/gpt-4o-mini"\n')
    write_template(pytester, "prompts/a.j2", GOOD, samples=30)
    write_template(pytester, "prompts/b.j2", GOOD.replace("Q:", "Question:"), samples=30)
    started = time.monotonic()
    run = subprocess.run([sys.executable, "-m", "pytest", "-p", "no:cacheprovider", "--lpo", "--lpo-report=r.json"],
                         cwd=pytester.path, env=_env(), capture_output=True, text=True, timeout=300)
    elapsed = time.monotonic() - started
    assert run.returncode == 1, run.stdout + run.stderr
    data = report(pytester, "r.json")
    for name in ("prompts/a.j2", "prompts/b.j2"):
        item = entry(data, name)
        assert item["status"] == "error"
        assert "(set OPENAI_API_KEY for openai/gpt-4o-mini)" in item["reason"], item["reason"]
        assert item["usage"]["retries"] == 0
    # the first refused call stops the others: one request per template at most reached litellm
    reasons = [e["head"]["error"] for e in entry(data, "prompts/b.j2")["examples"]]
    assert all("[not sent: " in r for r in reasons), reasons[:3]
    assert elapsed < 60, elapsed  # not 107 s of retries (a generous bound: this is no timing test)
    assert "custom pricing" not in run.stdout + run.stderr
    assert "Traceback" not in run.stdout + run.stderr


def test_lpo_ci_eval_leaves_no_unclosed_session_or_pricing_warning(pytester):
    with fake_openai_server() as server:
        pytester.makepyprojecttoml(f'[tool.lpo_ci]\nmodel = "text-completion-openai/fake"\n'
                                   f'api_base = "{server.url}"\n')
        write_template(pytester, "prompts/a.j2", GOOD, samples=20)
        write_template(pytester, "prompts/b.j2", GOOD.replace("Q:", "Question:"), samples=20)
        run = subprocess.run([sys.executable, "-m", "lpo_ci.cli", "eval", "prompts/a.j2", "prompts/b.j2",
                              "--no-base", "--report", "r.json"], cwd=pytester.path, env=_env(),
                             capture_output=True, text=True, timeout=300)
    out = run.stdout + run.stderr
    assert run.returncode == 0, out
    for noise in ("Unclosed client session", "Unclosed connector", "custom pricing", "Generating train split",
                  "1 templates", "1 errors"):
        assert noise not in out, (noise, out)
    assert json.loads((pytester.path / "r.json").read_text())["summary"]["passed"] == 2


@pytest.mark.parametrize("model, variable", [
    ("openai/gpt-4o-mini", "OPENAI_API_KEY"), ("anthropic/claude-3-5-haiku-latest", "ANTHROPIC_API_KEY"),
    ("gemini/gemini-1.5-flash", "GEMINI_API_KEY")])
def test_each_provider_s_missing_key_is_a_configuration_error(monkeypatch, model, variable):
    """Real litellm, no network: the key is missing before any request is made."""
    import asyncio

    from lpo_ci.llm import ModelClient, ModelParams

    for name in ("OPENAI_API_KEY", "ANTHROPIC_API_KEY", "GEMINI_API_KEY", "GOOGLE_API_KEY"):
        monkeypatch.delenv(name, raising=False)
    client = ModelClient(ModelParams(model=model), retries=4)
    first, second = asyncio.run(client.complete_all(["Q: True is\nA:", "Q: False is\nA:"]))
    assert first.error.startswith("configuration error, not retried: ") and variable in first.error, first.error
    assert first.attempts == 1 and "litellm." not in first.error
    assert second.error.endswith("[not sent: the same configuration error]") or second.attempts == 1

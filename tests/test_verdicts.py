"""Verdicts that cannot be fooled: every way found to get a wrong "pass" (or a hang, or a
traceback) out of the gate, each with the bad input, on real git repositories, the real
loopback OpenAI-compatible server and, where the command line is the subject, a real
``lpo-ci`` process.
"""

from __future__ import annotations

import contextlib
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from tests.conftest import git
from tests.support.openai_server import GOOD_WORDING
from tests.test_plugin import (  # noqa: F401 - the two autouse fixtures apply here too
    BAD, GOOD, TASK, _hermetic_env, _preload_heavy_modules, entry, init_repo, no_traceback, project, report,
    spec, write_raw, write_template)


def lpo_ci(cwd: Path, *args: str, env: dict | None = None) -> subprocess.CompletedProcess:
    """The ``lpo-ci`` command in its own process."""
    return subprocess.run([sys.executable, "-m", "lpo_ci.cli", *args], cwd=cwd, capture_output=True,
                          text=True, env={**os.environ, **(env or {})}, timeout=600)


def no_traceback_in(text: str) -> None:
    assert "Traceback" not in text and "site-packages" not in text, text


# --------------------------------------------------------------------------
# 1. a base that was expected but cannot be read is an error, never "unchanged"


def _origin_with_a_regressing_branch(path: Path, url: str) -> None:
    """A repository whose main has the good wording and whose branch 'feature' loses it;
    main stays checked out, as on a hosting server."""
    path.mkdir()
    (path / "pyproject.toml").write_text(f'[tool.lpo_ci]\nmodel = "openai/fake"\napi_base = "{url}"\n',
                                         encoding="utf-8")
    (path / "prompts").mkdir()
    (path / "prompts" / "x.j2").write_text(spec() + GOOD, encoding="utf-8")
    git(path, "init", "-q", "-b", "main")
    git(path, "add", "-A")
    git(path, "commit", "-q", "-m", "base")
    git(path, "checkout", "-q", "-b", "feature")
    (path / "prompts" / "x.j2").write_text(spec() + BAD, encoding="utf-8")
    git(path, "commit", "-q", "-am", "reword")
    git(path, "checkout", "-q", "main")


@pytest.fixture
def origin(pytester, openai_server) -> Path:
    path = pytester.path.parent / f"{pytester.path.name}-origin"
    _origin_with_a_regressing_branch(path, openai_server.url)
    return path


def clone(origin: Path, into: Path, *options: str) -> None:
    git(into.parent, "clone", "-q", *options, "--branch", "feature", f"file://{origin}", str(into))


@pytest.mark.parametrize("lookup", ["GITHUB_BASE_REF", "default"])
def test_a_shallow_clone_errors_where_a_full_clone_fails(pytester, origin, openai_server, monkeypatch, lookup):
    if lookup == "GITHUB_BASE_REF":
        monkeypatch.setenv("GITHUB_BASE_REF", "main")
    clone(origin, pytester.path, "--depth", "1")  # what actions/checkout does by default
    shallow = pytester.runpytest("--lpo", "--lpo-report", "report.json")
    shallow.assert_outcomes(errors=1)
    shallow.stdout.fnmatch_lines(["*fetch-depth: 0*"])
    shallow.stdout.fnmatch_lines(["*git fetch origin main*"])
    shallow.stdout.no_fnmatch_line("*unchanged*")
    no_traceback(shallow)
    data = report(pytester)
    item = entry(data, "prompts/x.j2")
    assert item["status"] == "error" and "fetch-depth: 0" in item["reason"]
    assert data["reference"]["error"] and data["reference"]["rev"] is None
    assert openai_server.requests == 0  # nothing is scored against nothing

    full = pytester.path.parent / f"{pytester.path.name}-full"
    clone(origin, full)
    result = subprocess.run([sys.executable, "-m", "pytest", "-p", "no:cacheprovider", "--lpo",
                             "--lpo-report", "report.json"], cwd=full, capture_output=True, text=True,
                            timeout=600)
    assert result.returncode == 1, result.stdout
    item = entry(json.loads((full / "report.json").read_text()), "prompts/x.j2")
    assert item["status"] == "fail" and item["reference"] == "base"
    base = git(full, "rev-parse", "origin/main").strip()
    assert item["base_rev"] == base
    assert f"reference: origin/main at {base[:12]} (merge-base of HEAD with origin/main" in result.stdout


def test_a_shallow_clone_with_the_base_branch_but_no_shared_history(pytester, origin):
    clone(origin, pytester.path, "--depth", "1", "--no-single-branch")
    assert git(pytester.path, "rev-parse", "--verify", "origin/main").strip()
    result = pytester.runpytest("--lpo")
    result.assert_outcomes(errors=1)
    result.stdout.fnmatch_lines(["*HEAD and origin/main share no history in this shallow clone*",
                                 "*hint: check out with fetch-depth: 0*"])


def test_cli_eval_in_a_shallow_clone_exits_2_and_names_base(pytester, origin, monkeypatch):
    clone(origin, pytester.path, "--depth", "1")
    result = lpo_ci(pytester.path, "eval", "prompts/x.j2", "--report", "r.json", env={"GITHUB_BASE_REF": "main"})
    assert result.returncode == 2, result.stderr
    assert "GITHUB_BASE_REF is 'main', but this clone has no branch main" in result.stderr
    assert "git fetch origin main" in result.stderr and "fetch-depth: 0" in result.stderr
    no_traceback_in(result.stderr)
    item = entry(json.loads((pytester.path / "r.json").read_text()), "prompts/x.j2")
    assert item["status"] == "error"

    missing = lpo_ci(pytester.path, "eval", "prompts/x.j2", "--base", "origin/nope")
    assert missing.returncode == 2
    assert "--base: no commit named 'origin/nope'" in missing.stderr
    assert "--lpo-base" not in missing.stderr and "git fetch origin nope" in missing.stderr


def test_no_remote_and_no_base_branch_falls_back_to_the_last_commit_and_says_so(pytester, openai_server):
    project(pytester, openai_server.url)
    write_template(pytester, "prompts/x.j2", GOOD)
    git(pytester.path, "init", "-q", "-b", "trunk")
    git(pytester.path, "add", "-A")
    git(pytester.path, "commit", "-q", "-m", "base")
    head = git(pytester.path, "rev-parse", "HEAD").strip()
    write_template(pytester, "prompts/x.j2", BAD)  # an edit in the working tree

    result = pytester.runpytest("--lpo", "--lpo-report", "report.json")
    result.assert_outcomes(failed=1)
    result.stdout.fnmatch_lines([f"reference: HEAD at {head[:12]} (no remote and no main or master branch*"])
    assert report(pytester)["reference"]["ref"] == "HEAD"

    git(pytester.path, "remote", "add", "origin", "https://example.invalid/repo.git")
    with_remote = pytester.runpytest("--lpo")
    with_remote.assert_outcomes(errors=1)
    with_remote.stdout.fnmatch_lines(["*the repository has a remote (origin) but none of the base branches*"])


def test_not_a_git_repository_says_which_reference_it_used(pytester, openai_server):
    project(pytester, openai_server.url)
    write_template(pytester, "prompts/x.j2", BAD)
    result = pytester.runpytest("--lpo", "--lpo-report", "report.json")
    result.assert_outcomes(passed=1)
    result.stdout.fnmatch_lines(["reference: no git base (not a git repository)"])
    data = report(pytester)
    assert data["reference"]["how"] == "not a git repository" and data["reference"]["baseline"]
    assert entry(data, "prompts/x.j2")["reason"].endswith("(not a git repository)")

    explicit = pytester.runpytest("--lpo", "--lpo-base", "main")  # asked for: no fallback
    explicit.assert_outcomes(errors=1)
    explicit.stdout.fnmatch_lines(["*--lpo-base main given, but * is not inside a git repository*"])


def test_a_project_below_the_repository_top_reads_its_base(pytester, openai_server):
    """``git show REV:path`` takes paths from the repository's top: a project in a subfolder
    (the action's working-directory) must still find its templates' base versions."""
    sub = pytester.path / "services" / "bot"
    (sub / "prompts").mkdir(parents=True)
    (sub / "pyproject.toml").write_text(f'[tool.lpo_ci]\nmodel = "openai/fake"\napi_base = "{openai_server.url}"\n',
                                        encoding="utf-8")
    (sub / "prompts" / "x.j2").write_text(spec() + GOOD, encoding="utf-8")
    init_repo(pytester)
    (sub / "prompts" / "x.j2").write_text(spec() + BAD, encoding="utf-8")
    result = pytester.runpytest("--lpo", "--lpo-report=r.json", "--rootdir", str(sub), str(sub))
    result.assert_outcomes(failed=1)
    assert entry(report(pytester, "r.json"), "prompts/x.j2")["reference"] == "base"


# --------------------------------------------------------------------------
# 2. renames are followed as git follows them


def _renamed(pytester, how: str) -> None:
    old, new = pytester.path / "prompts" / "a.j2", pytester.path / "prompts" / "b.j2"
    if how == "staged":
        git(pytester.path, "mv", "prompts/a.j2", "prompts/b.j2")
    else:
        old.rename(new)
    new.write_text(new.read_text(encoding="utf-8").replace(GOOD_WORDING, "Work it out"), encoding="utf-8")
    if how == "committed":
        git(pytester.path, "add", "-A")
        git(pytester.path, "commit", "-q", "-m", "rename and reword")


@pytest.mark.parametrize("how", ["staged", "unstaged", "committed"])
def test_a_renamed_template_is_compared_with_its_old_version(pytester, openai_server, how):
    project(pytester, openai_server.url)
    write_template(pytester, "prompts/a.j2", GOOD)
    write_template(pytester, "prompts/other.j2", "Q: {{ input }}\nA:\n", samples=5)
    base = init_repo(pytester)
    if how == "committed":
        git(pytester.path, "checkout", "-q", "-b", "feature")
    _renamed(pytester, how)
    status_before = git(pytester.path, "status", "--porcelain", "--", "prompts")

    result = pytester.runpytest("--lpo", "--lpo-report", "report.json")
    result.assert_outcomes(failed=1, passed=1)
    item = entry(report(pytester), "prompts/b.j2")
    assert item["status"] == "fail" and item["reference"] == "base" and item["base_rev"] == base
    assert item["renamed_from"] == "prompts/a.j2"
    assert item["reason"].endswith("compared with prompts/a.j2 at main (renamed)")
    result.stdout.fnmatch_lines(["  base accuracy (prompts/a.j2, renamed): *",
                                 "prompts/b.j2: compared with prompts/a.j2 (renamed)"])
    assert git(pytester.path, "status", "--porcelain", "--", "prompts") == status_before  # index untouched


def test_a_pure_rename_is_unchanged(pytester, openai_server):
    project(pytester, openai_server.url)
    write_template(pytester, "prompts/a.j2", GOOD)
    init_repo(pytester)
    git(pytester.path, "mv", "prompts/a.j2", "prompts/b.j2")
    result = pytester.runpytest("--lpo", "--lpo-report", "report.json")
    result.assert_outcomes(passed=1)
    item = entry(report(pytester), "prompts/b.j2")
    assert item["reference"] == "unchanged" and item["renamed_from"] == "prompts/a.j2"
    assert openai_server.requests == 40


def test_the_stored_baseline_follows_a_rename(pytester, openai_server):
    """The baseline is the reference for a template new since the base branch; renaming it
    (and damaging it) must not lose that reference."""
    project(pytester, openai_server.url)
    write_raw(pytester, "README.md", "base\n")
    init_repo(pytester)
    git(pytester.path, "checkout", "-q", "-b", "feature")
    write_template(pytester, "prompts/a.j2", GOOD)
    pytester.runpytest("--lpo", "--lpo-update-baseline").assert_outcomes(passed=1)
    git(pytester.path, "add", "-A")
    git(pytester.path, "commit", "-q", "-m", "new template and its baseline")
    _renamed(pytester, "staged")

    result = pytester.runpytest("--lpo", "--lpo-report", "report.json")
    result.assert_outcomes(failed=1)
    item = entry(report(pytester), "prompts/b.j2")
    assert item["reference"] == "baseline" and item["renamed_from"] == "prompts/a.j2"
    assert "compared with the stored baseline of prompts/a.j2 (renamed)" in item["reason"]

    pytester.runpytest("--lpo", "--lpo-update-baseline").assert_outcomes(passed=1)
    stored = json.loads((pytester.path / ".lpo-ci" / "baseline.json").read_text())["templates"]
    assert sorted(stored) == ["prompts/b.j2"]  # the old name's entry went with it


# --------------------------------------------------------------------------
# 8. no traceback: every compile or render failure is one errored item


HOSTILE = {
    # names resolve inside the project only: an absolute name is a project path, '..' is refused
    "include": ('{% include "/etc/passwd" %}\nQ: {{ input }}\n', 5, "'/etc/passwd' is not in the folders searched"),
    "parent": ('{% include "../../../../etc/passwd" %}\nQ: {{ input }}\n', 5, "is not a file inside the project"),
    "import": ('Q: {{ input }}\n{% import "macros.j2" as m %}\n', 6, "'macros.j2' is not in the folders searched"),
    "extends": ('{% extends "/etc/passwd" %}\nQ: {{ input }}\n', 5, "'/etc/passwd' is not in the folders searched"),
    "range": ("{% for i in range(10**9) %}x{% endfor %}\nQ: {{ input }}\n", 5, "Range too big"),
    "repeat": ("{{ 'x' * 10**10 }}\nQ: {{ input }}\n", 5, "more than the sandbox allows"),
    "power": ("{{ 9**99999999 }}\nQ: {{ input }}\n", 5, "too large for a prompt"),
    "nesting": ("{{ " + "(" * 3000 + "1" + ")" * 3000 + " }}\nQ: {{ input }}\n", None, "cannot compile"),
}


def test_hostile_templates_are_clean_errors_and_stop_nothing(pytester, openai_server):
    project(pytester, openai_server.url)
    write_template(pytester, "prompts/good.j2", GOOD, samples=5)
    for name, (body, _, _) in HOSTILE.items():
        write_template(pytester, f"prompts/{name}.j2", body, samples=5)
    result = pytester.runpytest("--lpo", "--lpo-report", "report.json")
    result.assert_outcomes(passed=1, errors=len(HOSTILE))
    no_traceback(result)
    assert len(result.stdout.str()) < 50_000
    data = report(pytester)
    for name, (_, line, words) in HOSTILE.items():
        item = entry(data, f"prompts/{name}.j2")
        assert item["status"] == "error" and words in item["reason"], (name, item["reason"])
        if line:
            assert item["reason"].startswith(f"prompts/{name}.j2:{line}: "), item["reason"]
    assert entry(data, "prompts/good.j2")["status"] == "pass"
    assert openai_server.requests == 5  # only the good template was sent

    # the command line: the same errors, every template still scored, exit 2, the report written
    names = ["prompts/good.j2"] + [f"prompts/{name}.j2" for name in HOSTILE]
    cli = lpo_ci(pytester.path, "eval", *names, "--report", "cli.json")
    assert cli.returncode == 2, cli.stderr
    no_traceback_in(cli.stderr + cli.stdout)
    data = report(pytester, "cli.json")
    assert len(data["templates"]) == len(names) and data["summary"]["passed"] == 1
    assert "prompts/include.j2:5: cannot render the template: '/etc/passwd' is not in the folders searched" \
        in cli.stderr


def test_a_template_that_reads_none_of_the_data_is_an_error(pytester, openai_server):
    project(pytester, openai_server.url)
    write_template(pytester, "prompts/constant.j2", "Is it true? Answer True or False.\n")
    write_template(pytester, "prompts/ignores.j2", "{% if input %}Is it true?{% endif %}\n")
    result = pytester.runpytest("--lpo", "--lpo-report", "report.json")
    result.assert_outcomes(errors=2)
    result.stdout.fnmatch_lines([
        "*prompts/constant.j2: the template renders the same prompt for all 40 examples: "
        "it reads none of the data's fields",
        "*hint: use the data's fields in the prompt, e.g. {{ input }}"])
    result.stdout.fnmatch_lines(["*prompts/ignores.j2: * it reads input but its output does not change"])
    assert openai_server.requests == 0


# --------------------------------------------------------------------------
# 4. symbolic links: each real file once, loops skipped


def test_symlink_loops_and_duplicate_links_collect_each_template_once(pytester, openai_server):
    project(pytester, openai_server.url)
    write_template(pytester, "prompts/x.j2", GOOD)
    (pytester.path / "prompts" / "sub").mkdir()
    (pytester.path / "prompts" / "sub" / "loop").symlink_to("..", target_is_directory=True)
    (pytester.path / "prompts" / "sub" / "top").symlink_to("../..", target_is_directory=True)
    (pytester.path / "prompts" / "dup.j2").symlink_to("x.j2")

    collected = pytester.runpytest("--lpo", "--collect-only", "-q")
    collected.stdout.fnmatch_lines([f"prompts/x.j2::{TASK}", "1 test collected*"])
    result = pytester.runpytest("--lpo", "--lpo-report", "report.json")
    result.assert_outcomes(passed=1)
    assert [t["template"] for t in report(pytester)["templates"]] == ["prompts/x.j2"]
    assert openai_server.requests == 40

    cli = lpo_ci(pytester.path, "eval", "prompts/x.j2", "prompts/dup.j2", "--report", "cli.json")
    assert cli.returncode == 0, cli.stderr
    assert [t["template"] for t in report(pytester, "cli.json")["templates"]] == ["prompts/x.j2"]


# --------------------------------------------------------------------------
# 5. a sample larger than the data, or too small to ever fail, is said


def test_samples_beyond_the_data_and_too_few_to_fail_are_reported(pytester, openai_server, data_dir):
    project(pytester, openai_server.url)
    available = len(json.loads((data_dir / "bbh" / "boolean_expressions.json").read_text())["examples"])
    write_template(pytester, "prompts/big.j2", GOOD, samples=available + 750)
    write_template(pytester, "prompts/tiny.j2", GOOD, samples=3)
    init_repo(pytester)
    write_template(pytester, "prompts/tiny.j2", BAD, samples=3)
    result = pytester.runpytest("--lpo", "--lpo-report", "report.json")
    result.assert_outcomes(passed=2)
    warning = (f"samples is {available + 750}, but {TASK} has {available} examples: all {available} were used")
    result.stdout.fnmatch_lines([f"prompts/big.j2: warning: {warning}"])
    result.stdout.fnmatch_lines(["prompts/tiny.j2: warning: 3 paired examples cannot show a significant drop "
                                 "at alpha 0.05 (at least 5 are needed): raise samples"])
    data = report(pytester)
    assert entry(data, "prompts/big.j2")["warnings"] == [warning]
    assert entry(data, "prompts/big.j2")["head"]["n"] == available


def test_a_change_that_loosens_its_own_gate_is_said(pytester, openai_server):
    project(pytester, openai_server.url)
    write_template(pytester, "prompts/x.j2", GOOD)
    init_repo(pytester)
    write_template(pytester, "prompts/x.j2", BAD, tolerance=0.9)
    result = pytester.runpytest("--lpo", "--lpo-report", "report.json")
    result.assert_outcomes(passed=1)
    result.stdout.fnmatch_lines(["prompts/x.j2: warning: this change edits the gate's own settings "
                                 "(tolerance 0.0 -> 0.9); the new values were used"])


# --------------------------------------------------------------------------
# 6. numbers are checked where they come in, naming the option or the line


@pytest.mark.parametrize("option, value, wanted", [
    ("--lpo-concurrency", "0", "a positive integer"),
    ("--lpo-concurrency", "-1", "a positive integer"),
    ("--lpo-samples", "0", "a positive integer"),
    ("--lpo-seed", "1.5", "an integer"),
    ("--lpo-budget-calls", "0", "a positive integer"),
    ("--lpo-budget-calls", "-5", "a positive integer"),
    ("--lpo-budget-tokens", "0", "a positive integer"),
    ("--lpo-budget-usd", "-1", "a number > 0"),
    ("--lpo-budget-usd", "nan", "a number > 0"),
    ("--lpo-budget-seconds", "inf", "a number > 0"),
])
def test_bad_numeric_options_are_usage_errors(pytester, openai_server, option, value, wanted):
    project(pytester, openai_server.url)
    write_template(pytester, "prompts/x.j2", GOOD)
    result = pytester.runpytest("--lpo", f"{option}={value}")
    assert result.ret == pytest.ExitCode.USAGE_ERROR
    result.stderr.fnmatch_lines([f"*argument {option}: must be {wanted}*, got '{value}'"])
    no_traceback(result)
    assert openai_server.requests == 0


@pytest.mark.parametrize("args, words", [
    (["eval", "prompts/x.j2", "--samples", "-3"], "argument --samples: must be a positive integer, got '-3'"),
    (["eval", "prompts/x.j2", "--concurrency", "0"], "argument --concurrency: must be a positive integer"),
    (["optimize", "prompts/x.j2", "--beam", "0"], "argument --beam: must be a positive integer, got '0'"),
    (["optimize", "prompts/x.j2", "--rounds", "-1"], "argument --rounds: must be a positive integer"),
    (["optimize", "prompts/x.j2", "--budget-calls", "0"], "argument --budget-calls: must be a positive integer"),
    (["optimize", "prompts/x.j2", "--budget-usd", "-1"], "argument --budget-usd: must be a number > 0"),
])
def test_cli_bad_numbers_exit_2(pytester, openai_server, args, words):
    project(pytester, openai_server.url)
    write_template(pytester, "prompts/x.j2", GOOD)
    result = lpo_ci(pytester.path, *args)
    assert result.returncode == 2 and words in result.stderr, result.stderr
    no_traceback_in(result.stderr)


@pytest.mark.parametrize("line, words", [
    ("timeout: .inf", "'timeout' must be a number of seconds > 0, got inf"),
    ("temperature: .nan", "'temperature' must be a number >= 0, got nan"),
    ("seed: 99999999999999999999999", "'seed' must be an integer between"),
    ("samples: 0", "'samples' must be a positive integer, got 0"),
])
def test_bad_spec_numbers_name_the_line(pytester, openai_server, line, words):
    project(pytester, openai_server.url)
    write_raw(pytester, "prompts/x.j2", f"{{# lpo:\n  benchmark: {TASK}\n  {line}\n#}}\nQ: {{{{ input }}}}\n")
    result = pytester.runpytest("--lpo")
    result.assert_outcomes(errors=1)
    result.stdout.fnmatch_lines([f"prompts/x.j2:3: {words}*"])


def test_bad_project_numbers_name_the_line(pytester, openai_server):
    pytester.makepyprojecttoml(f'[tool.lpo_ci]\nmodel = "openai/fake"\napi_base = "{openai_server.url}"\n'
                               'retries = 1000\n')
    write_template(pytester, "prompts/x.j2", GOOD)
    result = pytester.runpytest("--lpo", "--lpo-report", "report.json")
    assert result.ret == pytest.ExitCode.USAGE_ERROR
    result.stderr.fnmatch_lines(["*pyproject.toml:4: 'retries' must be an integer from 0 to 10, got 1000"])
    assert "pyproject.toml:4: 'retries'" in report(pytester)["error"]  # the report is written all the same


# --------------------------------------------------------------------------
# 7. a YAML alias bomb, or a huge spec, is a short error, never a hang


def _alias_bomb(levels: int = 9) -> str:
    lines = ['  a0: &a0 ["lol", "lol", "lol", "lol", "lol", "lol", "lol", "lol", "lol"]']
    for level in range(1, levels):
        lines.append(f"  a{level}: &a{level} [" + ", ".join([f"*a{level - 1}"] * 9) + "]")
    return "\n".join(lines)


@pytest.mark.parametrize("body, words", [
    (f"  benchmark: {TASK}\n" + _alias_bomb() + "\n  samples: *a8\n",
     "expands to more than 10,000 values (YAML aliases)"),
    (f"  benchmark: {TASK}\n  pattern: '{'x' * 70_000}'\n", "the lpo spec comment is 70,"),
    (f"  benchmark: {TASK}\n  samples: {'9' * 5000}\n", "the lpo spec comment cannot be read"),
    (f"  benchmark: {TASK}\n  samples: {'[' * 5000}{']' * 5000}\n", "cannot be read: nested too deeply"),
])
def test_hostile_specs_are_short_errors(pytester, openai_server, body, words):
    project(pytester, openai_server.url)
    bomb = "{# lpo:\n" + body + "\n#}\nQ: {{ input }}\n"
    write_raw(pytester, "prompts/bomb.j2", bomb)
    write_template(pytester, "prompts/good.j2", GOOD, samples=5)
    result = pytester.runpytest("--lpo")
    result.assert_outcomes(passed=1, errors=1)
    result.stdout.fnmatch_lines([f"*prompts/bomb.j2:1: *{words}*"])
    assert len(result.stdout.str()) < 20_000
    cli = lpo_ci(pytester.path, "eval", "prompts/bomb.j2")
    assert cli.returncode == 2 and words in cli.stderr and len(cli.stderr) < 5_000


def test_a_long_wrong_value_is_cut_in_the_error(pytester, openai_server):
    project(pytester, openai_server.url)
    write_raw(pytester, "prompts/x.j2", "{# lpo:\n  benchmark: " + TASK + "\n  samples: [" + "1, " * 3000 + "1]\n#}\n"
              "Q: {{ input }}\n")
    result = pytester.runpytest("--lpo")
    result.assert_outcomes(errors=1)
    line = next(text for text in result.stdout.lines if "'samples' must be" in text)
    assert len(line) < 300 and line.rstrip().endswith("...]") or "..." in line


# --------------------------------------------------------------------------
# 12. the command line's exit statuses and its words


def test_cli_directory_and_missing_template_are_named_and_stop_nothing(pytester, openai_server):
    project(pytester, openai_server.url)
    write_template(pytester, "prompts/x.j2", GOOD, samples=5)
    result = lpo_ci(pytester.path, "eval", "prompts", "prompts/missing.j2", "prompts/x.j2", "--report", "r.json")
    assert result.returncode == 2, result.stderr
    assert "prompts: is a directory, not a template file" in result.stderr
    assert "prompts/missing.j2: no such template file" in result.stderr
    data = report(pytester, "r.json")
    assert sorted((t["template"], t["status"]) for t in data["templates"]) == [
        ("prompts", "error"), ("prompts/missing.j2", "error"), ("prompts/x.j2", "pass")]
    assert openai_server.requests == 5

    bad_report = lpo_ci(pytester.path, "eval", "prompts/x.j2", "--report", "prompts")
    assert bad_report.returncode == 2 and "--report prompts: is a directory" in bad_report.stderr


# --------------------------------------------------------------------------
# 9. the response cache: corrupt is set aside, a file is a usage error


def test_a_corrupt_cache_is_set_aside_and_the_run_goes_on(pytester, openai_server):
    project(pytester, openai_server.url)
    write_template(pytester, "prompts/x.j2", GOOD, samples=10)
    pytester.runpytest("--lpo").assert_outcomes(passed=1)
    store = pytester.path / ".lpo-ci" / "cache" / "responses.sqlite3"
    import sqlite3

    with contextlib.closing(sqlite3.connect(store)) as db:  # every page in the file, none in the WAL
        db.execute("PRAGMA wal_checkpoint(TRUNCATE)")
    store.write_bytes(b"garbage" * 5000)

    result = pytester.runpytest("--lpo", "--lpo-report", "report.json")
    result.assert_outcomes(passed=1)
    no_traceback(result)
    (kept,) = store.parent.glob("responses.sqlite3.corrupt-*[0-9]")
    result.stdout.fnmatch_lines([f"warning: the response cache * was unreadable (file is not a database); "
                                 f"it was moved to *{kept.name} and a fresh cache was started"])
    assert report(pytester)["warnings"] and openai_server.requests == 20  # the work was done again
    pytester.runpytest("--lpo").assert_outcomes(passed=1)
    assert openai_server.requests == 20  # and cached in the fresh store


def test_a_cache_dir_that_is_a_file_is_a_usage_error(pytester, openai_server):
    project(pytester, openai_server.url)
    write_template(pytester, "prompts/x.j2", GOOD, samples=10)
    write_raw(pytester, "not-a-dir", "x")
    result = pytester.runpytest("--lpo", "--lpo-cache-dir", "not-a-dir")
    assert result.ret == pytest.ExitCode.USAGE_ERROR
    result.stderr.fnmatch_lines(["*not-a-dir: the response cache directory is an existing file",
                                 "*hint: point --lpo-cache-dir *"])
    no_traceback(result)
    cli = lpo_ci(pytester.path, "eval", "prompts/x.j2", "--cache-dir", "not-a-dir")
    assert cli.returncode == 2 and "the response cache directory is an existing file" in cli.stderr


# --------------------------------------------------------------------------
# 10. a dead endpoint is an error reported in seconds (the circuit breaker)


def test_a_dead_endpoint_is_one_error_per_template_without_retrying_every_call(pytester):
    from tests.test_breaker import closed_port

    project(pytester, f"http://127.0.0.1:{closed_port()}/v1")
    write_template(pytester, "prompts/a.j2", GOOD, samples=120)
    write_template(pytester, "prompts/b.j2", BAD, samples=120)
    result = pytester.runpytest("--lpo", "--lpo-report", "report.json")
    result.assert_outcomes(errors=2)
    no_traceback(result)
    result.stdout.fnmatch_lines(["*120 of 120 calls failed (100% > max_error_rate 5%); first error: *onnect*"])
    data = report(pytester)
    # one breaker per endpoint: the second template sent nothing at all
    b = entry(data, "prompts/b.j2")
    assert b["head"]["errors"] == 120 and b["usage"]["retries"] == 0
    assert all("not sent" in e["head"]["error"] for e in b["examples"])


# --------------------------------------------------------------------------
# 11. the optimizer's "no suggestion" says whether anything was tried


def test_no_suggestion_tells_nothing_tried_from_nothing_won(pytester, openai_server):
    project(pytester, openai_server.url)
    write_template(pytester, "prompts/x.j2", GOOD)
    init_repo(pytester)
    write_template(pytester, "prompts/x.j2", BAD)
    # too small a budget to score the head on both splits: said, not "nothing won"
    starved = lpo_ci(pytester.path, "optimize", "prompts/x.j2", "--budget-calls", "50", "--report", "r.json",
                     "--cache-dir", str(pytester.path / "empty-cache"))  # cached calls are free: none here
    assert starved.returncode == 1, starved.stderr
    reason = report(pytester, "r.json")["templates"][0]["optimization"]["reason"]
    assert reason.startswith("the budget does not cover scoring the head"), reason
    assert "the budget does not cover scoring the head" in starved.stdout

    enough = lpo_ci(pytester.path, "optimize", "prompts/x.j2", "--budget-calls", "400", "--report", "r.json")
    assert enough.returncode == 0, enough.stdout
    assert not report(pytester, "r.json")["templates"][0]["optimization"]["reason"].startswith("no candidate")


# --------------------------------------------------------------------------
# the same classes of hole, next door


def test_a_stale_stored_baseline_is_said_not_silently_skipped(pytester, openai_server):
    project(pytester, openai_server.url)
    write_template(pytester, "prompts/x.j2", GOOD)
    pytester.runpytest("--lpo", "--lpo-update-baseline").assert_outcomes(passed=1)
    write_template(pytester, "prompts/x.j2", BAD, samples=30)  # another setup: the baseline does not apply
    result = pytester.runpytest("--lpo", "--lpo-report", "report.json")
    result.assert_outcomes(passed=1)
    result.stdout.fnmatch_lines(["prompts/x.j2: warning: the stored baseline for prompts/x.j2 was recorded with "
                                 "another setup *; rerun with --lpo-update-baseline to record this one"])
    assert entry(report(pytester), "prompts/x.j2")["warnings"]


def test_a_stored_baseline_of_other_data_is_not_compared(pytester, openai_server):
    """Ids of a dataset file are its record numbers: edited records keep their ids, so the
    baseline's outcomes would be paired with other examples. The data is part of the setup."""
    project(pytester, openai_server.url)
    rows = [{"question": f"{'not ' * (i % 3)}True", "target": str(i % 3 != 1)} for i in range(20)]
    write_raw(pytester, "data/cases.jsonl", "".join(json.dumps(r) + "\n" for r in rows))
    write_template(pytester, "prompts/x.j2", f"{GOOD_WORDING}.\nQ: {{{{ question }}}}\nA:\n",
                   benchmark=None, samples=None, dataset="data/cases.jsonl")
    pytester.runpytest("--lpo", "--lpo-update-baseline").assert_outcomes(passed=1)
    rows[0]["target"] = "Maybe"
    write_raw(pytester, "data/cases.jsonl", "".join(json.dumps(r) + "\n" for r in rows))
    result = pytester.runpytest("--lpo", "--lpo-report", "report.json")
    result.assert_outcomes(passed=1)
    item = entry(report(pytester), "prompts/x.j2")
    assert item["reference"] == "none" and "recorded with another setup" in item["warnings"][0]


def test_a_base_version_the_data_cannot_render_is_an_error(pytester, openai_server):
    """A change that renames the data's field (and the template's use of it) must not turn the
    base into 'no reference'."""
    project(pytester, openai_server.url)
    write_raw(pytester, "data/cases.jsonl", "".join(
        json.dumps({"question": f"{'not ' * (i % 3)}True", "target": str(i % 3 != 1)}) + "\n" for i in range(20)))
    write_template(pytester, "prompts/x.j2", f"{GOOD_WORDING}.\nQ: {{{{ question }}}}\nA:\n",
                   benchmark=None, samples=None, dataset="data/cases.jsonl")
    init_repo(pytester)
    write_raw(pytester, "data/cases.jsonl", "".join(
        json.dumps({"q": f"{'not ' * (i % 3)}True", "target": str(i % 3 != 1)}) + "\n" for i in range(20)))
    write_template(pytester, "prompts/x.j2", "Q: {{ q }}\nA:\n", benchmark=None, samples=None,
                   dataset="data/cases.jsonl")
    result = pytester.runpytest("--lpo")
    result.assert_outcomes(errors=1)
    result.stdout.fnmatch_lines(["*:prompts/x.j2:5: cannot render the template: 'question' is undefined"])


def test_a_base_version_that_does_not_compile_is_no_reference_and_said(pytester, openai_server):
    project(pytester, openai_server.url)
    write_template(pytester, "prompts/x.j2", "Q: {{ input }\nA:\n")
    init_repo(pytester)
    write_template(pytester, "prompts/x.j2", GOOD)  # the fix
    result = pytester.runpytest("--lpo", "--lpo-report", "report.json")
    result.assert_outcomes(passed=1)
    result.stdout.fnmatch_lines(["prompts/x.j2: warning: the base version does not compile (line 5: Jinja syntax "
                                 "error: *); there is no git reference"])
    item = entry(report(pytester), "prompts/x.j2")
    assert item["reference"] == "none" and item["reason"].endswith("(the base version does not compile)")


@pytest.mark.parametrize("ref, words", [
    ("--output=/tmp/x", "--lpo-base: '--output=/tmp/x' is not a git ref"),
    ("no-such-ref", "--lpo-base: no commit named 'no-such-ref' in this clone"),
])
def test_bad_base_refs_are_item_errors(pytester, openai_server, ref, words):
    project(pytester, openai_server.url)
    write_template(pytester, "prompts/x.j2", GOOD)
    init_repo(pytester)
    result = pytester.runpytest("--lpo", f"--lpo-base={ref}", "--lpo-report", "report.json")
    result.assert_outcomes(errors=1)
    result.stdout.fnmatch_lines([f"*{words}*"])
    assert report(pytester)["reference"]["error"]


def test_unusable_output_and_baseline_paths_are_usage_errors(pytester, openai_server):
    project(pytester, openai_server.url)
    write_template(pytester, "prompts/x.j2", GOOD)
    (pytester.path / "out").mkdir()
    result = pytester.runpytest("--lpo", "--lpo-report", "out")
    assert result.ret == pytest.ExitCode.USAGE_ERROR
    result.stderr.fnmatch_lines(["*--lpo-report *out: is a directory*"])

    write_raw(pytester, ".lpo-ci/baseline.json", '{"templates": ["not", "a", "table"]}')
    broken = pytester.runpytest("--lpo")
    assert broken.ret == pytest.ExitCode.USAGE_ERROR
    broken.stderr.fnmatch_lines(["*baseline.json: the stored baseline is not an lpo-ci baseline*"])
    no_traceback(broken)


def test_an_internal_error_is_one_line_unless_full_trace(pytester, openai_server, monkeypatch):
    from lpo_ci.runner import Session

    def broken(self, *args, **kwargs):
        raise RuntimeError("something unexpected")

    monkeypatch.setattr(Session, "prepare", broken)
    project(pytester, openai_server.url)
    write_template(pytester, "prompts/x.j2", GOOD)
    result = pytester.runpytest("--lpo", "--lpo-report", "report.json")
    result.assert_outcomes(errors=1)
    no_traceback(result)
    result.stdout.fnmatch_lines(["prompts/x.j2:1: internal error: RuntimeError: something unexpected",
                                 "  hint: rerun with --full-trace*"])
    assert "internal error: RuntimeError" in entry(report(pytester), "prompts/x.j2")["reason"]
    full = pytester.runpytest("--lpo", "--full-trace")
    full.stdout.fnmatch_lines(["*raise RuntimeError*", "E*RuntimeError: something unexpected"])
    full.stdout.no_fnmatch_line("*internal error*")


def test_a_base_version_git_cannot_filter_is_an_error_not_new(pytester, openai_server):
    """A checkout filter that fails (an LFS file without git-lfs, say) must not make the
    template look new."""
    project(pytester, openai_server.url)
    write_raw(pytester, ".gitattributes", "*.j2 filter=broken\n")
    write_template(pytester, "prompts/x.j2", GOOD)
    init_repo(pytester)
    git(pytester.path, "config", "filter.broken.smudge", "false")
    git(pytester.path, "config", "filter.broken.required", "true")
    write_template(pytester, "prompts/x.j2", BAD)
    result = pytester.runpytest("--lpo")
    result.assert_outcomes(errors=1)
    result.stdout.fnmatch_lines(["*cannot read prompts/x.j2 at *", "*hint: check the file's git filters*"])


def test_cli_warnings_read_as_warnings_not_python_source_locations(pytester, openai_server):
    """A shared cache that cannot be used is said on the command line as ``warning: ...``,
    with the secret in its URL masked, and the run goes on."""
    from tests.support.redis_server import free_port

    project(pytester, openai_server.url)
    write_template(pytester, "prompts/x.j2", GOOD, samples=5)
    result = lpo_ci(pytester.path, "eval", "prompts/x.j2", "--no-base",
                    env={"LPO_CI_CACHE_URL": f"redis://:hunter2@127.0.0.1:{free_port()}/0"})
    assert result.returncode == 0, result.stdout + result.stderr
    lines = (result.stdout + result.stderr).splitlines()
    assert any(line.startswith("warning: response cache redis://:***@127.0.0.1") for line in lines), lines
    assert "CacheWarning" not in result.stderr and ".py:" not in result.stderr, result.stderr
    assert "hunter2" not in result.stdout + result.stderr
    no_traceback_in(result.stderr)


def test_the_cli_called_in_process_leaves_the_callers_warning_format_alone(tmp_path, monkeypatch):
    import warnings

    from lpo_ci.cli import main

    monkeypatch.chdir(tmp_path)
    before = warnings.formatwarning
    assert main(["report", "merge", "missing.json", "-o", "merged.json"]) != 0
    assert warnings.formatwarning is before

"""Options that do what they say.

Every option of the README's pytest option table is exercised, a value option both as
``--opt value`` and as ``--opt=value``, and checked for its effect; every ``--lpo-*``
option implies ``--lpo``; a value pytest read as a test path before the plugin's options
were known (pytest issue #8846) stops the run with the command to type; the README's
option table and the ``lpo-ci`` synopses are tested against the real parsers.

Real pytest runs (in-process, and a subprocess for the exact message), the loopback
OpenAI-compatible server, real git repositories.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from lpo_ci.plugin import _options, value_options
from tests.conftest import git
from tests.support.openai_server import fake_openai_server
from tests.test_plugin import (  # noqa: F401 - the two autouse fixtures apply here too
    BAD, GOOD, TASK, _hermetic_env, _preload_heavy_modules, entry, init_repo, no_traceback, project, report,
    write_template)

REPO = Path(__file__).resolve().parents[1]
README = (REPO / "README.md").read_text(encoding="utf-8")
INI = 'testpaths = ["tests"]'


def readme_option_table() -> dict[str, str]:
    """The pytest option table of the README: every flag in a row's first cell -> the cell."""
    section = README[README.index("## Option reference"):]
    rows = {}
    for line in section.splitlines():
        if not line.startswith("| `--lpo"):
            if rows and not line.startswith("|"):
                break
            continue
        cell = line.split(" | ")[0]
        for flag in re.findall(r"`(--lpo[\w-]*)", cell):
            rows[flag] = cell
    return rows


def test_the_readme_table_lists_every_option_and_writes_values_with_equals():
    table = readme_option_table()
    assert sorted(table) == sorted(flag for flag, _ in _options())
    for flag, keywords in _options():
        if flag in value_options():  # '--opt value' can be read as a test path: the README writes '='
            assert f"`{flag}={keywords['metavar']}" in table[flag].replace("\\|", "|"), table[flag]
    tour = README[README.index("## A 5-minute tour"):README.index("### Verdicts")]
    for flag in value_options():
        assert not re.search(rf"{flag} [^\s|`]", tour), f"the tour writes {flag} with a space"


# --------------------------------------------------------------------------
# every value option, both spellings, checked for its effect


def _scored(pytester) -> dict:
    return entry(report(pytester), "prompts/x.j2")


def _optimization(pytester) -> dict:
    return _scored(pytester)["optimization"]


def _seeded_ids(data_dir, samples: int, seed: int) -> list[str]:
    from lpo_ci.benchmarks import load_benchmark, sample_examples

    return [e.id for e in sample_examples(load_benchmark(TASK, data_dir=data_dir), samples, seed)]


# flag -> (value, extra arguments, needs a regression, check(pytester, result, context))
CASES = {
    "--lpo-prompts": ("other/*.j2", [], False,
                      lambda p, r, c: [t["template"] for t in report(p)["templates"]] == ["other/y.j2"]),
    "--lpo-base": ("{base}", [], True, lambda p, r, c: report(p)["reference"]["rev"] == c["base"]),
    "--lpo-report": ("out/r.json", [], False, lambda p, r, c: (p.path / "out/r.json").is_file()),
    "--lpo-model": ("openai/another", [], False, lambda p, r, c: _scored(p)["model"] == "openai/another"),
    "--lpo-samples": ("7", [], False, lambda p, r, c: _scored(p)["head"]["n"] == 7),
    "--lpo-max-samples": ("5", [], False, lambda p, r, c: _scored(p)["head"]["n"] == 5 and _scored(p)[
        "samples_asked"] == 40 and "samples capped at 5 by --lpo-max-samples" in r.stdout.str()),
    "--lpo-seed": ("3", [], False, lambda p, r, c: [e["id"] for e in _scored(p)["examples"]]
                   == _seeded_ids(c["data_dir"], 40, 3)),
    "--lpo-concurrency": ("2", [], False, lambda p, r, c: 0 < c["server"].peak_in_flight <= 2),
    "--lpo-batch-size": ("4", [], False, lambda p, r, c: max(c["server"].request_sizes) == 4  # completion mode
                         and _scored(p)["status"] == "pass"),
    "--lpo-cache-dir": ("cache-here", [], False,
                        lambda p, r, c: (p.path / "cache-here" / "responses.sqlite3").is_file()),
    "--lpo-data-dir": ("mirror", [], False, lambda p, r, c: _scored(p)["status"] == "pass"),
    "--lpo-optimize-mode": ("global", ["--lpo-optimize", "--lpo-budget-calls=60"], True,
                            lambda p, r, c: _optimization(p)["mode"] == "global"),
    "--lpo-budget-calls": ("60", ["--lpo-optimize"], True,
                           lambda p, r, c: _optimization(p)["budget"]["limits"]["calls"] == 60),
    "--lpo-budget-tokens": ("5000", ["--lpo-optimize", "--lpo-budget-calls=60"], True,
                            lambda p, r, c: _optimization(p)["budget"]["limits"]["tokens"] == 5000),
    "--lpo-budget-usd": ("0.5", ["--lpo-optimize", "--lpo-budget-calls=60"], True,
                         lambda p, r, c: _optimization(p)["budget"]["limits"]["usd"] == 0.5),
    "--lpo-budget-seconds": ("30", ["--lpo-optimize", "--lpo-budget-calls=60"], True,
                             lambda p, r, c: _optimization(p)["budget"]["limits"]["seconds"] == 30),
    "--lpo-optimizer-model": ("openai/fake", ["--lpo-optimize", "--lpo-budget-calls=200"], True,
                              lambda p, r, c: "llm" in _optimization(p)["mark_sources"]
                              and any("<edit>" in prompt for prompt in c["server"].prompts)),
    "--lpo-shard": ("2/2", [], False, lambda p, r, c: report(p)["shard"]["index"] == 2  # one of 2 templates
                    and len(report(p)["templates"]) == 1 and "shard 2/2: 1 template, " in r.stdout.str()),
    "--lpo-history-branch": ("quality", ["--lpo-history"], True,
                             lambda p, r, c: git(p.path, "log", "--format=%s", "quality").strip() != ""),
}


def test_every_value_option_has_a_case():
    assert sorted(CASES) == sorted(value_options())


@pytest.mark.slow
@pytest.mark.parametrize("spelling", ["space", "equals"])
@pytest.mark.parametrize("flag", sorted(CASES))
def test_every_value_option_works_in_both_spellings(pytester, monkeypatch, data_dir, flag, spelling):
    value, extra, regression, check = CASES[flag]
    with fake_openai_server(latency=0.02 if flag == "--lpo-concurrency" else 0.0) as server:
        project(pytester, server.url, ini=INI, lpo='mode = "completion"\n' if flag == "--lpo-batch-size" else "")
        write_template(pytester, "prompts/x.j2", GOOD, samples=None if flag == "--lpo-samples" else 40)
        write_template(pytester, "other/y.j2", GOOD, samples=5)
        pytester.makepyfile(**{"tests/test_app": "def test_app():\n    assert True\n"})
        context = {"server": server, "data_dir": data_dir}
        if regression or flag == "--lpo-base":
            context["base"] = init_repo(pytester)
            git(pytester.path, "checkout", "-q", "-b", "feature")
            write_template(pytester, "prompts/x.j2", BAD)
            git(pytester.path, "commit", "-qam", "the pull request")
        if flag == "--lpo-shard":
            write_template(pytester, "prompts/z.j2", GOOD, samples=40)
        if flag == "--lpo-data-dir":
            shutil.copytree(data_dir / "bbh", pytester.path / "mirror" / "bbh")
            monkeypatch.delenv("LPO_CI_DATA_DIR")
        if flag == "--lpo-optimizer-model":  # the optimizer model is the same loopback server
            monkeypatch.setenv("OPENAI_API_BASE", server.url)
            monkeypatch.setenv("OPENAI_API_KEY", "sk-test")
        value = value.format(**context)
        option = [flag, value] if spelling == "space" else [f"{flag}={value}"]
        report_args = [] if flag == "--lpo-report" else ["--lpo-report=report.json"]
        result = pytester.runpytest("--lpo", *option, *extra, *report_args)
        no_traceback(result)
        assert result.ret in (0, 1), result.stdout.str()
        assert check(pytester, result, context), result.stdout.str()


# --------------------------------------------------------------------------
# every --lpo-* option implies --lpo


@pytest.mark.parametrize("args", [["--lpo-only"], ["--lpo-report=r.json"], ["--lpo-prompts=prompts/*.j2"],
                                  ["--lpo-samples=5"], ["--lpo-update-baseline"], ["--lpo-fresh"],
                                  ["--lpo-max-samples", "5"]])
def test_every_lpo_option_implies_lpo(pytester, openai_server, args):
    project(pytester, openai_server.url)
    write_template(pytester, "prompts/x.j2", GOOD, samples=5)
    pytester.makepyfile(test_app="def test_app():\n    assert True\n")
    result = pytester.runpytest(*args)
    expected = {"passed": 1} if args == ["--lpo-only"] else {"passed": 2}
    result.assert_outcomes(**expected)
    result.stdout.fnmatch_lines(["*lpo-ci summary*"])


def test_switches_do_their_job_without_lpo(pytester, openai_server):
    project(pytester, openai_server.url)
    write_template(pytester, "prompts/x.j2", GOOD, samples=5)
    pytester.runpytest("--lpo-update-baseline").assert_outcomes(passed=1)
    assert (pytester.path / ".lpo-ci" / "baseline.json").is_file()
    init_repo(pytester)
    write_template(pytester, "prompts/x.j2", BAD, samples=40)
    result = pytester.runpytest("--lpo-optimize", "--lpo-budget-calls=60", "--lpo-report=r.json")
    result.assert_outcomes(failed=1)
    assert entry(report(pytester, "r.json"), "prompts/x.j2")["optimization"] is not None


# --------------------------------------------------------------------------
# a value pytest read as a test path


def test_a_spaced_path_outside_the_project_stops_with_the_command_to_type(pytester, openai_server, data_dir):
    project(pytester, openai_server.url, ini='testpaths = ["tests"]\npythonpath = ["."]')
    write_template(pytester, "prompts/x.j2", GOOD, samples=5)
    (pytester.path / "app").mkdir()
    (pytester.path / "app" / "__init__.py").write_text("", encoding="utf-8")
    pytester.makepyfile(**{"tests/test_app": "import app\n\ndef test_app():\n    assert app\n"})
    outside = pytester.path.parent / f"{pytester.path.name}-data"
    shutil.copytree(data_dir / "bbh", outside / "bbh")
    spaced = ["--lpo", "--lpo-data-dir", f"../{outside.name}"]
    result = pytester.runpytest(*spaced)
    assert result.ret == pytest.ExitCode.USAGE_ERROR
    err = result.stderr.str()
    assert f"--lpo-data-dir ../{outside.name}: pytest read '../{outside.name}' as a test path" in err
    assert f"hint: write the option and its value as one argument, with '=': pytest --lpo " \
           f"--lpo-data-dir=../{outside.name}" in err
    result.stdout.no_fnmatch_line("*ModuleNotFoundError*")
    # what the hint says to type works
    pytester.runpytest("--lpo", f"--lpo-data-dir=../{outside.name}").assert_outcomes(passed=2)

    # the same value from PYTEST_ADDOPTS
    os.environ["PYTEST_ADDOPTS"] = f"--lpo-cache-dir ../{outside.name}"
    try:
        result = pytester.runpytest("--lpo")
    finally:
        del os.environ["PYTEST_ADDOPTS"]
    assert result.ret == pytest.ExitCode.USAGE_ERROR
    assert f"in PYTEST_ADDOPTS, --lpo-cache-dir=../{outside.name}" in result.stderr.str()


def test_a_spaced_path_inside_the_project_is_harmless(pytester, openai_server):
    project(pytester, openai_server.url, ini=INI)
    write_template(pytester, "prompts/x.j2", GOOD, samples=5)
    (pytester.path / "cache-here").mkdir()
    pytester.runpytest("--lpo", "--lpo-cache-dir", "cache-here").assert_outcomes(passed=1)
    assert (pytester.path / "cache-here" / "responses.sqlite3").is_file()


def test_the_exact_message_from_a_real_command_line(pytester, openai_server):
    project(pytester, openai_server.url, ini=INI)
    write_template(pytester, "prompts/x.j2", GOOD, samples=5)
    (pytester.path.parent / "elsewhere").mkdir(exist_ok=True)
    env = {k: v for k, v in os.environ.items() if k != "PYTEST_ADDOPTS"}
    run = subprocess.run([sys.executable, "-m", "pytest", "-p", "no:cacheprovider", "--lpo", "--lpo-cache-dir",
                          "../elsewhere"], cwd=pytester.path, capture_output=True, text=True, env=env)
    assert run.returncode == 4, run.stdout + run.stderr
    assert run.stderr.startswith("ERROR: --lpo-cache-dir ../elsewhere: pytest read '../elsewhere' as a test path "
                                 "before lpo-ci's options were known"), run.stderr
    assert "pytest -p no:cacheprovider --lpo --lpo-cache-dir=../elsewhere" in run.stderr
    assert "Traceback" not in run.stderr


# --------------------------------------------------------------------------
# the README's lpo-ci synopses, against the parsers


def _subparsers(parser):
    import argparse

    return next(a for a in parser._actions if isinstance(a, argparse._SubParsersAction)).choices


def _commands():
    from lpo_ci.cli import build_parser

    found = {}
    for name, sub in _subparsers(build_parser()).items():
        nested = [a for a in sub._actions if a.__class__.__name__ == "_SubParsersAction"]
        if nested:
            for inner, parser in nested[0].choices.items():
                found[f"{name} {inner}"] = parser
        else:
            found[name] = sub
    return found


def _synopsis(command: str) -> tuple[str, int] | tuple[None, int]:
    """The README's synopsis of ``lpo-ci COMMAND`` (its code span naming the most options), and where."""
    best, where = None, -1
    for match in re.finditer(r"`(lpo-ci [^`]+)`", README, re.DOTALL):
        span = " ".join(match.group(1).split())
        if span.startswith(f"lpo-ci {command} ") and (best is None or span.count("--") > best.count("--")):
            best, where = span, match.start()
    return best, where


@pytest.mark.parametrize("command", sorted(_commands()))
def test_each_readme_synopsis_names_exactly_the_parser_options(command):
    parser = _commands()[command]
    synopsis, at = _synopsis(command)
    assert synopsis is not None, f"the README has no synopsis of lpo-ci {command}"
    options = [a for a in parser._actions if a.option_strings and a.dest != "help"]
    written = set(re.findall(r"(?<![\w-])(--?[a-z][\w-]*)", synopsis))
    missing = [a.option_strings[-1] for a in options if not written & set(a.option_strings)]
    unknown = written - {flag for a in options for flag in a.option_strings}
    assert not missing and not unknown, f"the README lacks {missing} and names {sorted(unknown)}"
    for action in options:
        if action.metavar and action.nargs != 0:
            assert any(f"{flag} {action.metavar}" in synopsis or f"{flag} [{action.metavar}]" in synopsis
                       for flag in action.option_strings), (action.option_strings, action.metavar, synopsis)
    description = parser.description or ""
    statuses = set(re.findall(r"\b(\d)\b", description[description.find("Exit status"):])) \
        if "Exit status" in description else set()
    text = " ".join(README[at:at + 2500].split())
    for digit in statuses:  # every exit status the --help gives is in the README's paragraph
        assert re.search(rf"\b{digit} [a-z(]", text), (command, digit)


def test_the_demo_lists_and_accepts_every_shipped_example(capsys):
    from lpo_ci.cli import main
    from lpo_ci.demo import available_examples

    names = available_examples()
    assert names == sorted(p.parent.name for p in (REPO / "examples").glob("*/demo-pr.patch"))
    assert set(names) >= {"bbh-boolean", "review-sentiment"}
    with pytest.raises(SystemExit):
        main(["demo", "--help"])
    out = " ".join(capsys.readouterr().out.split())
    assert all(name in out for name in names)
    assert main(["demo", "--example", "nope"]) == 2
    err = capsys.readouterr().err
    assert "no demo example named 'nope'" in err and all(name in err for name in names)


def test_lpo_ci_eval_max_samples_caps_the_spec(pytester, openai_server, monkeypatch, capsys):
    from lpo_ci.cli import main

    project(pytester, openai_server.url)
    write_template(pytester, "prompts/x.j2", GOOD, samples=40)
    monkeypatch.chdir(pytester.path)
    for args in (["--max-samples", "6"], ["--max-samples=6"]):
        assert main(["eval", "prompts/x.j2", *args, "--report", "r.json"]) == 0
        data = json.loads((pytester.path / "r.json").read_text())
        assert entry(data, "prompts/x.j2")["head"]["n"] == 6
        assert "samples capped at 6 by --max-samples: 1 template asked for more (prompts/x.j2 40)" \
            in capsys.readouterr().out
    # --samples keeps the documented precedence: the template's own spec wins
    assert main(["eval", "prompts/x.j2", "--samples", "6", "--report", "r.json"]) == 0
    assert entry(json.loads((pytester.path / "r.json").read_text()), "prompts/x.j2")["head"]["n"] == 40

"""Shared partials, as a real prompt repository has them: ``{% include %}``, ``{% import %}``
and ``{% extends %}`` read inside the project only, each included file's base version read
from git, a change to a partial caught in every template that includes it, the optimizer's
fix written to the partial's own file; partials, excluded files and broken specs never
interrupt the run (the project's own unit tests still run).

Real git repositories, the real pytest plugin in-process, the loopback OpenAI-compatible
server (right ~95% of the time when the prompt carries GOOD_WORDING, ~55% otherwise).
"""

from __future__ import annotations

import json
import subprocess

import pytest

from tests.conftest import git
from tests.support.openai_server import GOOD_WORDING
from tests.test_plugin import (  # noqa: F401 - the two autouse fixtures apply here too
    TASK, _hermetic_env, _preload_heavy_modules, entry, init_repo, no_traceback, report, spec, write_raw)

PREAMBLE = f"{GOOD_WORDING}.\n"
DAMAGED = "Answer the question.\n"
QUESTION = "Q: {{ input }}\nA:\n"


def adopted_project(pytester, url: str, lpo: str = "") -> None:
    """An ordinary project: a package, its unit tests (testpaths), prompts sharing a preamble,
    a macro file and a layout, and a template whose spec has a typo."""
    pytester.makepyprojecttoml(
        f'[tool.lpo_ci]\nmodel = "openai/fake"\napi_base = "{url}"\n{lpo}\n'
        '[tool.pytest.ini_options]\ntestpaths = ["tests"]\npythonpath = ["."]\n')
    write_raw(pytester, "app/__init__.py", "")
    write_raw(pytester, "app/core.py", "def double(x):\n    return 2 * x\n")
    write_raw(pytester, "tests/test_core.py", "from app.core import double\n\n\ndef test_double():\n"
                                              "    assert double(2) == 4\n")
    write_raw(pytester, "prompts/_preamble.j2", PREAMBLE)
    write_raw(pytester, "prompts/macros.j2", "{% macro preamble() %}" + PREAMBLE + "{% endmacro %}\n")
    write_raw(pytester, "prompts/layouts/_base.j2", PREAMBLE + "{% block question %}{% endblock %}\n")
    write_raw(pytester, "prompts/included.j2", spec(samples=40) + '{% include "_preamble.j2" %}\n' + QUESTION)
    write_raw(pytester, "prompts/imported.j2",
              spec(samples=40) + '{% import "macros.j2" as m %}{{ m.preamble() }}\n' + QUESTION)
    write_raw(pytester, "prompts/extended.j2", spec(samples=40) + '{% extends "layouts/_base.j2" %}'
                                               "{% block question %}" + QUESTION + "{% endblock %}\n")
    write_raw(pytester, "prompts/typo.j2", "{# lpo:\n  benchmark: " + TASK + "\n  samlpes: 40\n#}\n"
                                           + PREAMBLE + QUESTION)


def test_a_new_project_with_partials_runs_its_unit_tests_and_every_template(pytester, openai_server):
    adopted_project(pytester, openai_server.url)
    result = pytester.runpytest("--lpo", "--lpo-report", "report.json", "-rA")
    # the unit test, three templates (each renders its partial), one broken spec; no partial is an item
    result.assert_outcomes(passed=4, errors=1)
    no_traceback(result)
    result.stdout.no_fnmatch_line("*no test spec*")
    result.stdout.no_fnmatch_line("*Interrupted*")
    result.stdout.fnmatch_lines(["*prompts/typo.j2:3: unknown key 'samlpes' in the lpo spec comment",
                                 "*hint: did you mean 'samples'?"])
    data = report(pytester)
    assert sorted(t["template"] for t in data["templates"]) == [
        "prompts/extended.j2", "prompts/imported.j2", "prompts/included.j2", "prompts/typo.j2"]
    for name in ("extended", "imported", "included"):
        item = entry(data, f"prompts/{name}.j2")
        assert item["status"] == "pass" and item["head_accuracy"] > 0.8, item["reason"]
    assert entry(data, "prompts/typo.j2")["line"] == 3


@pytest.mark.parametrize("template, partial", [
    ("included", "prompts/_preamble.j2"), ("imported", "prompts/macros.j2"),
    ("extended", "prompts/layouts/_base.j2")])
def test_a_pull_request_that_damages_only_a_partial_fails_every_template_using_it(
        pytester, openai_server, template, partial):
    adopted_project(pytester, openai_server.url)
    init_repo(pytester)
    git(pytester.path, "checkout", "-q", "-b", "feature")
    path = pytester.path / partial
    path.write_text(path.read_text().replace(PREAMBLE, DAMAGED), encoding="utf-8")
    git(pytester.path, "commit", "-q", "-am", "reword the shared text")

    result = pytester.runpytest("--lpo", "--lpo-report", "report.json")
    result.assert_outcomes(passed=3, failed=1, errors=1)
    no_traceback(result)
    data = report(pytester)
    item = entry(data, f"prompts/{template}.j2")
    assert item["status"] == "fail" and item["reference"] == "base", item["reason"]
    assert item["reason"].startswith("regression: accuracy dropped")
    assert f"regressed through {partial} (the template's own text is unchanged)" in item["reason"]
    assert item["through"] == [partial]
    for other in {"included", "imported", "extended"} - {template}:  # untouched partials: unchanged
        assert entry(data, f"prompts/{other}.j2")["reason"] == "template unchanged from the base version"
    result.stdout.fnmatch_lines([f"prompts/{template}.j2:1: FAIL: regression: * regressed through {partial}*"])


def test_the_base_version_of_a_partial_comes_from_git_not_the_working_tree(pytester, openai_server):
    """An uncommitted edit of the partial is the pull request too; the base stays the commit's."""
    adopted_project(pytester, openai_server.url)
    init_repo(pytester)
    (pytester.path / "prompts/_preamble.j2").write_text(DAMAGED, encoding="utf-8")
    result = pytester.runpytest("--lpo", "--lpo-report", "report.json", "prompts/included.j2")
    result.assert_outcomes(failed=1)
    item = entry(report(pytester), "prompts/included.j2")
    assert item["base"]["accuracy"] > 0.8 and item["head"]["accuracy"] < 0.8


def test_the_fix_for_a_damaged_partial_is_a_patch_of_the_partial(pytester, openai_server):
    adopted_project(pytester, openai_server.url)
    init_repo(pytester)
    git(pytester.path, "checkout", "-q", "-b", "feature")
    (pytester.path / "prompts/_preamble.j2").write_text(DAMAGED, encoding="utf-8")
    git(pytester.path, "commit", "-q", "-am", "reword the shared preamble")

    result = pytester.runpytest("--lpo", "--lpo-optimize", "--lpo-report", "report.json", "prompts/included.j2")
    result.assert_outcomes(failed=1)
    optimization = entry(report(pytester), "prompts/included.j2")["optimization"]
    assert optimization["status"] == "suggested", optimization["reason"]
    assert optimization["file"] == "prompts/_preamble.j2"
    assert optimization["head_source"] == DAMAGED and GOOD_WORDING in optimization["winner_source"]
    assert optimization["patch"].startswith("diff --git a/prompts/_preamble.j2 b/prompts/_preamble.j2\n")
    assert optimization["suggestions"] and all(
        s["path"] == "prompts/_preamble.j2" and s["start_line"] == 1 for s in optimization["suggestions"])
    # the patch applies to the partial and wins the accuracy back for the template
    (pytester.path / "fix.patch").write_text(optimization["patch"], encoding="utf-8")
    subprocess.run(["git", "apply", "fix.patch"], cwd=pytester.path, check=True)
    assert GOOD_WORDING in (pytester.path / "prompts/_preamble.j2").read_text()
    pytester.runpytest("--lpo", "prompts/included.j2").assert_outcomes(passed=1)


def test_includes_never_read_outside_the_project(pytester, openai_server, tmp_path_factory):
    outside = tmp_path_factory.mktemp("outside") / "secret.j2"
    outside.write_text("a secret\n", encoding="utf-8")
    adopted_project(pytester, openai_server.url)
    (pytester.path / "prompts/_linked.j2").symlink_to(outside)
    write_raw(pytester, "prompts/link.j2", spec(samples=5) + '{% include "_linked.j2" %}\n' + QUESTION)
    write_raw(pytester, "prompts/up.j2", spec(samples=5) + f'{{% include "../../{outside.parent.name}/'
                                         f'secret.j2" %}}\n' + QUESTION)
    result = pytester.runpytest("--lpo", "--lpo-report", "report.json", "prompts/link.j2", "prompts/up.j2")
    result.assert_outcomes(errors=2)
    no_traceback(result)
    data = report(pytester)
    link = entry(data, "prompts/link.j2")["reason"]
    assert "prompts/_linked.j2 resolves outside the project" in link and "a secret" not in link
    assert "is not a file inside the project" in entry(data, "prompts/up.j2")["reason"]
    assert "a secret" not in result.stdout.str()


def test_search_path_names_where_includes_resolve(pytester, openai_server):
    adopted_project(pytester, openai_server.url, lpo='search_path = ["shared"]')
    write_raw(pytester, "shared/_common.j2", PREAMBLE)
    write_raw(pytester, "prompts/shared.j2", spec(samples=5) + '{% include "_common.j2" %}\n' + QUESTION)
    write_raw(pytester, "prompts/local.j2", spec(samples=5) + '{% include "_preamble.j2" %}\n' + QUESTION)
    result = pytester.runpytest("--lpo", "--lpo-report", "report.json", "prompts/shared.j2", "prompts/local.j2")
    result.assert_outcomes(passed=1, errors=1)
    assert entry(report(pytester), "prompts/local.j2")["reason"].startswith(
        "prompts/local.j2:5: cannot render the template: '_preamble.j2' is not in the folders searched (shared/)")


def test_an_error_inside_a_partial_names_the_partial_and_its_line(pytester, openai_server):
    adopted_project(pytester, openai_server.url)
    write_raw(pytester, "prompts/_broken.j2", "fine\n{{ input | nosuchfilter }}\n")
    write_raw(pytester, "prompts/_syntax.j2", "fine\n{% if %}\n")
    write_raw(pytester, "prompts/a.j2", spec(samples=5) + '{% include "_broken.j2" %}\n' + QUESTION)
    write_raw(pytester, "prompts/b.j2", spec(samples=5) + '{% include "_syntax.j2" %}\n' + QUESTION)
    result = pytester.runpytest("--lpo", "--lpo-report", "report.json", "prompts/a.j2", "prompts/b.j2")
    result.assert_outcomes(errors=2)
    data = report(pytester)
    assert entry(data, "prompts/a.j2")["reason"].startswith("prompts/_broken.j2:2: ")
    assert "(included by prompts/a.j2)" in entry(data, "prompts/a.j2")["reason"]
    assert entry(data, "prompts/b.j2")["reason"].startswith("prompts/_syntax.j2:2: Jinja syntax error")


def test_partials_excluded_files_and_default_globs(pytester, openai_server):
    """A leading underscore (file or folder) marks a partial; exclude globs drop files; the
    default globs find a prompts folder anywhere in the project, and nothing under templates/."""
    adopted_project(pytester, openai_server.url, lpo='exclude = ["prompts/drafts/**", "**/*.skip.j2"]')
    (pytester.path / "prompts/typo.j2").unlink()
    write_raw(pytester, "prompts/_partials/any.j2", "no spec here\n")
    write_raw(pytester, "prompts/drafts/idea.j2", "no spec here either\n")
    write_raw(pytester, "prompts/old.skip.j2", "nor here\n")
    write_raw(pytester, "app/prompts/inner.j2", spec(samples=5) + PREAMBLE + QUESTION)
    write_raw(pytester, "templates/page.j2", "<html>{{ title }}</html>\n")  # a web page, not a prompt
    write_raw(pytester, "prompts/orphan.j2", "a spec-less file that nothing includes\n")
    result = pytester.runpytest("--lpo", "--lpo-only", "--lpo-report", "report.json")
    result.assert_outcomes(passed=4, errors=1)
    data = report(pytester)
    assert sorted(t["template"] for t in data["templates"]) == [
        "app/prompts/inner.j2", "prompts/extended.j2", "prompts/imported.j2", "prompts/included.j2",
        "prompts/orphan.j2"]
    orphan = entry(data, "prompts/orphan.j2")["reason"]
    assert "no test spec" in orphan and "leading underscore" in orphan and "exclude" in orphan


def test_lpo_ci_eval_scores_a_template_through_its_partial(pytester, openai_server, monkeypatch, capsys):
    from lpo_ci.cli import main

    adopted_project(pytester, openai_server.url)
    init_repo(pytester)
    (pytester.path / "prompts/_preamble.j2").write_text(DAMAGED, encoding="utf-8")
    monkeypatch.chdir(pytester.path)
    assert main(["eval", "prompts/included.j2", "prompts/extended.j2", "--report", "eval.json"]) == 1
    data = json.loads((pytester.path / "eval.json").read_text())
    assert entry(data, "prompts/included.j2")["through"] == ["prompts/_preamble.j2"]
    assert entry(data, "prompts/extended.j2")["status"] == "pass"
    assert "regressed through prompts/_preamble.j2" in capsys.readouterr().err

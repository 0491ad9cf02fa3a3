"""End-to-end tests of the pytest plugin (and the ``lpo-ci`` command).

Every test builds a throwaway project with ``pytester`` -- pyproject.toml,
prompt templates, sometimes a real git repository with a base commit -- and
runs pytest on it in-process against the real OpenAI-compatible HTTP server
from ``tests/support/openai_server.py``. The server answers BBH
boolean_expressions questions right ~95% of the time when the prompt carries
GOOD_WORDING and ~55% otherwise, deterministically per question, so a
template that loses the wording is a real, significant regression.
"""

from __future__ import annotations

import json
import re
import sqlite3
import subprocess
from pathlib import Path

import pytest

from tests.conftest import git
from tests.support.openai_server import GOOD_WORDING, fake_openai_server

TASK = "bbh/boolean_expressions"
GOOD = f"{GOOD_WORDING}.\n\nQ: {{{{ input }}}}\nA:\n"
BAD = "Work out the following.\n\nQ: {{ input }}\nA:\n"


# --------------------------------------------------------------------------
# helpers


@pytest.fixture(scope="module", autouse=True)
def _preload_heavy_modules():
    """Import what a scored run imports before the first in-process run.

    ``pytester.runpytest`` restores ``sys.modules``, ``sys.path`` and
    ``sys.meta_path`` after each in-process run. Importing ``importlib_metadata``
    (litellm does) deletes ``PathFinder.find_distributions`` from the stdlib
    finder and puts its own finder on ``sys.meta_path``; the restore then drops
    that finder, leaving no way to find entry points, so the next run would not
    load the lpo-ci plugin at all ("unrecognized arguments: --lpo"). Importing
    everything here keeps it alive across runs (and saves re-importing litellm).
    """
    import importlib

    from lpo_ci.llm import import_litellm

    import_litellm()
    for name in ("importlib_metadata", "datasets", "lpo_ci.runner", "lpo_ci.report",
                 "lpo_ci.cli", "lpo_ci.local_model"):
        try:
            importlib.import_module(name)
        except ImportError:
            pass


@pytest.fixture(autouse=True)
def _hermetic_env(monkeypatch, pytester, data_dir):
    """No CI or provider settings from the outer environment leak into the runs."""
    for name in ("GITHUB_BASE_REF", "LPO_CI_CACHE_DIR", "LPO_CI_CACHE_URL", "LPO_CI_API_KEY", "OPENAI_API_KEY",
                 "PYTEST_ADDOPTS", "PYTEST_XDIST_AUTO_NUM_WORKERS"):
        monkeypatch.delenv(name, raising=False)
    # Never let a parent directory's repository stand in for "no git".
    monkeypatch.setenv("GIT_CEILING_DIRECTORIES", str(pytester.path.parent))


def spec(samples: int | None = 40, benchmark: str | None = TASK, **extra) -> str:
    """A leading ``{# lpo: ... #}`` comment; with the defaults the body starts on line
    5 + len(extra)."""
    lines = ["{# lpo:"]
    if benchmark:
        lines.append(f"  benchmark: {benchmark}")
    if samples is not None:
        lines.append(f"  samples: {samples}")
    lines += [f"  {key}: {value}" for key, value in extra.items()]
    return "\n".join(lines) + "\n#}\n"


def write_template(pytester: pytest.Pytester, relpath: str, body: str, **spec_args) -> Path:
    """prompts/x.j2 with a spec comment and ``body`` (overwrites: edits the working tree)."""
    assert relpath.endswith(".j2")
    text = spec(**spec_args) + body
    return pytester.makefile(".j2", **{relpath[: -len(".j2")]: text})


def write_raw(pytester: pytest.Pytester, relpath: str, text: str) -> Path:
    path = pytester.path / relpath
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text, encoding="utf-8")
    return path


def project(pytester: pytest.Pytester, url: str | None, *, lpo: str = "", ini: str = "") -> None:
    """pyproject.toml pointing lpo-ci at the fake server."""
    text = '[tool.lpo_ci]\nmodel = "openai/fake"\n'
    if url:
        text += f'api_base = "{url}"\n'
    text += lpo
    if ini:
        text += f"\n[tool.pytest.ini_options]\n{ini}\n"
    pytester.makepyprojecttoml(text)


def init_repo(pytester: pytest.Pytester) -> str:
    """git init on main and commit everything as the base; returns the commit."""
    git(pytester.path, "init", "-q", "-b", "main")
    git(pytester.path, "add", "-A")
    git(pytester.path, "commit", "-q", "-m", "base")
    return git(pytester.path, "rev-parse", "HEAD").strip()


def report(pytester: pytest.Pytester, name: str = "report.json") -> dict:
    return json.loads((pytester.path / name).read_text(encoding="utf-8"))


def entry(data: dict, template: str) -> dict:
    found = [t for t in data["templates"] if t["template"] == template]
    assert len(found) == 1, [t["template"] for t in data["templates"]]
    return found[0]


def no_traceback(result: pytest.RunResult) -> None:
    out = result.stdout.str() + result.stderr.str()
    assert "Traceback" not in out, out
    assert "site-packages" not in out, out
    assert "lpo_ci/" not in out, out


# --------------------------------------------------------------------------
# 1. on / off


def test_plugin_off_collects_no_templates(pytester, openai_server):
    project(pytester, openai_server.url)
    write_template(pytester, "prompts/x.j2", GOOD)
    # a broken template must not matter either while the plugin is off
    write_raw(pytester, "prompts/broken.j2", "{{ oops\n")
    pytester.makepyfile(test_plain="def test_ok():\n    assert True\n")

    collected = pytester.runpytest("--collect-only", "-q")
    collected.stdout.fnmatch_lines(["test_plain.py::test_ok", "1 test collected*"])
    collected.stdout.no_fnmatch_line("*prompts*")

    result = pytester.runpytest()
    result.assert_outcomes(passed=1)
    result.stdout.no_fnmatch_line("*lpo-ci summary*")
    assert openai_server.requests == 0
    assert not (pytester.path / ".lpo-ci").exists()


def test_lpo_true_in_pyproject_turns_plugin_on(pytester, openai_server):
    project(pytester, openai_server.url, lpo="lpo = true\n")
    write_template(pytester, "prompts/x.j2", GOOD)
    pytester.makepyfile(test_plain="def test_ok():\n    assert True\n")

    result = pytester.runpytest()  # no --lpo
    result.assert_outcomes(passed=2)
    result.stdout.fnmatch_lines(["*lpo-ci summary*", f"prompts/x.j2*{TASK}*40*PASS*"])
    assert openai_server.requests == 40


# --------------------------------------------------------------------------
# 2. collection


def test_collection_one_item_per_template_with_testpaths(pytester, openai_server):
    project(pytester, openai_server.url, ini='testpaths = ["tests"]')
    write_template(pytester, "prompts/x.j2", GOOD)
    write_template(pytester, "prompts/sub/y.j2", GOOD)
    write_raw(pytester, "prompts/notes.txt", "not a template")
    pytester.makepyfile(**{"tests/test_plain": "def test_ok():\n    assert True\n"})

    result = pytester.runpytest("--lpo", "--collect-only", "-q")
    for line in (f"prompts/sub/y.j2::{TASK}", f"prompts/x.j2::{TASK}", "tests/test_plain.py::test_ok"):
        result.stdout.fnmatch_lines([line])
    result.stdout.fnmatch_lines(["3 tests collected*"])
    assert openai_server.requests == 0  # collecting scores nothing

    # without --lpo, testpaths alone decide
    plain = pytester.runpytest("--collect-only", "-q")
    plain.stdout.fnmatch_lines(["tests/test_plain.py::test_ok", "1 test collected*"])


@pytest.mark.parametrize("data", ["benchmark", "dataset"])
def test_verbose_line_shows_the_node_id(pytester, openai_server, data):
    """`pytest -v` prints each item's node id; no '.' in it may turn into '::'
    (pytest does that to a reportinfo domain that ends the node id)."""
    project(pytester, openai_server.url)
    if data == "benchmark":
        write_template(pytester, "prompts/x.j2", GOOD, samples=5)
        node = f"prompts/x.j2::{TASK}"
    else:
        write_raw(pytester, "data/cases.jsonl",
                  '{"question": "True and False", "target": "False"}\n'
                  '{"question": "not False", "target": "True"}\n')
        write_template(pytester, "prompts/x.j2", "Q: {{ question }}\nA:\n",
                       benchmark=None, samples=None, dataset="data/cases.jsonl")
        node = "prompts/x.j2::data/cases.jsonl"
    result = pytester.runpytest("--lpo", "-v")
    result.assert_outcomes(passed=1)
    result.stdout.fnmatch_lines([f"{node} PASSED*"])
    result.stdout.no_fnmatch_line("*::j2*")
    result.stdout.no_fnmatch_line("*::jsonl*")


def test_failure_and_error_sections_are_titled_with_the_item(pytester, openai_server):
    """Each FAILURES / ERRORS section title must say which template it is about
    (pytest titles them with the reportinfo domain; an empty one gives 'test session')."""
    project(pytester, openai_server.url)
    write_template(pytester, "prompts/x.j2", GOOD, samples=20)
    init_repo(pytester)
    write_template(pytester, "prompts/x.j2", BAD, samples=20)
    write_template(pytester, "prompts/y.j2", GOOD, benchmark="bbh/boolean_expresions", samples=5)

    result = pytester.runpytest("--lpo")
    result.assert_outcomes(failed=1, errors=1)
    result.stdout.fnmatch_lines([
        "*_ ERROR at setup of *prompts/y.j2*bbh/boolean_expresions* _*",
        "*prompts/y.j2:2: unknown benchmark 'bbh/boolean_expresions'",
        "*FAILURES*",
        f"*_ *prompts/x.j2*{TASK}* _*",
        "prompts/x.j2*: FAIL: regression: *",
    ])
    result.stdout.no_fnmatch_line("*test session _*")


def test_spec_in_pyproject_templates_table(pytester, openai_server):
    table = (f'[tool.lpo_ci]\nmodel = "openai/fake"\napi_base = "{openai_server.url}"\n\n'
             '[tool.lpo_ci.templates."src/app/answer.j2"]\n'
             'benchmark = "bbh/boolean_expressions"\nsamples = 10\n')
    pytester.makepyprojecttoml(table)
    write_raw(pytester, "src/app/answer.j2", GOOD)  # no spec comment, outside prompts/

    result = pytester.runpytest("--lpo", "--lpo-report", "report.json")
    result.assert_outcomes(passed=1)
    item = entry(report(pytester), "src/app/answer.j2")
    assert item["nodeid"] == f"src/app/answer.j2::{TASK}" and item["head"]["n"] == 10
    assert openai_server.requests == 10

    pytester.makepyprojecttoml(table + '\n[tool.lpo_ci.templates."src/app/bad.j2"]\n'
                               'benchmark = "bbh/boolean_expressions"\nsample = 10\n')
    write_raw(pytester, "src/app/bad.j2", GOOD)
    bad = pytester.runpytest("--lpo")
    bad.assert_outcomes(passed=1, errors=1)  # the broken spec stops nothing else
    bad.stdout.fnmatch_lines([
        '*pyproject.toml:11: unknown key \'sample\' in [[]tool.lpo_ci.templates."src/app/bad.j2"]',
        "*hint: did you mean 'samples'?",
    ])
    no_traceback(bad)
    # the item's line (used for annotations) is the template's own first line: its spec, and the
    # errors about it, are in pyproject.toml (line 11 above)
    assert item["line"] == 1
    pytester.runpytest("--lpo", "--lpo-report", "bad.json")
    bad_item = entry(report(pytester, "bad.json"), "src/app/bad.j2")
    assert bad_item["line"] == 1 and bad_item["reason"].startswith("pyproject.toml:11: unknown key")


def test_lpo_samples_option(pytester, openai_server):
    project(pytester, openai_server.url)
    write_template(pytester, "prompts/x.j2", GOOD, samples=None)  # the spec names no sample size
    result = pytester.runpytest("--lpo", "--lpo-samples", "7", "--lpo-report", "report.json")
    result.assert_outcomes(passed=1)
    assert entry(report(pytester), "prompts/x.j2")["head"]["n"] == 7
    assert openai_server.requests == 7


# --------------------------------------------------------------------------
# 3. unchanged template


def test_unchanged_template_passes_and_is_scored_once(pytester, openai_server):
    project(pytester, openai_server.url)
    write_template(pytester, "prompts/x.j2", GOOD)
    base = init_repo(pytester)

    result = pytester.runpytest("--lpo", "--lpo-report", "report.json")
    result.assert_outcomes(passed=1)
    assert openai_server.requests == 40  # base == head: scored once, not twice
    item = entry(report(pytester), "prompts/x.j2")
    assert item["status"] == "pass"
    assert item["reference"] == "unchanged"
    assert item["reason"] == "template unchanged from the base version"
    assert item["base_rev"] == base
    assert item["head"]["n"] == 40 and item["usage"]["calls"] == 40
    assert item["nodeid"] == f"prompts/x.j2::{TASK}"


def test_spec_only_edit_makes_no_duplicate_calls(pytester, openai_server):
    """Only the spec comment changed: base and head render the very same prompts, so
    each prompt should be sent once, not once for the base and once for the head."""
    project(pytester, openai_server.url)
    write_template(pytester, "prompts/x.j2", GOOD)
    init_repo(pytester)
    write_template(pytester, "prompts/x.j2", GOOD, tolerance=0.1)

    result = pytester.runpytest("--lpo", "--lpo-report", "report.json")
    result.assert_outcomes(passed=1)
    item = entry(report(pytester), "prompts/x.j2")
    assert item["delta"] == 0 and item["right_to_wrong"] == []
    assert openai_server.requests == 40, "identical prompts were sent twice"


def test_new_template_in_git_has_no_reference(pytester, openai_server):
    project(pytester, openai_server.url)
    write_template(pytester, "prompts/old.j2", GOOD, samples=10)
    base = init_repo(pytester)
    write_template(pytester, "prompts/new.j2", BAD, samples=10)  # not in the base commit

    result = pytester.runpytest("--lpo", "--lpo-report", "report.json", "-k", "new")
    result.assert_outcomes(passed=1, deselected=1)
    item = entry(report(pytester), "prompts/new.j2")
    assert item["status"] == "pass" and item["reference"] == "none" and item["base"] is None
    assert item["reason"] == f"no base version or stored baseline to compare with (new since main at {base[:12]})"
    assert item["base_rev"] == base
    assert openai_server.requests == 10


def test_lpo_base_option_picks_the_reference_commit(pytester, openai_server):
    project(pytester, openai_server.url)
    write_template(pytester, "prompts/x.j2", GOOD)
    good = init_repo(pytester)
    write_template(pytester, "prompts/x.j2", BAD)
    git(pytester.path, "commit", "-q", "-am", "worse wording")

    # HEAD is main: the merge-base is HEAD itself, the template is unchanged
    pytester.runpytest("--lpo").assert_outcomes(passed=1)
    assert openai_server.requests == 40

    result = pytester.runpytest("--lpo", "--lpo-base", "HEAD~1", "--lpo-report", "report.json")
    result.assert_outcomes(failed=1)
    assert openai_server.requests == 80  # the head's answers came from the cache
    item = entry(report(pytester), "prompts/x.j2")
    assert item["base_rev"] == good and item["reference"] == "base" and item["status"] == "fail"
    assert item["usage"]["cache_hits"] == 40 and item["usage"]["calls"] == 40

    missing = pytester.runpytest("--lpo", "--lpo-base", "no-such-ref")
    missing.assert_outcomes(errors=1)
    missing.stdout.fnmatch_lines(["*--lpo-base: no commit named 'no-such-ref'*"])
    no_traceback(missing)


# --------------------------------------------------------------------------
# 4. a real regression


def test_regression_against_git_base_fails(pytester, openai_server):
    project(pytester, openai_server.url)
    write_template(pytester, "prompts/x.j2", GOOD)
    base = init_repo(pytester)
    write_template(pytester, "prompts/x.j2", BAD)  # working tree loses the good wording

    result = pytester.runpytest("--lpo", "--lpo-report", "report.json")
    result.assert_outcomes(failed=1)
    assert openai_server.requests == 80  # base and head, 40 examples each
    no_traceback(result)

    data = report(pytester)
    item = entry(data, "prompts/x.j2")
    assert item["status"] == "fail"
    assert item["reference"] == "base"
    assert item["base_rev"] == data["base_rev"] == base
    assert item["p_value"] < 0.05
    assert item["delta"] < 0 and item["head_accuracy"] < item["base_accuracy"]
    assert item["n_paired"] == 40
    assert item["reason"].startswith("regression: accuracy dropped")
    # per-example outcomes for both versions, consistent with the verdict
    assert len(item["examples"]) == 40
    for example in item["examples"]:
        assert example["base"]["outcome"] in ("correct", "wrong")
        assert example["head"]["outcome"] in ("correct", "wrong")
    flipped = {e["id"] for e in item["examples"]
               if e["base"]["outcome"] == "correct" and e["head"]["outcome"] != "correct"}
    assert flipped and flipped == set(item["right_to_wrong"])
    base_right = sum(e["base"]["outcome"] == "correct" for e in item["examples"])
    head_right = sum(e["head"]["outcome"] == "correct" for e in item["examples"])
    assert item["base_accuracy"] == pytest.approx(base_right / 40)
    assert item["head_accuracy"] == pytest.approx(head_right / 40)
    assert item["head"]["correct"] == head_right and item["base"]["correct"] == base_right

    base_pct, head_pct = f"{item['base_accuracy']:.1%}", f"{item['head_accuracy']:.1%}"
    result.stdout.fnmatch_lines([
        "*FAILURES*",
        "prompts/x.j2*: FAIL: regression: accuracy dropped *, p = * < alpha 0.05",
        f"  base accuracy: {base_pct} [[]*%, *%]  (95% interval, n=40)",
        f"  head accuracy: {head_pct} [[]*%, *%]",
        f"  delta: -*%   one-sided exact McNemar p = *   right->wrong {len(flipped)}, wrong->right *",
        "  examples that flipped from right to wrong:",
        "    - #*: expected '*', head answered '*'",
    ])
    # the terminal summary table
    result.stdout.fnmatch_lines([
        "*lpo-ci summary*",
        "template*data*n*base*head*delta*p*verdict*calls*cached*tokens*cost*seconds",
        f"prompts/x.j2*{TASK}*40*{base_pct}*{head_pct}*-*FAIL*80*0*",
        "1 template: 0 passed, 1 failed, 0 errors; 80 calls, 0 cache hits*",
    ])
    result.stdout.fnmatch_lines([f"FAILED prompts/x.j2::{TASK}*"])


# --------------------------------------------------------------------------
# 5. drops that must not fail


def test_non_significant_drop_passes(pytester, openai_server):
    project(pytester, openai_server.url)
    write_template(pytester, "prompts/x.j2", GOOD, samples=4)
    init_repo(pytester)
    write_template(pytester, "prompts/x.j2", BAD, samples=4)

    result = pytester.runpytest("--lpo", "--lpo-report", "report.json")
    result.assert_outcomes(passed=1)
    item = entry(report(pytester), "prompts/x.j2")
    assert item["status"] == "pass"
    assert item["reference"] == "base"
    assert item["delta"] < 0  # a real drop ...
    assert item["p_value"] >= 0.05  # ... on too few examples to mean anything (4 pairs: p >= 0.5**4)
    assert "not significant" in item["reason"]
    result.stdout.fnmatch_lines([f"prompts/x.j2*{TASK}*4*PASS*"])


def test_drop_within_tolerance_passes(pytester, openai_server):
    project(pytester, openai_server.url)
    write_template(pytester, "prompts/x.j2", GOOD, tolerance=0.7)
    init_repo(pytester)
    write_template(pytester, "prompts/x.j2", BAD, tolerance=0.7)

    result = pytester.runpytest("--lpo", "--lpo-report", "report.json")
    result.assert_outcomes(passed=1)
    item = entry(report(pytester), "prompts/x.j2")
    assert item["status"] == "pass"
    assert item["delta"] < 0 and -item["delta"] <= 0.7
    assert item["p_value"] < 0.05  # significant, but within the tolerance
    # The reason must not claim there was no significant drop: it should say
    # the drop is within the tolerance.
    assert "tolerance" in item["reason"], item["reason"]


# --------------------------------------------------------------------------
# 6. min_accuracy


def test_min_accuracy_fails_weak_template_without_base(pytester, openai_server):
    project(pytester, openai_server.url)
    write_template(pytester, "prompts/weak.j2", BAD, min_accuracy=0.8)
    write_template(pytester, "prompts/strong.j2", GOOD, min_accuracy=0.8)

    result = pytester.runpytest("--lpo", "--lpo-report", "report.json")
    result.assert_outcomes(passed=1, failed=1)
    data = report(pytester)
    weak, strong = entry(data, "prompts/weak.j2"), entry(data, "prompts/strong.j2")
    assert data["base_rev"] is None
    assert weak["status"] == "fail" and weak["reference"] == "none"
    assert weak["head_accuracy"] < 0.8 <= strong["head_accuracy"]
    assert strong["status"] == "pass"
    weak_pct = f"{weak['head_accuracy']:.1%}"
    result.stdout.fnmatch_lines([
        f"prompts/weak.j2*: FAIL: under min_accuracy: accuracy {weak_pct} is under min_accuracy 80.0%",
        f"  head accuracy: {weak_pct} [[]*",
        f"FAILED prompts/weak.j2::{TASK}*",
    ])
    no_traceback(result)


# --------------------------------------------------------------------------
# 7. provider outage


def test_provider_outage_is_an_error_not_a_failure(pytester, openai_server):
    openai_server.outage = True
    project(pytester, openai_server.url, lpo="retries = 1\n")
    write_template(pytester, "prompts/x.j2", GOOD, samples=10)

    result = pytester.runpytest("--lpo", "--lpo-report", "report.json")
    result.assert_outcomes(errors=1)
    assert openai_server.requests == 20  # each call tried twice (retries = 1)
    result.stdout.fnmatch_lines([
        "*ERROR at setup of*",
        "*prompts/x.j2*10 of 10 calls failed (100% > max_error_rate 5%); first error: *503*",
        f"ERROR prompts/x.j2::{TASK}*",
    ])
    result.stdout.no_fnmatch_line("*FAILED*")
    no_traceback(result)
    item = entry(report(pytester), "prompts/x.j2")
    assert item["status"] == "error"
    assert item["head"]["errors"] == 10


def test_provider_outage_error_keeps_location_and_hint(pytester, openai_server):
    """The EvaluationError raised for an outage carries file:line and a hint on what to
    do; the item's error report should show them, as it does for spec errors."""
    openai_server.outage = True
    project(pytester, openai_server.url, lpo="retries = 0\n")
    write_template(pytester, "prompts/x.j2", GOOD, samples=3)

    result = pytester.runpytest("--lpo")
    result.assert_outcomes(errors=1)
    result.stdout.fnmatch_lines([
        "*prompts/x.j2:1: *3 of 3 calls failed*",
        "*hint: check the provider*rerun*",
    ])


# --------------------------------------------------------------------------
# 8. retries


@pytest.mark.parametrize("status", [429, pytest.param(500, marks=pytest.mark.slow)])
def test_transient_failures_are_retried(pytester, status):
    def run(server, name):
        project(pytester, server.url)
        return pytester.runpytest("--lpo", "--lpo-report", name)

    write_template(pytester, "prompts/x.j2", GOOD, samples=20)
    project(pytester, None)
    init_repo(pytester)
    write_template(pytester, "prompts/x.j2", BAD, samples=20)

    with fake_openai_server() as clean:
        reference = run(clean, "clean.json")
        assert clean.requests == 40 and clean.failures == 0
    reference.assert_outcomes(failed=1)
    # every third request fails (429 with Retry-After, or a bare 500), but never a retry twice
    with fake_openai_server(fail_every=3, fail_status=status, retry_after=0.05, retry_passes=True) as flaky:
        result = run(flaky, "report.json")
        requests, failures = flaky.requests, flaky.failures
    result.assert_outcomes(failed=1)  # the same verdict as without failures
    assert failures > 0
    # every failure was retried; identical prompts in flight together may share one request
    assert requests - failures <= 40 < requests
    expected = entry(report(pytester, "clean.json"), "prompts/x.j2")
    item = entry(report(pytester), "prompts/x.j2")
    assert item["head"]["errors"] == item["base"]["errors"] == 0
    for key in ("head_accuracy", "base_accuracy", "p_value", "right_to_wrong", "wrong_to_right"):
        assert item[key] == expected[key], key
    assert item["usage"]["retries"] == failures
    assert item["usage"]["calls"] == 40 and item["usage"]["errors"] == 0


# --------------------------------------------------------------------------
# 9. the response cache


def test_second_run_is_served_from_cache(pytester, openai_server):
    project(pytester, openai_server.url)
    write_template(pytester, "prompts/x.j2", GOOD)

    first = pytester.runpytest("--lpo")
    first.assert_outcomes(passed=1)
    assert openai_server.requests == 40
    db = pytester.path / ".lpo-ci" / "cache" / "responses.sqlite3"
    with sqlite3.connect(db) as connection:
        assert connection.execute("SELECT COUNT(*) FROM responses").fetchone()[0] == 40

    second = pytester.runpytest("--lpo", "--lpo-report", "report.json")
    second.assert_outcomes(passed=1)
    assert openai_server.requests == 40  # not one new request
    second.stdout.fnmatch_lines([
        f"prompts/x.j2*{TASK}*40*PASS*0*40*",
        "1 template: 1 passed, 0 failed, 0 errors; 0 calls, 40 cache hits*",
    ])
    item = entry(report(pytester), "prompts/x.j2")
    assert item["usage"]["calls"] == 0 and item["usage"]["cache_hits"] == 40
    assert all(e["head"]["cached"] for e in item["examples"])


def test_interrupted_run_resumes_from_cache(pytester, openai_server):
    project(pytester, openai_server.url)
    write_template(pytester, "prompts/x.j2", GOOD, samples=20)
    pytester.runpytest("--lpo", "--lpo-report", "first.json").assert_outcomes(passed=1)
    assert openai_server.requests == 20
    first_ids = [e["id"] for e in entry(report(pytester, "first.json"), "prompts/x.j2")["examples"]]

    write_template(pytester, "prompts/x.j2", GOOD, samples=40)
    pytester.runpytest("--lpo", "--lpo-report", "report.json").assert_outcomes(passed=1)
    assert openai_server.requests == 40  # only the 20 new examples were asked for
    item = entry(report(pytester), "prompts/x.j2")
    assert item["usage"]["calls"] == 20 and item["usage"]["cache_hits"] == 20
    cached = {e["id"] for e in item["examples"] if e["head"]["cached"]}
    assert cached == set(first_ids)  # the 20-sample is a prefix of the 40-sample
    assert [e["id"] for e in item["examples"]][:20] == first_ids


def test_cache_dir_option(pytester, openai_server):
    project(pytester, openai_server.url)
    write_template(pytester, "prompts/x.j2", GOOD, samples=10)
    pytester.runpytest("--lpo", "--lpo-cache-dir", "elsewhere").assert_outcomes(passed=1)
    assert (pytester.path / "elsewhere" / "responses.sqlite3").is_file()
    assert not (pytester.path / ".lpo-ci" / "cache").exists()
    pytester.runpytest("--lpo", "--lpo-cache-dir", "elsewhere").assert_outcomes(passed=1)
    assert openai_server.requests == 10


# --------------------------------------------------------------------------
# 10. bad specs: errors that name file:line, without a Python traceback

BAD_SPECS = {
    "jinja-syntax": (
        spec(samples=5) + "Q: {{ input }\n",
        ["*prompts/x.j2:5: Jinja syntax error: *", "*hint: fix the template syntax*"]),
    "yaml": (
        "{# lpo:\n  benchmark: bbh/boolean_expressions\n  samples: [5\n#}\nQ: {{ input }}\n",
        ["*prompts/x.j2:*: malformed YAML in the lpo spec comment: *"]),
    "unknown-key": (
        "{# lpo:\n  benchmark: bbh/boolean_expressions\n  sample: 5\n#}\nQ: {{ input }}\n",
        ["*prompts/x.j2:3: unknown key 'sample' in the lpo spec comment",
         "*hint: did you mean 'samples'?"]),
    "wrong-type": (
        '{# lpo:\n  benchmark: bbh/boolean_expressions\n  samples: "ten"\n#}\nQ: {{ input }}\n',
        ["*prompts/x.j2:3: 'samples' must be a positive integer, got 'ten'"]),
    "unknown-benchmark": (
        "{# lpo:\n  samples: 5\n  benchmark: bbh/boolean_expresions\n#}\nQ: {{ input }}\n",
        ["*prompts/x.j2:3: unknown benchmark 'bbh/boolean_expresions'",
         "*hint: did you mean 'bbh/boolean_expressions'*"]),
    "no-spec": (
        "Q: {{ input }}\nA:\n",
        ["*prompts/x.j2:1: no test spec: the template has no '{# lpo: ... #}' comment*"]),
    "benchmark-and-dataset": (
        "{# lpo:\n  benchmark: bbh/boolean_expressions\n  dataset: data/cases.jsonl\n#}\n"
        "Q: {{ input }}\n",
        ["*prompts/x.j2:1: the spec names both a 'benchmark' and a 'dataset'", "*hint: keep one of them"]),
    "undefined-variable": (
        spec(samples=5) + "Answer the question.\n\nQ: {{ question }}\nA:\n",
        ["*prompts/x.j2:7: cannot render the template: 'question' is undefined",
         "*hint: the data provides input; the template also reads question"]),
    "dataset-missing": (
        "{# lpo:\n  samples: 5\n  dataset: data/missing.jsonl\n#}\nQ: {{ question }}\n",
        ["*prompts/x.j2:3: dataset file *data/missing.jsonl not found*"]),
    "dataset-no-target": (
        "{# lpo:\n  samples: 5\n  dataset: data/cases.jsonl\n#}\nQ: {{ question }}\n",
        ["*data/cases.jsonl:3: record 3 lacks the field 'target' (the target)*"]),
}


@pytest.mark.parametrize("case", list(BAD_SPECS))
def test_bad_spec_is_reported_at_its_line(pytester, openai_server, case):
    text, expected = BAD_SPECS[case]
    project(pytester, openai_server.url)
    write_raw(pytester, "prompts/x.j2", text)
    write_raw(pytester, "data/cases.jsonl",
              '{"question": "1 + 1", "target": "2"}\n'
              '{"question": "2 + 2", "target": "4"}\n'
              '{"question": "3 + 3", "answer": "6"}\n')

    result = pytester.runpytest("--lpo", "--lpo-report", "report.json")
    result.assert_outcomes(errors=1)
    result.stdout.fnmatch_lines(expected)
    no_traceback(result)
    assert openai_server.requests == 0  # nothing is sent before the spec is sound


def test_bad_project_setting_is_a_usage_error_at_its_line(pytester, openai_server):
    pytester.makepyprojecttoml(
        f'[tool.lpo_ci]\nmodel = "openai/fake"\napi_base = "{openai_server.url}"\n\nsamples = "ten"\n')
    write_template(pytester, "prompts/x.j2", GOOD, samples=None)

    result = pytester.runpytest("--lpo")
    assert result.ret == pytest.ExitCode.USAGE_ERROR
    # samples = "ten" is on line 5 (line 4 is blank)
    result.stderr.fnmatch_lines(["*pyproject.toml:5: 'samples' must be a positive integer, got 'ten'"])
    no_traceback(result)
    assert openai_server.requests == 0


# --------------------------------------------------------------------------
# 11. -k


def test_keyword_selection_between_templates(pytester, openai_server):
    project(pytester, openai_server.url)
    write_template(pytester, "prompts/classify.j2", GOOD)
    write_template(pytester, "prompts/summarize.j2", BAD)

    result = pytester.runpytest("--lpo", "-k", "classify", "--lpo-report", "report.json")
    result.assert_outcomes(passed=1, deselected=1)
    assert openai_server.requests == 40  # the deselected template was never scored
    data = report(pytester)
    assert [t["template"] for t in data["templates"]] == ["prompts/classify.j2"]


# --------------------------------------------------------------------------
# 12. stored baseline without git


def test_stored_baseline_without_git(pytester, openai_server):
    project(pytester, openai_server.url)
    write_template(pytester, "prompts/x.j2", GOOD)
    with pytest.raises(subprocess.CalledProcessError):
        git(pytester.path, "rev-parse", "--is-inside-work-tree")  # really not a repository

    first = pytester.runpytest("--lpo", "--lpo-update-baseline")
    first.assert_outcomes(passed=1)
    first.stdout.fnmatch_lines(["baseline written to *.lpo-ci/baseline.json"])
    stored = json.loads((pytester.path / ".lpo-ci" / "baseline.json").read_text())
    recorded = stored["templates"]["prompts/x.j2"]
    assert recorded["n"] == 40 and len(recorded["outcomes"]) == 40
    assert recorded["benchmark"] == TASK and recorded["model"] == "openai/fake"
    assert recorded["accuracy"] > 0.9

    write_template(pytester, "prompts/x.j2", BAD)
    second = pytester.runpytest("--lpo", "--lpo-report", "report.json")
    second.assert_outcomes(failed=1)
    item = entry(report(pytester), "prompts/x.j2")
    assert item["reference"] == "baseline" and item["status"] == "fail"
    assert item["base_accuracy"] == pytest.approx(recorded["accuracy"])
    assert item["p_value"] < 0.05
    second.stdout.fnmatch_lines([
        "prompts/x.j2*: FAIL: regression: *",
        "  baseline accuracy: *% [[]*]  (95% interval, n=40)",
    ])

    # updating the baseline accepts the worse template: no failure, new numbers stored
    third = pytester.runpytest("--lpo", "--lpo-update-baseline")
    third.assert_outcomes(passed=1)
    updated = json.loads((pytester.path / ".lpo-ci" / "baseline.json").read_text())
    assert updated["templates"]["prompts/x.j2"]["accuracy"] == pytest.approx(item["head_accuracy"])
    pytester.runpytest("--lpo").assert_outcomes(passed=1)


# --------------------------------------------------------------------------
# 13. pytest-xdist


@pytest.mark.slow
def test_xdist_runs_every_template_and_shares_the_cache(pytester, openai_server):
    pytest.importorskip("xdist")
    project(pytester, openai_server.url)
    names = ["prompts/a.j2", "prompts/b.j2", "prompts/c.j2", "prompts/d.j2"]
    for index, name in enumerate(names):
        wording = GOOD if index % 2 == 0 else BAD
        write_template(pytester, name, f"Template {index}. {wording}", samples=20)

    first = pytester.runpytest("-n", "2", "--lpo", "--lpo-report", "report.json")
    first.assert_outcomes(passed=4)
    assert openai_server.requests == 80  # 4 templates x 20 distinct prompts
    data = report(pytester)
    assert sorted(t["template"] for t in data["templates"]) == names
    assert all(t["head"]["n"] == 20 for t in data["templates"])
    assert data["summary"]["templates"] == 4 and data["summary"]["passed"] == 4
    assert data["summary"]["usage"]["calls"] == 80
    first.stdout.fnmatch_lines(["*lpo-ci summary*", "4 templates: 4 passed, 0 failed, 0 errors; 80 calls*"])

    second = pytester.runpytest("-n", "2", "--lpo", "--lpo-report", "second.json")
    second.assert_outcomes(passed=4)
    assert openai_server.requests == 80  # every answer came from the shared cache
    summary = report(pytester, "second.json")["summary"]
    assert summary["templates"] == 4
    assert summary["usage"]["calls"] == 0 and summary["usage"]["cache_hits"] == 80
    second.stdout.fnmatch_lines(["4 templates: 4 passed, 0 failed, 0 errors; 0 calls, 80 cache hits*"])


# --------------------------------------------------------------------------
# 14. bad model outputs


def test_empty_outputs_are_format_failures(pytester):
    with fake_openai_server(answer=lambda prompt: "") as server:
        project(pytester, server.url)
        write_template(pytester, "prompts/x.j2", GOOD, samples=20)
        result = pytester.runpytest("--lpo", "--lpo-report", "report.json")
        assert server.requests == 20
    result.assert_outcomes(passed=1)  # no reference: reported, not failed, never an error
    head = entry(report(pytester), "prompts/x.j2")["head"]
    assert head["format_failures"] == 20
    assert head["errors"] == 0 and head["correct"] == 0 and head["accuracy"] == 0.0


def test_megabyte_output_is_scored_and_truncated_in_report(pytester):
    huge = "x" * 1_000_000 + " True"
    with fake_openai_server(answer=lambda prompt: huge) as server:
        project(pytester, server.url)
        write_template(pytester, "prompts/x.j2", GOOD, samples=10)
        result = pytester.runpytest("--lpo", "--lpo-report", "report.json")
        assert server.requests == 10
    result.assert_outcomes(passed=1)
    no_traceback(result)
    item = entry(report(pytester), "prompts/x.j2")
    assert item["head"]["errors"] == 0 and item["head"]["format_failures"] == 0
    assert item["head"]["correct"] + item["head"]["wrong"] == 10
    for example in item["examples"]:
        assert example["head"]["extracted"] == "True"
        assert 0 < len(example["head"]["response"]) <= 2000
    assert (pytester.path / "report.json").stat().st_size < 200_000


# --------------------------------------------------------------------------
# 15. awkward paths


def test_path_with_spaces_and_non_ascii(pytester, openai_server):
    name = "prompts/résumé tests/quick check.j2"
    project(pytester, openai_server.url)
    write_template(pytester, name, GOOD)
    init_repo(pytester)
    write_template(pytester, name, BAD)

    collected = pytester.runpytest("--lpo", "--collect-only", "-q")
    collected.stdout.fnmatch_lines([f"{name}::{TASK}"])

    result = pytester.runpytest("--lpo", "--lpo-report", "report.json")
    result.assert_outcomes(failed=1)  # the base was read from git despite the path
    assert openai_server.requests == 80
    result.stdout.fnmatch_lines([f"{name}*: FAIL: regression: *"])
    item = entry(report(pytester), name)
    assert item["reference"] == "base" and item["nodeid"] == f"{name}::{TASK}"


# --------------------------------------------------------------------------
# 16. the command line


def test_cli_eval_writes_report(pytester, openai_server, monkeypatch, capsys):
    from lpo_ci.cli import main

    pytester.makepyprojecttoml('[project]\nname = "demo"\n')
    write_raw(pytester, "prompts/x.j2", spec(samples=None) + GOOD)
    monkeypatch.chdir(pytester.path)
    code = main(["eval", "prompts/x.j2", "--model", "openai/fake", "--samples", "20", "--no-base",
                 "--api-base", openai_server.url, "--report", "r.json"])
    assert code == 0
    assert openai_server.requests == 20
    data = json.loads((pytester.path / "r.json").read_text())
    item = entry(data, "prompts/x.j2")
    assert item["status"] == "pass" and item["model"] == "openai/fake"
    assert item["head"]["n"] == 20 and item["reference"] == "none"
    assert "1 template: 1 passed" in capsys.readouterr().out


def test_cli_eval_regression_in_git_exits_1(pytester, openai_server, monkeypatch, capsys):
    from lpo_ci.cli import main

    pytester.makepyprojecttoml(f'[tool.lpo_ci]\nmodel = "openai/fake"\napi_base = "{openai_server.url}"\n')
    write_raw(pytester, "prompts/x.j2", spec(samples=None) + GOOD)
    init_repo(pytester)
    write_raw(pytester, "prompts/x.j2", spec(samples=None) + BAD)
    monkeypatch.chdir(pytester.path)
    code = main(["eval", "prompts/x.j2", "--samples", "20", "--report", "r.json"])
    captured = capsys.readouterr()
    assert code == 1, captured.err
    assert re.search(r"prompts/x\.j2(:\d+)?: FAIL: regression", captured.err)
    item = entry(json.loads((pytester.path / "r.json").read_text()), "prompts/x.j2")
    assert item["status"] == "fail" and item["reference"] == "base" and item["head"]["n"] == 20
    assert openai_server.requests == 40


def test_cli_exit_codes_for_errors(pytester, openai_server, monkeypatch, capsys):
    from lpo_ci.cli import EXIT_ERROR, EXIT_USAGE, main

    openai_server.outage = True
    project(pytester, openai_server.url, lpo="retries = 0\n")
    write_raw(pytester, "prompts/x.j2", spec(samples=3) + GOOD)
    monkeypatch.chdir(pytester.path)

    assert main(["eval", "prompts/x.j2", "--no-base", "--report", "r.json"]) == EXIT_ERROR == 3
    err = capsys.readouterr().err
    assert re.search(r"prompts/x\.j2(:\d+)?: ERROR: 3 of 3 calls failed", err)
    assert "Traceback" not in err
    assert entry(json.loads((pytester.path / "r.json").read_text()), "prompts/x.j2")["status"] == "error"

    assert main(["eval", "prompts/missing.j2"]) == EXIT_USAGE == 2
    assert "missing.j2: no such template file" in capsys.readouterr().err


# --------------------------------------------------------------------------
# --lpo-optimize and lpo-ci optimize


def test_optimize_suggests_the_fix_for_a_failing_template(pytester, openai_server):
    project(pytester, openai_server.url)
    write_template(pytester, "prompts/x.j2", GOOD)
    init_repo(pytester)
    write_template(pytester, "prompts/x.j2", BAD)

    result = pytester.runpytest("--lpo", "--lpo-optimize", "--lpo-budget-calls", "400",
                                "--lpo-report", "report.json")
    result.assert_outcomes(failed=1)
    result.stdout.fnmatch_lines([
        "*LPO (local): suggested: *held-out accuracy *",
        "*suggested patch:*",
        f"*+{GOOD_WORDING}.",
        "*prompts/x.j2: LPO suggested (*held-out accuracy *",
    ])
    optimization = entry(report(pytester), "prompts/x.j2")["optimization"]
    assert optimization["status"] == "suggested" and optimization["mark_sources"] == ["diff"]
    assert optimization["budget"]["spent"]["calls"] <= 400
    assert optimization["heldout"]["p_value"] < 0.05
    assert optimization["suggestions"][0]["body"] == f"```suggestion\n{GOOD_WORDING}.\n```"
    (pytester.path / "fix.patch").write_text(optimization["patch"], encoding="utf-8")
    git(pytester.path, "apply", "fix.patch")
    assert GOOD_WORDING in (pytester.path / "prompts/x.j2").read_text(encoding="utf-8")


def test_passing_templates_are_not_optimized(pytester, openai_server):
    project(pytester, openai_server.url)
    write_template(pytester, "prompts/x.j2", GOOD)
    init_repo(pytester)
    result = pytester.runpytest("--lpo", "--lpo-optimize", "--lpo-report", "report.json")
    result.assert_outcomes(passed=1)
    assert entry(report(pytester), "prompts/x.j2")["optimization"] is None
    assert openai_server.requests == 40


def test_cli_optimize_writes_the_patch_and_exits_0(pytester, openai_server, monkeypatch):
    from lpo_ci.cli import main

    project(pytester, openai_server.url)
    write_template(pytester, "prompts/x.j2", GOOD)
    init_repo(pytester)
    write_template(pytester, "prompts/x.j2", BAD)
    monkeypatch.chdir(pytester.path)
    status = main(["optimize", "prompts/x.j2", "--budget-calls", "400", "--patch", "fix.patch",
                   "--report", "r.json"])
    assert status == 0
    assert GOOD_WORDING in (pytester.path / "fix.patch").read_text(encoding="utf-8")
    assert json.loads((pytester.path / "r.json").read_text())["templates"][0]["optimization"]["status"] \
        == "suggested"
    # a tiny budget cannot finish: no suggestion, exit 1, the budget is not exceeded
    before = openai_server.requests
    status = main(["optimize", "prompts/x.j2", "--budget-calls", "5", "--seed", "9",
                   "--cache-dir", str(pytester.path / "fresh-cache")])
    assert status == 1
    assert openai_server.requests - before <= 5 + 80  # gate re-scoring (fresh cache) + the budget


# --------------------------------------------------------------------------
# what the GitHub Action relies on: --lpo-only, --lpo-prompts, repo_prefix


def test_lpo_only_collects_templates_and_nothing_else(pytester, openai_server):
    project(pytester, openai_server.url)
    write_template(pytester, "prompts/x.j2", GOOD)
    pytester.makepyfile(test_app="def test_app():\n    assert False\n")
    result = pytester.runpytest("--lpo", "--lpo-only")
    result.assert_outcomes(passed=1)
    result = pytester.runpytest("--lpo")
    result.assert_outcomes(passed=1, failed=1)


def test_lpo_prompts_overrides_the_configured_globs(pytester, openai_server):
    project(pytester, openai_server.url)
    write_template(pytester, "prompts/x.j2", GOOD)
    write_template(pytester, "other/y.j2", GOOD)
    result = pytester.runpytest("--lpo", "--lpo-only", "--lpo-prompts=other/*.j2", "--lpo-report=r.json")
    result.assert_outcomes(passed=1)
    assert [t["template"] for t in report(pytester, "r.json")["templates"]] == ["other/y.j2"]


def test_the_report_says_where_the_project_sits_in_its_repository(pytester, openai_server):
    sub = pytester.path / "services" / "bot"
    sub.mkdir(parents=True)
    (sub / "pyproject.toml").write_text(f'[tool.lpo_ci]\nmodel = "openai/fake"\napi_base = "{openai_server.url}"\n',
                                        encoding="utf-8")
    (sub / "prompts").mkdir()
    (sub / "prompts" / "x.j2").write_text(spec() + GOOD, encoding="utf-8")
    init_repo(pytester)
    result = pytester.runpytest("--lpo", "--lpo-report=r.json", "--rootdir", str(sub), str(sub))
    result.assert_outcomes(passed=1)
    data = report(pytester, "r.json")
    assert data["repo_prefix"] == "services/bot/" and data["templates"][0]["template"] == "prompts/x.j2"

    from lpo_ci.github.report_view import load_report

    assert load_report(pytester.path / "r.json").templates[0].path == "services/bot/prompts/x.j2"

"""The public Python API: what __all__ names, the README's example run as written, event loops."""

from __future__ import annotations

import asyncio
import json
import os
import re
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest

import lpo_ci
from lpo_ci.errors import LpoError, SpecError
from lpo_ci.evaluate import EvalResult, ExampleResult
from lpo_ci.scoring import Outcome
from tests.support.openai_server import GOOD_WORDING

REPO = Path(__file__).resolve().parents[1]
SPEC = "{# lpo:\n  benchmark: bbh/boolean_expressions\n  samples: 20\n#}\n"


def readme_api_example() -> str:
    readme = (REPO / "README.md").read_text(encoding="utf-8")
    section = readme.split("\n## API\n", 1)[1].split("\n## ", 1)[0]
    blocks = re.findall(r"```python\n(.*?)```", section, re.DOTALL)
    assert len(blocks) == 1, "the API section has one Python example"
    return blocks[0]


@pytest.mark.slow
def test_the_readme_api_example_runs_as_written(tmp_path, openai_server, data_dir):
    script = tmp_path / "example.py"
    script.write_text(readme_api_example(), encoding="utf-8")
    env = {**os.environ, "OPENAI_API_BASE": openai_server.url, "LPO_CI_DATA_DIR": str(data_dir),
           "LPO_CI_API_KEY": "sk-test"}
    done = subprocess.run([sys.executable, str(script)], cwd=tmp_path, env=env, capture_output=True,
                          text=True, timeout=300)
    assert done.returncode == 0, done.stdout + done.stderr
    line = done.stdout.strip().splitlines()[-1]
    assert re.fullmatch(r"\d+% -> \d+%: fail: regression: accuracy dropped .* < alpha 0\.05", line), line
    readme = (REPO / "README.md").read_text(encoding="utf-8").split("\n## API\n", 1)[1]
    assert "```\n" + line + "\n```" in readme, f"the README shows another output than {line!r}"


def test_all_names_the_public_api_and_each_resolves():
    assert sorted(lpo_ci.__all__) == sorted(set(lpo_ci.__all__))
    for name in lpo_ci.__all__:
        assert getattr(lpo_ci, name) is not None, name
    assert callable(lpo_ci.evaluate_template) and asyncio.iscoroutinefunction(lpo_ci.evaluate_template_async)
    assert asyncio.iscoroutinefunction(lpo_ci.suggest_fix_async)
    with pytest.raises(AttributeError, match="no attribute 'Session'"):
        lpo_ci.Session  # noqa: B018 - internal, not exported
    assert set(lpo_ci.__all__) <= set(dir(lpo_ci))


def test_importing_lpo_ci_imports_nothing_heavy():
    probe = ("import sys, lpo_ci; heavy = [m for m in ('litellm', 'datasets', 'jinja2', 'yaml', 'asyncio', "
             "'lpo_ci.api', 'lpo_ci.runner') if m in sys.modules]; print(heavy)")
    done = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, check=True)
    assert done.stdout.strip() == "[]"


def test_py_typed_ships_in_the_package():
    assert (REPO / "lpo_ci" / "py.typed").is_file()


@pytest.mark.slow
def test_the_wheel_holds_py_typed_and_the_version(tmp_path):
    done = subprocess.run([sys.executable, "-m", "pip", "wheel", "--quiet", "--no-deps", "-w", str(tmp_path),
                           str(REPO)], capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stderr
    (wheel,) = tmp_path.glob("lpo_ci-*.whl")
    assert wheel.name.startswith(f"lpo_ci-{lpo_ci.__version__}-")
    assert "lpo_ci/py.typed" in zipfile.ZipFile(wheel).namelist()


def results(outcomes: list[Outcome]) -> EvalResult:
    return EvalResult([ExampleResult(id=str(i), outcome=o, target="t",
                                     error="APIError: down" if o is Outcome.ERROR else None)
                       for i, o in enumerate(outcomes)])


def test_gate_results_pairs_results_and_takes_rules():
    C, W, E = Outcome.CORRECT, Outcome.WRONG, Outcome.ERROR
    base, head = results([C] * 30), results([C] * 20 + [W] * 10)
    assert lpo_ci.gate_results(head, base).status == "fail"
    assert lpo_ci.gate_results(head, base, lpo_ci.GateRules(tolerance=0.5)).status == "pass"
    assert lpo_ci.gate_results(head, base.outcomes()).status == "fail"
    verdict = lpo_ci.gate_results(head, None)
    assert verdict.status == "pass" and verdict.reference == "none"
    # the base's first failed call is named when the base failed too often
    broken = lpo_ci.gate_results(head, results([E] * 30))
    assert broken.status == "error" and "APIError: down" in broken.reason


def test_read_report_refuses_what_it_cannot_read(tmp_path):
    path = tmp_path / "r.json"
    with pytest.raises(SpecError, match="cannot read the report"):
        lpo_ci.read_report(path)
    path.write_text("{not json")
    with pytest.raises(SpecError, match="not JSON"):
        lpo_ci.read_report(path)
    path.write_text(json.dumps({"version": 99}))
    with pytest.raises(SpecError, match="not an lpo-ci report of version 1 \\(found 99\\)") as info:
        lpo_ci.read_report(path)
    assert info.value.path == str(path) and info.value.hint
    path.write_text("[]")
    with pytest.raises(LpoError, match="found 'list'"):
        lpo_ci.read_report(path)


def test_write_report_takes_report_entries(tmp_path):
    entry = {"template": "p.j2", "status": "pass", "usage": {}, "seconds": 0.0}
    written = lpo_ci.write_report(tmp_path / "out" / "r.json", [entry])
    data = lpo_ci.read_report(written)
    assert data["templates"] == [entry] and data["summary"]["templates"] == 1


def write_project(root: Path, wording: str, api_base: str) -> Path:
    (root / "pyproject.toml").write_text(
        f'[tool.lpo_ci]\nmodel = "openai/fake"\napi_base = "{api_base}"\ncache_dir = "cache"\n', encoding="utf-8")
    (root / "scorers.py").write_text("def last_word(response, target):\n"
                                     "    word = response.split()[-1] if response.split() else ''\n"
                                     "    return word == target, word\n", encoding="utf-8")
    template = root / "prompts" / "bool.j2"
    template.parent.mkdir(parents=True, exist_ok=True)
    spec = SPEC.replace("#}", "  scorer: scorers:last_word\n#}")
    template.write_text(spec + f"{wording}.\n\nQ: {{{{ input }}}}\nA:\n", encoding="utf-8")
    return template


@pytest.mark.slow
def test_evaluate_and_suggest_fix_inside_a_running_event_loop(tmp_path, openai_server, data_dir, monkeypatch):
    monkeypatch.setenv("LPO_CI_API_KEY", "sk-test")
    template = write_project(tmp_path, "Work out the following", openai_server.url)
    path_before = list(sys.path)

    async def main():
        # the sync function from inside a running loop: run in a worker thread, to the end
        report = lpo_ci.evaluate_template(template, use_git=False)
        again = await lpo_ci.evaluate_template_async(template, use_git=False)
        return report, again

    report, again = asyncio.run(main())
    assert sys.path == path_before  # the project's scorer module was imported without changing it
    assert report.status == "pass" and report.verdict.reference == "none" and report.head.n == 20
    assert [r.outcome for r in again.head.results] == [r.outcome for r in report.head.results]
    assert again.usage.cache_hits == 20  # the second run read the cache the first wrote
    assert report.to_dict()["scorer"]["name"] == "scorers:last_word"

    result = lpo_ci.suggest_fix(report, lpo_ci.OptimizeOptions(mode="global", budget=lpo_ci.Budget(calls=200)))
    data = result.to_dict()
    assert result.status in ("suggested", "no_suggestion") and data["budget"]["limits"]["calls"] == 200
    assert data["budget"]["spent"]["calls"] <= 200
    # the budget is announced before the search, with the calls kept for the held-out check
    reserved = data["budget"]["reserved_for_heldout"]
    assert reserved > 0 and "budget 200 calls" in result.announcement
    assert f"{reserved} of them kept for" in result.announcement


def test_evaluate_template_errors_name_the_input(tmp_path):
    with pytest.raises(SpecError, match="no such template file"):
        lpo_ci.evaluate_template(tmp_path / "missing.j2")
    template = write_project(tmp_path, GOOD_WORDING, "http://127.0.0.1:9/v1")
    with pytest.raises(SpecError, match="samples"):
        lpo_ci.evaluate_template(template, settings={"samples": 0}, use_git=False)


def test_suggest_fix_refuses_a_template_that_was_not_scored():
    from lpo_ci.gate import Verdict
    from lpo_ci.runner import ItemReport

    report = ItemReport(template="p.j2", line=1, data="d", model=None, verdict=Verdict("error", "boom", "none"))
    with pytest.raises(LpoError, match="nothing to optimize.*boom"):
        lpo_ci.suggest_fix(report)

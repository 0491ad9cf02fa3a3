"""The bounded LPO search, against a real loopback server whose accuracy depends on wording."""

from __future__ import annotations

import asyncio
import subprocess
from pathlib import Path

import pytest

from lpo_ci.cache import ResponseCache
from lpo_ci.llm import ModelParams
from lpo_ci.optimize import Budget, OptimizeOptions, optimize_template
from lpo_ci.optimize.budget import BUDGET_EXHAUSTED, BudgetedClient
from lpo_ci.optimize.search import split_examples
from lpo_ci.runner import Session
from lpo_ci.spec import load_settings, read_template
from tests.conftest import git
from tests.support.openai_server import GOOD_WORDING, fake_openai_server, wording_sensitive_answer

SPEC = "{{# lpo:\n  benchmark: bbh/boolean_expressions\n  samples: 40\n  api_base: {url}\n#}}\n"
GOOD = f"{GOOD_WORDING}.\n\nQ: {{{{ input }}}}\nA:"
BAD = "Say what this is.\n\nQ: {{ input }}\nA:"


def prepared_for(tmp_path: Path, url: str, body: str):
    tmp_path.mkdir(parents=True, exist_ok=True)
    (tmp_path / "pyproject.toml").write_text('[tool.lpo_ci]\nmodel = "openai/fake"\n', encoding="utf-8")
    path = tmp_path / "prompts" / "bool.j2"
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(SPEC.format(url=url) + body, encoding="utf-8")
    settings = load_settings(tmp_path)
    session = Session(settings, use_git=False)
    template = read_template(settings, path)
    return session.prepare(template), template


def run(prepared, template, base_body: str | None, **options):
    base = SPEC.format(url=prepared.client.params.api_base) + base_body if base_body else None
    options.setdefault("budget", Budget(calls=400))
    return asyncio.run(optimize_template(head_source=template.source, base_source=base,
                                         relpath=template.relpath, prepared=prepared,
                                         options=OptimizeOptions(**options)))


def test_budget_stops_exactly(tmp_path, data_dir):
    with fake_openai_server() as server:
        budget = Budget(calls=7)
        client = BudgetedClient(ModelParams(model="openai/fake", api_base=server.url),
                                cache=ResponseCache(tmp_path / "c"), budget=budget)
        results = asyncio.run(client.complete_all([f"Q: {'not ' * i}True is\nA:" for i in range(12)]))
        assert server.requests == 7 and budget.spent_calls == 7 and budget.stopped_by == "calls"
        assert sum(r.error == BUDGET_EXHAUSTED for r in results) == 5
        # cached answers stay free once the budget is spent
        again = asyncio.run(client.complete_all([f"Q: {'not ' * i}True is\nA:" for i in range(3)]))
        assert all(r.cached or r.error == BUDGET_EXHAUSTED for r in again) and server.requests == 7


def test_held_out_and_dev_splits_are_disjoint_and_stable(data_dir, tmp_path):
    with fake_openai_server() as server:
        prepared, _ = prepared_for(tmp_path, server.url, GOOD)
    heldout, dev = split_examples(prepared.pool, 0, 48, 32)
    assert len(heldout) == 48 and len(dev) == 32
    assert not {e.id for e in heldout} & {e.id for e in dev}
    assert [e.id for e in heldout[:40]] == [e.id for e in prepared.examples]  # the gate's sample first
    assert split_examples(prepared.pool, 0, 48, 32)[1] == dev


def test_injected_regression_is_found_and_repaired(tmp_path, data_dir):
    with fake_openai_server() as server:
        prepared, template = prepared_for(tmp_path, server.url, BAD)
        result = run(prepared, template, GOOD)
        assert result.status == "suggested", result.reason
        assert GOOD_WORDING in result.winner_source and "Say what this is" not in result.winner_source
        assert result.mark_sources == ["diff"]
        assert result.heldout["winner"] > result.heldout["head"] and result.heldout["p_value"] < 0.05
        assert result.dev["winner"] > result.dev["head"]
        assert result.budget["spent"]["calls"] <= 400 and result.announcement.startswith("LPO (local)")
        assert result.suggestions and result.suggestions[0]["body"].startswith("```suggestion")
        # the patch applies with git and turns the head into the winner
        repo = tmp_path
        git(repo, "init", "-q", "-b", "main")
        git(repo, "add", "-A")
        git(repo, "commit", "-q", "-m", "head")
        (repo / "fix.patch").write_text(result.patch, encoding="utf-8")
        subprocess.run(["git", "apply", "fix.patch"], cwd=repo, check=True)
        assert (repo / "prompts" / "bool.j2").read_text(encoding="utf-8") == result.winner_source


def test_a_change_that_is_not_a_regression_gets_no_suggestion(tmp_path, data_dir):
    with fake_openai_server() as server:
        prepared, template = prepared_for(tmp_path, server.url, GOOD + "\nAnswer True or False.")
        result = run(prepared, template, GOOD)
        assert result.status == "no_suggestion"
        assert "no candidate beat the head" in result.reason or "did not beat" in result.reason


def test_a_candidate_that_only_overfits_dev_is_rejected_on_held_out(tmp_path, data_dir):
    with fake_openai_server() as server:
        prepared, template = prepared_for(tmp_path, server.url, BAD)
        heldout, dev = split_examples(prepared.pool, 0, 48, 32)
        dev_inputs = {e.variables["input"] for e in dev}

        def answer(prompt: str) -> str:
            honest = wording_sensitive_answer(prompt.replace(GOOD_WORDING, "x"))  # ~55% everywhere
            if "Say what this is." in prompt or not any(q in prompt for q in dev_inputs):
                return honest
            return "True" if "True" == _truth(prompt) else "False"  # any edit is perfect on dev only

        server.answer = answer
        result = run(prepared, template, GOOD)
        assert result.dev["winner"] > result.dev["head"]
        assert result.status == "no_suggestion"
        assert "did not beat the head on held-out" in result.reason


def _truth(prompt: str) -> str:
    from tests.support.openai_server import evaluate_boolean_expression

    question = prompt.rsplit("Q:", 1)[1].split("\n", 1)[0].strip()
    return str(evaluate_boolean_expression(question.removesuffix(" is")))


def test_same_seed_same_search(tmp_path, data_dir):
    outcomes = []
    for attempt in range(2):
        with fake_openai_server() as server:
            work = tmp_path / str(attempt)
            prepared, template = prepared_for(work, server.url, BAD)
            result = run(prepared, template, GOOD, budget=Budget(calls=150))
            outcomes.append((result.winner_source, [(t["origin"], t["correct"]) for t in result.trace]))
    assert outcomes[0] == outcomes[1]


def test_global_mode_marks_all_literal_text(tmp_path, data_dir):
    with fake_openai_server() as server:
        prepared, template = prepared_for(tmp_path, server.url, BAD)
        result = run(prepared, template, GOOD, mode="global", budget=Budget(calls=200))
        assert result.mark_sources == ["global"]
        assert "<edit>\nSay what this is." in result.marked_text
        assert "{{ input }}" in result.marked_text and "<edit>{{" not in result.marked_text
        assert result.budget["spent"]["calls"] <= 200


def test_a_small_budget_is_never_exceeded(tmp_path, data_dir):
    with fake_openai_server() as server:
        prepared, template = prepared_for(tmp_path, server.url, BAD)
        result = run(prepared, template, GOOD, budget=Budget(calls=50))
        assert server.requests <= 50
        assert result.budget["spent"]["calls"] == server.requests


@pytest.mark.slow
def test_a_bounded_run_on_a_bbh_task_with_the_local_model_stays_within_its_budget(tmp_path, data_dir):
    """The embedded model as task model, LLM-free operators, a small call budget: the search runs
    its rounds, stops on the budget and reports what it spent."""
    from lpo_ci import local_model

    if not local_model.is_available():
        pytest.skip("the local extra is not installed")
    spec = "{# lpo:\n  benchmark: bbh/boolean_expressions\n  samples: 16\n  mode: completion\n" \
           "  max_tokens: 3\n  stop: \"\\n\"\n#}\n"
    project = tmp_path / "project"
    (project / "prompts").mkdir(parents=True)
    (project / "pyproject.toml").write_text("[tool.lpo_ci]\n", encoding="utf-8")
    path = project / "prompts" / "bool.j2"
    path.write_text(spec + "Boolean expression.\nQ: {{ input }}\nA:", encoding="utf-8")
    settings = load_settings(project)
    template = read_template(settings, path)
    prepared = Session(settings, use_git=False).prepare(template)
    assert prepared.client.params.model == local_model.DEFAULT_LOCAL_MODEL
    base = spec + "Evaluate the result of a random Boolean expression.\nQ: {{ input }}\nA:"
    options = OptimizeOptions(budget=Budget(calls=60), heldout_size=16, dev_size=16, rungs=(8, 16), rounds=2)
    result = asyncio.run(optimize_template(head_source=template.source, base_source=base,
                                           relpath=template.relpath, prepared=prepared, options=options))
    spent = result.budget["spent"]["calls"]
    assert 0 < spent <= 60
    assert result.mark_sources == ["diff"] and result.marks
    assert result.status in ("suggested", "no_suggestion") and result.reason
    assert result.curve and result.curve[0]["calls"] <= spent
    if result.status == "suggested":
        assert result.heldout["p_value"] < 0.05 and result.patch

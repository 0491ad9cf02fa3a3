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
from lpo_ci.optimize.search import Search, seeded_order
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


def run(prepared, template, base_body: str | None, gate=None, **options):
    base = SPEC.format(url=prepared.client.params.api_base) + base_body if base_body else None
    options.setdefault("budget", Budget(calls=400))
    options.setdefault("fluency", False)  # the loopback model: mechanics only (the guard has its own tests)
    return asyncio.run(optimize_template(head_source=template.source, base_source=base,
                                         relpath=template.relpath, prepared=prepared,
                                         options=OptimizeOptions(**options), gate=gate))


def splits(prepared, **options):
    options.setdefault("fluency", False)
    search = Search(head_source=prepared.template.source, base_source=None, relpath="t.j2",
                    prepared=prepared, options=OptimizeOptions(**options))
    return search.heldout, search.dev


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


def test_held_out_and_dev_splits_are_disjoint_stable_and_beyond_the_gates_sample(data_dir, tmp_path):
    with fake_openai_server() as server:
        prepared, _ = prepared_for(tmp_path, server.url, GOOD)
    heldout, dev = splits(prepared, heldout_size=48, seed=3)
    assert len(heldout) == 48 and len(dev) == 32
    gate = {e.id for e in prepared.examples}
    assert not {e.id for e in heldout} & {e.id for e in dev}
    assert not gate & ({e.id for e in heldout} | {e.id for e in dev})  # the gate's sample is not reused
    order = [e.id for e in seeded_order(prepared)]
    assert [e.id for e in heldout] == order[40:88]  # the gate's seed, not the search's, orders them
    assert splits(prepared, heldout_size=48, seed=3)[1] == dev


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
        heldout, dev = splits(prepared, budget=Budget(calls=400))
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
            result = run(prepared, template, GOOD, budget=Budget(calls=250))
            winner = result.winner_source.split("#}", 1)[1]  # the spec names each run's server
            outcomes.append((winner, [(t["origin"], t["correct"]) for t in result.trace]))
    assert outcomes[0][1] and outcomes[0] == outcomes[1]


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


def test_a_budget_that_cannot_score_the_head_on_held_out_stops_before_choosing_a_route(tmp_path, data_dir):
    with fake_openai_server() as server:
        prepared, template = prepared_for(tmp_path, server.url, BAD)
        result = run(prepared, template, GOOD, budget=Budget(calls=5))  # fewer calls than held-out examples
        assert server.requests <= 5
    assert result.status == "no_suggestion" and result.reason == "the budget does not cover scoring the head"
    assert result.evidence == {} and result.finalists == [] and result.patch is None


def test_a_candidate_not_scored_on_dev_is_never_ranked():
    from lpo_ci.editable import EditableTemplate
    from lpo_ci.optimize.search import Node

    node = Node(EditableTemplate("Say what this is.\n\nQ: {{ input }}\nA:"), frozenset(), "swap")
    with pytest.raises(ValueError, match="the swap candidate has not been scored on the dev split"):
        node.correct()


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
    options = OptimizeOptions(budget=Budget(calls=100), heldout_size=16, dev_size=16, rungs=(8, 16), rounds=2)
    result = asyncio.run(optimize_template(head_source=template.source, base_source=base,
                                           relpath=template.relpath, prepared=prepared, options=options))
    spent = result.budget["spent"]["calls"]
    assert 0 < spent <= 100
    assert result.mark_sources == ["diff"] and result.marks
    assert result.status in ("suggested", "no_suggestion") and result.reason
    assert result.curve and result.curve[0]["calls"] <= spent
    assert result.fluency["checked"] > 0  # the guard judged the candidates with the embedded model
    assert result.revert is not None and result.revert["source"] == base
    if result.status == "suggested":
        assert result.evidence["strength"] in ("strong", "moderate") and result.patch


# --- evidence: what the held-out split can show, before the search --------------------------

from lpo_ci.optimize import evidence  # noqa: E402
from lpo_ci.optimize.evidence import GateEvidence, assess, choose_route, holm, plan_splits, upper_bound  # noqa: E402


def test_clopper_pearson_bound_and_holm():
    assert upper_bound(0, 32, 0.025) == pytest.approx(1 - 0.025 ** (1 / 32), abs=1e-9)
    assert evidence.binomial_cdf(3, 20, upper_bound(3, 20, 0.05)) == pytest.approx(0.05)  # its definition
    assert upper_bound(5, 5, 0.05) == 1.0
    assert holm([0.01, 0.04], 0.05) == [True, True]
    assert holm([0.03, 0.04], 0.05) == [False, False]  # the smallest must pass alpha / 2 first
    assert holm([0.001, 0.2, 0.02], 0.05) == [True, False, True]


def test_splits_come_from_beyond_the_gates_sample_or_from_the_whole_small_dataset():
    big = list(range(250))
    gate = GateEvidence(n=48, base_accuracy=0.8, head_accuracy=0.55, right_to_wrong=14, wrong_to_right=2,
                        p_value=0.002)
    plan = plan_splits(big, 48, dev_size=32, heldout_size=None, gate=gate, alpha=0.05, tested=2, max_calls=None)
    assert plan.beyond_gate and min(plan.heldout + plan.dev) >= 48
    assert not set(plan.heldout) & set(plan.dev) and len(plan.dev) == 32
    # the size the gate's flips call for: a fix as good as the base passes with room to spare
    expected_p = evidence.mcnemar_one_sided(round(len(plan.heldout) * 14 / 48), round(len(plan.heldout) * 2 / 48))
    assert expected_p <= 0.05 / 2 / 2 and len(plan.heldout) <= evidence.MAX_HELDOUT
    small = list(range(48))  # the review-sentiment example: every row is in the gate's sample
    gate = GateEvidence(n=48, base_accuracy=1.0, head_accuracy=0.729, right_to_wrong=13, wrong_to_right=0,
                        p_value=1.2e-4)
    plan = plan_splits(small, 48, dev_size=32, heldout_size=None, gate=gate, alpha=0.05, tested=2, max_calls=300)
    assert not plan.beyond_gate and len(plan.heldout) + len(plan.dev) == 48
    assert len(plan.heldout) == 32 and len(plan.dev) == 16  # held-out large enough to show the fix
    assert "from all 48" in plan.reason


def test_the_route_is_chosen_before_the_search_from_what_the_held_out_split_can_show():
    gate = GateEvidence(n=48, base_accuracy=1.0, head_accuracy=0.729, right_to_wrong=13, wrong_to_right=0,
                        p_value=1.2e-4)
    strong = choose_route(head_wrong=9, n_heldout=32, gate=gate, has_base=True, alpha=0.05, tested=2)
    assert strong.name == "superiority" and strong.strength == "strong"
    # 32 held-out, the head right on 29: at most 3 pairs can flip, p = 0.125; the gate showed base >> head
    moderate = choose_route(head_wrong=3, n_heldout=32, gate=gate, has_base=True, alpha=0.05, tested=2)
    assert moderate.name == "non_inferiority" and moderate.strength == "moderate"
    assert "best possible p = 0.12" in moderate.statement and "base >> head" in moderate.statement
    assert moderate.margin == pytest.approx(0.1355, abs=1e-3)
    # 24 held-out examples cannot even bound a candidate within half the drop of the base
    too_few = choose_route(head_wrong=3, n_heldout=24, gate=gate, has_base=True, alpha=0.05, tested=2)
    assert too_few.name == "none" and "nor can 24 held-out examples" in too_few.statement
    weak_gate = GateEvidence(n=48, base_accuracy=0.9, head_accuracy=0.8, right_to_wrong=5, wrong_to_right=0,
                             p_value=0.03)
    none = choose_route(head_wrong=3, n_heldout=24, gate=weak_gate, has_base=True, alpha=0.05, tested=2)
    assert none.name == "none" and none.strength == "weak" and "will not be suggested" in none.statement
    assert choose_route(3, 24, gate, has_base=False, alpha=0.05, tested=2).name == "none"  # no base to compare


def test_a_suggestion_states_the_evidence_of_the_route_that_accepted_it():
    from lpo_ci.optimize.search import Finalist

    gate = GateEvidence(48, 1.0, 0.729, 13, 0, 1.2e-4)
    pick = Finalist(origin="swap", changes="'a' -> 'b'", dev=None, heldout=1.0, improved=3, worsened=0,
                    p_value=0.125, below_base=0, bound=0.09, accepted=True, strength="moderate", undone=0,
                    changed_tokens=1, source="b")
    moderate = Search._evidence_text(choose_route(3, 32, gate, True, 0.05, 2), pick, 0.975)
    assert moderate.startswith("at most 9.0% worse than the base") and "(p = 0.00012)" in moderate
    assert "(97.5% bound)" in moderate  # the level the bound was taken at: alpha 0.05 over 2 candidates
    strong = Search._evidence_text(choose_route(9, 32, gate, True, 0.05, 2), pick, 0.975)
    assert strong.startswith("p = 0.125 (one-sided exact McNemar against the head")
    with pytest.raises(ValueError, match="the none route accepts no candidate"):  # nothing to state: no route
        Search._evidence_text(choose_route(3, 24, gate, True, 0.05, 2), pick, 0.975)


def test_assessment_under_each_route():
    head = set(range(29))  # right on 29 of 32
    fixed, worse = set(range(32)), set(range(26))
    gate = GateEvidence(48, 1.0, 0.729, 13, 0, 1.2e-4)
    route = choose_route(3, 32, gate, True, 0.05, 2)
    base = set(range(32))
    fix, bad = assess(route, head, base, [fixed, worse], 32, 0.05)
    assert fix.accepted and fix.strength == "moderate" and fix.below_base == 0 and fix.bound < route.margin
    assert not bad.accepted and bad.strength == "none"
    superiority = choose_route(9, 32, gate, True, 0.05, 2)
    (a,) = assess(superiority, set(range(23)), None, [set(range(32))], 32, 0.05)
    assert a.accepted and a.strength == "strong" and a.p_value == pytest.approx(0.5 ** 9)
    (b,) = assess(superiority, set(range(23)), None, [set(range(26))], 32, 0.05)
    assert not b.accepted and b.strength == "weak"  # better, not significantly: shown, never suggested


# --- intent: what a fix keeps of the pull request's change -----------------------------------

def test_words_of_the_pull_request_a_candidate_undoes():
    from lpo_ci.editable import EditableTemplate
    from lpo_ci.optimize.intent import PullRequestChange

    base = EditableTemplate("Classify the review.\n\nReview: I love it.\nSentiment: positive\n\nReview: {{ r }}\n"
                            "Sentiment:")
    head = EditableTemplate(base.source.replace("review.", "review. Be brief and exact.")
                            .replace("positive", "negative"))
    change = PullRequestChange.of(base, head)
    assert change.size == 6  # "Be brief and exact ." and "negative" (for "positive": a rewrite counts once)
    assert change.undone(EditableTemplate(base.source)) == change.size
    keeps_sentence = EditableTemplate(head.source.replace("negative", "positive"))
    assert change.undone(keeps_sentence) == 1 and change.kept(keeps_sentence) == change.size - 1
    assert change.undone(head) == 0
    deleted = EditableTemplate(base.source.replace("Review: I love it.\nSentiment: positive\n\n", ""))
    gone = PullRequestChange.of(base, deleted)
    assert gone.size == 9 and gone.undone(EditableTemplate(base.source)) == 9  # the exemplar's words, restored


# --- a small user dataset, end to end on the loopback server ---------------------------------

REVIEW_SPEC = """{{# lpo:
  dataset:
    path: data/reviews.jsonl
    target: label
  scorer: exact
  api_base: {url}
  samples: 48
#}}
"""
REVIEW_BASE = """Classify the sentiment of each review as positive or negative.

Review: I love it.
Sentiment: positive

Review: It broke.
Sentiment: negative

Review: {{ review }}
Sentiment:"""
WANTED = "Be brief and exact."


def review_rows(n: int = 48) -> list[dict]:
    words = ("great", "awful")
    return [{"id": f"r{k:02d}", "review": f"Item {k} is {words[k % 2]}.", "label": ("positive", "negative")[k % 2]}
            for k in range(n)]


def review_model(error_rate: float):
    """Right on every review while the first exemplar reads 'I love it.' -> positive; else wrong
    on the reviews whose hash falls under ``error_rate``."""
    import hashlib

    def answer(prompt: str) -> str:
        review = prompt.rsplit("Review: ", 1)[1].split("\n", 1)[0]
        truth = "positive" if "great" in review else "negative"
        if "Review: I love it.\nSentiment: positive" in prompt:
            return truth
        flip = int(hashlib.sha256(review.encode()).hexdigest(), 16) % 1000 < error_rate * 1000
        return {"positive": "negative", "negative": "positive"}[truth] if flip else truth

    return answer


def review_project(tmp_path: Path, url: str, head_body: str, rows: list[dict]):
    import json as _json

    (tmp_path / "data").mkdir(parents=True, exist_ok=True)
    (tmp_path / "data" / "reviews.jsonl").write_text("".join(_json.dumps(r) + "\n" for r in rows), encoding="utf-8")
    (tmp_path / "pyproject.toml").write_text('[tool.lpo_ci]\nmodel = "openai/fake"\n', encoding="utf-8")
    path = tmp_path / "prompts" / "reviews.j2"
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(REVIEW_SPEC.format(url=url) + head_body, encoding="utf-8")
    settings = load_settings(tmp_path)
    return Session(settings, use_git=False), read_template(settings, path)


def gate_and_optimize(tmp_path, server, head_body, rows, **options):
    from lpo_ci.evaluate import evaluate
    from lpo_ci.gate import GateRules, decide
    from lpo_ci.render import compile_template

    session, template = review_project(tmp_path, server.url, head_body, rows)
    prepared = session.prepare(template)
    base = REVIEW_SPEC.format(url=server.url) + REVIEW_BASE

    async def both():
        return await asyncio.gather(*(evaluate(compile_template(src, "t"), prepared.examples, prepared.client,
                                               prepared.scorer) for src in (template.source, base)))

    head_result, base_result = asyncio.run(both())
    verdict = decide(head_result, base_result.outcomes(), "base", GateRules())
    options.setdefault("fluency", False)
    options.setdefault("budget", Budget(calls=300))
    result = asyncio.run(optimize_template(head_source=template.source, base_source=base, relpath=template.relpath,
                                           prepared=prepared, options=OptimizeOptions(**options), gate=verdict))
    return verdict, result


def test_small_dataset_fix_keeps_the_new_sentence_and_says_how_strong_the_evidence_is(tmp_path):
    """The 48-row case: a wanted sentence added, the exemplars' labels inverted. The gate fails;
    the held-out split is sized from the whole dataset, so the one-token fix can be shown; the
    suggestion keeps the sentence, and the revert is reported apart."""
    head = REVIEW_BASE.replace("negative.", f"negative. {WANTED}").replace("Sentiment: positive", "Sentiment: X") \
        .replace("Sentiment: negative", "Sentiment: positive").replace("Sentiment: X", "Sentiment: negative")
    with fake_openai_server(answer=review_model(0.3)) as server:
        verdict, result = gate_and_optimize(tmp_path, server, head, review_rows())
    assert verdict.status == "fail"
    assert result.evidence["splits"]["beyond_gate"] is False  # no rows beyond the gate's 48
    assert result.evidence["splits"]["heldout"] + result.evidence["splits"]["dev"] == 48
    assert result.status == "suggested", result.reason
    assert result.evidence["strength"] in ("strong", "moderate") and result.evidence["statement"]
    assert WANTED in result.winner_source and "Review: I love it.\nSentiment: positive" in result.winner_source
    assert result.intent["pure_revert"] is False and result.intent["kept"] > result.intent["undone"]
    assert result.revert["heldout"] == 1.0 and WANTED not in result.revert["source"]
    assert result.heldout["winner"] == 1.0 and result.heldout["winner"] > result.heldout["head"]
    assert len(result.finalists) == 2 and {f["origin"] for f in result.finalists} >= {"revert"}
    assert all(list(f) == FINALIST_KEYS for f in result.to_dict()["finalists"])  # the report's rows


FINALIST_KEYS = ["origin", "changes", "dev", "heldout", "improved", "worsened", "p_value", "below_base", "bound",
                 "accepted", "strength", "undone", "changed_tokens", "source"]


def test_small_dataset_that_cannot_support_a_fix_says_so_and_suggests_nothing(tmp_path):
    """20 rows and a head wrong on few of them: no test can pass; said before the search,
    and the best candidate is reported as weak evidence, never as a suggestion."""
    head = REVIEW_BASE.replace("Sentiment: positive", "Sentiment: negative", 1)
    with fake_openai_server(answer=review_model(0.15)) as server:
        verdict, result = gate_and_optimize(tmp_path, server, head, review_rows(20))
    assert result.evidence["route"] == "none"
    assert "will not be suggested" in result.evidence["statement"] and "more examples" in result.evidence["statement"]
    assert "Evidence:" in result.announcement
    assert result.status == "no_suggestion" and result.patch is None and not result.suggestions
    assert result.evidence["strength"] in ("weak", "none")
    if result.evidence["strength"] == "weak":
        assert "weak evidence: not suggested" in result.reason


def test_the_suggestion_and_the_revert_are_shown_in_the_terminal_the_report_and_the_comment(tmp_path):
    from lpo_ci.github.comment import render
    from lpo_ci.github.report_view import load_report
    from lpo_ci.report import build_report, write_json
    from lpo_ci.runner import optimization_text

    head = REVIEW_BASE.replace("negative.", f"negative. {WANTED}").replace("Sentiment: positive", "Sentiment: X") \
        .replace("Sentiment: negative", "Sentiment: positive").replace("Sentiment: X", "Sentiment: negative")
    with fake_openai_server(answer=review_model(0.3)) as server:
        verdict, result = gate_and_optimize(tmp_path, server, head, review_rows())
    data = result.to_dict()
    text = optimization_text(data)
    assert f"keeps {result.intent['kept']} of the {result.intent['pr_words']} words your change added or removed" \
        in text
    assert "reverting your change restores 100.0% held-out accuracy" in text
    assert f"evidence: {result.evidence['strength']}" in text
    item = {"template": "prompts/reviews.j2", "line": 1, "status": "fail", "reason": verdict.reason,
            "data": "data/reviews.jsonl", "model": "openai/fake", **{k: v for k, v in verdict.to_dict().items()
                                                                     if k not in ("status", "reason")},
            "head": {"n": verdict.n_paired}, "usage": {"calls": 0}, "examples": [], "optimization": data}
    write_json(tmp_path / "r.json", build_report([item]))
    body = render(load_report(tmp_path / "r.json"), limit=65000)
    assert "Reverting your change instead restores 100.0%" in body
    assert f"{result.evidence['strength']} evidence" in body

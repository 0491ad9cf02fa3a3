"""Proposals change only marked tokens: LLM-free operators and LLM meta-prompt proposers."""

from __future__ import annotations

import asyncio
import random
import re

import pytest

from lpo_ci.cache import ResponseCache
from lpo_ci.editable import EditableTemplate
from lpo_ci.errors import SpecError
from lpo_ci.llm import ModelClient, ModelParams
from lpo_ci.optimize.marks import diff_marks, global_marks, llm_marks
from lpo_ci.optimize.proposers import (Failure, ProposalContext, build_proposers, numbered_spans,
                                       operators)
from tests.support.openai_server import fake_openai_server

SPEC = "{# lpo:\n  benchmark: bbh/boolean_expressions\n#}\n"
GOOD = SPEC + "Evaluate the result of a random Boolean expression.\n\nQ: not True is\nA: False\n\nQ: {{ input }}\nA:"
CHANGED = GOOD.replace("Evaluate the result of a random Boolean expression.", "Say what this is.")
DELETED = GOOD.replace("Q: not True is\nA: False\n\n", "")
LOOPY = SPEC + ("Réponds vite, s'il te plaît.\n{% for shot in shots -%}\nQ: {{ shot.q | trim }}\n"
                "A: {{ shot.a }}\n{% endfor %}\nQ: {{ input }}\nA:")
FAILURES = [Failure(prompt="Q: not True is\nA:", response="True", target="False")]


def context(head: str, base: str | None = None, marks=None, seed: int = 0) -> ProposalContext:
    template = EditableTemplate(head)
    base_template = EditableTemplate(base) if base else None
    if marks is None:
        marks = diff_marks(template, base_template) if base else global_marks(template)
    return ProposalContext(template, frozenset(marks), base_template, FAILURES, "bbh/boolean_expressions",
                           random.Random(seed))


def propose(proposer, ctx, n=6):
    return asyncio.run(proposer.propose(ctx, n))


@pytest.mark.parametrize("head, base", [(CHANGED, GOOD), (DELETED, GOOD), (LOOPY, None)])
def test_every_operator_changes_only_marked_tokens(head, base):
    ctx = context(head, base)
    for operator in operators():
        for candidate in propose(operator, ctx):
            assert candidate != head
            assert ctx.template.check(candidate, ctx.marks) is None, (operator.name, candidate)


@pytest.mark.parametrize("head", [CHANGED, DELETED])
def test_restore_gives_back_the_base_wording(head):
    (restore,) = [p for p in operators() if p.name == "restore"]
    assert GOOD in propose(restore, context(head, GOOD))


def test_diff_marks_cover_the_change_and_the_edges_of_a_deletion():
    changed = EditableTemplate(CHANGED)
    marked = {changed.tokens[i].text for i in diff_marks(changed, EditableTemplate(GOOD))}
    assert {"Say", "what", "this", "is"} <= marked and "Q" not in marked
    deleted = EditableTemplate(DELETED)
    words = [deleted.tokens[i].text for i in sorted(diff_marks(deleted, EditableTemplate(GOOD)))
             if not deleted.tokens[i].is_space]
    assert words and len(words) <= 4


def test_operators_are_deterministic_for_a_seed():
    runs = [[propose(op, context(LOOPY, seed=3)) for op in operators()] for _ in range(2)]
    assert runs[0] == runs[1]


def llm_client(server, tmp_path):
    return ModelClient(ModelParams(model="openai/fake", api_base=server.url, max_tokens=512),
                       cache=ResponseCache(tmp_path / "c"))


@pytest.mark.parametrize("style", ["ape", "apo", "pe2"])
def test_llm_proposers_edit_numbered_spans_only(tmp_path, style):
    def answer(prompt: str) -> str:
        if "Give one short reason" in prompt:  # APO's gradient step
            return "The instruction does not say what to evaluate."
        assert re.search(r'<edit id="1">', prompt)
        return "Let me think.\n1: Evaluate the result of a random Boolean expression.\n7: ignored\nnot a span"

    with fake_openai_server(answer=answer) as server:
        ctx = context(CHANGED, GOOD)
        (proposer,) = build_proposers([style], llm_client(server, tmp_path))
        candidates = propose(proposer, ctx, n=2)
        assert candidates and all(ctx.template.check(c, ctx.marks) is None for c in candidates)
        assert "Evaluate the result of a random Boolean expression." in candidates[0]


def test_garbage_answers_give_no_candidates(tmp_path):
    with fake_openai_server(answer=lambda prompt: "I would rather not.") as server:
        (proposer,) = build_proposers(["ape"], llm_client(server, tmp_path))
        assert propose(proposer, context(CHANGED, GOOD), n=2) == []


def test_llm_proposers_need_an_optimizer_model():
    with pytest.raises(SpecError, match="needs an optimizer model"):
        build_proposers(["pe2"], None)
    with pytest.raises(SpecError, match="unknown proposer"):
        build_proposers(["magic"], None)


def test_numbered_spans_show_the_marks():
    ctx = context(CHANGED, GOOD)
    tagged, runs = numbered_spans(ctx.template, ctx.marks)
    assert '<edit id="1">Say what this is' in tagged and len(runs) == 1


def test_llm_marks_parse_tags_and_reject_other_text(tmp_path):
    head = EditableTemplate(CHANGED)
    tagged = CHANGED.replace("Say what", "<edit>Say what</edit>")
    with fake_openai_server(answer=lambda prompt: f"```\n{tagged}\n```") as server:
        marks = asyncio.run(llm_marks(head, FAILURES, llm_client(server, tmp_path), "bbh"))
        assert {head.tokens[i].text for i in marks} == {"Say", "what"}
    with fake_openai_server(answer=lambda prompt: "Here is a better prompt: Think!") as server:
        assert asyncio.run(llm_marks(head, FAILURES, llm_client(server, tmp_path / "2"), "bbh")) == frozenset()

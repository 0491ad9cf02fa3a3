"""Proposals that change only the marked tokens.

Edit operators need no LLM (the embedded model follows no instructions):
delete, swap, restore the base wording, insert or substitute a phrase from
a bank. Each builds its candidates with ``template.replace`` on marked runs,
so locality holds by construction. LLM proposers (APE, APO, PE2 styles) see
the template with its marked spans numbered and answer ``N: new text`` per
span; we apply those lines ourselves, so a model cannot edit elsewhere. The
search still checks every candidate (syntax, variables).
"""

from __future__ import annotations

import asyncio
import random
import re
from dataclasses import dataclass
from typing import Callable, Protocol

from ..editable import EditableTemplate
from ..errors import SpecError
from .marks import regions

Edit = dict[tuple[int, int], str]


@dataclass(frozen=True)
class Failure:
    """A wrong or unparsable answer, shown to optimizer LLMs."""

    prompt: str
    response: str
    target: str


@dataclass
class ProposalContext:
    template: EditableTemplate  # the parent
    marks: frozenset[int]  # the tokens that may change
    base: EditableTemplate | None  # the base branch's version, for "restore"
    failures: list[Failure]
    task: str
    rng: random.Random  # seeded: proposals are deterministic for a seed


class Proposer(Protocol):
    name: str

    async def propose(self, ctx: ProposalContext, n: int) -> list[str]: ...


# --- helpers ---------------------------------------------------------------

def word_runs(template: EditableTemplate, marks: frozenset[int]) -> list[tuple[int, int]]:
    """Marked runs without their leading and trailing whitespace (non-empty ones only).

    Whitespace at a run's edge usually carries the layout (``\\n\\n`` before
    ``Q:``); leaving it alone keeps candidates well formed.
    """
    runs = []
    for first, last in template.runs(marks):
        while first < last and template.tokens[first].is_space:
            first += 1
        while last > first and template.tokens[last - 1].is_space:
            last -= 1
        if first < last:
            runs.append((first, last))
    return runs


def _marked_words(ctx: ProposalContext) -> list[int]:
    return [i for i in sorted(ctx.marks) if not ctx.template.tokens[i].is_space]


def _adjacent_space(ctx: ProposalContext, index: int) -> bool:
    """Token ``index`` exists, is marked and is whitespace (the caller checks it touches the word)."""
    tokens = ctx.template.tokens
    return 0 <= index < len(tokens) and index in ctx.marks and tokens[index].is_space


def _contiguous(template: EditableTemplate, a: int, b: int) -> bool:
    return template.tokens[a].end == template.tokens[b].start


def _finish(ctx: ProposalContext, edits: list[Edit], n: int) -> list[str]:
    """Distinct candidates that change something, at most ``n`` of them, sampled with the seeded rng."""
    seen, out = {ctx.template.source}, []
    for edit in edits:
        try:
            candidate = ctx.template.replace(edit)
        except ValueError:  # overlapping edits
            continue
        if candidate not in seen:
            seen.add(candidate)
            out.append(candidate)
    return out if len(out) <= n else ctx.rng.sample(out, n)


PUNCTUATION = tuple(".!?:;,")


def _fit(template: EditableTemplate, run: tuple[int, int], text: str) -> str:
    """Drop the final punctuation of new text when the source already has it right after the span
    (the span "Say what this is" of "Say what this is." answered with "Evaluate this.")."""
    end = template.tokens[run[1] - 1].end
    following = template.source[end:end + 1]
    if text and following in PUNCTUATION and text.endswith(following):
        return text[:-1]
    return text


def distribute(template: EditableTemplate, marks: frozenset[int], first: int, last: int,
               text: str) -> Edit | None:
    """Replace tokens [first, last) by ``text`` using marked tokens only, or None if impossible.

    Unmarked tokens inside the span must reappear in ``text`` in order; the
    marked stretches between them take whatever text lies in between.
    """
    groups, pattern, k = [], [], first
    while k < last:
        if k in marks:
            start = k
            while k < last and k in marks and (k == start or _contiguous(template, k - 1, k)):
                k += 1
            groups.append((start, k))
            pattern.append("(.*?)")
        else:
            pattern.append(re.escape(template.tokens[k].text))
            k += 1
    if not groups:
        return None
    match = re.fullmatch("".join(pattern), text, re.DOTALL)
    if match is None:
        return None
    return {run: match.group(g) for g, run in enumerate(groups, 1)}


CUE_LINE = re.compile(r"^\s*[A-Za-z][\w ]{0,20}:")  # "Q: ...", "Review: ...": data lines, not prose
LIST_MARKER = re.compile(r"^\s*(?:[-*\u2022]|\d+[.)]|[A-Za-z][.)])\s+")  # "1. ", "- ", "A. "
CONTENT_WORD = re.compile(r"[A-Za-z]{4,}")


def on_topic(text: str, template: EditableTemplate) -> bool:
    """Most of the proposal's content words occur in the template's own text: a base model
    drifts ("This text is a deck of playing cards."), and such a drift is not worth a call."""
    words = {w.lower() for w in CONTENT_WORD.findall(text)}
    known = {w.lower() for t in template.tokens for w in CONTENT_WORD.findall(t.text)}
    return bool(words) and len(words & known) >= len(words) / 2


def prose_spans(template: EditableTemplate, marks: frozenset[int], min_words: int = 3) -> list[tuple[int, int]]:
    """Marked stretches of a single line of prose (``min_words`` words or more, not a "Cue: value" line)."""
    spans = []
    for first, last in word_runs(template, marks):
        start = first
        for k in range(first, last + 1):
            if k < last and "\n" not in template.tokens[k].text:
                continue
            a, b = start, k
            while a < b and template.tokens[a].is_space:
                a += 1
            while b > a and template.tokens[b - 1].is_space:
                b -= 1
            start = k + 1
            if a == b or sum(template.tokens[i].text.isalpha() for i in range(a, b)) < min_words:
                continue
            line_start = template.source.rfind("\n", 0, template.tokens[a].start) + 1
            line_end = template.source.find("\n", template.tokens[a].start)
            line = template.source[line_start:line_end if line_end >= 0 else None]
            if not CUE_LINE.match(line) and template.tokens[a].text[0].isalpha():
                spans.append((a, b))
    return spans


# --- edit operators (no LLM) -------------------------------------------------

class DeleteOperator:
    """Drop a marked run, or one marked word with one marked space beside it."""

    name = "delete"

    async def propose(self, ctx: ProposalContext, n: int) -> list[str]:
        t = ctx.template
        edits: list[Edit] = [{run: ""} for run in word_runs(t, ctx.marks)]
        for i in _marked_words(ctx):
            first, last = i, i + 1
            after = _adjacent_space(ctx, i + 1) and _contiguous(t, i, i + 1)
            before = _adjacent_space(ctx, i - 1) and _contiguous(t, i - 1, i)
            if after and not ("\n" in t.tokens[i + 1].text and before and "\n" not in t.tokens[i - 1].text):
                last += 1  # "Hello world" -> "world"
            elif before:
                first -= 1  # "Hello world." -> "Hello."
            edits.append({(first, last): ""})
        return _finish(ctx, edits, n)


class SwapOperator:
    """Exchange two marked words, or two marked runs."""

    name = "swap"

    async def propose(self, ctx: ProposalContext, n: int) -> list[str]:
        t = ctx.template
        words = [(i, i + 1) for i in _marked_words(ctx)]
        runs = word_runs(t, ctx.marks)
        edits: list[Edit] = []
        for items in (words, runs if len(runs) > 1 else []):
            for k, a in enumerate(items):
                for b in items[k + 1:]:
                    if t.span_text(*a) != t.span_text(*b):
                        edits.append({a: t.span_text(*b), b: t.span_text(*a)})
        return _finish(ctx, edits, n)


class RestoreOperator:
    """Put back the base branch's wording where the head differs: region by region, then all at once.

    A pure deletion in the head is restored by re-inserting the base text
    next to a marked neighbouring token (``diff_marks`` marks those).
    """

    name = "restore"

    async def propose(self, ctx: ProposalContext, n: int) -> list[str]:
        edits = self.edits(ctx)
        return _finish(ctx, edits, len(edits))[:n]  # "all regions" first: the likeliest fix

    @staticmethod
    def edits(ctx: ProposalContext) -> list[Edit]:
        """One edit per region that can be restored; first, when there are several, all of them at once."""
        if ctx.base is None:
            return []
        t, marks = ctx.template, ctx.marks
        units, base_units = t.units, ctx.base.units
        edits: list[Edit] = []
        for i1, i2, j1, j2 in regions(t, ctx.base):
            replaced = [index for _, index in units[i1:i2] if index is not None]
            if len(replaced) < i2 - i1 or any(index is None for _, index in base_units[j1:j2]):
                continue  # Jinja syntax differs here: not ours to restore
            text = "".join(base_units[k][0] for k in range(j1, j2))
            if replaced:
                edit = distribute(t, marks, replaced[0], replaced[-1] + 1, text)
            else:
                edit = None
                before = units[i1 - 1][1] if i1 > 0 else None
                after = units[i1][1] if i1 < len(units) else None
                if before is not None:
                    edit = distribute(t, marks, before, before + 1, t.tokens[before].text + text)
                if edit is None and after is not None:
                    edit = distribute(t, marks, after, after + 1, text + t.tokens[after].text)
            if edit is not None:
                edits.append(edit)
        if len(edits) > 1:
            merged: Edit = {}
            for edit in edits:
                if any(run in merged for run in edit):
                    break  # two regions need one token: keep the single restores only
                merged.update(edit)
            else:
                edits.insert(0, merged)
        return edits


def phrase_bank() -> list[str]:
    from ..resources import templates_dir

    path = templates_dir() / "optimizer" / "phrases.txt"
    return [line.strip() for line in path.read_text(encoding="utf-8").splitlines()
            if line.strip() and not line.lstrip().startswith("#")]


class PhraseOperator:
    """Substitute a marked sentence with a phrase from the bank, or add one after (or before) it.

    Only prose: an instruction phrase in place of an exemplar's answer ("Sentiment: Answer the
    question.") may win on a small model, but no one would commit it.
    """

    name = "phrase"

    async def propose(self, ctx: ProposalContext, n: int) -> list[str]:
        t = ctx.template
        edits: list[Edit] = []
        for run in prose_spans(t, ctx.marks, min_words=1):
            text = t.span_text(*run)
            for phrase in phrase_bank():
                edits.append({run: _fit(t, run, phrase)})
                if text[-1] in ".!?:":
                    edits.append({run: f"{text} {phrase}"})
                elif text[0].isupper():
                    edits.append({run: f"{phrase} {text}"})
        return _finish(ctx, edits, n)


# --- the embedded base model as a rewriter ------------------------------------------

def rewrite_pairs() -> list[tuple[str, str]]:
    from ..resources import templates_dir

    lines = [line.strip() for line in (templates_dir() / "optimizer" / "rewrite_pairs.txt")
             .read_text(encoding="utf-8").splitlines() if not line.lstrip().startswith("#")]
    blocks = [block.strip() for block in "\n".join(lines).split("\n\n")]
    return [(original, rewritten) for original, _, rewritten in
            (block.partition("\n") for block in blocks if block.count("\n") == 1)]


@dataclass(frozen=True)
class Sampling:
    """How the rewriter samples (chosen by measurement: benchmarks/bench_lpo_rewrites.py)."""

    temperature: float = 0.8
    stop: tuple[str, ...] = ("\n",)
    shots: int = 6
    max_tokens: int = 48


class RewriteProposer:
    """The embedded base model rewrites a marked sentence by continuing "Original / Rewritten" pairs.

    A base model follows no instructions, but it continues a pattern: the few-shot prompt
    (``templates/optimizer/rewrite.j2``) ends with the marked sentence and an open
    "Rewritten:" cue, and the first line it writes is the proposal. Each sample gets its own
    seed and its own draw of the example pairs, so a rerun repeats it exactly (and from the cache).
    """

    name = "rewrite"

    def __init__(self, client_for_seed, sampling: Sampling = Sampling()):
        self.client_for_seed, self.sampling = client_for_seed, sampling

    async def propose(self, ctx: ProposalContext, n: int) -> list[str]:
        from ..resources import render_resource

        spans = prose_spans(ctx.template, ctx.marks)
        if not spans:
            return []
        pairs = rewrite_pairs()
        asks = []
        for k in range(n):
            span = spans[k % len(spans)]
            shots = ctx.rng.sample(pairs, min(self.sampling.shots, len(pairs)))
            text = ctx.template.span_text(*span)
            prompt = render_resource("optimizer/rewrite.j2", pairs=shots, span=text)
            asks.append((span, text, self.client_for_seed(ctx.rng.randrange(2 ** 31)).complete(prompt)))
        answers = await asyncio.gather(*(ask for _, _, ask in asks))
        edits: list[Edit] = []
        for (span, original, _), answer in zip(asks, answers):
            text = _clean(LIST_MARKER.sub("", (answer.text or "").strip().split("\n", 1)[0]))
            if text and text != original and len(text) <= 2 * len(original) + 40 and ":" not in text[:12] \
                    and on_topic(text, ctx.template):
                edits.append({span: _fit(ctx.template, span, text)})
        return _finish(ctx, edits, n)


# --- LLM proposers -------------------------------------------------------------

# "N: text", tolerating list bullets and bold ("- **1**: text"); not "1." or "1)", which
# number the reasoning steps of a PE2 answer.
SPAN_LINE = re.compile(r"^\s*(?:[-*]\s*)?\**\[?(\d+)\]?\**\s*:\s?(.*)$")


def numbered_spans(template: EditableTemplate, marks: frozenset[int]) -> tuple[str, list[tuple[int, int]]]:
    """The source with each marked run as ``<edit id="N">text</edit>``, and the runs in order."""
    runs = word_runs(template, marks)
    tagged = template.replace({run: f'<edit id="{k}">{template.span_text(*run)}</edit>'
                               for k, run in enumerate(runs, 1)})
    return tagged, runs


def _clean(text: str) -> str:
    text = text.strip()
    for quote in ('"', "'", "`", "\u201c"):
        closing = "\u201d" if quote == "\u201c" else quote
        if len(text) >= 2 and text[0] == quote and text[-1] == closing:
            text = text[1:-1]
    text = re.sub(r"</?edit[^>]*>", "", text)
    return text.replace("\\n", "\n")


def apply_span_answer(template: EditableTemplate, runs: list[tuple[int, int]], answer: str) -> str | None:
    """A candidate from the answer's ``N: new text`` lines (the last one per span wins, so
    reasoning before the final lines does not count); None if no line names a span."""
    edits: Edit = {}
    for line in answer.splitlines():
        match = SPAN_LINE.match(line)
        if match and 1 <= int(match.group(1)) <= len(runs):
            run = runs[int(match.group(1)) - 1]
            edits[run] = _fit(template, run, _clean(match.group(2)))
    if not edits:
        return None
    candidate = template.replace(edits)
    return None if candidate == template.source else candidate


class MetaPromptProposer:
    """An optimizer LLM driven by meta-prompts under ``templates/optimizer/``.

    ``steps`` run in sequence, each seeing the previous answer as ``feedback``
    (APO: the textual gradient, then the edit). The ``n`` proposals differ by
    a variant number in the prompt, so a deterministic model and our response
    cache still give distinct samples.
    """

    def __init__(self, name: str, client, steps: tuple[str, ...]):
        self.name, self.client, self.steps = name, client, steps

    async def propose(self, ctx: ProposalContext, n: int) -> list[str]:
        tagged, runs = numbered_spans(ctx.template, ctx.marks)
        if not runs:
            return []
        spans = [(k, ctx.template.span_text(*run).replace("\n", "\\n")) for k, run in enumerate(runs, 1)]
        answers = await asyncio.gather(*(self._ask(ctx, tagged, spans, k) for k in range(n)))
        seen, candidates = set(), []
        for answer in answers:
            candidate = apply_span_answer(ctx.template, runs, answer) if answer else None
            if candidate is not None and candidate not in seen:
                seen.add(candidate)
                candidates.append(candidate)
        return candidates

    async def _ask(self, ctx: ProposalContext, tagged: str, spans, variant: int) -> str | None:
        from ..resources import render_resource

        context = {"template": tagged, "spans": spans, "failures": ctx.failures, "task": ctx.task,
                   "variant": variant, "feedback": ""}
        answer = None
        for step in self.steps:
            completion = await self.client.complete(render_resource(f"optimizer/{step}.j2", **context))
            if not completion.text:
                return None
            answer = context["feedback"] = completion.text.strip()
        return answer


LLM_STEPS = {"ape": ("ape",), "apo": ("apo_gradient", "apo_edit"), "pe2": ("pe2",)}
OPERATORS: dict[str, Callable[[], Proposer]] = {"delete": DeleteOperator, "swap": SwapOperator,
                                                "restore": RestoreOperator, "phrase": PhraseOperator}


def operators() -> list[Proposer]:
    return [cls() for cls in OPERATORS.values()]


def llm_proposers(client, styles=("ape", "apo", "pe2")) -> list[Proposer]:
    return [MetaPromptProposer(style, client, LLM_STEPS[style]) for style in styles]


def build_proposers(names: list[str], client, rewriter=None) -> list[Proposer]:
    """Proposers by name; the LLM styles need an optimizer model, ``rewrite`` the embedded model
    (``rewriter`` gives its client for a seed)."""
    result: list[Proposer] = []
    for name in names:
        if name in OPERATORS:
            result.append(OPERATORS[name]())
        elif name == RewriteProposer.name:
            if rewriter is None:
                raise SpecError("the 'rewrite' proposer needs the embedded model",
                                hint="pip install 'lpo-ci[local]', or leave 'rewrite' out of the proposers")
            result.append(RewriteProposer(rewriter))
        elif name in LLM_STEPS:
            if client is None:
                raise SpecError(f"the '{name}' proposer needs an optimizer model",
                                hint="set an instruction-following optimizer model (any litellm model), "
                                     "or use only the operators: " + ", ".join(OPERATORS))
            result.append(MetaPromptProposer(name, client, LLM_STEPS[name]))
        else:
            raise SpecError(f"unknown proposer '{name}'",
                            hint="choose from " + ", ".join([*OPERATORS, RewriteProposer.name, *LLM_STEPS]))
    return result

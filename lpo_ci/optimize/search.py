"""The bounded search: beam search with successive halving, then a held-out check.

Examples are split once, by seed: a held-out split the search never sees
(the gate's own sample comes first in the seeded order, so the head's
held-out answers are usually cached already) and a dev split after it.
Each round, every template in the beam gets candidate edits of its marked
tokens; candidates are scored on growing slices of the dev split and the
worse half is dropped at each rung. The best template must then beat the
head on the held-out split by a one-sided exact McNemar test, or nothing is
suggested.
"""

from __future__ import annotations

import math
import random
from dataclasses import dataclass, field
from typing import Any, Callable

from ..editable import EditableTemplate, align
from ..evaluate import EvalResult, evaluate
from ..render import compile_template
from ..scoring import Outcome
from ..stats import mcnemar_one_sided
from .budget import BUDGET_EXHAUSTED, Budget, BudgetedClient

LLM_PROPOSERS = ("ape", "apo", "pe2")
OPERATORS = ("restore", "delete", "swap", "phrase")
FAILURES_SHOWN = 8


@dataclass
class OptimizeOptions:
    mode: str = "local"                 # "local": marked tokens only; "global": all literal text
    beam: int = 4
    candidates: int = 4                 # proposals per proposer and parent, per round
    rounds: int = 3
    dev_size: int = 32
    heldout_size: int = 48
    rungs: tuple[int, ...] = (8, 16, 32)  # successive-halving slice sizes of the dev split
    alpha: float = 0.05
    seed: int = 0
    proposers: tuple[str, ...] | None = None  # default: operators, plus LLM styles with an optimizer model
    # default: diff (with a base), llm (with an optimizer model), else ablation
    mark_sources: tuple[str, ...] | None = None
    optimizer_model: str | None = None
    budget: Budget = field(default_factory=Budget)


@dataclass
class Node:
    """A template in the search, with the tokens its children may change."""

    template: EditableTemplate
    marks: frozenset[int]
    origin: str
    dev: EvalResult | None = None
    changed_tokens: int = 0

    @property
    def source(self) -> str:
        return self.template.source

    def correct(self, n: int | None = None) -> int:
        results = self.dev.results[:n] if n else self.dev.results
        return sum(r.outcome is Outcome.CORRECT for r in results)


@dataclass
class OptimizationResult:
    status: str                          # "suggested" or "no_suggestion"
    reason: str
    mode: str
    head_source: str
    file: str = ""                       # the file the search edited (the patch's and suggestions' file)
    winner_source: str | None = None
    marks: list[int] = field(default_factory=list)
    marked_text: str = ""
    mark_sources: list[str] = field(default_factory=list)
    dev: dict[str, Any] = field(default_factory=dict)
    heldout: dict[str, Any] = field(default_factory=dict)
    patch: str | None = None
    suggestions: list[dict[str, Any]] = field(default_factory=list)
    changes: str = ""
    announcement: str = ""
    budget: dict[str, Any] = field(default_factory=dict)
    rejections: dict[str, int] = field(default_factory=dict)
    trace: list[dict[str, Any]] = field(default_factory=list)
    curve: list[dict[str, Any]] = field(default_factory=list)  # best dev accuracy against calls spent
    notes: list[str] = field(default_factory=list)  # where the budget cut the search

    def to_dict(self) -> dict[str, Any]:
        from dataclasses import asdict

        return asdict(self)


def split_examples(pool: list, seed: int, heldout_size: int, dev_size: int) -> tuple[list, list]:
    """Held-out first (the gate's sample comes first in the seeded order), dev after it."""
    from ..benchmarks import sample_examples

    ordered = sample_examples(pool, None, seed)
    heldout_size = min(heldout_size, len(ordered) // 2)
    return ordered[:heldout_size], ordered[heldout_size:heldout_size + dev_size]


def carry_marks(parent: Node, child: EditableTemplate) -> frozenset[int]:
    """The child's tokens that correspond to the parent's marks, plus the ones the edit wrote."""
    parent_units, child_units = parent.template.units, child.units
    marks: set[int] = set()
    for tag, i1, i2, j1, j2 in align(parent.template, child):
        if tag == "equal":
            marks.update(child_units[j1 + k][1] for k in range(i2 - i1)
                         if parent_units[i1 + k][1] in parent.marks)
        else:
            marks.update(child_units[k][1] for k in range(j1, j2) if child_units[k][1] is not None)
    return frozenset(marks)


def changed_token_count(head: EditableTemplate, other: EditableTemplate) -> int:
    return sum(max(i2 - i1, j2 - j1) for tag, i1, i2, j1, j2 in align(head, other) if tag != "equal")


class Search:
    """One optimization run over one template; see the module docstring."""

    def __init__(self, *, head_source: str, base_source: str | None, relpath: str, prepared,
                 options: OptimizeOptions, say: Callable[[str], None] | None = None,
                 compile: Callable[[str], Any] | None = None):
        from ..llm import ModelParams

        self.options = options
        self.relpath = relpath  # the file edited: the template, or a partial it includes
        # source of that file -> the compiled template whose prompts are scored
        self.compile = compile or (lambda source: compile_template(source, relpath))
        self.prepared = prepared
        self.say = say or (lambda text: None)
        self.budget = options.budget
        task_client = prepared.client
        self.client = BudgetedClient(task_client.params, cache=task_client.cache,
                                     concurrency=task_client.concurrency, retries=task_client.retries,
                                     timeout=task_client.timeout, budget=self.budget,
                                     router=task_client.router)
        self.optimizer_client = None
        if options.optimizer_model:
            params = ModelParams(model=options.optimizer_model, mode="chat", temperature=0.7,
                                 max_tokens=1024, seed=options.seed)
            self.optimizer_client = BudgetedClient(params, cache=task_client.cache,
                                                   concurrency=task_client.concurrency,
                                                   retries=task_client.retries, budget=self.budget)
        self.head = EditableTemplate(head_source, relpath)
        self.base = EditableTemplate(base_source, f"base:{relpath}") if base_source else None
        self.rng = random.Random(options.seed)
        self.heldout, self.dev = split_examples(prepared.pool, options.seed,
                                                options.heldout_size, options.dev_size)
        self.rungs = sorted({min(r, len(self.dev)) for r in options.rungs} | {len(self.dev)})
        self.rejections: dict[str, int] = {}
        self.trace: list[dict[str, Any]] = []
        self.notes: list[str] = []
        self.curve: list[dict[str, Any]] = []
        self.seen: set[str] = {head_source}

    # -- evaluation -------------------------------------------------------

    async def score(self, source: str, examples: list) -> EvalResult | None:
        """Outcomes on ``examples``, or None when the budget ran out part-way."""
        template = self.compile(source)
        result = await evaluate(template, examples, self.client, self.prepared.scorer)
        if any(r.error == BUDGET_EXHAUSTED for r in result.results):
            return None
        return result

    def failures(self, node: Node) -> list:
        from .proposers import Failure

        wrong = [r for r in node.dev.results if r.outcome in (Outcome.WRONG, Outcome.FORMAT_FAILURE)]
        by_id = {e.id: e for e in self.dev}
        template = self.compile(node.source)
        return [Failure(prompt=template.render(by_id[r.id].variables), response=r.response or "",
                        target=r.target) for r in wrong[:FAILURES_SHOWN]]

    # -- marks --------------------------------------------------------------

    async def choose_marks(self) -> tuple[frozenset[int], list[str]]:
        from . import marks as marking

        if self.options.mode == "global":
            return marking.global_marks(self.head), ["global"]
        sources = self.options.mark_sources
        if sources is None:
            sources = tuple(s for s, ok in (("diff", self.base is not None),
                                            ("llm", self.optimizer_client is not None)) if ok) or ("ablation",)
        chosen: list[frozenset[int]] = []
        if "diff" in sources and self.base is not None:
            chosen.append(marking.diff_marks(self.head, self.base))
        if "llm" in sources and self.optimizer_client is not None:
            tagged = await marking.llm_marks(self.head, self.failures(self.head_node), self.optimizer_client,
                                             self.prepared.task)
            if not tagged:
                self.rejections["llm marks unusable"] = self.rejections.get("llm marks unusable", 0) + 1
            chosen.append(tagged)
        if "ablation" in sources:
            chosen.append(await self.ablation_marks())
        return marking.combine(*chosen), list(sources)

    async def ablation_marks(self, units: int = 2) -> frozenset[int]:
        """No LLM, no base: delete each line of literal text in turn on a minibatch and
        mark the lines whose removal moves accuracy most."""
        lines: list[list[int]] = []
        current: list[int] = []
        for token in self.head.tokens:
            if "\n" in token.text:
                if current:
                    lines.append(current)
                current = []
            elif not token.is_space or current:
                current.append(token.index)
        if current:
            lines.append(current)
        batch = self.dev[:self.rungs[0]]
        base_correct = self.head_node.correct(len(batch))
        effects = []
        for line in lines:
            while line and self.head.tokens[line[-1]].is_space:
                line = line[:-1]
            if not line:
                continue
            source = self.head.replace({(line[0], line[-1] + 1): ""})
            if self.head.check(source, frozenset(line)) is not None:
                continue
            result = await self.score(source, batch)
            if result is None:
                break
            effects.append((abs(result.count(Outcome.CORRECT) - base_correct), line))
        effects.sort(key=lambda item: -item[0])
        chosen = [index for effect, line in effects[:units] if effect > 0 for index in line]
        return frozenset(chosen or [t.index for t in self.head.words()])

    # -- the search ---------------------------------------------------------

    def proposers(self):
        from .proposers import build_proposers

        names = self.options.proposers
        if names is None:
            names = OPERATORS + (LLM_PROPOSERS if self.optimizer_client is not None else ())
        if self.base is None:
            names = tuple(n for n in names if n != "restore")
        return build_proposers(list(names), self.optimizer_client)

    def announce(self, marks: frozenset[int], proposers: list) -> str:
        o = self.options
        per_round = o.beam * o.candidates * max(1, len(proposers))
        halving = self.halving_cost(per_round)
        planned = len(self.dev) + o.rounds * halving + 2 * len(self.heldout)  # head and winner held-out
        cap = planned if self.budget.calls is None else min(planned, self.budget.calls)
        text = (f"LPO ({o.mode}): {len(marks)} editable tokens marked, beam {o.beam}, up to {per_round} "
                f"candidates a round for {o.rounds} rounds, rungs {'/'.join(map(str, self.rungs))} of "
                f"{len(self.dev)} dev examples, {len(self.heldout)} held-out; will spend at most {cap} "
                f"model calls (budget {self.budget.describe()}, {self.budget.reserved_calls} of them kept for "
                f"the winner's held-out check); cached calls are free")
        self.say(text)
        return text

    def record_curve(self, best: Node) -> None:
        self.curve.append({"calls": self.budget.spent_calls, "dev_accuracy": best.correct() / len(self.dev)})

    async def propose(self, parent: Node, proposers) -> list[Node]:
        from .proposers import ProposalContext

        ctx = ProposalContext(template=parent.template, marks=parent.marks, base=self.base,
                              failures=self.failures(parent), task=self.prepared.task, rng=self.rng)
        children = []
        for proposer in proposers:
            if self.budget.reason_to_stop() is not None:
                break
            for source in await proposer.propose(ctx, self.options.candidates):
                reason = parent.template.check(source, parent.marks)
                if reason is None and source in self.seen:
                    reason = "duplicate"
                if reason is not None:
                    self.rejections[reason] = self.rejections.get(reason, 0) + 1
                    continue
                self.seen.add(source)
                child_template = EditableTemplate(source, self.relpath)
                child = Node(child_template, carry_marks(parent, child_template), proposer.name,
                             changed_tokens=changed_token_count(self.head, child_template))
                children.append(child)
        return children

    def halving_cost(self, count: int) -> int:
        return sum(size * math.ceil(count / 2 ** rung) for rung, size in enumerate(self.rungs))

    def affordable(self, children: list[Node]) -> list[Node]:
        """Interleave proposers (restore first) and keep what the call budget can finish."""
        by_origin: dict[str, list[Node]] = {}
        for child in children:
            by_origin.setdefault(child.origin, []).append(child)
        queues = list(by_origin.values())
        ordered = [queue[k] for k in range(max(map(len, queues), default=0)) for queue in queues
                   if k < len(queue)]
        if self.budget.calls is None:
            return ordered
        remaining = self.budget.calls - self.budget.reserved_calls - self.budget.spent_calls
        count = len(ordered)
        while count and self.halving_cost(count) > remaining:
            count -= 1
        if count < len(ordered):
            self.notes.append(f"after {self.budget.spent_calls} calls, the budget left room to score "
                              + (f"{count} of the {len(ordered)} candidates" if count
                                 else f"none of the {len(ordered)} candidates")
                              + " on the dev rungs")
        return ordered[:count]

    async def halve(self, candidates: list[Node], round_: int) -> list[Node]:
        """Successive halving on growing dev slices; drops candidates the budget cannot finish."""
        survivors = candidates
        for rung, size in enumerate(self.rungs):
            scored = []
            for node in survivors:
                result = await self.score(node.source, self.dev[:size])
                if result is None:
                    break
                node.dev = result
                scored.append(node)
                self.trace.append({"round": round_, "rung": size, "origin": node.origin,
                                   "correct": result.count(Outcome.CORRECT), "n": size,
                                   "changed_tokens": node.changed_tokens, "calls": self.budget.spent_calls})
            survivors = sorted(scored, key=lambda n: (-n.correct(), n.changed_tokens))
            if rung < len(self.rungs) - 1:
                survivors = survivors[:max(1, math.ceil(len(survivors) / 2))]
            if self.budget.reason_to_stop() is not None:
                return [n for n in survivors if n.dev is not None and n.dev.n == len(self.dev)]
        return survivors

    async def run(self) -> OptimizationResult:
        o = self.options
        self.budget.restart_clock()
        result = OptimizationResult(status="no_suggestion", reason="", mode=o.mode,
                                    head_source=self.head.source, file=self.relpath)
        if len(self.dev) < 2 or not self.heldout:
            result.reason = f"too few examples to optimize ({len(self.dev) + len(self.heldout)})"
            return result
        # The head's held-out answers never guide the search; scoring them first (mostly
        # cached by the gate) leaves only the winner's to keep in reserve.
        self.budget.reserved_calls = len(self.heldout)
        self.head_heldout = await self.score(self.head.source, self.heldout)
        head_dev = await self.score(self.head.source, self.dev) if self.head_heldout else None
        if head_dev is None:
            result.reason = "the budget does not cover scoring the head"
            return self._finish(result)
        head = self.head_node = Node(self.head, frozenset(), "head", dev=head_dev)
        head.marks, sources = await self.choose_marks()
        result.marks, result.mark_sources = sorted(head.marks), sources
        result.marked_text = self.head.with_edit_tags(head.marks)
        proposers = self.proposers()
        result.announcement = self.announce(head.marks, proposers)
        if not head.marks:
            result.reason = "nothing to edit: no editable tokens were marked"
            return self._finish(result)
        beam = [head]
        self.record_curve(head)
        proposed = 0
        for round_ in range(o.rounds):
            children = []
            for parent in beam:
                children += await self.propose(parent, proposers)
            proposed += len(children)
            children = self.affordable(children)
            if not children:
                break
            finished = await self.halve(children, round_)
            beam = sorted(beam + finished, key=lambda n: (-n.correct(), n.changed_tokens))[:o.beam]
            self.record_curve(beam[0])
            if self.budget.reason_to_stop() is not None or beam[0].correct() == len(self.dev):
                break  # out of budget, or nothing left to win on dev
        best = beam[0]
        result.dev = {"n": len(self.dev), "head": head.correct() / len(self.dev),
                      "winner": best.correct() / len(self.dev)}
        if best is head:
            result.reason = self._no_winner(proposed)
            return self._finish(result)
        return await self._accept(result, head, best)

    def _no_winner(self, proposed: int) -> str:
        """Why nothing is suggested: nothing was tried (and why), or nothing won."""
        tried = sum(1 for step in self.trace if step["rung"] == self.rungs[0])
        if tried:
            return f"no candidate beat the head on the dev split ({tried} tried)"
        if proposed or self.budget.reason_to_stop() is not None:
            return (f"no candidate was tried: the budget ({self.budget.describe()}) was spent scoring the "
                    f"head ({self.budget.spent_calls} calls, {self.budget.reserved_calls} kept for the "
                    f"held-out check)")
        rejected = sum(self.rejections.values())
        if rejected:
            return (f"no candidate was tried: all {rejected} proposals were rejected ("
                    + ", ".join(f"{why}: {n}" for why, n in sorted(self.rejections.items())) + ")")
        return "no candidate was tried: no proposer found an edit of the marked tokens"

    async def _accept(self, result: OptimizationResult, head: Node, best: Node) -> OptimizationResult:
        from .. import patch

        self.client.use_reserve = True
        head_out = self.head_heldout
        best_out = await self.score(best.source, self.heldout)
        if best_out is None:
            result.reason = "the budget ran out during the held-out check"
            return self._finish(result)
        head_right = {r.id for r in head_out.results if r.outcome is Outcome.CORRECT}
        best_right = {r.id for r in best_out.results if r.outcome is Outcome.CORRECT}
        improved, worsened = len(best_right - head_right), len(head_right - best_right)
        p_value = mcnemar_one_sided(improved, worsened)
        n = len(self.heldout)
        result.heldout = {"n": n, "head": len(head_right) / n, "winner": len(best_right) / n,
                          "improved": improved, "worsened": worsened, "p_value": p_value}
        result.winner_source = best.source
        result.changes = patch.describe(patch.token_changes(head.source, best.source))
        if improved > worsened and p_value < self.options.alpha:
            result.status = "suggested"
            result.reason = (f"held-out accuracy {len(head_right) / n:.1%} -> {len(best_right) / n:.1%}, "
                             f"p = {p_value:.3g} < alpha {self.options.alpha}")
            result.patch = patch.unified_diff(head.source, best.source, self.relpath)
            result.suggestions = [{"path": self.relpath, "start_line": s.start_line, "end_line": s.end_line,
                                   "replacement": s.replacement, "body": s.block()}
                                  for s in patch.suggestions(head.source, best.source)]
        else:
            result.reason = (f"the best dev candidate did not beat the head on held-out examples "
                             f"({len(head_right) / n:.1%} -> {len(best_right) / n:.1%}, p = {p_value:.3g})")
        return self._finish(result)

    def _finish(self, result: OptimizationResult) -> OptimizationResult:
        result.budget = self.budget.to_dict()
        result.rejections = dict(sorted(self.rejections.items()))
        result.trace = self.trace
        result.curve = self.curve
        result.notes = self.notes
        return result


async def optimize_template(*, head_source: str, base_source: str | None, relpath: str, prepared,
                            options: OptimizeOptions, say=None, compile=None) -> OptimizationResult:
    """Run one bounded LPO search (see ``Search``); ``compile`` turns a candidate text of the
    file ``relpath`` into the template to score (a partial is scored through its includer)."""
    return await Search(head_source=head_source, base_source=base_source, relpath=relpath,
                        prepared=prepared, options=options, say=say, compile=compile).run()

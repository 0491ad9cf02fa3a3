"""Score one template, head against its reference, and decide its verdict.

The one place where spec, data, rendering, model calls, scoring and the gate
meet; the pytest plugin and the command line are thin layers over it.
"""

from __future__ import annotations

import asyncio
import hashlib
import json
import time
from dataclasses import dataclass, field
from typing import Any

from . import vcs
from .baseline import Baseline
from .cache import ResponseCache
from .errors import EvaluationError, SpecError
from .evaluate import EvalResult, evaluate
from .gate import ERROR, GateRules, Verdict, decide
from .llm import ModelClient, ModelParams, Usage
from .render import compile_template
from .spec import Settings, TemplateFile, TestSpec

FLIPS_SHOWN = 3
ERROR_HINT = ("check the provider (model name, API key, api_base) and rerun: "
              "finished responses are cached, so the rerun resumes")


def resolve_model(spec: TestSpec) -> str:
    """The configured model, else the embedded local model when it is installed."""
    from . import local_model

    if spec.model:
        local_model.check_model(spec.model, **spec.where("model"))
        return spec.model
    if local_model.is_available():
        return local_model.DEFAULT_LOCAL_MODEL
    raise SpecError("no model configured and the embedded local model is not installed",
                    **spec.where("model"), hint=local_model.INSTALL_HINT)


def data_label(spec: TestSpec) -> str:
    if spec.benchmark:
        return spec.benchmark
    if isinstance(spec.dataset, dict):
        return spec.dataset.get("path") or spec.dataset.get("hub") or "dataset"
    return str(spec.dataset)


@dataclass
class Prepared:
    """A template ready to score: its examples, scorer and model client."""

    template: TemplateFile
    examples: list
    scorer: Any
    client: ModelClient
    fingerprint: str
    pool: list = field(default_factory=list)  # every example, for the optimizer's splits
    task: str = ""  # what the data is, for optimizer meta-prompts


@dataclass
class ItemReport:
    template: str
    line: int
    data: str
    model: str | None
    verdict: Verdict
    head: EvalResult | None = None
    base: EvalResult | None = None
    base_rev: str | None = None
    seconds: float = 0.0
    usage: Usage = field(default_factory=Usage)
    prepared: Prepared | None = None  # examples, scorer and client: reused by the optimizer
    base_source: str | None = None  # the base version's text, for the optimizer

    @property
    def status(self) -> str:
        return self.verdict.status

    @property
    def fingerprint(self) -> str | None:
        return self.prepared.fingerprint if self.prepared else None

    def to_dict(self) -> dict[str, Any]:
        base_by_id = {r.id: r for r in self.base.results} if self.base else {}
        examples = []
        for result in (self.head.results if self.head else []):
            base = base_by_id.get(result.id)
            entry = {"id": result.id, "target": result.target,
                     "head": {k: v for k, v in result.to_dict().items() if k not in ("id", "target")}}
            entry["base"] = ({k: v for k, v in base.to_dict().items() if k not in ("id", "target")}
                             if base is not None else None)
            examples.append(entry)
        return {
            "template": self.template, "line": self.line, "data": self.data, "model": self.model,
            "status": self.status, "reason": self.verdict.reason, "base_rev": self.base_rev,
            **{k: v for k, v in self.verdict.to_dict().items() if k not in ("status", "reason")},
            "head": self.head.summary() if self.head else None,
            "base": self.base.summary() if self.base else None,
            "usage": self.usage.to_dict(), "seconds": round(self.seconds, 3),
            "fingerprint": self.fingerprint,
            "examples": examples,
        }


class Session:
    """Shared state for a run: settings, response cache, baseline, base commit."""

    def __init__(self, settings: Settings, *, base_ref: str | None = None, use_git: bool = True):
        import sys

        self.settings = settings
        if str(settings.root) not in sys.path:
            sys.path.insert(0, str(settings.root))  # user scorers are 'module:function' in the project
        self.cache = ResponseCache(settings.cache_dir)
        self.baseline = Baseline(settings.baseline)
        self._base_ref = base_ref
        self._use_git = use_git
        self._base_rev: str | None | bool = False  # False: not resolved yet

    @property
    def base_rev(self) -> str | None:
        if self._base_rev is False:
            self._base_rev = vcs.resolve_base(self.settings.root, self._base_ref) if self._use_git else None
        return self._base_rev

    def prepare(self, template: TemplateFile) -> Prepared:
        """Load the data and build the scorer and client (errors name the spec line)."""
        from . import benchmarks
        from .scoring import get_scorer

        spec = template.spec
        if spec.benchmark:
            benchmark = benchmarks.get_benchmark(spec.benchmark, **spec.where("benchmark"))
            examples = benchmarks.load_benchmark(benchmark.name, data_dir=self.settings.data_dir)
            scorer_name = spec.scorer or benchmark.scorer
        else:
            source = benchmarks.DatasetSource.from_spec(spec.dataset, **spec.where("dataset"))
            examples = benchmarks.load_user_dataset(source, root=self.settings.root, **spec.where("dataset"))
            scorer_name = spec.scorer or "exact"
        pool = examples
        examples = benchmarks.sample_examples(pool, spec.samples, spec.seed)
        options = {"pattern": spec.pattern} if spec.pattern else None
        scorer = get_scorer(scorer_name, options, **spec.where("scorer"))
        params = ModelParams(model=resolve_model(spec), mode=spec.mode, temperature=spec.temperature,
                             max_tokens=spec.max_tokens, stop=tuple(spec.stop) if spec.stop else None,
                             api_base=spec.api_base, seed=spec.seed)
        client = ModelClient(params, cache=self.cache, concurrency=self.settings.concurrency,
                             retries=self.settings.retries, timeout=spec.timeout)
        fingerprint = hashlib.sha256(json.dumps(
            [data_label(spec), scorer_name, spec.pattern, params.request(""), spec.samples, spec.seed,
             [e.id for e in examples]], sort_keys=True, default=str).encode()).hexdigest()[:16]
        return Prepared(template, examples, scorer, client, fingerprint, pool, data_label(spec))

    def run(self, template: TemplateFile, progress=None) -> ItemReport:
        return asyncio.run(self.run_async(template, progress))

    async def run_async(self, template: TemplateFile, progress=None) -> ItemReport:
        started = time.perf_counter()
        spec = template.spec
        prepared = self.prepare(template)
        head_template = compile_template(template.source, template.path)
        base_source = vcs.show(self.settings.root, self.base_rev, template.relpath) if self.base_rev else None
        rules = GateRules(tolerance=spec.tolerance, alpha=spec.alpha, min_accuracy=spec.min_accuracy,
                          max_error_rate=spec.max_error_rate)
        report = ItemReport(template=template.relpath, line=template.spec_line, data=data_label(spec),
                            model=prepared.client.params.model, verdict=Verdict(ERROR, "", "none"),
                            base_rev=self.base_rev, prepared=prepared, base_source=base_source)
        changed = base_source is not None and base_source != template.source
        update = None
        if progress is not None:  # a tqdm-like bar: total known only now
            progress.total = len(prepared.examples) * (2 if changed else 1)
            progress.refresh()
            update = progress.update
        head_task = evaluate(head_template, prepared.examples, prepared.client, prepared.scorer, update)
        if base_source is not None and not changed:
            head = await head_task
            report.head, report.base = head, head
            report.verdict = decide(head, head.outcomes(), "unchanged", rules)
        elif base_source is not None:
            base_template = compile_template(base_source, f"{self.base_rev[:12]}:{template.relpath}")
            base_task = evaluate(base_template, prepared.examples, prepared.client, prepared.scorer, update)
            head, base = await asyncio.gather(head_task, base_task)
            report.head, report.base = head, base
            report.verdict = decide(head, base.outcomes(), "base", rules, base.first_error())
        else:
            head = await head_task
            report.head = head
            stored = self.baseline.outcomes(template.relpath, prepared.fingerprint)
            report.verdict = decide(head, stored, "baseline" if stored is not None else "none", rules)
        for result in (report.head, report.base if report.base is not report.head else None):
            if result is not None:
                report.usage.merge(result.usage)
        report.seconds = time.perf_counter() - started
        return report

    def optimize(self, template: TemplateFile, report: ItemReport, options, say=None):
        """Run the bounded LPO search on a scored template (see ``lpo_ci.optimize``)."""
        from .optimize import optimize_template

        return asyncio.run(optimize_template(
            head_source=template.source, base_source=report.base_source, relpath=template.relpath,
            prepared=report.prepared, options=options, gate=report.verdict, say=say))


def optimization_text(optimization: dict[str, Any]) -> str:
    """The optimizer's outcome as the terminal shows it."""
    budget = optimization["budget"]
    spent, limits = budget["spent"], budget["limits"]
    lines = [f"  LPO ({optimization['mode']}): {optimization['status'].replace('_', ' ')}: "
             f"{optimization['reason']}"]
    if optimization.get("dev"):
        dev, held = optimization["dev"], optimization.get("heldout") or {}
        line = f"    dev accuracy {dev['head']:.1%} -> {dev['winner']:.1%} (n={dev['n']})"
        if held:
            line += f"; held-out {held['head']:.1%} -> {held['winner']:.1%} (n={held['n']})"
        lines.append(line)
    lines += [f"    {line}" for line in fix_lines(optimization)]
    lines.append(f"    budget: {spent['calls']} of {limits['calls']} calls, {spent['tokens']} tokens, "
                 f"${spent['usd']:.4f}, {spent['seconds']:.1f} s"
                 + (f" (stopped by {budget['stopped_by']})" if budget.get("stopped_by") else ""))
    if optimization.get("patch"):
        lines.append("    suggested patch:")
        lines += ["      " + line for line in optimization["patch"].splitlines()]
    return "\n".join(lines)


def fix_lines(optimization: dict[str, Any]) -> list[str]:
    """What the suggestion keeps of the pull request, what a plain revert would give, and how
    strong the evidence is: shown with every optimization result."""
    lines = []
    intent, revert = optimization.get("intent") or {}, optimization.get("revert")
    held = optimization.get("heldout") or {}
    if optimization["status"] == "suggested" and intent:
        if intent.get("pure_revert"):
            lines.append("suggested fix: revert your change (no candidate that keeps more of it was accepted)")
        else:
            lines.append(f"suggested fix: keeps {intent['kept']} of the {intent['pr_words']} words your change "
                         f"added or removed, undoes {intent['undone']}")
    if revert and held:
        verdict = "accepted" if revert["accepted"] else "not accepted"
        lines.append(f"reverting your change restores {revert['heldout']:.1%} held-out accuracy "
                     f"(head {held['head']:.1%}, p = {revert['p_value']:.3g}, {verdict})")
    evidence = optimization.get("evidence") or {}
    if evidence.get("route"):
        lines.append(f"evidence: {evidence.get('strength', 'none')} ({evidence['route'].replace('_', '-')}): "
                     f"{evidence.get('statement', '')}")
    return lines


def failure_text(report: ItemReport) -> str:
    """What a failed or errored item shows: the numbers behind the verdict."""
    v = report.verdict
    lines = [f"{report.template}:{report.line}: {v.status.upper()}: {v.reason}"]

    def pct(value, interval):
        if value is None:
            return "n/a"
        return f"{value:.1%} [{interval[0]:.1%}, {interval[1]:.1%}]" if interval else f"{value:.1%}"

    if v.base_accuracy is not None:
        lines.append(f"  {v.reference} accuracy: {pct(v.base_accuracy, v.base_interval)}  "
                     f"(95% interval, n={v.n_paired})")
    lines.append(f"  head accuracy: {pct(v.head_accuracy, v.head_interval)}")
    if v.delta is not None:
        lines.append(f"  delta: {v.delta:+.1%}   one-sided exact McNemar p = {v.p_value:.3g}   "
                     f"right->wrong {len(v.right_to_wrong)}, wrong->right {len(v.wrong_to_right)}")
    if report.head and v.right_to_wrong:
        by_id = {r.id: r for r in report.head.results}
        lines.append("  examples that flipped from right to wrong:")
        for example_id in v.right_to_wrong[:FLIPS_SHOWN]:
            r = by_id[example_id]
            answer = (r.response or "").strip().replace("\n", " ")
            lines.append(f"    - #{example_id}: expected {r.target!r}, head answered {answer[:120]!r}")
    if v.status == ERROR:
        lines.append(f"  hint: {ERROR_HINT}")
    return "\n".join(lines)


def raise_for_error(report: ItemReport) -> None:
    if report.status == ERROR:
        raise EvaluationError(report.verdict.reason, path=report.template, line=report.line,
                              hint=ERROR_HINT)

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
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from . import includes, reference, vcs
from .baseline import Baseline
from .breaker import CircuitBreaker
from .cache import open_cache
from .errors import EvaluationError, LpoError, SpecError
from .evaluate import EvalResult, evaluate
from .gate import ERROR, FAIL, NO_REFERENCE, GateRules, Verdict, decide
from .llm import ModelClient, ModelParams, Usage, closing_clients
from .render import IncludeError, PromptTemplate, compile_template, distinct_prompts
from .router import RouterPool, route
from .spec import Settings, TemplateFile, TestSpec

if TYPE_CHECKING:
    from .optimize import OptimizationResult, OptimizeOptions

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
    examples: list[Any]
    scorer: Any
    client: ModelClient
    fingerprint: str
    pool: list[Any] = field(default_factory=list)  # every example, for the optimizer's splits
    task: str = ""  # what the data is, for optimizer meta-prompts

    def scorer_info(self) -> dict[str, Any]:
        """The scorer's name and version, as the report records them."""
        return {"name": self.scorer.name, "version": self.scorer.version}


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
    renamed_from: str | None = None  # the path the reference was recorded under, when renamed since
    warnings: list[str] = field(default_factory=list)  # what makes the verdict less sure than it looks
    through: list[str] = field(default_factory=list)  # included files whose text differs from the base
    samples_asked: int | None = None  # the spec's samples, when a --max-samples cap cut them
    head_files: dict[str, str] = field(default_factory=dict)  # included files: path -> text
    base_files: dict[str, str] = field(default_factory=dict)  # the same, as the base version read them
    history: dict[str, Any] | None = None  # trend and history gates (lpo_ci.history)

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
            entry: dict[str, Any] = {"id": result.id, "target": result.target,
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
            "renamed_from": self.renamed_from, "through": self.through, "samples_asked": self.samples_asked,
            "warnings": self.warnings,
            "usage": self.usage.to_dict(), "seconds": round(self.seconds, 3),
            "fingerprint": self.fingerprint, "history": self.history,
            "scorer": self.prepared.scorer_info() if self.prepared else None,
            "examples": examples,
        }


def _first_prompt(template: PromptTemplate, variables: dict[str, Any] | None) -> str | None:
    """The prompt of the first example, or None when it does not render (reported later)."""
    try:
        return template.render(variables) if variables is not None else None
    except LpoError:
        return None


def line_in(error: BaseException | None, relpath: str) -> int:
    """The line ``error`` points at in the template ``relpath``; 1 when it points elsewhere
    (a spec in pyproject.toml names that file and line in its message)."""
    path, line = getattr(error, "path", None), getattr(error, "line", None)
    return line if line and (path is None or path == relpath) else 1


def error_entry(template: str, line: int, data: str | None, model: str | None, message: str) -> dict[str, Any]:
    """The report entry of a template that could not be scored (same shape as a scored one)."""
    verdict = Verdict(ERROR, message, "none").to_dict()
    return {"template": template, "line": line, "data": data, "model": model, "status": ERROR,
            "reason": message, "base_rev": None,
            **{k: v for k, v in verdict.items() if k not in ("status", "reason")},
            "head": None, "base": None, "renamed_from": None, "through": [], "samples_asked": None,
            "warnings": [],
            "usage": Usage().to_dict(), "seconds": 0.0, "fingerprint": None, "examples": []}


class Session:
    """Shared state for a run: settings, response cache, baseline, base commit."""

    def __init__(self, settings: Settings, *, base_ref: str | None = None, use_git: bool = True,
                 base_option: str = "--lpo-base"):
        self.settings = settings
        self.cache = open_cache(settings.cache_dir, settings.cache_url)
        self.baseline = Baseline(settings.baseline)
        self.routers = RouterPool()
        self._base_ref = base_ref
        self._use_git = use_git
        self._base_option = base_option
        self._base: vcs.BaseRef | None = None
        self.breakers: dict[str, CircuitBreaker] = {}  # one per endpoint: a dead one fails fast for all
        self._readers: dict[str | None, includes.Reader] = {}  # None: the working tree; else a commit
        self.fresh = False  # ask the model again instead of reading the cache (--lpo-fresh)
        self.history = None  # lpo_ci.history.hook.HistoryGates, applied after the gate

    def loader(self, relpath: str, *, rev: str | None = None,
               overrides: dict[str, str] | None = None) -> includes.ProjectLoader:
        """The loader of the files a template at ``relpath`` includes: from the working tree,
        or as they were at commit ``rev`` (its file names in errors are ``rev:path``)."""
        if rev not in self._readers:
            self._readers[rev] = (includes.git_reader(self.settings.root, rev) if rev
                                  else includes.working_tree_reader(self.settings.root))
        return includes.ProjectLoader(includes.search_folders(relpath, self.settings.search_path),
                                      self._readers[rev], overrides=overrides,
                                      label=(lambda path: f"{rev[:12]}:{path}") if rev else str)

    @property
    def base(self) -> vcs.BaseRef:
        """The git reference (resolved once, on first use); its ``error`` is every item's error."""
        if self._base is None:
            self._base = (vcs.resolve_base(self.settings.root, self._base_ref, option=self._base_option)
                          if self._use_git else vcs.BaseRef(None, how="--no-base given"))
        return self._base

    def expect_calls(self) -> None:
        """A template will be scored: with an empty cache every answer is a call, so start
        importing litellm now, while collection, git and data loading run."""
        if self.cache.is_empty():
            from .llm import start_litellm_import

            start_litellm_import()

    @property
    def base_rev(self) -> str | None:
        return self.base.rev

    def reference(self) -> dict[str, Any]:
        """What the report says the run compared with: the git base, and the stored baseline."""
        stored = self.settings.baseline
        baseline: str | None
        try:
            baseline = stored.relative_to(self.settings.root).as_posix() if stored else None
        except ValueError:
            baseline = str(stored)
        return {**self.base.to_dict(), "baseline": baseline}

    def warnings(self) -> list[str]:
        """What went wrong with the run itself (a corrupt cache set aside), for the report."""
        return list(getattr(self.cache, "warnings", []))

    def notes(self) -> list[str]:
        """The summary's lines on the run: the reference it compared with, and its warnings."""
        note = f"reference: {self.base.describe()}"
        if self.settings.baseline and self.baseline.entries:
            note += f"; stored baseline {self.reference()['baseline']} for templates without a git base"
        return [note] + [f"warning: {warning}" for warning in self.warnings()]

    def prepare(self, template: TemplateFile, base_source: str | None = None,
                base_path: str | None = None) -> Prepared:
        """Load the data and build the scorer and client (errors name the spec line).
        ``base_source``, the base version's text (at ``base_path`` if renamed since), adds its
        derived stop sequences. ``mode`` and ``max_tokens`` left unset get the model's
        defaults (``model_defaults``: completion and a short answer for a base model)."""
        from . import benchmarks, model_defaults
        from .scoring import build_scorer
        from .stops import request_stops

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
        scorer: Any = build_scorer(spec, scorer_name, self.settings, self.cache)  # has .name and .version
        routed = route(spec, self.settings.root, self.routers)  # (model name, litellm Router) or None
        model = routed[0] if routed else resolve_model(spec)
        mode = spec.mode or model_defaults.default_mode(model)
        head = compile_template(template.source, template.relpath, self.loader(template.relpath))
        versions = [head]
        if base_source is not None:
            try:
                versions.append(compile_template(base_source, f"base:{template.relpath}",
                                                 self.loader(base_path or template.relpath, rev=self.base_rev)))
            except SpecError:  # a base that does not compile has no stops to give (run_async says so)
                pass
        variables = examples[0].variables if examples else None
        stop = request_stops(mode, spec.stop, versions, variables)
        max_tokens = spec.max_tokens or model_defaults.default_max_tokens(
            model, [e.target for e in examples], _first_prompt(head, variables))
        params = ModelParams(model=model, mode=mode, temperature=spec.temperature,
                             max_tokens=max_tokens, stop=stop, api_base=spec.api_base, seed=spec.seed)
        client = ModelClient(params, cache=self.cache, concurrency=self.settings.concurrency,
                             retries=self.settings.retries, timeout=spec.timeout, fresh=self.fresh,
                             breaker=self.breakers.setdefault(params.api_base or params.model, CircuitBreaker()),
                             router=routed[1] if routed else None, batch_size=self.settings.batch_size)
        # Stops derived from the template belong to the template under test, not to the setup;
        # the scorer's version does: outcomes made under other extraction rules do not compare.
        setup = {**params.request(""), "stop": list(spec.stop) if spec.stop else None}
        fingerprint = hashlib.sha256(json.dumps(
            [data_label(spec), scorer_name, spec.pattern, setup, spec.samples, spec.seed,
             [(e.id, e.target, e.variables) for e in examples],  # edited data: another setup
             scorer.version], sort_keys=True, default=str).encode()).hexdigest()[:16]
        return Prepared(template, examples, scorer, client, fingerprint, pool, data_label(spec))

    def run(self, template: TemplateFile, progress: Any = None) -> ItemReport:
        return asyncio.run(closing_clients(self.run_async(template, progress)))

    async def run_async(self, template: TemplateFile, progress: Any = None) -> ItemReport:
        """Score the template and its reference; ``progress``: a tqdm-like bar, or None."""
        started = time.perf_counter()
        spec = template.spec
        if self.base.error is not None:  # a base was expected: comparing with nothing would pass
            raise self.base.error
        base_source, renamed_from, warnings = reference.base_version(self.settings.root, self.base, template)
        prepared = self.prepare(template, base_source, renamed_from)
        head_loader = self.loader(template.relpath)
        head_template = compile_template(template.source, template.relpath, head_loader)
        head_prompts = distinct_prompts(head_template, prepared.examples)
        base_label = f"{(self.base_rev or '')[:12]}:{renamed_from or template.relpath}"
        base_template = base_prompts = base_loader = None
        why_none = None
        # With included files, the base is rendered even when the template's own text is
        # unchanged: a change to a shared partial changes every prompt that includes it.
        if base_source is not None and (base_source != template.source or head_loader.loaded):
            base_loader = self.loader(renamed_from or template.relpath, rev=self.base_rev)
            try:
                base_template = compile_template(base_source, base_label, base_loader)
                # rendering is the head's data: a base it cannot render cannot be compared with
                base_prompts = [base_template.render(e.variables) for e in prepared.examples]
            except IncludeError as exc:  # a file it includes is broken or missing on the base branch
                why_none = "the base version cannot be rendered"
                warnings.append(f"{why_none} ({exc.path}:{exc.line}: {exc.message}); there is no git reference")
                base_source = renamed_from = base_loader = None
            except SpecError as exc:
                if base_template is not None:
                    raise
                why_none = "the base version does not compile"  # broken on the base branch
                warnings.append(f"{why_none} (line {exc.line}: {exc.message}); there is no git reference")
                base_source = renamed_from = base_loader = None
        through = includes.changed_files(head_loader.loaded, base_loader.loaded) if base_loader else []
        rules = GateRules.from_spec(spec)
        report = ItemReport(template=template.relpath, line=template.spec_line, data=data_label(spec),
                            model=prepared.client.params.model, verdict=Verdict(ERROR, "", "none"),
                            base_rev=self.base_rev, prepared=prepared, base_source=base_source,
                            through=through, samples_asked=template.samples_asked,
                            head_files=dict(head_loader.loaded),
                            base_files=dict(base_loader.loaded) if base_loader else {},
                            renamed_from=renamed_from, warnings=warnings)
        changed = base_source is not None and (base_source != template.source or bool(through))
        update = None
        if progress is not None:  # a tqdm-like bar: total known only now
            progress.total = len(prepared.examples) * (2 if changed else 1)
            progress.refresh()
            update = progress.update
        head_task = evaluate(head_template, prepared.examples, prepared.client, prepared.scorer, update,
                             prompts=head_prompts)
        where = f"{renamed_from} at {self.base.ref}" if renamed_from else None
        if base_source is not None and not changed:
            head = await head_task
            report.head, report.base = head, head
            report.verdict = decide(head, head.outcomes(), "unchanged", rules)
            if where:
                report.verdict.reason = f"template unchanged from the base version, {where} (renamed)"
        elif base_source is not None and base_template is not None:  # compiled, since it changed
            base_task = evaluate(base_template, prepared.examples, prepared.client, prepared.scorer, update,
                                 prompts=base_prompts)
            head, base = await asyncio.gather(head_task, base_task)
            report.head, report.base = head, base
            report.verdict = decide(head, base.outcomes(), "base", rules, base.first_error())
            if where:
                report.verdict.reason += f"; compared with {where} (renamed)"
            if through:
                own = "" if base_source != template.source else " (the template's own text is unchanged)"
                report.verdict.reason += (f"; {'regressed' if report.status == FAIL else 'changed'} through "
                                          f"{', '.join(through)}{own}")
            warnings += reference.loosened_gate(self.settings, template, base_source)
        else:
            head = await head_task
            report.head = head
            stored, stored_as, notes = reference.stored_baseline(self.settings.root, self.base, self.baseline,
                                                                 template, prepared.fingerprint)
            warnings += notes
            report.renamed_from = stored_as
            report.verdict = decide(head, stored, "baseline" if stored is not None else "none", rules)
            if stored_as:
                report.verdict.reason += f"; compared with the stored baseline of {stored_as} (renamed)"
            elif report.verdict.reason == NO_REFERENCE:
                report.verdict.reason += f" ({why_none or reference.why_none(self.base)})"
        warnings += reference.sample_warnings(spec, len(prepared.pool), data_label(spec), report.verdict)
        if self.history is not None:
            self.history.after_gate(report, template)
        for result in (report.head, report.base if report.base is not report.head else None):
            if result is not None:
                report.usage.merge(result.usage)
        report.seconds = time.perf_counter() - started
        return report

    def optimize(self, template: TemplateFile, report: ItemReport, options: OptimizeOptions,
                 say: Callable[[str], Any] | None = None) -> OptimizationResult:
        """Run the bounded LPO search on a scored template (see ``lpo_ci.optimize``).

        The search edits one file: the template, or, when the template's own text is
        unchanged and the change came through a file it includes, that file (the one with
        the largest change, when several changed). Candidates of a partial are scored
        through the template, with the candidate in place of the partial."""
        from .optimize import optimize_template
        from .patch import token_changes

        own_changed = report.base_source is not None and report.base_source != template.source
        target = template.relpath
        if report.through and not own_changed:
            target = max(report.through, key=lambda path: (
                len(token_changes(report.base_files.get(path) or "", report.head_files.get(path) or "")),
                path in report.head_files))
        if target == template.relpath or target not in report.head_files:
            loader = self.loader(template.relpath)
            return asyncio.run(closing_clients(optimize_template(
                head_source=template.source, base_source=report.base_source, relpath=template.relpath,
                prepared=report.prepared, options=options, gate=report.verdict, say=say,
                compile=lambda source: compile_template(source, template.relpath, loader))))

        def compile_through(source: str) -> PromptTemplate:
            loader = self.loader(template.relpath, overrides={target: source})
            return compile_template(template.source, template.relpath, loader)

        if say is not None:
            say(f"the change came through {target} (included by {template.relpath}): the search edits {target}")
        return asyncio.run(closing_clients(optimize_template(
            head_source=report.head_files[target], base_source=report.base_files.get(target), relpath=target,
            prepared=report.prepared, options=options, gate=report.verdict, say=say,
            compile=compile_through)))


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

    def pct(value: float | None, interval: tuple[float, float] | None) -> str:
        if value is None:
            return "n/a"
        return f"{value:.1%} [{interval[0]:.1%}, {interval[1]:.1%}]" if interval else f"{value:.1%}"

    if v.base_accuracy is not None:
        renamed = f" ({report.renamed_from}, renamed)" if report.renamed_from else ""
        lines.append(f"  {v.reference} accuracy{renamed}: {pct(v.base_accuracy, v.base_interval)}  "
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
    lines += [f"  warning: {warning}" for warning in report.warnings]
    if v.status == ERROR:
        lines.append(f"  hint: {ERROR_HINT}")
    return "\n".join(lines)


def raise_for_error(report: ItemReport) -> None:
    if report.status == ERROR:
        raise EvaluationError(report.verdict.reason, path=report.template, line=report.line,
                              hint=ERROR_HINT)

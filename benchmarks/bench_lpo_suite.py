"""The optimizer's regression suite on the embedded local model: does LPO win lost accuracy back?

Cases (``lpo_cases.py``) are injected regressions of the kinds people make, on BIG-bench Hard
tasks where the embedded model's base prompt beats chance (``bench_lpo_tasks.py``) and on the
48-row review-sentiment example. For each case the gate runs first (base vs head on the
template's sample); then, for each mode (local, global) and seed, one search at the same
budget. Recorded per run: accepted or not, held-out accuracy of head, base and winner,
recovery = (winner - head) / (base - head) on held-out, tokens changed, whether the fix is a
pure revert, calls spent, and the calls the search needed to reach its best held-out accuracy
(every best-on-dev template along the way is scored on held-out for this, outside the budget).

    LPO_CI_DATA_DIR=/path/to/mirror nice -n 10 python benchmarks/bench_lpo_suite.py --select \\
        --tasks TASK... --suite-file suite.json              # gate every variant, choose the cases
    LPO_CI_DATA_DIR=/path/to/mirror nice -n 10 python benchmarks/bench_lpo_suite.py \\
        --suite-file suite.json --seeds 0 1 2 --budget-calls 300 --json out.json
    ... --lengths 50 200 800 --length-cases TASK/KIND ...    # the prompt-length study

Every run has a fresh response cache, so its budget pays for every call as a first run
would; ``--memo`` keeps the model's generations across runs and reruns, which only saves
time (greedy decoding: the same prompt gives the same answer).
"""

from __future__ import annotations

import argparse
import asyncio
import sys
import tempfile
import time
from pathlib import Path
from statistics import mean, median

from lpo_bench import dump, memoize_generations, mirror, project
from lpo_cases import Case, length_variants, sentiment_length_variants, variants

PROPOSER_SETS = {"operators": ("restore", "delete", "swap", "phrase"),
                 "rewrite": ("restore", "delete", "swap", "phrase", "rewrite"),
                 "search": ("delete", "swap", "phrase"),
                 "search+rewrite": ("delete", "swap", "phrase", "rewrite")}


# --- the gate ----------------------------------------------------------------------

async def gate(case: Case, workdir: Path) -> dict:
    """Base vs head on the template's own sample, as the gate scores them."""
    from lpo_ci.evaluate import evaluate
    from lpo_ci.gate import GateRules, decide
    from lpo_ci.render import compile_template
    from lpo_ci.runner import Session

    settings, template = project(workdir, slug(case.name), case.head, workdir / "gate-cache", case.files)
    prepared = Session(settings, use_git=False).prepare(template)
    head, base = await asyncio.gather(
        evaluate(compile_template(case.head, "head"), prepared.examples, prepared.client, prepared.scorer),
        evaluate(compile_template(case.base, "base"), prepared.examples, prepared.client, prepared.scorer))
    verdict = decide(head, base.outcomes(), "base", GateRules())
    return {"verdict": verdict, "status": verdict.status, "base": verdict.base_accuracy,
            "head": verdict.head_accuracy, "p": verdict.p_value, "n": verdict.n_paired}


def slug(name: str) -> str:
    return name.replace("/", "__")


# --- one search and its measurements ------------------------------------------------

async def one_run(case: Case, verdict, mode: str, seed: int, proposers: tuple[str, ...], calls: int,
                  workdir: Path, rounds: int) -> dict:
    from lpo_ci.evaluate import evaluate
    from lpo_ci.llm import ModelClient
    from lpo_ci.optimize import Budget, OptimizeOptions
    from lpo_ci.optimize.search import Search
    from lpo_ci.render import compile_template
    from lpo_ci.runner import Session
    from lpo_ci.scoring import Outcome

    run_dir = Path(tempfile.mkdtemp(prefix="run-", dir=workdir))
    settings, template = project(run_dir, slug(case.name), case.head, run_dir / "cache", case.files)
    prepared = Session(settings, use_git=False).prepare(template)
    options = OptimizeOptions(mode=mode, seed=seed, budget=Budget(calls=calls), proposers=proposers, rounds=rounds)
    search = Search(head_source=template.source, base_source=case.base, relpath=template.relpath,
                    prepared=prepared, options=options, gate=verdict)
    started = time.perf_counter()
    result = await search.run()
    seconds = time.perf_counter() - started
    # Measurements outside the budget: their own client (the generation memo makes repeats free).
    measure = ModelClient(prepared.client.params, cache=prepared.client.cache)
    accuracy: dict[str, float] = {}

    async def heldout(source: str) -> float:
        if source not in accuracy:
            scored = await evaluate(compile_template(source, "measure"), search.heldout, measure, prepared.scorer)
            accuracy[source] = scored.count(Outcome.CORRECT) / scored.n
        return accuracy[source]

    head_acc, base_acc = await heldout(case.head), await heldout(case.base)
    curve = [(spent, await heldout(source)) for spent, source in search.incumbents]
    best = max(acc for _, acc in curve) if curve else head_acc
    to_best = min(spent for spent, acc in curve if acc == best) if curve else None
    lost = base_acc - head_acc
    accepted = result.status == "suggested"
    winner_acc = result.heldout.get("winner") if accepted else None
    recovery = (winner_acc - head_acc) / lost if accepted and lost > 0 else None
    reach = [spent for spent, acc in curve if lost > 0 and (acc - head_acc) / lost >= 0.8]
    pick = next((f for f in result.finalists if f["source"] == result.winner_source), {}) if accepted else {}
    return {
        "case": case.name, "kind": case.kind, "small": case.small, "mode": mode, "seed": seed,
        "proposers": next(k for k, v in PROPOSER_SETS.items() if v == proposers),
        "accepted": accepted, "strength": result.evidence.get("strength"), "route": result.evidence.get("route"),
        "heldout_n": len(search.heldout), "dev_n": len(search.dev),
        "head": head_acc, "base": base_acc, "winner": winner_acc, "recovery": recovery,
        "tokens_changed": pick.get("changed_tokens"), "undone": pick.get("undone"),
        "pure_revert": bool(result.intent.get("pure_revert")) if accepted else None,
        "calls": result.budget["spent"]["calls"], "calls_to_best": to_best, "best_heldout": best,
        "calls_to_80": min(reach) if reach else None,
        "revert_heldout": (result.revert or {}).get("heldout"),
        "revert_accepted": (result.revert or {}).get("accepted"),
        "fluency_rejected": result.fluency.get("rejected", 0), "fluency_checked": result.fluency.get("checked", 0),
        "changes": result.changes if accepted else "", "winner_source": result.winner_source if accepted else None,
        "reason": result.reason, "seconds": seconds, "curve": curve,
        "finalists": [{k: f[k] for k in ("origin", "changes", "dev", "heldout", "p_value", "bound", "accepted",
                                          "strength", "undone", "changed_tokens")} for f in result.finalists],
    }


# --- printing -------------------------------------------------------------------------

def fmt(value) -> str:
    if value is None:
        return "-"
    if isinstance(value, bool):
        return "yes" if value else "no"
    if isinstance(value, float):
        return f"{value:.2f}"
    return str(value)


def print_table(rows: list[dict]) -> None:
    cols = ("case", "mode", "seed", "proposers", "accepted", "strength", "heldout_n", "head", "base", "winner",
            "recovery", "tokens_changed", "pure_revert", "calls", "calls_to_best", "calls_to_80", "revert_heldout",
            "fluency_rejected")
    print("  ".join(cols))
    for row in rows:
        print("  ".join(fmt(row[c]) for c in cols))


def summarize(rows: list[dict], label: str) -> None:
    """Per mode (and proposer set): the targets of the suite."""
    print(f"\nsummary ({label})")
    groups = sorted({(r["mode"], r["proposers"]) for r in rows})
    for mode, proposers in groups:
        mine = [r for r in rows if r["mode"] == mode and r["proposers"] == proposers]
        cases = sorted({r["case"] for r in mine})
        recovered = [r for r in mine if r["accepted"] and r["recovery"] is not None and r["recovery"] >= 0.8]
        by_case = {c: [r for r in mine if r["case"] == c] for c in cases}
        cases_ok = [c for c, rs in by_case.items()
                    if sum(r["accepted"] and (r["recovery"] or 0) >= 0.8 for r in rs) * 2 > len(rs)]
        accepted = [r for r in mine if r["accepted"]]
        lowered = [r for r in accepted if r["winner"] < r["head"]]
        intent = [r for r in accepted if r["kind"] == "intent"]
        reverts = [r for r in intent if r["pure_revert"]]
        to_best = [r["calls_to_best"] for r in mine if r["calls_to_best"] is not None]
        to_80 = [r["calls_to_80"] for r in mine if r["calls_to_80"] is not None]
        print(f"{mode:<6} {proposers:<9}: runs {len(mine)}, accepted {len(accepted)}, "
              f"accepted with recovery >= 80% {len(recovered)} of {len(mine)} runs; cases where most seeds "
              f"recover >= 80%: {len(cases_ok)} of {len(cases)}; accepted below head on held-out: {len(lowered)}; "
              f"intent cases: {len(reverts)} pure reverts of {len(intent)} accepted; "
              f"calls to best held-out: mean {mean(to_best):.0f}, median {median(to_best):.0f}"
              + (f"; calls to 80% recovery: mean {mean(to_80):.0f} over {len(to_80)} runs" if to_80 else ""))


def print_convergence(rows: list[dict]) -> None:
    """Calls to the best held-out accuracy, local vs global, per case (mean over seeds)."""
    print("\ncalls to the best held-out accuracy (mean over seeds), and that accuracy")
    print(f"{'case':<48} {'proposers':<9} {'local':>12} {'global':>12}")
    for case in sorted({r["case"] for r in rows}):
        for proposers in sorted({r["proposers"] for r in rows}):
            cells = []
            for mode in ("local", "global"):
                mine = [r for r in rows if r["case"] == case and r["mode"] == mode and r["proposers"] == proposers]
                calls = [r["calls_to_best"] for r in mine if r["calls_to_best"] is not None]
                best = [r["best_heldout"] for r in mine]
                cells.append(f"{mean(calls):5.0f} @{mean(best):.2f}" if calls else "-")
            print(f"{case:<48} {proposers:<9} {cells[0]:>12} {cells[1]:>12}")


def print_lengths(rows: list[dict]) -> None:
    """The length study: per prompt length, calls to the best held-out accuracy, local vs global."""
    sized = [r for r in rows if "@" in r["case"]]
    if not sized:
        return
    length = lambda r: int(r["case"].split("@", 1)[1].split("/", 1)[0])  # noqa: E731
    print("\nprompt length vs calls to the best held-out accuracy (mean over cases and seeds)")
    print(f"{'length':>6} {'proposers':<9} {'local calls':>11} {'global calls':>12} {'global/local':>12} "
          f"{'local best':>10} {'global best':>11} {'local acc.':>10} {'global acc.':>11}")
    for size in sorted({length(r) for r in sized}):
        for proposers in sorted({r["proposers"] for r in sized}):
            cells = {}
            for mode in ("local", "global"):
                mine = [r for r in sized if length(r) == size and r["mode"] == mode and r["proposers"] == proposers]
                calls = [r["calls_to_best"] for r in mine if r["calls_to_best"] is not None]
                cells[mode] = (mean(calls) if calls else None, mean(r["best_heldout"] for r in mine) if mine else None,
                               sum(r["accepted"] for r in mine), len(mine))
            ratio = (cells["global"][0] / cells["local"][0]) if cells["local"][0] and cells["global"][0] else None
            print(f"{size:>6} {proposers:<9} {fmt(cells['local'][0]):>11} {fmt(cells['global'][0]):>12} "
                  f"{fmt(ratio):>12} {fmt(cells['local'][1]):>10} {fmt(cells['global'][1]):>11} "
                  f"{cells['local'][2]}/{cells['local'][3]:<8} {cells['global'][2]}/{cells['global'][3]}")


def print_accepted(rows: list[dict]) -> None:
    print("\nevery accepted suggestion (distinct), to read")
    seen = set()
    for row in rows:
        if row["accepted"] and (row["case"], row["changes"]) not in seen:
            seen.add((row["case"], row["changes"]))
            print(f"- {row['case']} [{row['mode']}, {row['proposers']}, recovery {fmt(row['recovery'])}"
                  f"{', pure revert' if row['pure_revert'] else ''}]:")
            for line in row["changes"].splitlines():
                print(f"    {line}")


# --- selection: the gate on every variant ----------------------------------------------

def select(all_cases: list[Case], workdir: Path, per_task: int, suite_file: str | None) -> list[str]:
    gates = {}
    for case in all_cases:
        g = asyncio.run(gate(case, workdir))
        gates[case.name] = g
        print(f"{case.name:<48} {g['status']:<5} base {fmt(g['base'])} head {fmt(g['head'])} p {g['p']:.2g}  "
              f"{case.note}", file=sys.stderr, flush=True)
    print(f"{'case':<48} {'gate':<5} {'base':>5} {'head':>5} {'p':>8}  change")
    for case in all_cases:
        g = gates[case.name]
        print(f"{case.name:<48} {g['status']:<5} {fmt(g['base']):>5} {fmt(g['head']):>5} {g['p']:8.2g}  {case.note}")
    failing = [c for c in all_cases if gates[c.name]["status"] == "fail"]
    chosen: list[str] = []
    for data in dict.fromkeys(c.data for c in failing):
        mine = sorted((c for c in failing if c.data == data), key=lambda c: gates[c.name]["p"])
        kinds_taken: set[str] = set()
        picks = [c for c in mine if c.kind == "intent"][:1]  # every dataset gets its intent case, if it has one
        kinds_taken.update(c.kind for c in picks)
        for c in mine:
            if len(picks) >= per_task:
                break
            if c.kind not in kinds_taken:
                picks.append(c)
                kinds_taken.add(c.kind)
        chosen += [c.name for c in picks]
    print("chosen:", " ".join(chosen))
    dump(suite_file, chosen)
    return chosen


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--tasks", nargs="+", default=[])
    parser.add_argument("--select", action="store_true", help="gate every variant and choose the suite's cases")
    parser.add_argument("--per-task", type=int, default=2)
    parser.add_argument("--variants", nargs="+",
                        help="with --select: only these variants (e.g. cue-answer intent-label)")
    parser.add_argument("--suite-file", help="JSON list of case names (written by --select)")
    parser.add_argument("--cases", nargs="+", help="run only these cases")
    parser.add_argument("--modes", nargs="+", default=["local", "global"])
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    parser.add_argument("--budget-calls", type=int, default=300)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--proposers", nargs="+", default=["operators"],
                        choices=["operators", "rewrite", "search", "search+rewrite"],
                        help="operators: the LLM-free operators; rewrite: plus the embedded model's rewrites; "
                             "search: without 'restore' (what the marks do, when the base's text is not offered)")
    parser.add_argument("--lengths", type=int, nargs="+", help="the length study: prompt lengths in tokens")
    parser.add_argument("--length-task",
                        help="the BBH task whose prompt is padded to each length, or 'review-sentiment' (the example)")
    parser.add_argument("--length-kinds", nargs="+", default=["reword-0", "intent-label"],
                        help="the regressions injected at each length")
    parser.add_argument("--option-text", action="store_true", help="exemplar answers carry the option's text")
    parser.add_argument("--memo", default="~/.cache/lpo-ci/bench-generations")
    parser.add_argument("--json", help="write every row here (rewritten after each run)")
    parser.add_argument("--report", nargs="+", metavar="JSON",
                        help="print the tables from the rows of earlier runs (their --json files) and exit")
    args = parser.parse_args()
    if args.report:
        import json

        rows = [row for path in args.report for row in json.loads(Path(path).read_text(encoding="utf-8"))]
        report(rows, f"{len(args.report)} run file(s): " + ", ".join(Path(p).name for p in args.report))
        return 0
    mirror()
    memoize_generations(Path(args.memo).expanduser())
    from lpo_cases import load_suite

    tasks = args.tasks or sorted({n.split("/")[0] for n in (load_suite(Path(args.suite_file))
                                  if args.suite_file and not args.select else []) if not n.startswith("review-")})
    pool = variants(tasks, option_text=args.option_text)
    if args.lengths:
        pool += sentiment_length_variants(args.lengths, args.length_kinds) if args.length_task == "review-sentiment" \
            else length_variants(args.length_task, args.lengths, args.length_kinds, args.option_text)
    known = {c.name: c for c in pool}
    with tempfile.TemporaryDirectory(prefix="lpo-suite-") as tmp:
        workdir = Path(tmp)
        if args.select:
            chosen = [c for c in known.values() if not args.variants or c.name.split("/")[1] in args.variants]
            select(chosen, workdir, args.per_task, args.suite_file)
            return 0
        names = args.cases or (load_suite(Path(args.suite_file)) if args.suite_file else
                               [c.name for c in pool if "@" in c.name])
        cases = [known[n] for n in names]
        rows = []
        for case in cases:
            g = asyncio.run(gate(case, workdir))
            print(f"# {case.name}: gate {g['status']} base {fmt(g['base'])} head {fmt(g['head'])} p {g['p']:.2g}",
                  file=sys.stderr, flush=True)
            for proposers in args.proposers:
                names_ = PROPOSER_SETS[proposers]
                for seed in args.seeds:
                    for mode in args.modes:
                        row = asyncio.run(one_run(case, g["verdict"], mode, seed, names_, args.budget_calls, workdir,
                                                  args.rounds))
                        row["gate"] = {k: g[k] for k in ("status", "base", "head", "p", "n")}
                        rows.append(row)
                        print(f"  {mode:<6} seed {seed} {row['proposers']:<9} accepted {fmt(row['accepted'])} "
                              f"held {fmt(row['head'])}->{fmt(row['winner'])} (base {fmt(row['base'])}) "
                              f"rec {fmt(row['recovery'])} calls {row['calls']} best@{row['calls_to_best']} "
                              f"{row['seconds']:.0f}s | {row['changes'][:100]!r}", file=sys.stderr, flush=True)
                        dump(args.json, rows)
    report(rows, f"budget {args.budget_calls} calls, seeds {args.seeds}")
    return 0


def report(rows: list[dict], what: str) -> None:
    print(f"LPO regression suite, embedded local model, {what}")
    print_table(rows)
    summarize(rows, "all cases")
    small = [r for r in rows if r["small"]]
    if small:
        summarize(small, "small dataset cases")
    print_convergence(rows)
    print_lengths(rows)
    print_accepted(rows)


if __name__ == "__main__":
    sys.exit(main())

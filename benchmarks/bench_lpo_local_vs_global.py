"""Local vs global prompt optimization on BIG-bench Hard tasks, with the embedded local model.

For each task a few-shot direct-answer prompt is built from the task's three
published exemplars (read from the benchmark data mirror, never stored
here): that is the base version. The head is a plausible bad edit: the task
instruction dropped and the answer cue renamed. Both searches get the same
budget, seed and proposers (the LLM-free operators: the local model follows
no instructions); "local" may only edit the tokens the edit changed, "global"
may edit all the literal text. Reported per task and mode: best dev accuracy
against model calls spent (the curve), and held-out accuracy of the winner.

    LPO_CI_DATA_DIR=/path/to/mirror python benchmarks/bench_lpo_local_vs_global.py \\
        [--tasks boolean_expressions sports_understanding web_of_lies] [--budget-calls 200] [--seeds 0 1 2]

A last table averages, per mode, the best dev accuracy reached by each call
count (a step function of each run's curve) over all tasks and seeds: the
paper's "local converges faster" shows as the local row rising earlier.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import re
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

SPEC = """{{# lpo:
  benchmark: bbh/{task}
  mode: completion
  max_tokens: 4
  stop: "\\n"
  samples: 48
#}}
"""


def exemplars(mirror: Path, task: str) -> tuple[str, list[tuple[str, str]]]:
    """The task instruction and its (question, final answer) exemplars from the CoT prompt file."""
    text = (mirror / "bbh-cot-prompts" / f"{task}.txt").read_text(encoding="utf-8")
    body = text.split("-----", 1)[1].strip()
    instruction, *blocks = body.split("\n\nQ: ")
    shots = []
    for block in blocks:
        question, answer = block.split("\nA: ", 1)
        final = re.search(r"the answer is (.*?)\.?\s*$", answer.strip(), re.DOTALL)
        shots.append((question.strip(), final.group(1).strip() if final else answer.strip()))
    return instruction.strip(), shots


def prompt_pair(mirror: Path, task: str) -> tuple[str, str]:
    instruction, shots = exemplars(mirror, task)
    # Escape Jinja delimiters that could appear in data.
    shots_text = "".join(f"Q: {q}\nA: {a}\n\n" for q, a in shots).replace("{", "{{ '{' }}")
    base = SPEC.format(task=task) + f"{instruction}\n\n{shots_text}Q: {{{{ input }}}}\nA:"
    head = SPEC.format(task=task) + f"{shots_text}Q: {{{{ input }}}}\nAnswer:"
    return base, head


async def one_run(workdir: Path, task: str, base: str, head: str, mode: str, calls: int, seed: int,
                  cache_dir: Path):
    from lpo_ci.optimize import Budget, OptimizeOptions, optimize_template
    from lpo_ci.runner import Session
    from lpo_ci.spec import load_settings, read_template

    project = workdir / f"{task}-{mode}"
    (project / "prompts").mkdir(parents=True, exist_ok=True)
    (project / "pyproject.toml").write_text("[tool.lpo_ci]\n", encoding="utf-8")
    path = project / "prompts" / f"{task}.j2"
    path.write_text(head, encoding="utf-8")
    settings = load_settings(project, {"cache_dir": str(cache_dir)})
    session = Session(settings, use_git=False)
    template = read_template(settings, path)
    options = OptimizeOptions(mode=mode, seed=seed, budget=Budget(calls=calls), heldout_size=48,
                              dev_size=32, rounds=4)
    started = time.perf_counter()
    result = await optimize_template(head_source=template.source, base_source=base, relpath=template.relpath,
                                     prepared=session.prepare(template), options=options)
    return result, time.perf_counter() - started


def best_by(curve: list[dict], calls: int) -> float:
    """Best dev accuracy reached with at most `calls` calls spent (the head's score before any round)."""
    reached = [p["dev_accuracy"] for p in curve if p["calls"] <= calls]
    return max(reached) if reached else curve[0]["dev_accuracy"]


def print_mean_curves(everything: dict[str, dict], budget: int, spacing: int) -> None:
    """Per mode: mean over runs of best dev accuracy by call count, and of the winner's held-out gain."""
    checkpoints = list(range(spacing, budget + 1, spacing))
    print("\nmean over tasks and seeds: best dev accuracy by calls spent; mean held-out gain; suggestions")
    print("mode    " + "  ".join(f"{c:>5}" for c in checkpoints) + "  held gain  suggested")
    for mode in ("local", "global"):
        runs = [d for key, d in everything.items() if key.endswith("/" + mode) and d["curve"]]
        if not runs:
            continue
        means = [sum(best_by(d["curve"], c) for d in runs) / len(runs) for c in checkpoints]
        gains = [(d["heldout"].get("winner") or d["heldout"].get("head") or 0) - (d["heldout"].get("head") or 0)
                 for d in runs if d.get("heldout")]
        suggested = sum(d["status"] == "suggested" for d in runs)
        gain = sum(gains) / len(gains) if gains else 0.0
        print(f"{mode:<8}" + "  ".join(f"{m:5.3f}" for m in means) + f"  {gain:+9.3f}  {suggested}/{len(runs)}")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--tasks", nargs="+", default=["boolean_expressions", "sports_understanding",
                                                       "web_of_lies"])
    parser.add_argument("--budget-calls", type=int, default=200)
    parser.add_argument("--seeds", type=int, nargs="+", default=[0])
    parser.add_argument("--checkpoint", type=int, default=50, help="call spacing of the averaged curve")
    parser.add_argument("--cache-dir", help="keep the response caches here (one per mode) to resume a run")
    parser.add_argument("--json", help="also write all results here")
    args = parser.parse_args()
    mirror = Path(os.environ.get("LPO_CI_DATA_DIR", Path(__file__).resolve().parents[2] / "shared" / "data"))
    if not (mirror / "bbh-cot-prompts").is_dir():
        raise SystemExit(f"no benchmark data mirror at {mirror}: set LPO_CI_DATA_DIR")
    os.environ["LPO_CI_DATA_DIR"] = str(mirror)
    rows, everything = [], {}
    with tempfile.TemporaryDirectory(prefix="lpo-bench-") as tmp:
        workdir = Path(tmp)
        caches = Path(args.cache_dir) if args.cache_dir else workdir
        for task in args.tasks:
            base, head = prompt_pair(mirror, task)
            for seed in args.seeds:
                for mode in ("local", "global"):
                    # One cache per mode and seed: no run gets another run's answers for free.
                    result, seconds = asyncio.run(one_run(workdir, task, base, head, mode, args.budget_calls,
                                                          seed, caches / f"cache-{mode}-{seed}"))
                    data = result.to_dict()
                    everything[f"{task}/{seed}/{mode}"] = data
                    curve = " ".join(f"{p['calls']}:{p['dev_accuracy']:.2f}" for p in data["curve"])
                    held = data.get("heldout") or {}
                    rows.append((task, seed, mode, len(data["marks"]), data["dev"].get("head"),
                                 data["dev"].get("winner"), held.get("head"), held.get("winner"),
                                 held.get("p_value"), data["status"], data["budget"]["spent"]["calls"], seconds,
                                 curve))
                    print("  ".join(map(str, rows[-1])), file=sys.stderr, flush=True)
    fmt = lambda v: "-" if v is None else (f"{v:.2f}" if isinstance(v, float) else str(v))  # noqa: E731
    print(f"LPO local vs global, embedded local model, budget {args.budget_calls} calls, seeds {args.seeds}")
    header = ("task", "seed", "mode", "marks", "dev head", "dev best", "held head", "held best", "p", "status",
              "calls", "s", "curve calls:dev_acc")
    print("  ".join(header))
    for row in rows:
        print("  ".join(fmt(v) for v in row))
    print_mean_curves(everything, args.budget_calls, args.checkpoint)
    if args.json:
        Path(args.json).write_text(json.dumps(everything, indent=2), encoding="utf-8")
    return 0


if __name__ == "__main__":
    sys.exit(main())

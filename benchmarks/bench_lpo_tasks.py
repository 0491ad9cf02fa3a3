"""Which BIG-bench Hard tasks the embedded model does clearly better than chance on.

The optimizer's regression suite needs tasks where the base prompt is good enough that a
bad edit can lose accuracy and a fix can win it back. For every task this scores the
direct-answer few-shot prompt (the task's instruction and its three published exemplars,
final answers only) on a seeded sample and compares it with chance: the larger of the
majority answer's share in the sample and the mean of 1/(number of options). A task
qualifies when accuracy beats chance by ``--margin`` and a one-sided exact binomial test
against chance gives p < ``--alpha``.

    LPO_CI_DATA_DIR=/path/to/mirror nice -n 10 python benchmarks/bench_lpo_tasks.py \\
        [--samples 100] [--tasks ...] [--memo ~/.cache/lpo-ci/bench-generations] [--json out.json]
"""

from __future__ import annotations

import argparse
import asyncio
import re
import sys
import tempfile
import time
from collections import Counter
from math import comb
from pathlib import Path

from lpo_bench import direct_prompt, dump, memoize_generations, mirror, project

OPTION = re.compile(r"^\(([A-Z])\)", re.MULTILINE)


def chance(examples) -> tuple[float, float, float]:
    """(chance, majority share, mean 1/options) of a sample."""
    majority = Counter(e.target for e in examples).most_common(1)[0][1] / len(examples)
    uniform = []
    for e in examples:
        options = len(OPTION.findall(e.variables["input"]))
        if options:
            uniform.append(1 / options)
        elif e.target in ("True", "False", "Yes", "No", "yes", "no", "valid", "invalid"):
            uniform.append(0.5)
        else:
            uniform.append(0.0)  # free text and numbers: no option to guess
    mean_uniform = sum(uniform) / len(uniform)
    return max(majority, mean_uniform), majority, mean_uniform


def binomial_tail(k: int, n: int, p: float) -> float:
    """P(X >= k) for X ~ Binomial(n, p)."""
    return min(1.0, sum(comb(n, i) * p ** i * (1 - p) ** (n - i) for i in range(k, n + 1)))


async def score_task(task: str, samples: int, workdir: Path, extra_shots: int = 0, option_text: bool = False) -> dict:
    from lpo_ci.evaluate import evaluate
    from lpo_ci.render import compile_template
    from lpo_ci.runner import Session
    from lpo_ci.scoring import Outcome

    source = direct_prompt(task, samples=samples, extra_shots=extra_shots, option_text=option_text,
                           max_tokens=24 if option_text else 8)
    settings, template = project(workdir, task, source, workdir / "cache")
    prepared = Session(settings, use_git=False).prepare(template)
    started = time.perf_counter()
    result = await evaluate(compile_template(template.source, template.relpath), prepared.examples,
                            prepared.client, prepared.scorer)
    correct = result.count(Outcome.CORRECT)
    level, majority, uniform = chance(prepared.examples)
    return {"task": task, "n": result.n, "accuracy": correct / result.n, "correct": correct,
            "format_failures": result.count(Outcome.FORMAT_FAILURE), "chance": level, "majority": majority,
            "uniform": uniform, "p": binomial_tail(correct, result.n, level),
            "seconds": time.perf_counter() - started}


def main() -> int:
    from lpo_ci.benchmarks import BBH_TASKS

    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--tasks", nargs="+", default=list(BBH_TASKS))
    parser.add_argument("--samples", type=int, default=100)
    parser.add_argument("--extra-shots", type=int, default=0,
                        help="exemplars from the data's tail added after the three published ones")
    parser.add_argument("--option-text", action="store_true",
                        help="exemplar answers carry the option's text after its letter: '(D) 12/14/1937'")
    parser.add_argument("--margin", type=float, default=0.10)
    parser.add_argument("--alpha", type=float, default=0.01)
    parser.add_argument("--memo", default="~/.cache/lpo-ci/bench-generations",
                        help="persistent store of the model's generations (reruns are free)")
    parser.add_argument("--json", help="also write the rows here")
    args = parser.parse_args()
    mirror()
    memoize_generations(Path(args.memo).expanduser())
    rows = []
    with tempfile.TemporaryDirectory(prefix="lpo-tasks-") as tmp:
        for task in args.tasks:
            row = asyncio.run(score_task(task, args.samples, Path(tmp), args.extra_shots, args.option_text))
            row["qualifies"] = row["accuracy"] >= row["chance"] + args.margin and row["p"] < args.alpha
            rows.append(row)
            print(f"{task:<42} acc {row['accuracy']:.2f}  chance {row['chance']:.2f}  p {row['p']:.2g}  "
                  f"fmt {row['format_failures']}  {row['seconds']:.0f}s", file=sys.stderr, flush=True)
    print(f"BBH direct-answer {3 + args.extra_shots}-shot prompts{' with option text' if args.option_text else ''}, "
          f"embedded model, {args.samples} examples per task")
    print(f"{'task':<42} {'acc':>5} {'chance':>6} {'major':>5} {'1/k':>5} {'fmt':>4} {'p':>8}  qualifies")
    for row in sorted(rows, key=lambda r: r["accuracy"] - r["chance"], reverse=True):
        print(f"{row['task']:<42} {row['accuracy']:5.2f} {row['chance']:6.2f} {row['majority']:5.2f} "
              f"{row['uniform']:5.2f} {row['format_failures']:4d} {row['p']:8.2g}  {'yes' if row['qualifies'] else ''}")
    print("qualifying:", " ".join(r["task"] for r in rows if r["qualifies"]))
    dump(args.json, rows)
    return 0


if __name__ == "__main__":
    sys.exit(main())

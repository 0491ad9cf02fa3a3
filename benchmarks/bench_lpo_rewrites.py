"""Choose the rewriter's sampling by measurement: what the embedded model proposes for prompt sentences.

The 'rewrite' proposer asks the embedded base model to continue "Original / Rewritten"
pairs (``templates/optimizer/rewrite.j2``). For each setting (temperature, stop sequence)
it rewrites the instructions of BIG-bench Hard prompts and of the review-sentiment example,
``--samples`` times each, and counts per model call: usable proposals (one line, not a copy
of the sentence, not the few-shot text leaking back), distinct ones, and distinct ones that
pass the fluency guard. The best setting gives the most distinct fluent proposals per call.

    LPO_CI_DATA_DIR=/path/to/mirror nice -n 10 python benchmarks/bench_lpo_rewrites.py \\
        [--temperatures 0.3 0.6 0.8 1.0] [--samples 8] [--memo DIR] [--json out.json]
"""

from __future__ import annotations

import argparse
import asyncio
import random
import sys
import tempfile
from pathlib import Path

from lpo_bench import direct_prompt, dump, exemplars, memoize_generations, mirror

TASKS = ("boolean_expressions", "sports_understanding", "web_of_lies", "hyperbaton", "navigate",
         "object_counting", "snarks", "disambiguation_qa", "ruin_names", "movie_recommendation")
EXTRA = (("Classify the sentiment of each product review as positive or negative.",
          "Review: I love it, works great.\nSentiment: positive\n\nReview: {{ review }}\nSentiment:"),
         ("Say what this is.", "Q: not ( True ) and ( True ) is\nA: False\n\nQ: {{ input }}\nA:"),
         ("Be brief and exact. Answer True or False in one word.",
          "Q: not ( True ) and ( True ) is\nA: False\n\nQ: {{ input }}\nA:"))


def sentences() -> list[tuple[str, str]]:
    """(first line of an instruction, the template it heads)."""
    found = []
    for task in TASKS:
        line = exemplars(task)[0].split("\n")[0]
        body = direct_prompt(task).split("#}\n", 1)[1]
        found.append((line, line + body[len(exemplars(task)[0]):]))
    return found + [(line, f"{line}\n\n{rest}") for line, rest in EXTRA]


async def measure(sentence: str, source: str, temperature: float, stop: tuple[str, ...], samples: int, cache_dir: Path):
    from lpo_ci.cache import ResponseCache
    from lpo_ci.editable import EditableTemplate
    from lpo_ci.llm import ModelClient, ModelParams
    from lpo_ci.local_model import DEFAULT_LOCAL_MODEL
    from lpo_ci.optimize.fluency import FluencyGuard
    from lpo_ci.optimize.proposers import ProposalContext, RewriteProposer, Sampling, rewrite_pairs

    sampling = Sampling(temperature=temperature, stop=stop)
    cache = ResponseCache(cache_dir)
    calls = []

    def client(seed: int) -> ModelClient:
        calls.append(seed)
        return ModelClient(ModelParams(model=DEFAULT_LOCAL_MODEL, mode="completion", temperature=temperature,
                                       max_tokens=sampling.max_tokens, stop=stop, seed=seed), cache=cache)

    template = EditableTemplate(source)
    line = [t.index for t in template.tokens if t.end <= len(sentence)]
    ctx = ProposalContext(template=template, marks=frozenset(line), base=None, failures=[], task="",
                          rng=random.Random(0))
    proposals = await RewriteProposer(client, sampling).propose(ctx, samples)
    leaked = {r for _, r in rewrite_pairs()} | {o for o, _ in rewrite_pairs()}
    texts = [p[:p.index("\n")] for p in proposals]
    usable = [t for t in texts if t not in leaked]
    guard = FluencyGuard(source)
    fluent = [t for t, p in zip(texts, proposals) if t in usable and await guard.check(p) is None]
    return {"sentence": sentence, "temperature": temperature, "stop": list(stop), "calls": len(calls),
            "usable": len(usable), "distinct": len(set(usable)), "fluent": len(set(fluent)),
            "proposals": sorted(set(usable)), "fluent_proposals": sorted(set(fluent))}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--temperatures", type=float, nargs="+", default=[0.3, 0.6, 0.8, 1.0])
    parser.add_argument("--stops", nargs="+", default=["\\n", "\\n\\n"],
                        help="stop sequences to compare (escaped: \\n)")
    parser.add_argument("--samples", type=int, default=8)
    parser.add_argument("--memo", default="~/.cache/lpo-ci/bench-generations")
    parser.add_argument("--json")
    parser.add_argument("--show", action="store_true", help="print every fluent proposal")
    args = parser.parse_args()
    mirror()
    memoize_generations(Path(args.memo).expanduser())
    rows = []
    with tempfile.TemporaryDirectory(prefix="lpo-rewrites-") as tmp:
        for stop_text in args.stops:
            stop = (stop_text.encode().decode("unicode_escape"),)
            for temperature in args.temperatures:
                for sentence, source in sentences():
                    row = asyncio.run(measure(sentence, source, temperature, stop, args.samples, Path(tmp) / "cache"))
                    rows.append(row)
                    print(f"t={temperature} stop={stop_text!r} {row['fluent']}/{row['calls']}  {sentence[:60]}",
                          file=sys.stderr, flush=True)
    print(f"rewriter settings, {args.samples} samples for each of {len(sentences())} sentences")
    print(f"{'stop':<6} {'temp':>5} {'calls':>6} {'usable':>7} {'distinct':>9} {'fluent':>7} {'fluent/call':>12}")
    best = None
    for stop_text in args.stops:
        for temperature in args.temperatures:
            mine = [r for r in rows if r["temperature"] == temperature
                    and r["stop"] == [stop_text.encode().decode("unicode_escape")]]
            calls = sum(r["calls"] for r in mine)
            totals = [sum(r[k] for r in mine) for k in ("usable", "distinct", "fluent")]
            rate = totals[2] / calls if calls else 0.0
            print(f"{stop_text:<6} {temperature:5.2f} {calls:6d} {totals[0]:7d} {totals[1]:9d} {totals[2]:7d} "
                  f"{rate:12.2f}")
            if best is None or rate > best[0]:
                best = (rate, stop_text, temperature)
    print(f"best: stop {best[1]!r}, temperature {best[2]} ({best[0]:.2f} distinct fluent proposals per call)")
    if args.show:
        for row in rows:
            for text in row["fluent_proposals"]:
                print(f"  t={row['temperature']} {row['sentence'][:40]!r} -> {text!r}")
    dump(args.json, rows)
    return 0


if __name__ == "__main__":
    sys.exit(main())

"""Calibrate the fluency guard: how far do edits that break grammar fall below edits people write?

Each pair is a head line and an edit of it inside a small few-shot template. "fluent" edits
are what a person might commit (paraphrases, deletions of a redundant word, an added
sentence, a renamed cue); "broken" ones are what word swaps and deletions produce when they
break grammar, among them the shuffle the optimizer once suggested ("Be brief one exact.
Answer True or False in and word."); "mild" ones are ungrammatical but readable (reported,
not used to choose the threshold). For each the guard's drop in mean log-likelihood per
token (head minus candidate, nats) is printed, with the threshold that separates the two
labelled groups by the widest margin: for the changed lines' question alone, and for the
second question (do the N words after the edit still read as well?) beside it.

    nice -n 10 python benchmarks/bench_lpo_fluency.py [--after-words 1,2,3,5] [--cost] [--json out.json]
"""

from __future__ import annotations

import argparse
import asyncio
import sys

from lpo_bench import dump

TEMPLATE = ("{{# lpo:\n  benchmark: bbh/boolean_expressions\n#}}\n{line}\n\n"
            "Q: {q}\n{cue} {a}\n\nQ: {{{{ input }}}}\n{cue}")
BOOL = ("not ( True ) and ( True ) is", "False")
SPORT = ('Is the following sentence plausible? "Bam Adebayo scored a reverse layup in the Western '
         'Conference Finals."', "yes")
REVIEW = ("I love it, works great.", "positive")

BE_BRIEF = "Evaluate the result of a random Boolean expression. Be brief and exact. Answer True or False in one word."
SENTIMENT = "Classify the sentiment of each product review as positive or negative."
SPORTS = "Determine whether an artificially constructed sentence relating to sports is plausible or not."
BOOLEAN = "Evaluate the result of a random Boolean expression."
WEB = "Evaluate a random boolean function expressed as a word problem."

CASES = [  # (label, head line, candidate line, exemplar)
    ("fluent", BOOLEAN, "Evaluate the result of a Boolean expression.", BOOL),
    ("fluent", BOOLEAN, "Work out whether each Boolean expression is True or False.", BOOL),
    ("fluent", BOOLEAN, "Evaluate the result of a random Boolean expression. Be brief and exact.", BOOL),
    ("fluent", BOOLEAN, "Evaluate the result of a random Boolean expression. Think carefully before answering.",
     BOOL),
    ("fluent", BE_BRIEF, "Evaluate the result of a random Boolean expression. Be brief and exact.", BOOL),
    ("fluent", BE_BRIEF, "Evaluate the result of a random Boolean expression. Answer True or False.", BOOL),
    ("fluent", SENTIMENT, "Classify the sentiment of each review as positive or negative.", REVIEW),
    ("fluent", SENTIMENT, "Decide whether each product review is positive or negative.", REVIEW),
    ("fluent", SENTIMENT, "Classify the sentiment of each product review as positive or negative. "
                          "Be brief and exact.", REVIEW),
    ("fluent", SPORTS, "Decide whether a sentence about sports is plausible.", SPORT),
    ("fluent", SPORTS, "Determine whether a sentence relating to sports is plausible or not.", SPORT),
    ("fluent", WEB, "Evaluate a boolean function expressed as a word problem.", BOOL),
    ("fluent", WEB, "Work out the value of a boolean function given as a word problem.", BOOL),
    ("fluent", "Answer the question.", "Answer the following question.", BOOL),
    ("broken", BE_BRIEF, "Evaluate the result of a random Boolean expression. Be brief one exact. "
                         "Answer True or False in and word.", BOOL),
    ("broken", "Be brief and exact. Answer True or False in one word.",
     "Be brief one exact. Answer True or False in and word.", BOOL),
    ("broken", BOOLEAN, "Evaluate the random of a result Boolean expression.", BOOL),
    ("broken", BOOLEAN, "Evaluate result the of a random Boolean expression.", BOOL),
    ("broken", BOOLEAN, "Boolean the result of a random Evaluate expression.", BOOL),
    ("broken", SENTIMENT, "Classify the sentiment of positive product review as each or negative.", REVIEW),
    ("broken", SENTIMENT, "Classify sentiment the of each product review as positive or negative.", REVIEW),
    ("broken", SENTIMENT, "Classify the of each product review as positive or negative.", REVIEW),
    ("broken", SPORTS, "Determine whether an sentence artificially constructed relating to is sports "
                       "plausible or not.", SPORT),
    ("broken", SPORTS, "Determine whether an artificially constructed sentence relating to plausible "
                       "is sports or not.", SPORT),
    ("broken", WEB, "Evaluate a random function boolean expressed as problem a word.", BOOL),
    ("broken", WEB, "Evaluate a random boolean function expressed a as word problem.", BOOL),
    # one word dropped or changed in a long line: the rest of the line must not hide it
    ("broken", BE_BRIEF, "Evaluate the result of a random Boolean expression. Be and exact. "
                         "Answer True or False in one word.", BOOL),
    ("broken", SPORTS, "Determine whether an artificially constructed sentence relating to sports is or not.",
     SPORT),
    ("broken", SENTIMENT, "Classify the sentiment of each product review as or negative.", REVIEW),
    ("broken", WEB, "Evaluate a random boolean function expressed as a word the.", BOOL),
    ("fluent", BE_BRIEF, "Evaluate the result of a random Boolean expression. Be brief and exact. "
                         "Answer True or False.", BOOL),
    ("fluent", SPORTS, "Determine whether an artificially constructed sentence about sports is plausible or not.",
     SPORT),
    ("fluent", WEB, "Evaluate a random boolean function written as a word problem.", BOOL),
    ("mild", BOOLEAN, "Evaluate the result a random Boolean expression.", BOOL),
    ("mild", SPORTS, "Determine an artificially constructed sentence relating to sports is plausible or not.",
     SPORT),
    ("mild", SENTIMENT, "Classify the sentiment of each product review as positive negative.", REVIEW),
]


def template(line: str, shot: tuple[str, str]) -> str:
    return TEMPLATE.format(line=line, q=shot[0], a=shot[1], cue="A:")


async def measure(after_words: int, guards: dict) -> list[dict]:
    """Every case judged with ``after_words``; ``guards`` keeps one guard per head, so its
    forward passes serve every number of words."""
    from lpo_ci.optimize.fluency import FluencyGuard

    rows = []
    for label, head_line, cand_line, shot in CASES:
        head = template(head_line, shot)
        guard = guards.setdefault(head, FluencyGuard(head))
        guard.after_words = after_words
        (judgement,) = await guard.judge(template(cand_line, shot))
        rows.append({"label": label, "head": head_line, "candidate": cand_line, "after_words": after_words,
                     "head_ll": judgement.head, "candidate_ll": judgement.candidate, "drop": judgement.drop,
                     "after_drop": judgement.after_drop})
    return rows


def rejected(row: dict, line: float, after: float) -> bool:
    return row["drop"] > line or (row["after_drop"] is not None and row["after_drop"] > after)


def misclassified(rows: list[dict], line: float, after: float = float("inf")) -> list[dict]:
    return [r for r in rows if r["label"] != "mild" and rejected(r, line, after) != (r["label"] == "broken")]


def best(errors) -> float:
    """The threshold (to 0.05) with the fewest labelled edits on the wrong side, midmost among ties."""
    grid = [k / 20 for k in range(101)]
    fewest = min(errors(t) for t in grid)
    ties = [t for t in grid if errors(t) == fewest]
    return ties[len(ties) // 2]


def guard_cost() -> None:
    """What the guard costs a search: every one-word swap and deletion of a long instruction
    checked against the head, with the forward passes counted and the time taken."""
    import time

    from lpo_ci.local_model import token_logprobs
    from lpo_ci.optimize.fluency import FluencyGuard, local_scorer

    head = template(BE_BRIEF, BOOL)
    words = BE_BRIEF.split(" ")
    candidates = []
    for i in range(1, len(words) - 1):
        swapped = words[:i] + [words[i + 1], words[i]] + words[i + 2:]
        dropped = words[:i] + words[i + 1:]
        candidates += [head.replace(BE_BRIEF, " ".join(swapped)), head.replace(BE_BRIEF, " ".join(dropped))]
    passes = 0

    async def counted(context: str, text: str):
        nonlocal passes
        passes += 1
        return await local_scorer(context, text)

    token_logprobs("", "warm up")  # the model's load is not the guard's cost
    guard = FluencyGuard(head, scorer=counted)
    started = time.perf_counter()
    passed = sum(asyncio.run(guard.check(c)) is None for c in candidates)
    print(f"guard cost: {len(candidates)} candidates, {passes} forward passes, "
          f"{time.perf_counter() - started:.1f} s, {passed} pass")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--after-words", default="1,2,3,5",
                        help="numbers of words after the edit to compare (0: the lines' question alone)")
    parser.add_argument("--json", help="also write the rows here")
    parser.add_argument("--cost", action="store_true", help="also time the guard on a search's worth of edits")
    args = parser.parse_args()
    from lpo_ci.optimize.fluency import DEFAULT_AFTER_THRESHOLD, DEFAULT_AFTER_WORDS, DEFAULT_THRESHOLD

    line_t, after_t = DEFAULT_THRESHOLD, DEFAULT_AFTER_THRESHOLD
    every: list[dict] = []
    guards: dict = {}
    for after_words in sorted({0, DEFAULT_AFTER_WORDS, *(int(w) for w in args.after_words.split(","))}):
        rows = asyncio.run(measure(after_words, guards))
        every += rows
        labelled = sum(r["label"] != "mild" for r in rows)
        if after_words == 0:
            alone = best(lambda t, rows=rows: len(misclassified(rows, t)))
            print(f"the lines' question alone: best threshold {alone:.2f}, {len(misclassified(rows, alone))} of "
                  f"{labelled} labelled edits on the wrong side; at the guard's {line_t}: "
                  f"{len(misclassified(rows, line_t))}")
            continue
        chosen = best(lambda t, rows=rows: len(misclassified(rows, line_t, t)))
        shipped = after_words == DEFAULT_AFTER_WORDS
        print(f"with the {after_words} words after the edit{' (the guard)' if shipped else ''}: best threshold "
              f"{chosen:.2f} beside the lines' {line_t}, {len(misclassified(rows, line_t, chosen))} on the wrong side; "
              f"at the guard's {after_t}: {len(misclassified(rows, line_t, after_t))}")
        if not shipped:
            continue
        print(f"\n{'label':<7} {'lines':>6} {'after':>6}  candidate (head)")
        for row in sorted(rows, key=lambda r: (r["label"], max(r["drop"], r["after_drop"] or -9))):
            after = "" if row["after_drop"] is None else f"{row['after_drop']:6.2f}"
            mark = "rejected" if rejected(row, line_t, after_t) else "passes"
            print(f"{row['label']:<7} {row['drop']:6.2f} {after:>6}  {mark:<8} {row['candidate']}  ({row['head']})")
        for row in misclassified(rows, line_t, after_t):
            print(f"  on the wrong side: {row['label']} edit {row['candidate']}")
        print()
    if args.cost:
        guard_cost()
    dump(args.json, every)
    return 0


if __name__ == "__main__":
    sys.exit(main())

"""The optimizer's regression suite: injected regressions of the kinds people really make.

A case is a base template (what main has) and a head template (the pull request). On BIG-bench
Hard tasks the base is the direct-answer few-shot prompt (the task's instruction and its three
published exemplars); on the small user dataset it is the shipped review-sentiment example
(48 rows). The kinds:

* ``reword``: the instruction reworded;
* ``drop``: one exemplar deleted;
* ``reorder``: the exemplars reordered;
* ``cue``: the answer cue renamed ("A:" -> "Answer:");
* ``format``: a format constraint added that hurts ("Answer in one word, lowercase.");
* ``intent``: a wanted new sentence ("Be brief and exact.") together with an accidental
  damaging edit elsewhere; the right fix keeps the new sentence.

Every kind has a few variants; ``bench_lpo_suite.py --select`` runs the gate on all of them
and the suite keeps those the gate fails (a real regression), as listed in ``SUITE``.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass, field
from pathlib import Path

from lpo_bench import ROOT, direct_prompt, escape, exemplars, spec_header

WANTED = "Be brief and exact."
REWORDINGS = ("Answer the question.", "Here are some questions and their answers.")
FORMATS = ("Answer in one word, lowercase.", "Explain your reasoning before you answer.")
KINDS = ("reword", "drop", "reorder", "cue", "format", "intent")


@dataclass
class Case:
    name: str
    data: str             # bbh/<task> or the dataset's name
    kind: str
    base: str
    head: str
    note: str             # what the pull request did, in words
    files: dict[str, str] = field(default_factory=dict)  # extra project files (a user dataset)
    small: bool = False   # a small user dataset


def _wrong_answer(task: str, answer: str) -> str:
    flips = {"True": "False", "False": "True", "Yes": "No", "No": "Yes", "yes": "no", "no": "yes",
             "valid": "invalid", "invalid": "valid"}
    if answer in flips:
        return flips[answer]
    option = re.fullmatch(r"\(([A-Z])\)", answer)
    if option:
        return "(A)" if option.group(1) != "A" else "(B)"
    if re.fullmatch(r"-?\d+", answer):
        return str(int(answer) + 1)
    return answer + " " + answer


def bbh_variants(task: str, samples: int = 48) -> list[Case]:
    """Every injected variant of every kind for one task (the gate decides which are regressions)."""
    instruction, shots = exemplars(task)
    instruction = instruction.split("\n")[0]  # a few tasks carry a definition paragraph: keep the first line
    base = direct_prompt(task, instruction=instruction, samples=samples)
    data = f"bbh/{task}"

    def case(kind: str, variant: str, head: str, note: str) -> Case:
        return Case(f"{task}/{kind}-{variant}", data, kind, base, head, note)

    out = []
    for k, words in enumerate(REWORDINGS):
        out.append(case("reword", str(k), direct_prompt(task, instruction=words, samples=samples),
                        f"instruction reworded to {words!r}"))
    for k in (0, len(shots) - 1):
        kept = [s for i, s in enumerate(shots) if i != k]
        out.append(case("drop", str(k), direct_prompt(task, instruction=instruction, shots=kept, samples=samples),
                        f"exemplar {k + 1} of {len(shots)} deleted"))
    for name, order in (("reversed", [2, 1, 0]), ("rotated", [1, 2, 0])):
        moved = [shots[i] for i in order]
        out.append(case("reorder", name, direct_prompt(task, instruction=instruction, shots=moved, samples=samples),
                        f"exemplars reordered ({name})"))
    out.append(case("cue", "answer", direct_prompt(task, instruction=instruction, cue="Answer:", samples=samples),
                    "answer cue renamed 'A:' -> 'Answer:'"))
    for k, words in enumerate(FORMATS):
        out.append(case("format", str(k), direct_prompt(task, instruction=f"{instruction} {words}", samples=samples),
                        f"format constraint added: {words!r}"))
    flipped = shots[:-1] + [(shots[-1][0], _wrong_answer(task, shots[-1][1]))]
    out.append(case("intent", "label", direct_prompt(task, instruction=f"{instruction} {WANTED}", shots=flipped,
                                                     samples=samples),
                    f"added {WANTED!r}; the last exemplar's answer accidentally changed"))
    out.append(case("intent", "drop", direct_prompt(task, instruction=f"{instruction} {WANTED}", shots=shots[:-1],
                                                    samples=samples),
                    f"added {WANTED!r}; the last exemplar accidentally deleted"))
    out.append(case("intent", "cue", direct_prompt(task, instruction=f"{instruction} {WANTED}", cue="Answer:",
                                                   samples=samples),
                    f"added {WANTED!r}; the answer cue accidentally renamed 'A:' -> 'Answer:'"))
    return out


# --- the small user dataset: the shipped review-sentiment example (48 rows) -------------------

EXAMPLE = ROOT / "examples" / "review-sentiment"
LABELS = {"positive": "negative", "negative": "positive"}


def sentiment_variants() -> list[Case]:
    base = (EXAMPLE / "prompts" / "review_sentiment.j2").read_text(encoding="utf-8")
    files = {"data/reviews.jsonl": (EXAMPLE / "data" / "reviews.jsonl").read_text(encoding="utf-8"),
             "review_scoring.py": (EXAMPLE / "review_scoring.py").read_text(encoding="utf-8")}
    instruction = "Classify the sentiment of each product review as positive or negative."
    shots = re.findall(r"Review: (.*)\nSentiment: (\w+)\n\n", base)

    def body(first: str, pairs, cue: str = "Sentiment:") -> str:
        spec = base[:base.index("#}") + 3]
        return spec + first + "\n\n" + "".join(f"Review: {r}\n{cue} {label}\n\n" for r, label in pairs) + \
            f"Review: {{{{ review }}}}\n{cue}"

    def case(kind: str, variant: str, head: str, note: str) -> Case:
        return Case(f"review-sentiment/{kind}-{variant}", "review-sentiment (48 rows)", kind, base, head, note,
                    files, small=True)

    inverted = [(r, LABELS[label]) for r, label in shots]
    return [
        case("intent", "labels", body(f"{instruction} {WANTED}", inverted),
             f"added {WANTED!r}; the four exemplars' labels inverted"),
        case("drop", "all", body(instruction, []), "the four exemplars deleted"),
        case("cue", "label", body(instruction, shots, cue="Label:"), "cue renamed 'Sentiment:' -> 'Label:'"),
        case("intent", "drop", body(f"{instruction} {WANTED}", shots[:2]),
             f"added {WANTED!r}; two exemplars accidentally deleted"),
    ]


def variants(tasks: list[str]) -> list[Case]:
    return [c for task in tasks for c in bbh_variants(task)] + sentiment_variants()


def load_suite(path: Path) -> list[str]:
    """Case names chosen by ``--select`` (a JSON list), in order."""
    return json.loads(Path(path).read_text(encoding="utf-8"))


__all__ = ["Case", "KINDS", "WANTED", "bbh_variants", "escape", "load_suite", "sentiment_variants", "spec_header",
           "variants"]

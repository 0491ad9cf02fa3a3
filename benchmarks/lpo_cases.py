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
from typing import Any

from lpo_bench import ROOT, direct_prompt, exemplars

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


@dataclass(frozen=True)
class Parts:
    """A BBH few-shot prompt by parts, so every kind of change is one edit of one part."""

    task: str
    instruction: str
    shots: tuple[tuple[str, str], ...]
    guidance: tuple[str, ...] = ()   # extra instruction lines (the length study pads with them)
    cue: str = "A:"
    option_text: bool = False

    def source(self, samples: int = 48) -> str:
        first = "\n".join((self.instruction, *self.guidance)).strip()
        return direct_prompt(self.task, instruction=first, shots=list(self.shots), cue=self.cue, samples=samples,
                             option_text=self.option_text, max_tokens=24 if self.option_text else 8)

    def replace(self, **changes) -> "Parts":
        from dataclasses import replace

        return replace(self, **changes)


def default_parts(task: str, option_text: bool = False) -> Parts:
    instruction, shots = exemplars(task)
    # a few tasks carry a definition paragraph after their instruction: keep its first line
    return Parts(task, instruction.split("\n")[0], tuple(shots), option_text=option_text)


def bbh_variants(task: str, parts: Parts | None = None, label: str = "") -> list[Case]:
    """Every injected variant of every kind for one prompt (the gate decides which are regressions)."""
    parts = parts or default_parts(task)
    base = parts.source()
    data = f"bbh/{task}"
    shots = list(parts.shots)

    def case(kind: str, variant: str, head: Parts, note: str) -> Case:
        return Case(f"{task}{label}/{kind}-{variant}", data, kind, base, head.source(), note)

    out = []
    for k, words in enumerate(REWORDINGS):
        out.append(case("reword", str(k), parts.replace(instruction=words), f"instruction reworded to {words!r}"))
    for k in (0, len(shots) - 1):
        out.append(case("drop", str(k), parts.replace(shots=tuple(s for i, s in enumerate(shots) if i != k)),
                        f"exemplar {k + 1} of {len(shots)} deleted"))
    for name, order in (("reversed", list(range(len(shots)))[::-1]),
                        ("rotated", list(range(1, len(shots))) + [0])):
        out.append(case("reorder", name, parts.replace(shots=tuple(shots[i] for i in order)),
                        f"exemplars reordered ({name})"))
    out.append(case("cue", "answer", parts.replace(cue="Answer:"), "answer cue renamed 'A:' -> 'Answer:'"))
    for k, words in enumerate(FORMATS):
        out.append(case("format", str(k), parts.replace(instruction=f"{parts.instruction} {words}"),
                        f"format constraint added: {words!r}"))
    wanted = parts.replace(instruction=f"{parts.instruction} {WANTED}")
    flipped = tuple(shots[:-1] + [(shots[-1][0], _wrong_answer(task, shots[-1][1]))])
    out.append(case("intent", "label", wanted.replace(shots=flipped),
                    f"added {WANTED!r}; the last exemplar's answer accidentally changed"))
    out.append(case("intent", "drop", wanted.replace(shots=tuple(shots[:-1])),
                    f"added {WANTED!r}; the last exemplar accidentally deleted"))
    out.append(case("intent", "cue", wanted.replace(cue="Answer:"),
                    f"added {WANTED!r}; the answer cue accidentally renamed 'A:' -> 'Answer:'"))
    return out


# --- the length study: the same prompt padded with realistic instructions and exemplars -------

GUIDANCE = (
    "Read each question carefully before you answer.",
    "Each question has exactly one correct answer.",
    "Answer in the same format as the examples below.",
    "Use only the information given in the question.",
    "Do not explain your answer; give only the final answer.",
    "Look at every option before you choose one.",
    "If two options look alike, compare them word by word.",
    "Keep your answer short.",
)


def template_tokens(source: str, variable: str = "input") -> int:
    """Tokens of a template's own text (no spec, no ``variable``), by the embedded model's tokenizer."""
    from lpo_ci import local_model

    text = source.split("#}\n", 1)[1].replace("{{ %s }}" % variable, "")
    return len(local_model.load().tokenize(text.encode("utf-8"), add_bos=False))


def literal_tokens(parts: Parts) -> int:
    return template_tokens(parts.source())


def in_turn(guidance, shots) -> list[tuple[str, Any]]:
    """Guidance lines and exemplars taken in turn: the order a prompt is padded in."""
    pool: list[tuple[str, Any]] = []
    for k in range(max(len(guidance), len(shots))):
        if k < len(guidance):
            pool.append(("guidance", guidance[k]))
        if k < len(shots):
            pool.append(("shot", shots[k]))
    return pool


def padded_parts(task: str, target: int, option_text: bool = False) -> Parts:
    """The task's prompt grown towards ``target`` tokens: the published exemplars (one at least),
    then guidance lines and exemplars from the data's tail, in turn, while they fit."""
    from lpo_bench import tail_shots

    instruction, published = exemplars(task)
    extra = tail_shots(task, 40)
    parts = Parts(task, instruction.split("\n")[0], tuple(published[:1]), option_text=option_text)
    pool = [("shot", s) for s in published[1:]] + in_turn(GUIDANCE, extra)
    for kind, item in pool:
        grown = parts.replace(guidance=parts.guidance + (item,)) if kind == "guidance" else \
            parts.replace(shots=parts.shots + (item,))
        if literal_tokens(grown) > target * 1.1:
            continue
        parts = grown
    return parts


def length_variants(task: str, lengths: list[int], kinds: list[str], option_text: bool = False) -> list[Case]:
    """The same kinds of regression at each prompt length (case names carry the length)."""
    out = []
    for length in lengths:
        parts = padded_parts(task, length, option_text)
        size = literal_tokens(parts)
        for case in bbh_variants(task, parts, label=f"@{length}"):
            if case.name.split("/")[1] in kinds:
                case.note += f" ({size}-token prompt)"
                out.append(case)
    return out


# --- the small user dataset: the shipped review-sentiment example (48 rows) -------------------

EXAMPLE = ROOT / "examples" / "review-sentiment"
LABELS = {"positive": "negative", "negative": "positive"}


def sentiment_variants(guidance: list[str] | None = None, extra: list[tuple[str, str]] | None = None,
                       label: str = "") -> list[Case]:
    """The example's regressions; ``guidance`` lines and ``extra`` exemplars pad its prompt (the
    length study), the injected changes touch only its own instruction and four exemplars."""
    shipped = (EXAMPLE / "prompts" / "review_sentiment.j2").read_text(encoding="utf-8")
    files = {"data/reviews.jsonl": (EXAMPLE / "data" / "reviews.jsonl").read_text(encoding="utf-8"),
             "review_scoring.py": (EXAMPLE / "review_scoring.py").read_text(encoding="utf-8")}
    instruction = "Classify the sentiment of each product review as positive or negative."
    shots = re.findall(r"Review: (.*)\nSentiment: (\w+)\n\n", shipped)
    padding = "".join(f"\n{line}" for line in guidance or ())
    extra = list(extra or ())

    def body(first: str, pairs, cue: str = "Sentiment:") -> str:
        spec = shipped[:shipped.index("#}") + 3]
        return spec + first + padding + "\n\n" + \
            "".join(f"Review: {r}\n{cue} {label}\n\n" for r, label in list(pairs) + extra) + \
            f"Review: {{{{ review }}}}\n{cue}"

    base = body(instruction, shots) if guidance or extra else shipped

    def case(kind: str, variant: str, head: str, note: str) -> Case:
        return Case(f"review-sentiment{label}/{kind}-{variant}", "review-sentiment (48 rows)", kind, base, head,
                    note, files, small=True)

    inverted = [(r, LABELS[label]) for r, label in shots]
    return [
        case("intent", "labels", body(f"{instruction} {WANTED}", inverted),
             f"added {WANTED!r}; the four exemplars' labels inverted"),
        case("drop", "all", body(instruction, []), "the four exemplars deleted"),
        case("cue", "label", body(instruction, shots, cue="Label:"), "cue renamed 'Sentiment:' -> 'Label:'"),
        case("intent", "drop", body(f"{instruction} {WANTED}", shots[:2]),
             f"added {WANTED!r}; two exemplars accidentally deleted"),
        case("format", "1", body(f"{instruction} {FORMATS[1]}", shots), f"format constraint added: {FORMATS[1]!r}"),
        case("reorder", "grouped", body(instruction, shots[0::2] + shots[1::2]),
             "exemplars reordered (the positive ones first)"),
    ]


# Hand-written reviews for padding the example's prompt (none is in its dataset), and the
# instructions a team adds to such a prompt over time.
EXTRA_REVIEWS = (
    ("The blanket is soft and warm, exactly what I wanted.", "positive"),
    ("The lid does not close properly and coffee spills.", "negative"),
    ("Easy to assemble and looks great in the living room.", "positive"),
    ("The battery swelled up after three weeks.", "negative"),
    ("Crisp picture and the remote is simple to use.", "positive"),
    ("The strap tore the second time I wore the watch.", "negative"),
    ("These socks are thick, warm and did not shrink.", "positive"),
    ("The printer jams on every other page.", "negative"),
    ("My dog loves these treats and they smell fine.", "positive"),
    ("It arrived in the wrong colour and the return was a hassle.", "negative"),
    ("The pan heats evenly and nothing sticks to it.", "positive"),
    ("Flimsy hinges, the door fell off in a month.", "negative"),
    ("The speaker is small but surprisingly loud and clear.", "positive"),
    ("The sizes run tiny, I could not even get it on.", "negative"),
    ("A lovely novel, I could not put it down.", "positive"),
    ("The glue smells toxic and does not hold anything.", "negative"),
    ("The backpack has lots of pockets and the straps are padded.", "positive"),
    ("The mouse double clicks on its own, very annoying.", "negative"),
    ("Fresh flowers that lasted two full weeks.", "positive"),
    ("The charger gets so hot I am afraid to use it.", "negative"),
    ("The scarf is elegant and the wool is not itchy.", "positive"),
    ("The puzzle was missing six pieces.", "negative"),
    ("This kettle boils water fast and shuts off by itself.", "positive"),
    ("The watch stopped keeping time after a week.", "negative"),
    ("Great tea, fragrant and never bitter.", "positive"),
    ("The umbrella flipped inside out in a light breeze.", "negative"),
    ("The drill is powerful and the battery lasts for hours.", "positive"),
    ("The cushion went flat within days.", "negative"),
    ("Installation was simple and the faucet looks modern.", "positive"),
    ("Static on every call, the microphone is useless.", "negative"),
    ("The board game is fun for the whole family.", "positive"),
    ("The sheets pilled after the first wash.", "negative"),
    ("A sturdy ladder that folds flat for storage.", "positive"),
    ("The toaster burns one side and leaves the other raw.", "negative"),
    ("Comfortable gloves, my hands stayed warm all winter.", "positive"),
    ("The camera app freezes and drains the battery.", "negative"),
    ("The rug feels soft and the colours are vivid.", "positive"),
    ("The wheels squeak and one came off already.", "negative"),
    ("Quick delivery and the plant arrived healthy.", "positive"),
    ("The cover does not fit and the buttons are hard to press.", "negative"),
)
REVIEW_GUIDANCE = (
    "Read the whole review before you decide.",
    "A review that mentions both good and bad points gets the label of its overall verdict.",
    "Answer with exactly one word: positive or negative.",
    "Do not explain your answer.",
    "Complaints about delivery count as negative, even when the product is fine.",
    "Ignore the product category; judge only the reviewer's opinion.",
    "Sarcasm counts as negative.",
    "Use the same format as the examples below.",
)


def sentiment_length_variants(lengths: list[int], kinds: list[str]) -> list[Case]:
    """The example's regressions inside its prompt padded to about each length (names carry it):
    the published instruction and four exemplars, then guidance lines and hand-written
    exemplars in turn while they fit. The injected change touches the same four exemplars."""
    out = []
    pool = in_turn(REVIEW_GUIDANCE, EXTRA_REVIEWS)
    for length in lengths:
        guidance: list[str] = []
        extra: list[tuple[str, str]] = []
        for kind, item in pool:
            grown_g, grown_e = (guidance + [item], extra) if kind == "guidance" else (guidance, extra + [item])
            if template_tokens(sentiment_variants(grown_g, grown_e)[0].base, "review") > length * 1.1:
                continue
            guidance, extra = grown_g, grown_e
        for case in sentiment_variants(guidance, extra, label=f"@{length}"):
            if case.name.split("/")[1] in kinds:
                case.note += f" ({template_tokens(case.base, 'review')}-token prompt)"
                out.append(case)
    return out


def variants(tasks: list[str], option_text: bool = False) -> list[Case]:
    return [c for task in tasks for c in bbh_variants(task, default_parts(task, option_text))] + sentiment_variants()


def load_suite(path: Path) -> list[str]:
    """Case names chosen by ``--select`` (a JSON list), in order."""
    return json.loads(Path(path).read_text(encoding="utf-8"))



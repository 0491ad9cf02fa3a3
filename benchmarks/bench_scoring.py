"""How far can lpo-ci's answer scoring be trusted? A labelled corpus of model responses
scored by lpo-ci and by lm-evaluation-harness's own filter code.

The corpus (over 2,000 responses) is built from the real GSM8K, MultiArith and
BIG-bench Hard data (``LPO_CI_DATA_DIR``), in the shapes real models produce:
direct answers, few-shot chain-of-thought, zero-shot chain-of-thought, chatty
Markdown, base-model run-ons that invent the next example, the answer on the
next line, bold / boxed / "Final answer:", option text instead of its letter,
hedges, number words, thousands separators and decimal commas. Each synthetic
response is labelled by construction (the answer it commits to is the target
or a chosen wrong one; a hedge is never right). The embedded local model adds
real responses to real few-shot BBH prompts (generated once, then read from the
response cache); those are labelled by a rule independent of both scorers: the
answer is the text after the *first* "So the answer is" (chain of thought) or
the first line (direct), in the model's own example, before it starts a new
"Q:"; it is right when it equals the target exactly, and no answer is wrong.

For every benchmark it prints lpo-ci's false positives (wrong answers scored
right) and false negatives (right answers not scored right), next to every
lm-eval variant's (its own filter, exact_match and ``until`` code), and checks
the target: lpo-ci's false positives are no more than the best lm-eval
variant's, and its total errors at most half.

    pip install --no-deps lm-eval==0.4.13 && pip install sacrebleu word2number
    LPO_CI_DATA_DIR=../shared/data nice python benchmarks/bench_scoring.py [--local-per-task 2]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import random
import re
import sys
from collections import defaultdict
from dataclasses import dataclass
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from lpo_ci.scoring import Outcome, get_scorer  # noqa: E402
from lpo_ci.scoring.options import parse_options  # noqa: E402
from lpo_ci.stops import cut_at_stops, request_stops  # noqa: E402

BBH_TASKS = ["boolean_expressions", "causal_judgement", "date_understanding", "formal_fallacies",
             "geometric_shapes", "logical_deduction_three_objects", "movie_recommendation",
             "multistep_arithmetic_two", "navigate", "object_counting", "sports_understanding",
             "web_of_lies", "word_sorting", "dyck_languages", "tracking_shuffled_objects_three_objects"]
LOCAL_TASKS = ["sports_understanding", "date_understanding", "object_counting", "boolean_expressions",
               "movie_recommendation", "navigate", "word_sorting", "multistep_arithmetic_two",
               "logical_deduction_three_objects", "web_of_lies", "reasoning_about_colored_objects",
               "penguins_in_a_table", "tracking_shuffled_objects_three_objects", "dyck_languages"]
LM_EVAL_VARIANTS = {
    "gsm8k": ["gsm8k-strict", "gsm8k-flexible", "gsm8k-cot-strict", "gsm8k-cot-flexible"],
    "bbh": ["bbh-cot-fewshot", "bbh-cot-zeroshot-strict", "bbh-cot-zeroshot-flexible",
            "bbh-zeroshot-strict", "bbh-zeroshot-flexible", "bbh-fewshot"],
}
# The prompt templates the shapes come from: lpo-ci derives its stops from them.
COT_FEWSHOT = "{{ shots }}\n\nQ: {{ input }}\nA: Let's think step by step.\n"
DIRECT_FEWSHOT = "{{ shots }}\n\nQ: {{ input }}\nA:"
ZERO_SHOT = "Q: {{ input }}\nA: Let's think step by step."
CHAT = "{{ input }}"
SHOTS = "Q: an earlier question\nA: its answer\n\nQ: another question\nA: its answer"
NUMBER_WORDS = ("zero one two three four five six seven eight nine ten eleven twelve thirteen fourteen "
                "fifteen sixteen seventeen eighteen nineteen").split()
TENS = "twenty thirty forty fifty sixty seventy eighty ninety".split()


def in_words(n: int) -> str | None:
    if n < 0 or n >= 1000:
        return None
    if n < 20:
        return NUMBER_WORDS[n]
    if n < 100:
        return TENS[n // 10 - 2] + ("" if n % 10 == 0 else "-" + NUMBER_WORDS[n % 10])
    rest = in_words(n % 100) if n % 100 else None
    return NUMBER_WORDS[n // 100] + " hundred" + (f" and {rest}" if rest else "")


@dataclass
class Item:
    benchmark: str  # gsm8k | multiarith | bbh
    task: str
    source: str  # the example's input
    target: str
    response: str
    right: bool  # the label: the committed answer is the target
    shape: str
    template: str  # the template the response answers, for lpo-ci's derived stops
    mode: str = "completion"


# --------------------------------------------------------------------------
# Synthetic responses: BBH


def bbh_answers(task: str, source: str, target: str, rng: random.Random):
    """(right forms, wrong value, wrong forms, kind) for one example."""
    options = parse_options({"input": source})
    if target in ("True", "False"):
        wrong = "False" if target == "True" else "True"
        return [target, target.lower()], wrong, [wrong], "bool"
    if target.lower() in ("yes", "no"):
        wrong = {"yes": "no", "no": "yes", "Yes": "No", "No": "Yes"}[target]
        return [target, target.capitalize()], wrong, [wrong], "yesno"
    if target in ("valid", "invalid"):
        wrong = "invalid" if target == "valid" else "valid"
        return [target, target.capitalize()], wrong, [wrong], "validity"
    if re.fullmatch(r"\([A-Z]\)", target) and options:
        letter = target[1]
        other = rng.choice([x for x in options if x != letter])
        forms = [f"({letter})", f"({letter}) {options[letter]}", options[letter], f"option {letter}", letter]
        wrong_forms = [f"({other})", f"({other}) {options[other]}", options[other]]
        return forms, f"({other})", wrong_forms, "option"
    if re.fullmatch(r"-?\d+", target):
        n = int(target)
        wrong = n + rng.choice([-2, -1, 1, 2, 3])
        forms = [str(n)] + ([in_words(n)] if in_words(n) else [])
        return forms, str(wrong), [str(wrong)], "number"
    words = target.split()
    if len(set(words)) >= 2:
        shuffled = words[:]
        while shuffled == words:
            rng.shuffle(shuffled)
        wrong = " ".join(shuffled)
    else:
        wrong = target + " ]" if "]" not in target else target.replace("]", ")")
    return [target], wrong, [wrong], "text"


def reasoning(source: str, kind: str, wrong: str, rng: random.Random) -> str:
    """A few sentences that restate the question and mention a distractor first."""
    first = source.split("\n")[0]
    first = first if len(first) < 220 else first[:220]
    parts = [rng.choice([f"The question is: {first}", f"We are asked: {first}", f"Let me restate it: {first}"])]
    if kind == "option":
        parts.append(rng.choice([f"At first {wrong} looks plausible, but it does not fit.",
                                 f"We can rule out {wrong}.", f"Option {wrong} is tempting but wrong."]))
    elif kind == "number":
        parts.append(f"A first rough count gave {wrong}, so let me recount carefully.")
    elif kind in ("bool", "yesno", "validity"):
        parts.append(rng.choice([f"One might think {wrong}, so let's check every step.",
                                 "Let's check every step carefully."]))
    else:
        parts.append("Let's work through it carefully.")
    return "\n".join(parts) if rng.random() < 0.5 else " ".join(parts)


def final_sentence(kind: str, answer: str) -> str:
    return {"bool": f"the expression evaluates to {answer}.",
            "yesno": f"the answer to the question is clear: {answer}.",
            "validity": f"the argument is {answer}.",
            "option": f"the best choice is {answer}.",
            "number": f"the total comes to {answer}.",
            "text": f"the result is: {answer}"}[kind]


def bbh_items(task: str, examples: list[dict], rng: random.Random, per_task: int) -> list[Item]:
    items = []
    for example in rng.sample(examples, min(per_task, len(examples))):
        source, target = example["input"], example["target"]
        rights, wrong, wrongs, kind = bbh_answers(task, source, target, rng)
        other = rng.choice(examples)["input"].split("\n")[0]
        for shape in rng.sample(SHAPES, 6):
            right = rng.random() < 0.5
            a = rng.choice(rights) if right else rng.choice(wrongs)
            b = wrong if right else rng.choice(rights)
            response, label, template, mode = SHAPES_FN[shape](a, b, right, kind, source, other, rng, wrong)
            items.append(Item("bbh", task, source, target, response, label, shape, template, mode))
    return items


def _direct(a, b, right, kind, source, other, rng, wrong):
    return rng.choice([a, f" {a}", f" {a}.", f"{a}\n"]), right, DIRECT_FEWSHOT, "completion"


def _direct_runon(a, b, right, kind, source, other, rng, wrong):
    return f" {a}\n\nQ: {other}\nA: {b}\n\nQ: one more question\nA: {b}", right, DIRECT_FEWSHOT, "completion"


def _cot(a, b, right, kind, source, other, rng, wrong):
    return f"{reasoning(source, kind, wrong, rng)}\nSo the answer is {a}.", right, COT_FEWSHOT, "completion"


def _cot_runon(a, b, right, kind, source, other, rng, wrong):
    text = (f"{reasoning(source, kind, wrong, rng)}\nSo the answer is {a}.\n\nQ: {other}\n"
            f"A: Let's think step by step.\nSo the answer is {b}.")
    return text, right, COT_FEWSHOT, "completion"


def _next_line(a, b, right, kind, source, other, rng, wrong):
    return f"{reasoning(source, kind, wrong, rng)}\nSo the answer is\n{a}", right, COT_FEWSHOT, "completion"


def _zeroshot_nocue(a, b, right, kind, source, other, rng, wrong):
    return (f" {reasoning(source, kind, wrong, rng)}\nTherefore, {final_sentence(kind, a)}", right,
            ZERO_SHOT, "completion")


def _zeroshot_cue(a, b, right, kind, source, other, rng, wrong):
    cue = rng.choice(["Therefore, the answer is", "The answer:", "The final answer:", "Answer:"])
    return f" {reasoning(source, kind, wrong, rng)}\n{cue} {a}.", right, ZERO_SHOT, "completion"


def _chatty(a, b, right, kind, source, other, rng, wrong):
    end = rng.choice([f"**Final Answer:** {a}", f"**Answer: {a}**", f"So the answer is **{a}**.",
                      f"Final answer: {a}"])
    return (f"Sure! Let's work through this.\n\n**Step 1:** {reasoning(source, kind, wrong, rng)}\n\n"
            f"**Step 2:** Checking again.\n\n{end}", right, CHAT, "chat")


def _boxed(a, b, right, kind, source, other, rng, wrong):
    return f"{reasoning(source, kind, wrong, rng)}\n\n$\\boxed{{{a}}}$", right, CHAT, "chat"


def _prefix(a, b, right, kind, source, other, rng, wrong):
    return rng.choice([f"A: {a}", f"A: So the answer is {a}."]), right, CHAT, "chat"


def _punct(a, b, right, kind, source, other, rng, wrong):
    return rng.choice([f"{a}!", f"So the answer is {a}!", f"{a}!!"]), right, CHAT, "chat"


def _later(a, b, right, kind, source, other, rng, wrong):
    return (f"The answer is {a}. The answer is not {b}, because {reasoning(source, kind, wrong, rng)}",
            right, CHAT, "chat")


def _hypothetical(a, b, right, kind, source, other, rng, wrong):
    return (f"If the answer were {b}, the question would read differently. "
            f"{reasoning(source, kind, wrong, rng)}\nSo the answer is {a}.", right, CHAT, "chat")


def _hedge(a, b, right, kind, source, other, rng, wrong):
    if kind == "number" and re.fullmatch(r"-?\d+", a):
        n = int(a)
        text = rng.choice([f"The answer is {n}-{n + 1}.", f"It is about {n - 1} or {n}.",
                           f"Somewhere between {n} and {n + 2}."])
    else:
        text = rng.choice([f"It is either {a} or {b}.", f"The answer is {a} or {b}."])
    return text, False, CHAT, "chat"


def _echo(a, b, right, kind, source, other, rng, wrong):
    listed = "\n".join(line for line in source.split("\n") if re.match(r"\([A-Z]\)", line))
    return f"The answer is {a}.\n\nFor reference, the options were:\n{listed}", right, CHAT, "chat"


SHAPES_FN = {"direct": _direct, "direct run-on": _direct_runon, "few-shot CoT": _cot,
             "few-shot CoT run-on": _cot_runon, "answer on next line": _next_line,
             "zero-shot CoT, no cue": _zeroshot_nocue, "zero-shot CoT, cue": _zeroshot_cue,
             "chatty Markdown": _chatty, "boxed": _boxed, "A: prefix": _prefix, "punctuation": _punct,
             "later explanation": _later, "hypothetical": _hypothetical, "hedge": _hedge,
             "options echoed": _echo}
SHAPES = list(SHAPES_FN)


# --------------------------------------------------------------------------
# Synthetic responses: numbers (GSM8K, MultiArith)


def number_items(benchmark: str, rows: list[tuple[str, str, int]], rng: random.Random) -> list[Item]:
    """rows: (question, worked solution ending with the result, answer)."""
    template = "Question: an earlier one\nAnswer: 3 + 4 = 7. The answer is 7.\n\nQuestion: {{ input }}\nAnswer:"
    items = []
    for question, solution, n in rows:
        other_q = rng.choice(rows)[0]
        for shape in rng.sample(NUMBER_SHAPES, 4):
            right = rng.random() < 0.5
            m = n if right else n + rng.choice([-10, -2, -1, 1, 2, 5])
            text = solution if right else solution[: solution.rfind(str(n))] + str(m) \
                if str(n) in solution else solution
            response, label, mode = NUMBER_SHAPES_FN[shape](text, m, right, n, other_q, rng)
            items.append(Item(benchmark, benchmark, question, str(n), response, label, shape,
                              template if mode == "completion" else CHAT, mode))
    return items


def _n_hashes(text, m, right, n, other_q, rng):
    return f"{text}\n#### {m}", right, "completion"


def _n_cue(text, m, right, n, other_q, rng):
    return f"{text}\nThe answer is {m}.", right, "completion"


def _n_nocue(text, m, right, n, other_q, rng):
    return text, right, "completion"


def _n_runon(text, m, right, n, other_q, rng):
    return (f" {text} The answer is {m}.\n\nQuestion: {other_q}\nAnswer: 5 + 6 = 11. The answer is 11.",
            right, "completion")


def _n_chatty(text, m, right, n, other_q, rng):
    end = rng.choice([f"**Final answer:** ${m:,}", f"**{m}**", f"Final Answer: {m}", f"$\\boxed{{{m}}}$"])
    return f"Sure, let's solve it step by step.\n\n{text}\n\n{end}", right, "chat"


def _n_words(text, m, right, n, other_q, rng):
    words = in_words(m)
    if words is None:
        return f"{text}\nThe answer is {m:,}.", right, "chat"
    return f"{text}\nSo the answer is {words}.", right, "chat"


def _n_thousands(text, m, right, n, other_q, rng):
    return f"{text}\nIn total that makes {m:,} dollars.", right, "chat"


def _n_decimal_comma(text, m, right, n, other_q, rng):
    if abs(n) < 10:
        return f"{text}\nThe answer is {m},0.", right, "chat"  # "8,0" is 8
    digits = str(abs(n))
    return f"{text}\nThe answer is {digits[:-1]},{digits[-1]}.", False, "chat"  # "2,5" is 2.5, not 25


def _n_hedge(text, m, right, n, other_q, rng):
    return rng.choice([f"{text}\nThe answer is {n}-{n + 1}.", f"{text}\nIt is {n - 1} or {n}."]), False, "chat"


def _n_currency(text, m, right, n, other_q, rng):
    return f"{text}\nThe answer is ${m}.00.", right, "chat"


def _n_prefix(text, m, right, n, other_q, rng):
    return f"A: {text} The answer is {m}.", right, "chat"


NUMBER_SHAPES_FN = {"#### final": _n_hashes, "CoT cue": _n_cue, "CoT, no cue": _n_nocue,
                    "base-model run-on": _n_runon, "chatty Markdown": _n_chatty, "number words": _n_words,
                    "thousands separators": _n_thousands, "decimal comma": _n_decimal_comma,
                    "hedge": _n_hedge, "currency": _n_currency, "A: prefix": _n_prefix}
NUMBER_SHAPES = list(NUMBER_SHAPES_FN)


def gsm8k_rows(data: Path, count: int, rng: random.Random):
    rows = [json.loads(line) for line in (data / "gsm8k" / "test.jsonl").read_text().splitlines()]
    out = []
    for row in rng.sample(rows, count):
        solution, _, final = row["answer"].rpartition("#### ")
        solution = re.sub(r"<<[^>]*>>", "", solution).strip()
        out.append((row["question"], solution, int(final.strip().replace(",", ""))))
    return out


def multiarith_rows(data: Path, count: int, rng: random.Random):
    rows = [json.loads(line) for line in (data / "multiarith" / "MultiArith.jsonl").read_text().splitlines()]
    out = []
    for row in rng.sample(rows, count):
        n = int(float(row["final_ans"]))
        expression = row["equation"].removeprefix("X=").replace(".0", "")
        out.append((row["question"], f"We compute {expression} = {n}.", n))
    return out


# --------------------------------------------------------------------------
# The local model's responses to real few-shot BBH prompts


def local_items(data: Path, per_task: int, cached_only: bool = False) -> list[Item]:
    from lpo_ci.cache import ResponseCache, cache_key
    from lpo_ci.llm import ModelClient, ModelParams
    from lpo_ci.local_model import DEFAULT_LOCAL_MODEL, is_available

    if per_task <= 0 or not is_available():
        return []
    cache = ResponseCache(ROOT / ".lpo-ci" / "cache")
    clients = {"cot": ModelClient(ModelParams(model=DEFAULT_LOCAL_MODEL, mode="completion", max_tokens=64),
                                  cache=cache),
               "direct": ModelClient(ModelParams(model=DEFAULT_LOCAL_MODEL, mode="completion", max_tokens=24),
                                     cache=cache)}
    items = []
    for task in LOCAL_TASKS:
        cot = (data / "bbh-cot-prompts" / f"{task}.txt").read_text().split("-----\n", 1)[1].rstrip("\n")
        direct = re.sub(r"A: Let's think step by step\.\n.*?So the answer is (.*?)\.(?=\n\n|$)", r"A: \1",
                        cot, flags=re.S)
        examples = json.loads((data / "bbh" / f"{task}.json").read_text())["examples"][:per_task]
        for example in examples:
            for style, prefix, suffix in (("cot", cot, "\nA: Let's think step by step.\n"),
                                          ("direct", direct, "\nA:")):
                prompt = f"{prefix}\n\nQ: {example['input']}{suffix}"
                client = clients[style]
                if cached_only and cache.get(cache_key(client.params.request(prompt))) is None:
                    continue
                text = asyncio.run(client.complete(prompt)).text or ""
                own = text.split("\nQ:")[0]
                if style == "cot":
                    found = re.search(r"So the answer is (.*?)\.?(?:\n|$)", own)
                    committed = found.group(1).strip() if found else None
                else:
                    committed = own.strip().split("\n")[0].strip().rstrip(".") or None
                template = (prefix.replace("{", "{{ '{' }}") + "\n\nQ: {{ input }}" + suffix)
                items.append(Item("bbh", task, example["input"], example["target"], text,
                                  committed == example["target"], f"local model, {style}", template))
    return items


# --------------------------------------------------------------------------
# Scoring


def lpo_ci_correct(items: list[Item]) -> list[bool]:
    scorers = {"gsm8k": get_scorer("numeric"), "multiarith": get_scorer("integer"), "bbh": get_scorer("bbh")}
    verdicts = []
    for item in items:
        variables = {"input": item.source, "shots": SHOTS}
        stops = request_stops(item.mode, None, [item.template], variables)
        response = cut_at_stops(item.response, stops)
        verdicts.append(scorers[item.benchmark](response, item.target, variables).outcome is Outcome.CORRECT)
    return verdicts


def lm_eval_correct(items: list[Item], variant: str) -> list[bool]:
    from tests.support.lm_eval_reference import LmEvalReference

    verdicts = [False] * len(items)
    by_task = defaultdict(list)
    for index, item in enumerate(items):
        by_task[item.task if item.benchmark == "bbh" else "boolean_expressions"].append(index)
    for task, indices in by_task.items():
        reference = LmEvalReference(variant, task)
        filtered = reference.filtered([items[i].response for i in indices], [items[i].source for i in indices])
        for i, answer in zip(indices, filtered):
            verdicts[i] = reference.correct(answer, items[i].target)
    return verdicts


def errors(items: list[Item], verdicts: list[bool]) -> tuple[int, int]:
    fp = sum(v and not i.right for i, v in zip(items, verdicts))
    fn = sum(i.right and not v for i, v in zip(items, verdicts))
    return fp, fn


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--bbh-per-task", type=int, default=14, help="BBH examples per task (6 shapes each)")
    parser.add_argument("--gsm8k", type=int, default=200, help="GSM8K problems (4 shapes each)")
    parser.add_argument("--multiarith", type=int, default=75, help="MultiArith problems (4 shapes each)")
    parser.add_argument("--local-per-task", type=int, default=2,
                        help="local-model examples per BBH task (x2 prompt styles; cached after the first run)")
    parser.add_argument("--cached-only", action="store_true",
                        help="use only the local-model responses already in the cache (no generation)")
    parser.add_argument("--show-local", action="store_true", help="print the local model's responses and labels")
    args = parser.parse_args()
    data = Path(os.environ.get("LPO_CI_DATA_DIR") or ROOT.parent / "shared" / "data")
    rng = random.Random(args.seed)

    items: list[Item] = []
    items += number_items("gsm8k", gsm8k_rows(data, args.gsm8k, rng), rng)
    items += number_items("multiarith", multiarith_rows(data, args.multiarith, rng), rng)
    for task in BBH_TASKS:
        examples = json.loads((data / "bbh" / f"{task}.json").read_text())["examples"]
        items += bbh_items(task, examples, rng, args.bbh_per_task)
    local = local_items(data, args.local_per_task, args.cached_only)
    items += local
    if args.show_local:
        for item in local:
            label = "right" if item.right else "wrong"
            print(f"--- {item.task} [{item.shape}] target {item.target!r} labelled {label}")
            print(item.response)

    lpo = lpo_ci_correct(items)
    print(f"corpus: {len(items)} responses ({len(local)} from the local model), "
          f"{sum(i.right for i in items)} labelled right\n")
    header = "| benchmark | n | lpo-ci FP | lpo-ci FN | lm-eval best variant | its FP | its FN | target met |"
    print(header)
    print("|" + " --- |" * 8)
    details = []
    all_met = True
    for benchmark, family in (("gsm8k", "gsm8k"), ("multiarith", "gsm8k"), ("bbh", "bbh")):
        chosen = [k for k, i in enumerate(items) if i.benchmark == benchmark]
        subset = [items[k] for k in chosen]
        ours = errors(subset, [lpo[k] for k in chosen])
        variants = {v: errors(subset, lm_eval_correct(subset, v)) for v in LM_EVAL_VARIANTS[family]}
        best = min(variants, key=lambda v: (sum(variants[v]), variants[v][0]))
        met = ours[0] <= variants[best][0] and sum(ours) * 2 <= sum(variants[best])
        all_met &= met
        print(f"| {benchmark} | {len(subset)} | {ours[0]} | {ours[1]} | {best} | {variants[best][0]} | "
              f"{variants[best][1]} | {'yes' if met else 'NO'} |")
        details.append((benchmark, variants))
        missed = defaultdict(int)
        for k in chosen:
            if lpo[k] != items[k].right:
                missed[items[k].shape] += 1
        details.append((benchmark + " lpo-ci errors by shape", dict(missed)))
    print()
    for name, values in details:
        print(f"{name}: {values}")
    return 0 if all_met else 1


if __name__ == "__main__":
    raise SystemExit(main())

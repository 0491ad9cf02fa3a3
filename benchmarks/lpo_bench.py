"""Shared pieces of the LPO benchmarks: BBH direct-answer prompts built from the data mirror,
throwaway projects, and a persistent memo of the embedded model's generations.

The memo sits under the response cache: each run gets a fresh response cache, so its
budget is charged for every call as a user's first run would be, while a generation the
machine already computed (the same prompt, the same parameters) is read back instead of
recomputed. Results are identical to uncached ones (greedy decoding, fixed seeds).
"""

from __future__ import annotations

import json
import os
import re
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

ROOT = Path(__file__).resolve().parents[1]
SPEC = """{{# lpo:
  benchmark: bbh/{task}
  mode: completion
  max_tokens: {max_tokens}
  stop: "\\n"
  samples: {samples}
#}}
"""


def mirror() -> Path:
    """The benchmark data mirror (``LPO_CI_DATA_DIR``), or exit saying how to point at one."""
    path = Path(os.environ.get("LPO_CI_DATA_DIR", ROOT.parent / "shared" / "data"))
    if not (path / "bbh-cot-prompts").is_dir():
        raise SystemExit(f"no benchmark data mirror at {path}: set LPO_CI_DATA_DIR")
    os.environ["LPO_CI_DATA_DIR"] = str(path)
    return path


def exemplars(task: str) -> tuple[str, list[tuple[str, str]]]:
    """The task instruction and its (question, final answer) exemplars from the CoT prompt file."""
    text = (mirror() / "bbh-cot-prompts" / f"{task}.txt").read_text(encoding="utf-8")
    body = text.split("-----", 1)[1].strip()
    instruction, *blocks = body.split("\n\nQ: ")
    shots = []
    for block in blocks:
        question, answer = block.split("\nA: ", 1)
        final = re.search(r"the answer is (.*?)\.?\s*$", answer.strip(), re.DOTALL)
        shots.append((question.strip(), final.group(1).strip() if final else answer.strip()))
    return instruction.strip(), shots


def tail_shots(task: str, k: int) -> list[tuple[str, str]]:
    """``k`` exemplars from the end of the task's seeded order (seed 0): never in the gate's sample,
    the held-out or the dev split, which are drawn from its start."""
    from lpo_ci.benchmarks import load_benchmark, sample_examples

    ordered = sample_examples(load_benchmark(f"bbh/{task}", data_dir=mirror()), None, 0)
    return [(e.variables["input"], e.target) for e in ordered[len(ordered) - k:]] if k else []


def escape(text: str) -> str:
    """Literal text for a Jinja template (BBH inputs contain braces, e.g. dyck_languages)."""
    return re.sub(r"(\{[{%#]|[}%#]\})", lambda m: "{{ '" + m.group(1) + "' }}", text)


def spec_header(task: str, samples: int = 48, max_tokens: int = 8) -> str:
    return SPEC.format(task=task, samples=samples, max_tokens=max_tokens)


def with_option_text(question: str, answer: str) -> str:
    """"(D)" -> "(D) 12/14/1937": the option's own text after its letter, as in the question's list."""
    found = re.search(r"^" + re.escape(answer) + r" (.+)$", question, re.MULTILINE)
    return f"{answer} {found.group(1).strip()}" if found else answer


def direct_prompt(task: str, *, instruction: str | None = None, shots: list[tuple[str, str]] | None = None,
                  cue: str = "A:", samples: int = 48, extra_shots: int = 0, option_text: bool = False,
                  max_tokens: int = 8) -> str:
    """A few-shot direct-answer prompt: instruction, exemplars (the published ones, then
    ``extra_shots`` from the data's tail), the question, the answer cue. With ``option_text``
    an exemplar's answer letter is followed by the option's text, which a small model copies
    from the question's list far better than it picks a bare letter."""
    default_instruction, default_shots = exemplars(task)
    instruction = default_instruction if instruction is None else instruction
    shots = default_shots + tail_shots(task, extra_shots) if shots is None else shots
    if option_text:
        shots = [(q, with_option_text(q, a)) for q, a in shots]
    body = "".join(f"Q: {escape(q)}\n{cue} {escape(a)}\n\n" for q, a in shots)
    head = f"{instruction}\n\n" if instruction else ""
    return spec_header(task, samples, max_tokens) + f"{head}{body}Q: {{{{ input }}}}\n{cue}"


def project(workdir: Path, name: str, source: str, cache_dir: Path, files: dict[str, str] | None = None):
    """A throwaway project holding one template: (settings, template file)."""
    from lpo_ci.spec import load_settings, read_template

    root = workdir / name
    (root / "prompts").mkdir(parents=True, exist_ok=True)
    (root / "pyproject.toml").write_text("[tool.lpo_ci]\n", encoding="utf-8")
    for relpath, text in (files or {}).items():
        (root / relpath).parent.mkdir(parents=True, exist_ok=True)
        (root / relpath).write_text(text, encoding="utf-8")
    path = root / "prompts" / f"{name}.j2"
    path.write_text(source, encoding="utf-8")
    settings = load_settings(root, {"cache_dir": str(cache_dir)})
    return settings, read_template(settings, path)


def memoize_generations(directory: Path) -> None:
    """Keep every generation of the embedded model in ``directory`` and reuse it across runs."""
    from lpo_ci import local_model
    from lpo_ci.cache import ResponseCache, cache_key

    if getattr(local_model.generate, "memoized", False):
        return
    store = ResponseCache(directory)
    compute = local_model.generate

    def generate(prompt: str, **kwargs):
        key = cache_key({"generate": local_model.DEFAULT_LOCAL_MODEL, "prompt": prompt, **kwargs})
        hit = store.get(key)
        if hit is not None:
            return local_model.Generation(**hit)
        result = compute(prompt, **kwargs)
        store.put(key, result.__dict__)
        return result

    generate.memoized = True
    local_model.generate = generate


def dump(path: str | None, data) -> None:
    if path:
        Path(path).write_text(json.dumps(data, indent=1, default=str), encoding="utf-8")

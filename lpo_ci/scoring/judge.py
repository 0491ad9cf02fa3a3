"""Model-graded scoring: ``scorer: judge``, for free-form answers no extractor fits.

A judge model reads a rubric (a Jinja2 template: ``templates/judge/rubric.j2``
by default, or the template's own ``rubric`` file) filled with the example's
input, the reference answer and the response, and answers ``PASS: reason`` or
``FAIL: reason`` (a JSON object ``{"pass": true, "reason": …}`` is read too, as
promptfoo's llm-rubric writes it). The call goes through the same cached,
retried client as every other call, at temperature 0 with the run's seed and a
short answer, so a rerun costs nothing. A verdict that cannot be read is a
format failure, never a wrong answer.
"""

from __future__ import annotations

import asyncio
import hashlib
import json
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ..errors import SpecError
from . import Outcome, Score, example_variables

DEFAULT_RUBRIC = "judge/rubric.j2"
JUDGE_MAX_TOKENS = 128
_VERDICT_LINE = re.compile(
    r"^[\s*_#>`\"']*(?:verdict|grade|result)?[\s*_]*[:=]?[\s*_\"']*(pass|fail)(?:ed|es)?\b[\s*_\"'.]*[:\-–—,.]?\s*(.*)$",
    re.IGNORECASE)
_REASON_LINE = re.compile(r"^[\s*_]*reason[\s*_]*:\s*(.+)$", re.IGNORECASE | re.MULTILINE)
_JSON_OBJECT = re.compile(r"\{[^{}]*\}")
_PASS_WORDS = {"pass": True, "passed": True, "yes": True, "correct": True, "true": True,
               "fail": False, "failed": False, "no": False, "incorrect": False, "false": False}


def parse_verdict(text: str) -> tuple[bool, str] | None:
    """(passed, reason) from a judge's answer, or None when it says neither PASS nor FAIL."""
    for candidate in _JSON_OBJECT.findall(text):
        try:
            data = json.loads(candidate)
        except ValueError:
            continue
        if not isinstance(data, dict):
            continue
        value = data.get("pass", data.get("verdict"))
        if isinstance(value, str):
            value = _PASS_WORDS.get(value.strip().lower())
        if isinstance(value, bool):
            return value, str(data.get("reason", "")).strip()
    for line in text.splitlines():
        if not line.strip():
            continue
        match = _VERDICT_LINE.match(line)
        if match is None:
            return None  # the first thing said must be the verdict
        reason = match.group(2).strip()
        if not reason:
            found = _REASON_LINE.search(text)
            reason = found.group(1).strip() if found else ""
        return match.group(1).lower() == "pass", reason
    return None


def _question(variables: dict[str, Any]) -> str:
    """What the example asked: its input/question field, else every field."""
    for name in ("input", "question", "prompt"):
        if isinstance(variables.get(name), str):
            return variables[name]
    return "\n".join(f"{key}: {value}" for key, value in variables.items())


@dataclass
class JudgeScorer:
    """Grades a response by asking ``client``'s model with ``rubric``."""

    client: Any  # lpo_ci.llm.ModelClient
    rubric: Any  # lpo_ci.render.PromptTemplate
    rubric_digest: str
    name: str = "judge"

    @property
    def version(self) -> str:
        return f"judge-1-{self.client.params.model}-{self.rubric_digest}"

    def __call__(self, response: str, target: str, example: Any = None) -> Score:
        from ..llm import closing_clients

        # a loop of its own: the clients made on it are closed with it
        return asyncio.run(closing_clients(self.ascore(response, target, example)))

    async def ascore(self, response: str, target: str, example: Any = None) -> Score:
        variables = dict(example_variables(example))
        prompt = self.rubric.render({"input": _question(variables), "variables": variables,
                                     "response": response, "target": target})
        call = await self.client.complete(prompt)
        if call.text is None:
            return Score(Outcome.ERROR, None, f"the judge call failed: {call.error}", call=call)
        verdict = parse_verdict(call.text)
        if verdict is None:
            return Score(Outcome.FORMAT_FAILURE, None, "the judge's answer has no PASS/FAIL verdict",
                         judge={"verdict": None, "reason": None, "answer": call.text[:500]}, call=call)
        passed, reason = verdict
        word = "pass" if passed else "fail"
        return Score(Outcome.CORRECT if passed else Outcome.WRONG, word, reason or None,
                     judge={"verdict": word, "reason": reason}, call=call)


def _rubric_source(spec: Any, root: Path | None) -> tuple[str, str]:
    """(text, label) of the template's rubric, or of the shipped default."""
    from ..resources import templates_dir

    if not spec.rubric:
        path = templates_dir() / DEFAULT_RUBRIC
        return path.read_text(encoding="utf-8"), str(path)
    path = Path(spec.rubric)
    if not path.is_absolute() and root is not None:
        path = Path(root) / path
    try:
        return path.read_text(encoding="utf-8"), str(path)
    except OSError as exc:
        raise SpecError(f"cannot read the rubric {spec.rubric!r}: {exc.strerror or exc}",
                        **spec.where("rubric"),
                        hint="give a Jinja2 file relative to the project root, e.g. rubrics/grade.j2, "
                             "or leave 'rubric' out for the default") from None


def build_judge(spec: Any, settings: Any, cache: Any) -> JudgeScorer:
    """The judge a spec asks for; a missing or local judge model is a spec error."""
    from .. import local_model
    from ..llm import ModelClient, ModelParams
    from ..render import compile_template

    if not spec.judge_model:
        raise SpecError("scorer 'judge' needs a 'judge_model'", **spec.where("scorer"),
                        hint="add 'judge_model: openai/gpt-4o-mini' (any litellm model that follows "
                             "instructions)")
    if local_model.is_local(spec.judge_model):
        raise SpecError(f"the embedded local model {spec.judge_model!r} cannot be a judge: it is a small "
                        "base model that follows no instructions", **spec.where("judge_model"),
                        hint="set judge_model to an instruction-following litellm model, e.g. "
                             "openai/gpt-4o-mini, or an OpenAI-compatible server's model with api_base")
    source, label = _rubric_source(spec, getattr(settings, "root", None))
    rubric = compile_template(source, label)
    params = ModelParams(model=spec.judge_model, mode="chat", temperature=0.0,
                         max_tokens=JUDGE_MAX_TOKENS, api_base=spec.judge_api_base, seed=spec.seed)
    client = ModelClient(params, cache=cache, concurrency=getattr(settings, "concurrency", 8),
                         retries=getattr(settings, "retries", 4), timeout=spec.timeout)
    return JudgeScorer(client, rubric, hashlib.sha256(source.encode()).hexdigest()[:12])

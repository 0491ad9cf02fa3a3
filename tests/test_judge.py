"""``scorer: judge`` end to end: a task model and a judge model, both real
OpenAI-compatible servers on loopback, graded through the cached client."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from lpo_ci.errors import SpecError
from lpo_ci.runner import Session
from lpo_ci.scoring.judge import parse_verdict
from lpo_ci.spec import load_settings, read_template
from tests.support.openai_server import _last_question, evaluate_boolean_expression, fake_openai_server


@pytest.mark.parametrize(("text", "expected"), [
    ("PASS: same result as the reference.", (True, "same result as the reference.")),
    ("**FAIL** - the answer says 12", (False, "the answer says 12")),
    ("Verdict: pass\nReason: both say True.", (True, "both say True.")),
    ('{"pass": false, "reason": "differs"}', (False, "differs")),
    ('```json\n{"verdict": "PASS", "reason": "ok"}\n```', (True, "ok")),
    ("I think it is fine.", None),
    ("", None),
])
def test_parse_verdict(text, expected):
    assert parse_verdict(text) == expected


def task_answer(prompt: str) -> str:
    """A chatty task model: right on expressions that start with "not", else wrong."""
    question = _last_question(prompt) or ""
    value = evaluate_boolean_expression(question)
    if question.startswith("True and"):
        return "UNCLEAR"
    return f"Working through it, the value comes out {value if question.startswith('not') else not value}."


def judge_answer(prompt: str) -> str:
    """A judge that follows the rubric: PASS when the answer names the reference."""
    reference = re.search(r"Reference answer:\n(.*)\n", prompt).group(1).strip()
    graded = prompt.split("Answer to grade:\n", 1)[1]
    if "UNCLEAR" in graded:
        return "Hmm, hard to tell."
    if reference in graded:
        return f"PASS: both give {reference}."
    return f"FAIL: the reference is {reference}."


def project(tmp_path: Path, spec: str) -> tuple[Session, object]:
    (tmp_path / "pyproject.toml").write_text('[tool.lpo_ci]\nmodel = "openai/fake"\n', encoding="utf-8")
    path = tmp_path / "prompts" / "bool.j2"
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("{# lpo:\n  benchmark: bbh/boolean_expressions\n  samples: 30\n" + spec
                    + "#}\nEvaluate the expression.\n\nQ: {{ input }}\nA:", encoding="utf-8")
    settings = load_settings(tmp_path)
    return Session(settings, use_git=False), read_template(settings, path)


@pytest.mark.slow
def test_judge_end_to_end_on_loopback(tmp_path):
    with fake_openai_server(answer=task_answer) as task, fake_openai_server(answer=judge_answer) as judge:
        spec = (f"  api_base: {task.url}\n  scorer: judge\n  judge_model: openai/judge\n"
                f"  judge_api_base: {judge.url}\n")
        session, template = project(tmp_path, spec)
        report = session.run(template)
        data = report.to_dict()
        assert data["scorer"]["name"] == "judge" and "openai/judge" in data["scorer"]["version"]
        by_outcome: dict[str, int] = {}
        for example in data["examples"]:
            head = example["head"]
            by_outcome[head["outcome"]] = by_outcome.get(head["outcome"], 0) + 1
            question = next(e for e in report.prepared.examples if e.id == example["id"]).variables["input"]
            if question.startswith("True and"):
                assert head["outcome"] == "format_failure"
                assert head["judge"] == {"verdict": None, "reason": None, "answer": "Hmm, hard to tell."}
            elif question.startswith("not"):
                assert head["outcome"] == "correct"
                assert head["judge"] == {"verdict": "pass", "reason": f"both give {example['target']}."}
            else:
                assert head["outcome"] == "wrong" and head["judge"]["verdict"] == "fail"
                assert head["judge"]["reason"].startswith("the reference is")
        assert len(by_outcome) == 3, by_outcome
        assert judge.requests == 30 and task.requests == 30
        assert report.usage.calls == 60  # the judge's calls are counted with the task's
        # the rubric carried the example's input, the reference and the response
        assert any("Task:\nnot" in p for p in judge.prompts)
        rerun = session.run(template)  # everything cached: no call to either model
        assert judge.requests == 30 and task.requests == 30
        assert rerun.head.outcomes() == report.head.outcomes()


@pytest.mark.slow
def test_a_rubric_of_the_template_overrides_the_default(tmp_path):
    (tmp_path / "rubrics").mkdir()
    (tmp_path / "rubrics" / "strict.j2").write_text(
        "STRICT RUBRIC\nReference answer:\n{{ target }}\nAnswer to grade:\n{{ response }}\n", encoding="utf-8")
    with fake_openai_server(answer=task_answer) as task, fake_openai_server(answer=judge_answer) as judge:
        spec = (f"  api_base: {task.url}\n  scorer: judge\n  judge_model: openai/judge\n"
                f"  judge_api_base: {judge.url}\n  rubric: rubrics/strict.j2\n")
        session, template = project(tmp_path, spec)
        session.run(template)
        assert judge.prompts and all(p.startswith("STRICT RUBRIC") for p in judge.prompts)


@pytest.mark.parametrize(("spec", "key", "fragment"), [
    ("  scorer: judge\n", "scorer", "needs a 'judge_model'"),
    ("  scorer: judge\n  judge_model: lpo-local/gemma-3-270m\n", "judge_model", "cannot be a judge"),
    ("  scorer: judge\n  judge_model: openai/judge\n  rubric: missing.j2\n", "rubric", "cannot read the rubric"),
    ("  scorer: bbh\n  judge_model: openai/judge\n", "judge_model", "not 'judge'"),
])
def test_judge_spec_errors_name_the_line(tmp_path, spec, key, fragment):
    session, template = project(tmp_path, spec)
    with pytest.raises(SpecError, match=fragment) as info:
        session.prepare(template)
    lines = template.source.splitlines()
    assert info.value.line == next(i for i, line in enumerate(lines, 1) if line.strip().startswith(key + ":"))
    assert info.value.hint

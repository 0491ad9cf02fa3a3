"""Make ``docs/history.png``: the history dashboard of a real run of lpo-ci over a series of commits.

A throwaway git project with two prompt templates goes through sixteen
commits (wording edits, a change of the sample size); each commit is scored
by ``lpo-ci eval`` against the loopback OpenAI-compatible server of the tests
and recorded with ``lpo-ci history record``; half way the provider swaps the
model behind its name (a fresh run records it). Then ``lpo-ci history html``
writes the dashboard and a headless Chromium takes the screenshot.

Run from the repository root, in the project's environment::

    python docs/history_screenshot.py [--out docs/history.png]
"""

from __future__ import annotations

import argparse
import hashlib
import os
import subprocess
import sys
import tempfile
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from lpo_ci.cli import main  # noqa: E402
from tests.support.chromium import check_page  # noqa: E402
from tests.support.openai_server import evaluate_boolean_expression, fake_openai_server  # noqa: E402
from tests.support.synthetic_data import write_mirror  # noqa: E402

GOOD_PHRASES = ("step by step", "True or False", "operator precedence", "Answer with one word")
BAD_PHRASES = ("quickly", "guess")
SPEC = "{{# lpo:\n  benchmark: bbh/boolean_expressions\n  samples: {samples}\n#}}\n"
# (commit subject, bool.j2 instruction, logic.j2 instruction, samples)
PLAN = [
    ("Add the boolean prompts", "Evaluate the expression.", "Is the statement True or False?", 40),
    ("Ask for True or False", "Evaluate the expression: True or False.", "Is the statement True or False?", 40),
    ("Mention operator precedence", "Evaluate the expression: True or False, mind operator precedence.",
     "Is the statement True or False?", 40),
    ("Shorter wording", "Evaluate quickly: True or False.", "Is the statement True or False?", 40),
    ("Restore precedence hint", "Evaluate the expression: True or False, mind operator precedence.",
     "Think step by step: is the statement True or False?", 40),
    ("Tidy punctuation", "Evaluate the expression: True or False, mind operator precedence!",
     "Think step by step: is the statement True or False?", 40),
    ("Answer in one word", "Evaluate the expression step by step: True or False, mind operator precedence. "
                           "Answer with one word.", "Think step by step: is the statement True or False?", 40),
    ("Reword the logic prompt", "Evaluate the expression step by step: True or False, mind operator precedence. "
                                "Answer with one word.", "Is it True or False? Take a guess.", 40),
    ("Undo the guess", "Evaluate the expression step by step: True or False, mind operator precedence. "
                       "Answer with one word.", "Think step by step: is the statement True or False?", 40),
    (None, None, None, 40),  # the provider swaps the model: a scheduled fresh run records it
    ("Typo", "Evaluate the expression step by step: True or False, mind operator precedence. "
             "Answer with one word.", "Think step by step: is the statement True or False?", 40),
    ("Score on 60 examples", "Evaluate the expression step by step: True or False, mind operator precedence. "
                             "Answer with one word.", "Think step by step: is the statement True or False?", 60),
    ("Simplify", "Evaluate the expression step by step: True or False. Answer with one word.",
     "Think step by step: is the statement True or False?", 60),
    ("Precedence again", "Evaluate the expression step by step: True or False, mind operator precedence. "
                         "Answer with one word.", "Think step by step: is it True or False? Answer with one word.",
     60),
]
STATE = {"penalty": 0}


def answer(prompt: str) -> str:
    """Right more often the more good phrases the prompt has; deterministic per question."""
    score = 58 + 9 * sum(p in prompt for p in GOOD_PHRASES) - 10 * sum(p in prompt for p in BAD_PHRASES)
    score -= STATE["penalty"]
    question = prompt.rsplit("Q:", 1)[-1].split("\n", 1)[0].strip()
    value = evaluate_boolean_expression(question)
    if value is None:
        return "I don't know"
    right = int(hashlib.sha256(question.encode()).hexdigest(), 16) % 100 < score
    return str(value if right else not value)


def git(cwd: Path, *args: str, day: int = 0) -> str:
    date = f"2026-03-{day + 1:02d}T10:00:00+00:00"
    env = {**os.environ, "GIT_AUTHOR_NAME": "lpo-ci", "GIT_AUTHOR_EMAIL": "lpo-ci@example.com",
           "GIT_COMMITTER_NAME": "lpo-ci", "GIT_COMMITTER_EMAIL": "lpo-ci@example.com",
           "GIT_AUTHOR_DATE": date, "GIT_COMMITTER_DATE": date}
    return subprocess.run(["git", "-C", str(cwd), *args], check=True, capture_output=True, text=True,
                          env=env).stdout


def build(project: Path, url: str, server) -> None:
    (project / "prompts").mkdir(parents=True)
    (project / "pyproject.toml").write_text(f'[tool.lpo_ci]\nmodel = "openai/gpt-4o-mini"\napi_base = "{url}"\n',
                                            encoding="utf-8")
    git(project, "init", "-q", "-b", "main")
    cwd = Path.cwd()
    os.chdir(project)
    try:
        for day, (subject, boolean, logic, samples) in enumerate(PLAN):
            fresh = []
            if subject is None:
                server.reported_model, STATE["penalty"] = "gpt-4o-mini-2026-03-10", 9
                fresh = ["--fresh"]
            else:
                spec = SPEC.format(samples=samples)
                (project / "prompts" / "bool.j2").write_text(f"{spec}{boolean}\n\nQ: {{{{ input }}}}\nA:\n",
                                                             encoding="utf-8")
                (project / "prompts" / "logic.j2").write_text(f"{spec}{logic}\n\nQ: {{{{ input }}}}\nA:\n",
                                                              encoding="utf-8")
                git(project, "add", "-A")
                git(project, "commit", "-q", "-m", subject, day=day)
            report = project.parent / f"report-{day}.json"
            main(["eval", "prompts/bool.j2", "prompts/logic.j2", "--no-base", "--report", str(report), *fresh])
            main(["history", "record", "--report", str(report), "--event", "schedule" if fresh else "push"])
    finally:
        os.chdir(cwd)


def run(out: Path) -> None:
    with tempfile.TemporaryDirectory(prefix="lpo-ci-history-shot-") as scratch:
        scratch = Path(scratch)
        os.environ["LPO_CI_DATA_DIR"] = str(write_mirror(scratch / "data"))
        os.environ.setdefault("LITELLM_LOCAL_MODEL_COST_MAP", "True")
        project = scratch / "project"
        with fake_openai_server(answer=answer, reported_model="gpt-4o-mini-2026-01-15") as server:
            build(project, server.url, server)
        page = scratch / "dashboard.html"
        main(["history", "html", str(page), "--root", str(project), "--title", "Prompt quality over time"])
        check = check_page(page, size=(1100, 1180), dom_expression="document.documentElement.dataset.charts")
        if check.console or check.exceptions or check.requests or check.dom != "4":
            raise SystemExit(f"the dashboard did not render cleanly: {check}")
        out.write_bytes(check.screenshot)
        print(f"screenshot written to {out}")


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--out", type=Path, default=REPO / "docs" / "history.png")
    run(parser.parse_args().out)

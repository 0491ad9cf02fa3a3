"""Defaults for base models: completion mode, the template's stops and a short answer budget
when the spec leaves them unset; a chat model keeps chat and 256 tokens; what the spec sets wins.

End to end through the loopback server (a ``text-completion-openai/`` model is a base model),
and on the real embedded model.
"""

from __future__ import annotations

import pytest

from lpo_ci import local_model
from lpo_ci.model_defaults import default_max_tokens, default_mode, is_base_model
from tests.support.openai_server import GOOD_WORDING
from tests.test_plugin import (  # noqa: F401 - the two autouse fixtures apply here too
    TASK, _hermetic_env, _preload_heavy_modules, entry, report, write_template)

FEW_SHOT = (f"{GOOD_WORDING}.\n\nQ: not ( True ) is\nA: False\n\nQ: True and True is\nA: True\n\n"
            "Q: {{ input }}\nA:\n")


@pytest.mark.parametrize("model, base", [
    (local_model.DEFAULT_LOCAL_MODEL, True), ("text-completion-openai/fake", True),
    ("gpt-3.5-turbo-instruct", True), ("openai/gpt-4o-mini", False), ("openai/my-self-hosted", False)])
def test_which_models_are_base_models(model, base):
    assert is_base_model(model) is base
    assert default_mode(model) == ("completion" if base else "chat")


def test_a_chat_or_self_hosted_model_is_told_apart_without_importing_litellm():
    """A warm rerun makes no call: its set-up must not pay for litellm's import to pick a mode."""
    import subprocess
    import sys

    code = ("import sys; from lpo_ci.model_defaults import is_base_model\n"
            "assert not any(map(is_base_model, ['openai/gpt-4o-mini', 'openai/my-self-hosted', 'ollama/llama3']))\n"
            "assert 'litellm' not in sys.modules\n"
            "assert is_base_model('gpt-3.5-turbo-instruct') and 'litellm' in sys.modules  # litellm decides those\n")
    subprocess.run([sys.executable, "-c", code], check=True, timeout=300)


@pytest.mark.parametrize("targets, prompt, tokens", [
    (["True", "False"], "Q: x\nA:", 8), (["Yes"], "", 8), (["(B)"], "", 8), (["18", "1,234"], "", 16),
    (["a longer free-text answer of sixty characters, give or take!"], "", 28),
    (["True"], "Q: x\nA: Let's think step by step. ... So the answer is True.\n\nQ: y\nA:", 256),
    (["x" * 1000], "", 128)])
def test_the_answer_budget_fits_the_targets(targets, prompt, tokens):
    assert default_max_tokens(local_model.DEFAULT_LOCAL_MODEL, targets, prompt) == tokens
    assert default_max_tokens("openai/gpt-4o-mini", targets, prompt) == 256


def _project(pytester, url: str, model: str, extra: str = "") -> None:
    pytester.makepyprojecttoml(f'[tool.lpo_ci]\nmodel = "{model}"\napi_base = "{url}"\n{extra}')


def test_a_base_model_gets_completion_stops_and_a_short_budget(pytester, openai_server):
    _project(pytester, openai_server.url, "text-completion-openai/fake")
    write_template(pytester, "prompts/x.j2", FEW_SHOT, samples=10)
    pytester.runpytest("--lpo", "--lpo-report=r.json").assert_outcomes(passed=1)
    bodies = openai_server.bodies
    assert len(bodies) == 10 and all("prompt" in b and "messages" not in b for b in bodies)  # /completions
    assert {b["max_tokens"] for b in bodies} == {8}
    assert all(b["stop"] == ["\nQ:", "\n\n"] for b in bodies), bodies[0]
    assert entry(report(pytester, "r.json"), "prompts/x.j2")["head"]["accuracy"] > 0.8


def test_a_chat_model_and_the_spec_s_own_values_are_left_alone(pytester, openai_server):
    _project(pytester, openai_server.url, "openai/fake")
    write_template(pytester, "prompts/x.j2", FEW_SHOT, samples=5)
    pytester.runpytest("--lpo").assert_outcomes(passed=1)
    assert all("messages" in b and b["max_tokens"] == 256 and not b.get("stop") for b in openai_server.bodies)

    openai_server.reset_counts()
    _project(pytester, openai_server.url, "text-completion-openai/fake")
    write_template(pytester, "prompts/x.j2", FEW_SHOT, samples=5, mode="chat", max_tokens=40, stop='"###"')
    pytester.runpytest("--lpo").assert_outcomes(passed=1)
    # litellm's text-completion provider sends even a chat request to /v1/completions: the values are the spec's
    assert openai_server.bodies
    assert all(b["max_tokens"] == 40 and b["stop"] == ["###"] for b in openai_server.bodies), openai_server.bodies[:1]


def test_stops_are_derived_through_an_included_layout(pytester, openai_server):
    _project(pytester, openai_server.url, "text-completion-openai/fake")
    pytester.makefile(".j2", **{"prompts/_shots": FEW_SHOT.replace("Q: {{ input }}\nA:\n", "")})
    write_template(pytester, "prompts/x.j2", '{% include "_shots.j2" %}Q: {{ input }}\nA:\n', samples=5)
    pytester.runpytest("--lpo").assert_outcomes(passed=1)
    assert all(b["stop"] == ["\nQ:", "\n\n"] for b in openai_server.bodies), openai_server.bodies[0]


@pytest.mark.slow
@pytest.mark.skipif(not local_model.is_available(), reason=local_model.INSTALL_HINT)
def test_the_embedded_model_answers_short_under_the_defaults(pytester, data_dir):
    pytester.makepyprojecttoml("[tool.lpo_ci]\n")
    write_template(pytester, "prompts/x.j2", FEW_SHOT, samples=6)
    pytester.runpytest("--lpo", "--lpo-report=r.json").assert_outcomes(passed=1)
    item = entry(report(pytester, "r.json"), "prompts/x.j2")
    assert item["model"] == local_model.DEFAULT_LOCAL_MODEL
    assert item["head"]["usage"]["completion_tokens"] <= 6 * 8
    assert all("\nQ:" not in e["head"]["response"] and len(e["head"]["response"]) < 40 for e in item["examples"])
    assert item["head"]["format_failures"] <= 3  # the shape is the subject: most answers read as True/False

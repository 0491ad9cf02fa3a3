"""Stop sequences derived from a template's few-shot structure: derived, sent as the
request's ``stop``, and applied after the fact to responses (cached ones included)
from providers that ignore it."""

from __future__ import annotations

import asyncio
from pathlib import Path

import pytest

from lpo_ci.render import compile_template
from lpo_ci.runner import Session
from lpo_ci.spec import load_settings, read_template
from lpo_ci.stops import cut_at_stops, derive_stops, example_label, request_stops
from tests.support.openai_server import _last_question, evaluate_boolean_expression, fake_openai_server

FEW_SHOT_LOOP = ("{% for s in shots %}Q: {{ s.q }}\nA: {{ s.a }}\n\n{% endfor %}"
                 "Q: {{ input }}\nA: Let's think step by step.\n")
SHOTS = [{"q": "not True is", "a": "not True = False. So the answer is False."},
         {"q": "True or False is", "a": "True or False = True. So the answer is True."}]


def rendered(source: str, **variables) -> str:
    return compile_template(source, "t.j2").render({"input": "X", "shots": SHOTS, **variables})


@pytest.mark.parametrize(("source", "labels", "stops"), [
    ("{# lpo:\n  benchmark: bbh/navigate\n#}\nEvaluate it.\n\nQ: {{ input }}\nA:", ("Q:", "A:"), ["\nQ:"]),
    ("Instructions: be careful.\nQuestion: {{ input }}\nOptions: {{ o }}\nAnswer:",
     ("Question:", "Answer:"), ["\nQuestion:"]),
    ("Input:\n{{ input }}\nOutput:", ("Input:", "Output:"), ["\nInput:"]),
    (FEW_SHOT_LOOP, ("Q:", "A:"), ["\nQ:", "\n\n"]),
    ("Q: 1 + 1\nA: 2\n\nQ: 2 + 2\nA: 4\n\nQ: {{ input }}\nA:", ("Q:", "A:"), ["\nQ:", "\n\n"]),
    ("Q: 1 + 1\nA: It is 2.\n\nSo: 2\n\nQ: {{ input }}\nA:", ("Q:", "A:"), ["\nQ:"]),  # blank line inside
    ("{{ input }}", (None, None), []),
    ("Translate to French: {{ input }}", (None, None), []),
])
def test_derive_stops(source, labels, stops):
    assert example_label(source) == labels
    assert derive_stops(source, rendered(source, o="(A) x")) == stops


def test_cut_at_stops_takes_the_earliest():
    run_on = " (C).\n\nQ: an invented question\nA: (A)"
    assert cut_at_stops(run_on, ["\nQ:", "\n\n"]) == " (C)."
    assert cut_at_stops(run_on, ["\nQ:"]) == " (C).\n"
    assert cut_at_stops(run_on, None) == run_on
    assert cut_at_stops(None, ["\nQ:"]) is None


def test_request_stops_user_stop_wins_and_chat_mode_has_none():
    source = "Q: {{ input }}\nA:"
    assert request_stops("completion", ["###"], [source], {"input": "x"}) == ("###",)
    assert request_stops("chat", None, [source], {"input": "x"}) is None
    assert request_stops("completion", None, [source], {"input": "x"}) == ("\nQ:",)
    # base and head versions: neither is cut where the other is not
    assert request_stops("completion", None, [source, "Question: {{ input }}\nAnswer:"],
                         {"input": "x"}) == ("\nQ:", "\nQuestion:")
    assert request_stops("completion", None, ["{{ broken"], {"input": "x"}) is None


def run_on_answer(prompt: str) -> str:
    """A base model that ignores ``stop``: the right answer, then an invented example
    with the wrong one."""
    value = evaluate_boolean_expression(_last_question(prompt) or "")
    return f" {value}\n\nQ: not ( True ) is\nA: {not value}"


def project(tmp_path: Path, url: str, spec_extra: str = "") -> tuple:
    (tmp_path / "pyproject.toml").write_text('[tool.lpo_ci]\nmodel = "openai/fake"\n', encoding="utf-8")
    path = tmp_path / "prompts" / "bool.j2"
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("{# lpo:\n  benchmark: bbh/boolean_expressions\n  samples: 12\n  mode: completion\n"
                    f"  api_base: {url}\n{spec_extra}#}}\nEvaluate the expression.\n\nQ: {{{{ input }}}}\nA:",
                    encoding="utf-8")
    settings = load_settings(tmp_path)
    return Session(settings, use_git=False), read_template(settings, path)


@pytest.mark.slow
def test_derived_stops_are_sent_and_cut_fresh_and_cached_responses(tmp_path):
    with fake_openai_server(answer=run_on_answer) as server:
        session, template = project(tmp_path, server.url)
        first = session.run(template)
        assert first.prepared.client.params.stop == ("\nQ:",)
        assert first.head.accuracy == 1.0
        assert all("Q:" not in r.response for r in first.head.results)
        calls = server.requests
        assert calls == 12
        # the cache holds the run-ons as the provider sent them; the cut applies again
        cached = session.run(template)
        assert server.requests == calls
        assert cached.head.accuracy == 1.0 and all(r.cached for r in cached.head.results)
        assert cached.to_dict()["scorer"] == {"name": "bbh", "version": first.prepared.scorer.version}


@pytest.mark.slow
def test_a_user_stop_wins_over_derived_stops(tmp_path):
    with fake_openai_server(answer=run_on_answer) as server:
        session, template = project(tmp_path, server.url, '  stop: "NEVER"\n')
        report = session.run(template)
        assert report.prepared.client.params.stop == ("NEVER",)
        # nothing cuts the run-on, but its invented answer sits behind a blank line and a new
        # "Q:": the last-candidate rule still reads "True" or "False" of the invented example
        assert all("Q: not ( True )" in r.response for r in report.head.results)


@pytest.mark.slow
def test_the_local_model_stops_at_the_derived_stop():
    """The embedded base model honours the request's stop: its invented next question never arrives."""
    from lpo_ci import local_model
    from lpo_ci.cache import ResponseCache
    from lpo_ci.llm import ModelClient, ModelParams

    if not local_model.is_available():
        pytest.skip("the local extra is not installed")
    source = ("Q: not ( True ) is\nA: False\n\nQ: True and True is\nA: True\n\n"
              "Q: {{ input }}\nA:")
    prompt = compile_template(source, "t.j2").render({"input": "not ( False ) is"})
    stops = tuple(derive_stops(source, prompt))
    assert stops == ("\nQ:", "\n\n")
    free = ModelClient(ModelParams(model=local_model.DEFAULT_LOCAL_MODEL, mode="completion",
                                   max_tokens=24), cache=ResponseCache(None))
    stopped = ModelClient(ModelParams(model=local_model.DEFAULT_LOCAL_MODEL, mode="completion",
                                      max_tokens=24, stop=stops), cache=ResponseCache(None))
    run_on = asyncio.run(free.complete(prompt)).text
    answer = asyncio.run(stopped.complete(prompt)).text
    assert "\n\n" in run_on  # the base model runs on into a next example
    assert answer == cut_at_stops(run_on, stops) and "\n\n" not in answer

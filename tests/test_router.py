"""Several model servers behind one model name, through litellm's Router.

Two real loopback OpenAI-compatible servers of different speeds serve one
model name: every example is answered, both servers are used, and a server
stopped mid-run costs no example (litellm's retries and cooldowns move its
calls to the other one).
"""

from __future__ import annotations

import threading

import pytest

from lpo_ci.router import load_router
from tests.support.openai_server import fake_openai_server, wording_sensitive_answer
from tests.test_plugin import (  # noqa: F401 - the fixtures apply here too
    BAD, GOOD, _hermetic_env, _preload_heavy_modules, init_repo, report, write_template)


def router_table(*urls: str, name: str = "pool", settings: str = "") -> str:
    entries = ",\n".join(
        f'  {{ model_name = "{name}", litellm_params = {{ model = "openai/fake", api_base = "{url}", '
        f'api_key = "none" }} }}' for url in urls)
    return f"\n[tool.lpo_ci.router]\n{settings}model_list = [\n{entries},\n]\n"


def router_yaml(*urls: str, name: str = "pool") -> str:
    deployments = "".join(
        f"  - model_name: {name}\n    litellm_params:\n      model: openai/fake\n"
        f"      api_base: {url}\n      api_key: none\n" for url in urls)
    return f"model_list:\n{deployments}router_settings:\n  routing_strategy: simple-shuffle\n  num_retries: 2\n"


@pytest.fixture
def two_servers():
    with fake_openai_server(latency=0.005) as fast, fake_openai_server(latency=0.03) as slow:
        yield fast, slow


def test_one_model_name_served_by_two_servers(pytester, two_servers):
    fast, slow = two_servers
    pytester.makepyprojecttoml('[tool.lpo_ci]\nmodel = "pool"\nconcurrency = 8\n' + router_table(fast.url, slow.url))
    for name in ("a", "b"):  # two templates: two event loops share the Router
        write_template(pytester, f"prompts/{name}.j2", f"{name}. {GOOD}", samples=60)
    result = pytester.runpytest("--lpo", "--lpo-report", "report.json")
    result.assert_outcomes(passed=2)
    data = report(pytester)
    for item in data["templates"]:
        assert item["model"] == "pool" and item["head"]["n"] == 60 and item["head"]["errors"] == 0
        assert item["head_accuracy"] > 0.85  # the servers' real answers, scored
    assert fast.requests + slow.requests == 120
    assert fast.requests > 0 and slow.requests > 0

    fast.reset_counts(), slow.reset_counts()
    pytester.runpytest("--lpo").assert_outcomes(passed=2)
    assert fast.requests + slow.requests == 0  # cached under the model name, whichever server answered


def test_a_server_stopped_mid_run_costs_no_example(pytester, two_servers):
    fast, slow = two_servers
    lock, stopped = threading.Lock(), []

    def answer(prompt: str) -> str:
        with lock:
            if fast.requests + slow.requests >= 40 and not stopped:
                stopped.append(slow.requests)
                threading.Thread(target=slow.stop).start()  # not from its own handler thread
        return wording_sensitive_answer(prompt)

    fast.answer = slow.answer = answer
    settings = "num_retries = 3\nallowed_fails = 1\ncooldown_time = 60\n"
    pytester.makepyprojecttoml('[tool.lpo_ci]\nmodel = "pool"\nconcurrency = 8\n'
                               + router_table(fast.url, slow.url, settings=settings))
    write_template(pytester, "prompts/a.j2", GOOD, samples=150)
    result = pytester.runpytest("--lpo", "--lpo-report", "report.json")
    result.assert_outcomes(passed=1)
    item = report(pytester)["templates"][0]
    assert stopped and item["head"]["n"] == 150
    assert item["head"]["errors"] == 0 and all(e["head"]["outcome"] != "error" for e in item["examples"])
    assert slow.requests >= stopped[0] > 0  # the slow server answered before it went away
    assert fast.requests >= 150 - slow.requests  # the rest went to the survivor


def test_the_optimizer_calls_through_the_router_too(pytester, two_servers):
    fast, slow = two_servers
    pytester.makepyprojecttoml('[tool.lpo_ci]\nmodel = "pool"\n' + router_table(fast.url, slow.url))
    write_template(pytester, "prompts/a.j2", GOOD, samples=40)
    init_repo(pytester)
    write_template(pytester, "prompts/a.j2", BAD, samples=40)
    result = pytester.runpytest("--lpo", "--lpo-optimize", "--lpo-budget-calls", "150", "--lpo-report", "r.json")
    result.assert_outcomes(failed=1)
    optimization = report(pytester, "r.json")["templates"][0]["optimization"]
    assert optimization["budget"]["spent"]["calls"] > 0
    assert fast.requests + slow.requests == 80 + optimization["budget"]["spent"]["calls"]


def test_router_from_a_yaml_file_named_in_the_spec(pytester, two_servers):
    fast, slow = two_servers
    pytester.makepyprojecttoml("[tool.lpo_ci]\nconcurrency = 4\n")
    (pytester.path / "deploy").mkdir()
    (pytester.path / "deploy" / "router.yaml").write_text(router_yaml(fast.url, slow.url, name="llama"))
    write_template(pytester, "prompts/a.j2", GOOD, samples=40, router="deploy/router.yaml")
    result = pytester.runpytest("--lpo", "--lpo-report", "report.json")
    result.assert_outcomes(passed=1)
    item = report(pytester)["templates"][0]
    assert item["model"] == "llama"  # the list's only model name, as no model is named
    assert fast.requests + slow.requests == 40 and fast.requests and slow.requests


@pytest.mark.parametrize("pyproject, message", [
    ('[tool.lpo_ci]\nmodel = "other"\n' + router_table("http://127.0.0.1:9/v1"),
     "model 'other' is not served by the router (its model names: pool)"),
    ("[tool.lpo_ci]\n\n[tool.lpo_ci.router]\nmodel_list = []\n", "pyproject.toml:3: the router needs a non-empty"),
    ('[tool.lpo_ci]\n\n[tool.lpo_ci.router]\nmodel_list = [{ model_name = "x" }]\n',
     "model_list entry 1 ('x') needs litellm_params with a 'model'"),
    ('[tool.lpo_ci]\nmodel = "pool"\n' + router_table("http://127.0.0.1:9/v1", settings="no_such_setting = 1\n"),
     "the litellm Router refused its settings"),
])
def test_bad_router_set_up_is_an_error_at_its_line(pytester, pyproject, message):
    pytester.makepyprojecttoml(pyproject)
    write_template(pytester, "prompts/a.j2", GOOD, samples=5)
    result = pytester.runpytest("--lpo")
    result.assert_outcomes(errors=1)
    result.stdout.fnmatch_lines([f"*{message}*"])


def test_router_yaml_errors_name_the_file(tmp_path):
    origin = (str(tmp_path / "pyproject.toml"), 4)
    with pytest.raises(Exception, match="router file not found"):
        load_router("missing.yaml", root=tmp_path, origin=origin)
    (tmp_path / "r.yaml").write_text("model_list:\n  - model_name: x\n   bad: [\n")
    with pytest.raises(Exception, match="malformed YAML in the router file") as info:
        load_router("r.yaml", root=tmp_path, origin=origin)
    assert info.value.path == str(tmp_path / "r.yaml") and info.value.line
    (tmp_path / "r.yaml").write_text("model_list: []\nrouter_setings: {}\n")
    with pytest.raises(Exception, match="unknown section 'router_setings'"):
        load_router("r.yaml", root=tmp_path, origin=origin)
    (tmp_path / "r.yaml").write_text(router_yaml("http://h/v1") + "litellm_settings:\n  drop_params: true\n")
    config = load_router("r.yaml", root=tmp_path, origin=origin)  # a proxy config's own sections are read past
    assert config.model_names == ["pool"] and config.settings["num_retries"] == 2

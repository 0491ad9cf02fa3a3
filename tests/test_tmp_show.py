import pytest
from tests.test_plugin import BAD_SPECS, project, write_raw, write_template, GOOD, _preload_heavy_modules, _hermetic_env
@pytest.mark.parametrize("case", list(BAD_SPECS))
def test_show(pytester, openai_server, case):
    text, expected = BAD_SPECS[case]
    project(pytester, openai_server.url)
    write_raw(pytester, "prompts/x.j2", text)
    write_raw(pytester, "data/cases.jsonl", '{"question": "1 + 1", "target": "2"}\n{"question": "2 + 2", "target": "4"}\n{"question": "3 + 3", "answer": "6"}\n')
    result = pytester.runpytest("--lpo", "-p", "no:cacheprovider")
    print("=====CASE", case); print("\n".join(l for l in result.stdout.lines if not l.startswith(("platform","rootdir","configfile","plugins","---","template ","prompts/x.j2  "))))
def test_outage(pytester, openai_server):
    openai_server.outage = True
    project(pytester, openai_server.url, lpo="retries = 1\n")
    write_template(pytester, "prompts/x.j2", GOOD, samples=10)
    result = pytester.runpytest("--lpo", "-p", "no:cacheprovider")
    print("=====CASE outage"); print(result.stdout.str())

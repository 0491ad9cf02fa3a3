"""Reading test specs: precedence, validation, and errors that name file and line."""

from __future__ import annotations

from pathlib import Path

import pytest

from lpo_ci.errors import SpecError
from lpo_ci.spec import discover, load_settings, matches, read_template

GOOD = """{# lpo:
  benchmark: bbh/boolean_expressions
  samples: 10
  stop: "\\n"
#}
Q: {{ input }}
A:"""


def project(tmp_path: Path, pyproject: str = "", files: dict[str, str] | None = None) -> Path:
    (tmp_path / "pyproject.toml").write_text(pyproject, encoding="utf-8")
    for rel, text in (files or {}).items():
        path = tmp_path / rel
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text, encoding="utf-8")
    return tmp_path


def test_precedence_defaults_config_cli_template(tmp_path):
    root = project(tmp_path, '[tool.lpo_ci]\nmodel = "a/config"\nsamples = 99\ntolerance = 0.1\n',
                   {"prompts/t.j2": GOOD})
    settings = load_settings(root, {"model": "b/cli", "samples": 50, "seed": 7})
    spec = read_template(settings, root / "prompts/t.j2").spec
    assert spec.model == "b/cli"            # command line beats [tool.lpo_ci]
    assert spec.samples == 10               # the template's own spec beats the command line
    assert spec.tolerance == 0.1 and spec.seed == 7
    assert spec.stop == ["\n"] and spec.alpha == 0.05


def test_discovery_by_globs_and_pyproject_table(tmp_path):
    root = project(tmp_path, '[tool.lpo_ci]\nprompts = ["prompts/**/*.j2", "app/*.txt"]\n'
                   '[tool.lpo_ci.templates."app/plain.txt"]\nbenchmark = "gsm8k"\nsamples = 5\n',
                   {"prompts/a/b.j2": GOOD, "app/plain.txt": "{{ question }}", "other/x.j2": GOOD})
    settings = load_settings(root)
    found = [p.relative_to(root).as_posix() for p in discover(settings)]
    assert found == ["app/plain.txt", "prompts/a/b.j2"]
    assert not matches(settings, root / "other/x.j2")
    table_spec = read_template(settings, root / "app/plain.txt")
    assert table_spec.spec.benchmark == "gsm8k" and table_spec.spec.samples == 5
    assert table_spec.spec_line == 1  # the template's own first line: its spec is in pyproject.toml


@pytest.mark.parametrize("body, line, words", [
    ("  benchmark: gsm8k\n  samples: ten\n", 3, "'samples' must be a positive integer"),
    ("  benchmark: gsm8k\n  sample: 10\n", 3, "did you mean 'samples'"),
    ("  benchmark: gsm8k\n  stop: [1, 2]\n", 3, "'stop' must be a string or a list of strings"),
    ("  benchmark: gsm8k\n  dataset: d.jsonl\n", 1, "both a 'benchmark' and a 'dataset'"),
    ("  samples: 10\n", 1, "needs a 'benchmark' or a 'dataset'"),
    ("  benchmark: gsm8k\n   samples: [\n", 3, "malformed YAML"),
    ("  benchmark: gsm8k\n  scorer: regex\n", 1, "needs a 'pattern'"),
])
def test_bad_specs_name_file_and_line(tmp_path, body, line, words):
    root = project(tmp_path, files={"prompts/t.j2": "{# lpo:\n" + body + "#}\n{{ question }}\n"})
    with pytest.raises(SpecError) as excinfo:
        read_template(load_settings(root), root / "prompts/t.j2")
    assert excinfo.value.line == line
    assert str(excinfo.value).startswith(f"prompts/t.j2:{line}: ")  # relative to the project, as reported
    assert words in str(excinfo.value)
    assert excinfo.value.hint


@pytest.mark.parametrize("key", ["target", "fields", "id", "path", "split"])
def test_a_dataset_key_at_the_top_of_the_spec_says_where_it_belongs(tmp_path, key):
    body = f"  dataset: d.jsonl\n  {key}: x\n"
    root = project(tmp_path, files={"prompts/t.j2": "{# lpo:\n" + body + "#}\n{{ question }}\n"})
    with pytest.raises(SpecError) as excinfo:
        read_template(load_settings(root), root / "prompts/t.j2")
    assert excinfo.value.line == 3 and f"unknown key '{key}'" in str(excinfo.value)
    assert excinfo.value.hint.startswith(f"'{key}' belongs under 'dataset:'")


def test_template_without_a_spec_is_an_error(tmp_path):
    root = project(tmp_path, files={"prompts/t.j2": "Q: {{ question }}\n"})
    with pytest.raises(SpecError, match="no test spec"):
        read_template(load_settings(root), root / "prompts/t.j2")


def test_unknown_key_in_pyproject_names_its_line(tmp_path):
    root = project(tmp_path, '[project]\nname = "x"\n\n[tool.lpo_ci]\nmodell = "openai/gpt-4o"\n')
    with pytest.raises(SpecError) as excinfo:
        load_settings(root)
    assert excinfo.value.line == 5 and "did you mean 'model'" in str(excinfo.value)


def test_spec_comment_with_whitespace_control_and_inline_yaml(tmp_path):
    root = project(tmp_path, files={"prompts/t.j2": "{#- lpo: {benchmark: multiarith, samples: 3} -#}\n{{ question }}"})
    spec = read_template(load_settings(root), root / "prompts/t.j2").spec
    assert spec.benchmark == "multiarith" and spec.samples == 3


@pytest.mark.parametrize("text, words", [
    ("[tool]\nlpo_ci = 5\n", "'tool.lpo_ci' must be a table"),
    ("tool = 5\n", None),
])
def test_a_malformed_tool_table_is_an_error_or_ignored(tmp_path, text, words):
    (tmp_path / "pyproject.toml").write_text(text, encoding="utf-8")
    if words is None:
        assert load_settings(tmp_path).prompts  # no [tool.lpo_ci]: the defaults
        return
    with pytest.raises(SpecError, match=words):
        load_settings(tmp_path)


def test_a_pyproject_that_is_not_utf8_is_an_error(tmp_path):
    (tmp_path / "pyproject.toml").write_bytes(b"[tool.lpo_ci]\nmodel = \"caf\xe9\"\n")
    with pytest.raises(SpecError, match="pyproject.toml: not UTF-8"):
        load_settings(tmp_path)

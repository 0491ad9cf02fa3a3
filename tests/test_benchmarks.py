"""Benchmark loading, user datasets and sampling, checked against the local data mirror."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from lpo_ci import benchmarks
from lpo_ci.benchmarks import (
    BBH_TASKS,
    DATA_DIR_ENV,
    DatasetSource,
    Example,
    get_benchmark,
    load_benchmark,
    load_user_dataset,
    sample_examples,
)
from lpo_ci.errors import DataError, SpecError



@pytest.fixture
def mirror(real_data_dir) -> Path:
    """The loader's subject is the real data: these tests read the real mirror."""
    return real_data_dir


# --- bundled benchmarks -------------------------------------------------------

def test_import_does_not_load_datasets():
    code = "import sys, lpo_ci.benchmarks; print('datasets' in sys.modules)"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         check=True, cwd=Path(__file__).resolve().parents[1])
    assert out.stdout.strip() == "False"


def test_gsm8k_records_and_targets(mirror):
    examples = load_benchmark("gsm8k", data_dir=mirror)
    assert len(examples) == 1319
    first = examples[0]
    assert first.id == "0"
    assert first.variables == {"question": first.variables["question"]}
    assert first.variables["question"].startswith("Janet\u2019s ducks lay 16 eggs per day.")
    assert first.target == "18"
    # The README: the final answer may contain commas; the target must not.
    assert examples[146].target == "2125"
    assert not any("," in e.target for e in examples)
    assert len({e.id for e in examples}) == 1319


def test_multiarith_records_and_targets(mirror):
    examples = load_benchmark("multiarith", data_dir=mirror)
    assert len(examples) == 600
    by_id = {e.id: e for e in examples}
    assert len(by_id) == 600
    carrots = by_id["5"]
    assert carrots.variables["question"].startswith("Carol and her mom were picking carrots")
    assert list(carrots.variables) == ["question"]
    assert carrots.target == "7"


def test_all_bbh_tasks_load_with_readme_counts(mirror):
    assert len(BBH_TASKS) == 27
    smaller = {"causal_judgement": 187, "penguins_in_a_table": 146, "snarks": 178}
    total = 0
    for task in BBH_TASKS:
        examples = load_benchmark(f"bbh/{task}", data_dir=mirror)
        assert len(examples) == smaller.get(task, 250), task
        assert all(list(e.variables) == ["input"] and e.target for e in examples), task
        total += len(examples)
    assert total == 6511


def test_bbh_known_record(mirror):
    first = load_benchmark("bbh/boolean_expressions", data_dir=mirror)[0]
    assert first == Example("0", {"input": "not ( True ) and ( True ) is"}, "False")
    snark = load_benchmark("bbh/snarks", data_dir=mirror)[0]
    assert snark.target == "(B)"
    assert snark.variables["input"].startswith("Which statement is sarcastic?")


def test_benchmark_definitions():
    assert get_benchmark("gsm8k").scorer == "numeric"
    assert get_benchmark("gsm8k").variables == ("question",)
    assert get_benchmark("multiarith").scorer == "integer"
    bbh = get_benchmark("bbh/web_of_lies")
    assert (bbh.name, bbh.variables, bbh.scorer) == ("bbh/web_of_lies", ("input",), "bbh")
    assert len(benchmarks.BENCHMARKS) == 29


def test_loads_are_memoised_and_returned_as_fresh_lists(mirror):
    first = load_benchmark("bbh/navigate", data_dir=mirror)
    first.clear()
    second = load_benchmark("bbh/navigate", data_dir=mirror)
    assert len(second) == 250
    assert second[0] is load_benchmark("bbh/navigate", data_dir=mirror)[0]


def test_mirror_from_environment(mirror, monkeypatch):
    monkeypatch.setenv(DATA_DIR_ENV, str(mirror))
    assert len(load_benchmark("multiarith")) == 600


def test_missing_mirror_directory_is_a_data_error(tmp_path, monkeypatch):
    monkeypatch.setenv(DATA_DIR_ENV, str(tmp_path / "nowhere"))
    with pytest.raises(DataError) as info:
        load_benchmark("gsm8k")
    assert "nowhere" in str(info.value)
    assert DATA_DIR_ENV in str(info.value)


def test_mirror_missing_a_file_names_it(tmp_path):
    with pytest.raises(DataError) as info:
        load_benchmark("bbh/snarks", data_dir=tmp_path)
    assert str(tmp_path / "bbh" / "snarks.json") in str(info.value)
    assert info.value.hint


def test_unknown_benchmark_suggests_close_name():
    with pytest.raises(SpecError) as info:
        get_benchmark("gsm8", path="tests/test_prompt.py", line=12)
    error = info.value
    assert (error.path, error.line) == ("tests/test_prompt.py", 12)
    assert "'gsm8'" in error.message
    assert "'gsm8k'" in error.hint
    assert str(error).startswith("tests/test_prompt.py:12: unknown benchmark")

    with pytest.raises(SpecError) as info:
        load_benchmark("bbh/boolean_expresions")
    assert "'bbh/boolean_expressions'" in info.value.hint


def test_unknown_benchmark_without_close_match_lists_names():
    with pytest.raises(SpecError) as info:
        get_benchmark("mmlu")
    assert "multiarith" in info.value.hint and "word_sorting" in info.value.hint


# --- hub wiring (no network here: datasets.load_dataset is replaced) ----------

@pytest.fixture
def fake_hub(monkeypatch):
    datasets = pytest.importorskip("datasets")
    calls = []

    def fake_load_dataset(*args, **kwargs):
        calls.append((args, kwargs))
        if args[0] == "openai/gsm8k":
            rows = [{"question": "1+1?", "answer": "one and one\n#### 1,002"}]
        elif args[0] == "ChilleD/MultiArith":
            rows = [{"question": "2+2?", "final_ans": "4"}]
        elif args[0] == "lukaemon/bbh":
            rows = [{"input": "True or False is", "target": "True"}]
        else:
            rows = [{"q": "a", "a": "b"}, {"q": "c", "a": "d"}]
        return datasets.Dataset.from_list(rows)

    monkeypatch.delenv(DATA_DIR_ENV, raising=False)
    monkeypatch.setattr(datasets, "load_dataset", fake_load_dataset)
    benchmarks.clear_cache()
    yield calls
    benchmarks.clear_cache()  # keep fake rows out of other tests


def test_hub_wiring(fake_hub):
    gsm8k = load_benchmark("gsm8k")
    multiarith = load_benchmark("multiarith")
    bbh = load_benchmark("bbh/date_understanding")
    source = DatasetSource.from_spec({"hub": "me/cases", "config": "easy",
                                      "fields": {"question": "q"}, "target": "a"})
    user = load_user_dataset(source, root=Path("."))
    assert fake_hub == [
        (("openai/gsm8k", "main"), {"split": "test"}),
        (("ChilleD/MultiArith",), {"split": "train+test"}),
        (("lukaemon/bbh", "date_understanding"), {"split": "test"}),
        (("me/cases", "easy"), {"split": "test"}),
    ]
    assert gsm8k == [Example("0", {"question": "1+1?"}, "1002")]
    assert multiarith == [Example("0", {"question": "2+2?"}, "4")]
    assert bbh == [Example("0", {"input": "True or False is"}, "True")]
    assert user == [Example("1", {"question": "a"}, "b"), Example("2", {"question": "c"}, "d")]

    # The default target column "target" is absent: the error names the hub row.
    with pytest.raises(DataError) as info:
        load_user_dataset(DatasetSource.from_spec("hf:me/other"), root=Path("."))
    assert fake_hub[-1] == (("me/other", None), {"split": "test"})
    assert str(info.value).startswith("hf:me/other: record 1 lacks the field 'target'")


def test_hub_failure_is_a_data_error_with_a_hint(monkeypatch):
    datasets = pytest.importorskip("datasets")

    def offline(*args, **kwargs):
        raise ConnectionError("no network")

    monkeypatch.delenv(DATA_DIR_ENV, raising=False)
    monkeypatch.setattr(datasets, "load_dataset", offline)
    benchmarks.clear_cache()
    with pytest.raises(DataError) as info:
        load_benchmark("gsm8k")
    assert "no network" in info.value.message and DATA_DIR_ENV in info.value.hint

    source = DatasetSource.from_spec("hf:me/cases")
    with pytest.raises(DataError) as info:
        load_user_dataset(source, root=Path("."), path="prompts/qa.yaml", line=3)
    assert (info.value.path, info.value.line) == ("prompts/qa.yaml", 3)
    assert "'me/cases'" in info.value.message


# --- sampling -----------------------------------------------------------------

def test_sampling_is_independent_of_load_order(mirror):
    examples = load_benchmark("gsm8k", data_dir=mirror)
    sample = sample_examples(examples, 20, seed=7)
    assert len(sample) == 20
    assert sample_examples(list(reversed(examples)), 20, seed=7) == sample
    assert sample != examples[:20]


def test_sampling_seed_changes_the_sample(mirror):
    examples = load_benchmark("gsm8k", data_dir=mirror)
    a = {e.id for e in sample_examples(examples, 20, seed=1)}
    b = {e.id for e in sample_examples(examples, 20, seed=2)}
    assert a != b


def test_growing_n_keeps_earlier_examples(mirror):
    examples = load_benchmark("multiarith", data_dir=mirror)
    small = sample_examples(examples, 10, seed=3)
    large = sample_examples(examples, 50, seed=3)
    assert large[:10] == small


def test_sampling_all_when_n_is_none_or_large():
    examples = [Example(str(i), {"x": i}, str(i)) for i in range(30)]
    everything = sample_examples(examples, None, seed=0)
    assert sorted(e.id for e in everything) == sorted(e.id for e in examples)
    assert sample_examples(examples, 1000, seed=0) == everything
    assert sample_examples(examples, 0, seed=0) == []
    with pytest.raises(ValueError):
        sample_examples(examples, -1, seed=0)


# --- user datasets --------------------------------------------------------------

def write(path: Path, text: str) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text, encoding="utf-8")
    return path


def load(spec, root: Path) -> list[Example]:
    return load_user_dataset(DatasetSource.from_spec(spec, path="spec.yaml", line=4), root=root,
                             path="spec.yaml", line=4)


def test_user_jsonl(tmp_path):
    write(tmp_path / "data" / "cases.jsonl",
          '{"question": "2+2?", "target": 4, "topic": "sums"}\n'
          '\n'
          '{"question": "3*3?", "target": "9", "topic": "products"}\n')
    examples = load("data/cases.jsonl", tmp_path)
    assert examples == [
        Example("1", {"question": "2+2?", "topic": "sums"}, "4"),
        Example("2", {"question": "3*3?", "topic": "products"}, "9"),
    ]


def test_user_json_list_and_examples_object(tmp_path):
    records = [{"input": "a", "target": "A"}, {"input": "b", "target": "B"}]
    write(tmp_path / "list.json", json.dumps(records, indent=2))
    write(tmp_path / "wrapped.json", json.dumps({"canary": "x", "examples": records}, indent=2))
    expected = [Example("1", {"input": "a"}, "A"), Example("2", {"input": "b"}, "B")]
    assert load("list.json", tmp_path) == expected
    assert load("wrapped.json", tmp_path) == expected


def test_user_csv_with_fields_target_and_id(tmp_path):
    write(tmp_path / "cases.csv",
          'key,problem,answer,notes\n'
          'q1,"How many, in all?",12,x\n'
          'q2,"Two\nlines",3,y\n')
    spec = {"path": "cases.csv", "fields": {"question": "problem"}, "target": "answer",
            "id": "key"}
    assert load(spec, tmp_path) == [
        Example("q1", {"question": "How many, in all?"}, "12"),
        Example("q2", {"question": "Two\nlines"}, "3"),
    ]


def test_user_csv_without_fields_uses_every_column_but_the_target(tmp_path):
    write(tmp_path / "cases.csv", "question,context,target\nwhy?,sky,blue\n")
    assert load("cases.csv", tmp_path) == [
        Example("1", {"question": "why?", "context": "sky"}, "blue")]


def test_user_absolute_path(tmp_path):
    file = write(tmp_path / "abs.jsonl", '{"q": 1, "target": 2}\n')
    assert load(str(file), Path("/nonexistent-root")) == [Example("1", {"q": 1}, "2")]


def test_user_file_is_reread_after_it_changes(tmp_path):
    file = write(tmp_path / "cases.jsonl", '{"q": 1, "target": 2}\n')
    assert len(load("cases.jsonl", tmp_path)) == 1
    file.write_text('{"q": 1, "target": 2}\n{"q": 3, "target": 4}\n', encoding="utf-8")
    assert len(load("cases.jsonl", tmp_path)) == 2


def test_missing_user_file_names_spec_and_file(tmp_path):
    with pytest.raises(DataError) as info:
        load("data/absent.jsonl", tmp_path)
    error = info.value
    assert (error.path, error.line) == ("spec.yaml", 4)
    assert str(tmp_path / "data" / "absent.jsonl") in error.message
    assert error.hint and "project root" in error.hint


def test_unsupported_suffix(tmp_path):
    write(tmp_path / "cases.parquet", "")
    with pytest.raises(DataError) as info:
        load("cases.parquet", tmp_path)
    assert "cases.parquet" in info.value.message and info.value.line == 4


def test_jsonl_row_missing_target_names_line(tmp_path):
    file = write(tmp_path / "cases.jsonl",
                 '{"question": "a", "target": "A"}\n'
                 '\n'
                 '{"question": "b", "answer": "B"}\n')
    with pytest.raises(DataError) as info:
        load("cases.jsonl", tmp_path)
    error = info.value
    assert (error.path, error.line) == (str(file), 3)
    assert "'target'" in error.message
    assert "question, answer" in error.hint
    assert str(error).startswith(f"{file}:3: ")


def test_jsonl_row_missing_mapped_field_names_line(tmp_path):
    file = write(tmp_path / "cases.jsonl",
                 '{"problem": "a", "target": "A"}\n{"problme": "b", "target": "B"}\n')
    with pytest.raises(DataError) as info:
        load({"path": "cases.jsonl", "fields": {"question": "problem"}}, tmp_path)
    error = info.value
    assert (error.path, error.line) == (str(file), 2)
    assert "'problem'" in error.message and "'question'" in error.message


def test_jsonl_null_target_counts_as_missing(tmp_path):
    file = write(tmp_path / "cases.jsonl", '{"q": "a", "target": null}\n')
    with pytest.raises(DataError) as info:
        load("cases.jsonl", tmp_path)
    assert (info.value.path, info.value.line) == (str(file), 1)


def test_csv_row_missing_field_counts_the_header_line(tmp_path):
    file = write(tmp_path / "cases.csv", "question,target\na,A\nb,B\nc\n")
    with pytest.raises(DataError) as info:
        load("cases.csv", tmp_path)
    error = info.value
    assert (error.path, error.line) == (str(file), 4)
    assert "'target'" in error.message


def test_csv_row_with_extra_cells(tmp_path):
    file = write(tmp_path / "cases.csv", "question,target\na,b,c\n")
    with pytest.raises(DataError) as info:
        load("cases.csv", tmp_path)
    assert (info.value.path, info.value.line) == (str(file), 2)


def test_csv_without_header(tmp_path):
    write(tmp_path / "cases.csv", "")
    with pytest.raises(DataError, match="header"):
        load("cases.csv", tmp_path)


def test_json_record_missing_target_names_its_line(tmp_path):
    text = json.dumps({"canary": "x", "examples": [{"input": "a", "target": "A"},
                                                   {"input": "b"}]}, indent=2)
    file = write(tmp_path / "cases.json", text)
    with pytest.raises(DataError) as info:
        load("cases.json", tmp_path)
    error = info.value
    lines = text.splitlines()
    assert error.path == str(file)
    assert lines[error.line - 1].strip() == "{"
    assert lines[error.line].strip() == '"input": "b"'
    assert "record 2" in error.message


def test_json_record_line_counts_leading_blank_lines(tmp_path):
    file = write(tmp_path / "cases.json", '\n\n[\n{"q": 1, "target": 2} ,\n\n {"q": 3}\n]\n')
    with pytest.raises(DataError) as info:
        load("cases.json", tmp_path)
    assert (info.value.path, info.value.line) == (str(file), 6)


def test_json_not_records(tmp_path):
    write(tmp_path / "cases.json", '{"rows": []}')
    with pytest.raises(DataError, match="list of records"):
        load("cases.json", tmp_path)


@pytest.mark.parametrize("name, text", [("cases.jsonl", ""), ("cases.jsonl", "\n\n"), ("cases.json", "[]"),
                                        ("cases.csv", "q,target\n")])
def test_a_dataset_without_records_is_an_error_at_the_spec(tmp_path, name, text):
    write(tmp_path / name, text)
    with pytest.raises(DataError, match="has no records") as info:
        load(name, tmp_path)
    assert (info.value.path, info.value.line) == ("spec.yaml", 4) and name in str(info.value)


def test_malformed_json_line(tmp_path):
    file = write(tmp_path / "cases.jsonl", '{"q": "a", "target": "A"}\n{"q": "b", target: 1}\n')
    with pytest.raises(DataError) as info:
        load("cases.jsonl", tmp_path)
    assert str(info.value).startswith(f"{file}:2: malformed JSON")


def test_jsonl_line_that_is_not_an_object(tmp_path):
    file = write(tmp_path / "cases.jsonl", '["q", "target"]\n')
    with pytest.raises(DataError, match="JSON object") as info:
        load("cases.jsonl", tmp_path)
    assert (info.value.path, info.value.line) == (str(file), 1)


def test_malformed_json_file(tmp_path):
    file = write(tmp_path / "cases.json", '[\n  {"q": "a"},\n  {"q": }\n]\n')
    with pytest.raises(DataError) as info:
        load("cases.json", tmp_path)
    assert (info.value.path, info.value.line) == (str(file), 3)


def test_duplicate_ids(tmp_path):
    file = write(tmp_path / "cases.jsonl",
                 '{"id": "x", "target": 1}\n{"id": "y", "target": 2}\n{"id": "x", "target": 3}\n')
    with pytest.raises(DataError, match="repeats id 'x'") as info:
        load({"path": "cases.jsonl", "id": "id"}, tmp_path)
    assert (info.value.path, info.value.line) == (str(file), 3)


# --- dataset specs ----------------------------------------------------------------

def test_spec_strings():
    assert DatasetSource.from_spec("data/a.jsonl") == DatasetSource(path="data/a.jsonl")
    assert DatasetSource.from_spec("hf:owner/name") == DatasetSource(hub="owner/name")


def test_spec_mapping():
    source = DatasetSource.from_spec({"hub": "owner/name", "config": "c", "split": "validation",
                                      "fields": {"question": "q"}, "target": "a", "id": "k"})
    assert source == DatasetSource(path=None, hub="owner/name", config="c", split="validation",
                                   fields={"question": "q"}, target="a", id="k")


@pytest.mark.parametrize("spec, words", [
    ({"path": "a.jsonl", "targte": "x"}, ["'targte'", "did you mean 'target'"]),
    ({"path": "a.jsonl", "hub": "o/n"}, ["exactly one"]),
    ({"config": "main"}, ["exactly one"]),
    ({"path": 3}, ["'path'", "string"]),
    ({"path": "a.jsonl", "target": ["a"]}, ["'target'", "string"]),
    ({"path": "a.jsonl", "fields": ["question"]}, ["'fields'"]),
    ({"path": "a.jsonl", "fields": {"not valid": "q"}}, ["'fields'"]),
    ({"path": "a.jsonl", "split": "test"}, ["'split'", "hub"]),
    (["a.jsonl"], ["mapping"]),
    ("hf:", ["empty"]),
])
def test_bad_specs(spec, words):
    with pytest.raises(SpecError) as info:
        DatasetSource.from_spec(spec, path="tests/prompts.yaml", line=9)
    error = info.value
    assert (error.path, error.line) == ("tests/prompts.yaml", 9)
    assert error.hint
    for word in words:
        assert word in str(error)

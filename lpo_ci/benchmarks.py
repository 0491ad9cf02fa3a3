"""Benchmarks and user datasets, turned into examples a template can be scored on.

The project bundles what each benchmark *is* (its data source, the template
variables it fills, how its reference answer reads, which scorer grades it);
the data comes from a local mirror (``data_dir`` or ``LPO_CI_DATA_DIR``) or,
online, from the Hugging Face hub. ``datasets`` is imported only when data is
actually loaded, so importing this module stays cheap.
"""

from __future__ import annotations

import csv
import difflib
import functools
import hashlib
import json
import os
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any, NamedTuple

from .errors import DataError, SpecError

DATA_DIR_ENV = "LPO_CI_DATA_DIR"

BBH_TASKS: tuple[str, ...] = (
    "boolean_expressions",
    "causal_judgement",
    "date_understanding",
    "disambiguation_qa",
    "dyck_languages",
    "formal_fallacies",
    "geometric_shapes",
    "hyperbaton",
    "logical_deduction_five_objects",
    "logical_deduction_seven_objects",
    "logical_deduction_three_objects",
    "movie_recommendation",
    "multistep_arithmetic_two",
    "navigate",
    "object_counting",
    "penguins_in_a_table",
    "reasoning_about_colored_objects",
    "ruin_names",
    "salient_translation_error_detection",
    "snarks",
    "sports_understanding",
    "temporal_sequences",
    "tracking_shuffled_objects_five_objects",
    "tracking_shuffled_objects_seven_objects",
    "tracking_shuffled_objects_three_objects",
    "web_of_lies",
    "word_sorting",
)


@dataclass(frozen=True)
class Example:
    """One item to render a template with; ``id`` is stable so sampling is too.

    Loaded examples are shared between callers (they are memoised): treat
    ``variables`` as read-only.
    """

    id: str
    variables: dict[str, Any]
    target: str


@dataclass(frozen=True)
class Benchmark:
    """What a bundled benchmark provides to a template and how it is graded."""

    name: str
    variables: tuple[str, ...]
    scorer: str
    description: str


BENCHMARKS: dict[str, Benchmark] = {
    benchmark.name: benchmark
    for benchmark in (
        Benchmark("gsm8k", ("question",), "numeric",
                  "GSM8K test split: grade-school math word problems with a numeric answer."),
        Benchmark("multiarith", ("question",), "integer",
                  "MultiArith (train + test, 600 problems): arithmetic word problems "
                  "with an integer answer."),
        *(Benchmark(f"bbh/{task}", ("input",), "bbh",
                    f"BIG-Bench Hard task {task}: the answer is matched exactly.")
          for task in BBH_TASKS),
    )
}


def get_benchmark(name: str, *, path: str | Path | None = None,
                  line: int | None = None) -> Benchmark:
    """Look a benchmark up by name; a typo gets the nearest names as a hint."""
    try:
        return BENCHMARKS[name]
    except KeyError:
        pass
    close = difflib.get_close_matches(str(name).strip().lower(), BENCHMARKS, n=3, cutoff=0.6)
    if close:
        hint = f"did you mean {' or '.join(repr(c) for c in close)}?"
    else:
        hint = ("known benchmarks: 'gsm8k', 'multiarith' and 'bbh/<task>' with <task> one of "
                + ", ".join(BBH_TASKS))
    raise SpecError(f"unknown benchmark {name!r}", path=path, line=line, hint=hint)


def load_benchmark(name: str, *, data_dir: str | Path | None = None) -> list[Example]:
    """Examples of a bundled benchmark, from the mirror if one is configured, else the hub.

    The mirror is ``data_dir`` or else the ``LPO_CI_DATA_DIR`` environment variable.
    Results are memoised per process: base and head templates score the same data.
    """
    benchmark = get_benchmark(name)
    mirror = _mirror_dir(data_dir)
    return list(_load_benchmark_cached(benchmark.name, str(mirror) if mirror else None))


def clear_cache() -> None:
    """Forget memoised data, e.g. after the files behind it changed."""
    _load_benchmark_cached.cache_clear()
    _read_file_cached.cache_clear()
    _read_hub_cached.cache_clear()


def _mirror_dir(data_dir: str | Path | None) -> Path | None:
    """The configured mirror, checked early so a wrong setting is not mistaken for 'go online'."""
    origin = "data_dir"
    if data_dir is None:
        data_dir, origin = os.environ.get(DATA_DIR_ENV) or None, DATA_DIR_ENV
    if data_dir is None:
        return None
    mirror = Path(data_dir).expanduser().resolve()
    if not mirror.is_dir():
        raise DataError(
            f"benchmark data directory {mirror} (from {origin}) does not exist",
            hint=f"point data_dir or {DATA_DIR_ENV} at a mirror holding gsm8k/, multiarith/ "
                 "and bbh/, or unset it to load from the Hugging Face hub")
    return mirror


@functools.lru_cache(maxsize=None)
def _load_benchmark_cached(name: str, mirror: str | None) -> tuple[Example, ...]:
    rows = _read_mirror(name, Path(mirror)) if mirror else _read_benchmark_hub(name)
    try:
        return tuple(_benchmark_example(name, index, row) for index, row in enumerate(rows))
    except KeyError as exc:
        raise DataError(f"benchmark {name!r}: a record lacks the field {exc}",
                        path=mirror, hint="the data does not have the layout lpo-ci expects; "
                        "compare it with the benchmark's published source") from None


def _read_mirror(name: str, mirror: Path) -> list[dict[str, Any]]:
    options: dict[str, str]
    if name == "gsm8k":
        file, options = mirror / "gsm8k" / "test.jsonl", {}
    elif name == "multiarith":
        file, options = mirror / "multiarith" / "MultiArith.jsonl", {}
    else:
        file, options = mirror / "bbh" / f"{name.removeprefix('bbh/')}.json", {"field": "examples"}
    if not file.is_file():
        raise DataError(f"benchmark {name!r}: {file} not found in the data mirror",
                        path=mirror, hint="the mirror needs the layout gsm8k/test.jsonl, "
                        "multiarith/MultiArith.jsonl, bbh/<task>.json")
    return _datasets_rows(f"benchmark {name!r} from {file}", "json",
                          data_files=str(file), split="train", **options)


def _read_benchmark_hub(name: str) -> list[dict[str, Any]]:
    args: tuple[str, ...]
    if name == "gsm8k":
        args, split = ("openai/gsm8k", "main"), "test"
    elif name == "multiarith":
        args, split = ("ChilleD/MultiArith",), "train+test"
    else:
        args, split = ("lukaemon/bbh", name.removeprefix("bbh/")), "test"
    return _datasets_rows(f"benchmark {name!r} from the Hugging Face hub", *args, split=split,
                          hint=f"offline, set {DATA_DIR_ENV} to a local mirror of the benchmarks")


def _datasets_rows(what: str, *args: Any, hint: str | None = None,
                   **kwargs: Any) -> list[dict[str, Any]]:
    """Rows from ``datasets.load_dataset``, its failures turned into a DataError the user can act on."""
    import datasets

    datasets.disable_progress_bars()  # "Generating train split" bars are noise in a test run
    try:
        return datasets.load_dataset(*args, **kwargs).to_list()
    except Exception as exc:  # network, missing config, corrupt file: all mean "no data"
        raise DataError(f"could not load {what}: {exc}", hint=hint) from exc


def _benchmark_example(name: str, index: int, row: dict[str, Any]) -> Example:
    if name == "gsm8k":
        answer = row["answer"]
        if "#### " not in answer:
            raise DataError(f"benchmark 'gsm8k': record {index} has no '#### ' final answer")
        target = answer.rsplit("#### ", 1)[1].strip().replace(",", "")
        return Example(str(index), {"question": row["question"]}, target)
    if name == "multiarith":
        # The mirror and the original data carry iIndex; fall back to the row if a copy lacks it.
        ident = row.get("iIndex")
        return Example(str(index if ident is None else ident), {"question": row["question"]},
                       str(row["final_ans"]).strip())
    return Example(str(index), {"input": row["input"]}, str(row["target"]))


# --- user datasets -----------------------------------------------------------

DATASET_KEYS = ("path", "hub", "config", "split", "fields", "target", "id")
_SUFFIXES = (".jsonl", ".json", ".csv")


@dataclass(frozen=True)
class DatasetSource:
    """Where a user's own dataset lives and how its columns feed the template.

    ``fields`` maps template variable -> column; None makes every column but the
    target a variable of the same name. ``id`` names a column of stable ids;
    without one, examples are numbered by row (1-based).
    """

    path: str | None = None
    hub: str | None = None
    config: str | None = None
    split: str | None = None
    fields: dict[str, str] | None = None
    target: str = "target"
    id: str | None = None

    @classmethod
    def from_spec(cls, value: Any, *, path: str | Path | None = None,
                  line: int | None = None) -> DatasetSource:
        """Parse a spec value: a local path, ``"hf:owner/name"``, or a mapping of DATASET_KEYS."""

        def fail(message: str, hint: str) -> SpecError:
            return SpecError(message, path=path, line=line, hint=hint)

        if isinstance(value, str):
            value = {"hub": value} if value.startswith("hf:") else {"path": value}
        if not isinstance(value, Mapping):
            raise fail(f"a dataset must be a path, 'hf:owner/name' or a mapping, "
                       f"not {type(value).__name__}",
                       "e.g. dataset: data/cases.jsonl, or dataset: {path: data/cases.csv, "
                       "target: answer}")
        spec = {key: item for key, item in value.items() if item is not None}
        for key in spec:
            if key not in DATASET_KEYS:
                close = difflib.get_close_matches(str(key), DATASET_KEYS, n=1)
                hint = f"did you mean {close[0]!r}? " if close else ""
                raise fail(f"unknown dataset key {key!r}",
                           hint + "allowed keys: " + ", ".join(DATASET_KEYS))
        for key in ("path", "hub", "config", "split", "target", "id"):
            if key in spec and (not isinstance(spec[key], str) or not spec[key].strip()):
                raise fail(f"dataset {key!r} must be a non-empty string, "
                           f"not {spec[key]!r}", f"quote it: {key}: \"...\"")
        if ("path" in spec) == ("hub" in spec):
            raise fail("a dataset needs exactly one of 'path' (a local file) or 'hub' "
                       "(a Hugging Face dataset id)",
                       "e.g. path: data/cases.jsonl, or hub: owner/name")
        for key in ("config", "split"):
            if key in spec and "path" in spec:
                raise fail(f"dataset {key!r} applies only to hub datasets",
                           f"remove {key!r}, or split the local file itself")
        fields = spec.get("fields")
        if fields is not None:
            if not isinstance(fields, Mapping) or not fields or not all(
                    isinstance(k, str) and k.isidentifier() and isinstance(v, str) and v
                    for k, v in fields.items()):
                raise fail("dataset 'fields' must map template variable names to column names",
                           "e.g. fields: {question: problem_text}")
            fields = dict(fields)
        hub = spec.get("hub")
        if hub is not None:
            hub = hub.removeprefix("hf:")
            if not hub:
                raise fail("the hub dataset id is empty", "write hf:owner/name")
        return cls(path=spec.get("path"), hub=hub, config=spec.get("config"),
                   split=spec.get("split"), fields=fields,
                   target=spec.get("target", "target"), id=spec.get("id"))


class _Record(NamedTuple):
    number: int          # 1-based position among the records
    line: int | None     # line in the file where it starts, when there is a file
    data: dict[str, Any]


def load_user_dataset(source: DatasetSource, *, root: Path, path: str | Path | None = None,
                      line: int | None = None) -> list[Example]:
    """Examples from a user's dataset; ``path``/``line`` locate the spec that named it.

    Local files are parsed with the standard library rather than ``datasets`` so
    that every complaint can name the exact line of the file at fault.
    """
    if source.hub:
        where = f"hf:{source.hub}"
        try:
            records = _read_hub_cached(source.hub, source.config, source.split or "test")
        except DataError as exc:  # say which spec asked for it
            raise DataError(exc.message, path=path, line=line, hint=exc.hint) from exc
    elif source.path:
        file = Path(root) / source.path  # an absolute source.path stays absolute
        if file.suffix.lower() not in _SUFFIXES:
            raise DataError(f"dataset {file} is not a .jsonl, .json or .csv file",
                            path=path, line=line, hint="convert it to JSON lines or CSV")
        if not file.is_file():
            raise DataError(f"dataset file {file} not found", path=path, line=line,
                            hint="dataset paths are relative to the project root")
        where = str(file)
        stat = file.stat()
        records = _read_file_cached(where, stat.st_mtime_ns, stat.st_size)
    else:
        raise SpecError("a dataset needs a 'path' or a 'hub' id", path=path, line=line)
    if not records:
        raise DataError(f"dataset {where} has no records", path=path, line=line,
                        hint="add examples to it, or name another dataset")
    examples: list[Example] = []
    first_seen: dict[str, int] = {}
    for record in records:
        example = _user_example(source, record, where)
        if example.id in first_seen:
            raise DataError(f"record {record.number} repeats id {example.id!r} of record "
                            f"{first_seen[example.id]}", path=where, line=record.line,
                            hint=f"ids in column {source.id!r} must be unique")
        first_seen[example.id] = record.number
        examples.append(example)
    return examples


load_dataset_file = load_user_dataset


def _user_example(source: DatasetSource, record: _Record, where: str) -> Example:
    def column(name: str, role: str) -> Any:
        value = record.data.get(name)
        if value is None:
            raise DataError(
                f"record {record.number} lacks the field {name!r} ({role})",
                path=where, line=record.line,
                hint=f"fields of this record: {', '.join(map(str, record.data)) or 'none'}; "
                     "name the answer column with 'target' and map template variables to "
                     "columns with 'fields'")
        return value

    target = str(column(source.target, "the target"))
    if source.fields is None:
        variables = {key: value for key, value in record.data.items() if key != source.target}
    else:
        variables = {variable: column(name, f"template variable {variable!r}")
                     for variable, name in source.fields.items()}
    ident = str(column(source.id, "the id")) if source.id else str(record.number)
    return Example(ident, variables, target)


@functools.lru_cache(maxsize=None)
def _read_file_cached(file: str, mtime_ns: int, size: int) -> tuple[_Record, ...]:
    """Parsed records, memoised until the file changes (keyed by its mtime and size)."""
    readers = {".jsonl": _read_jsonl, ".json": _read_json, ".csv": _read_csv}
    try:
        with open(file, encoding="utf-8-sig", newline="") as handle:
            return tuple(readers[Path(file).suffix.lower()](handle, file))
    except UnicodeDecodeError as exc:
        raise DataError(f"not UTF-8 text: {exc}", path=file,
                        hint="save the file as UTF-8") from None


@functools.lru_cache(maxsize=None)
def _read_hub_cached(hub: str, config: str | None, split: str) -> tuple[_Record, ...]:
    rows = _datasets_rows(f"dataset {hub!r} (config {config!r}, split {split!r}) from the "
                          "Hugging Face hub", hub, config, split=split,
                          hint="check the dataset id, config and split; offline, use a "
                               "local .jsonl/.json/.csv file")
    return tuple(_Record(number, None, row) for number, row in enumerate(rows, 1))


def _read_jsonl(handle, file: str):
    number = 0
    for line_no, text in enumerate(handle, 1):
        if not text.strip():
            continue
        try:
            data = json.loads(text)
        except json.JSONDecodeError as exc:
            raise DataError(f"malformed JSON: {exc.msg} (column {exc.colno})", path=file,
                            line=line_no, hint="each line of a .jsonl file must be one JSON "
                                               "object") from None
        if not isinstance(data, dict):
            raise DataError(f"expected a JSON object, found {type(data).__name__}",
                            path=file, line=line_no,
                            hint="each line of a .jsonl file must be one JSON object")
        number += 1
        yield _Record(number, line_no, data)


def _read_json(handle, file: str):
    text = handle.read()
    try:
        data = json.loads(text)
    except json.JSONDecodeError as exc:
        raise DataError(f"malformed JSON: {exc.msg} (column {exc.colno})", path=file,
                        line=exc.lineno, hint="fix the syntax; a JSON validator points at "
                                              "the exact spot") from None
    if isinstance(data, dict) and isinstance(data.get("examples"), list):
        items = data["examples"]
    elif isinstance(data, list):
        items = data
    else:
        raise DataError("expected a list of records or {\"examples\": [...]}", path=file,
                        hint="write the records as a JSON list, or as JSON lines in a .jsonl file")
    lines = _json_item_lines(text, data is items)
    for number, (item, line_no) in enumerate(zip(items, lines), 1):
        if not isinstance(item, dict):
            raise DataError(f"record {number} is a {type(item).__name__}, not an object",
                            path=file, line=line_no, hint="each record must be a JSON object")
        yield _Record(number, line_no, item)


def _json_item_lines(text: str, top_level: bool) -> list[int]:
    """Line on which each record starts, so errors in a .json file point at a line.

    Walks the already-validated text: the top-level array, or the array under
    the top-level "examples" key.
    """
    decoder = json.JSONDecoder()
    lines: list[int] = []
    pos, line_no = 0, 1

    def skip(to: int) -> int:
        nonlocal line_no
        line_no += text.count("\n", pos, to)
        return to

    def next_char(at: int) -> int:
        while text[at] in " \t\r\n,:":
            at += 1
        return at

    pos = skip(next_char(0))
    if not top_level:  # walk {"key": value, ...} up to the "examples" array
        pos += 1
        while True:
            start = next_char(pos)
            key, end = decoder.raw_decode(text, start)
            pos = skip(next_char(end))
            if key == "examples":
                break
            _, end = decoder.raw_decode(text, pos)
            pos = skip(end)
    pos += 1  # past "["
    while True:
        start = next_char(pos)
        if text[start] == "]":
            return lines
        pos = skip(start)
        lines.append(line_no)
        _, end = decoder.raw_decode(text, pos)
        pos = skip(end)


def _read_csv(handle, file: str):
    reader = csv.reader(handle)
    try:
        header = next(reader, None)
        if not header:
            raise DataError("the CSV file has no header row", path=file,
                            hint="the first line must name the columns")
        start, number = reader.line_num + 1, 0
        for cells in reader:
            line_no, start = start, reader.line_num + 1
            if not cells:
                continue
            if len(cells) > len(header):
                raise DataError(f"row has {len(cells)} cells but the header names "
                                f"{len(header)} columns", path=file, line=line_no,
                                hint="quote cells that contain commas")
            number += 1
            yield _Record(number, line_no, dict(zip(header, cells)))
    except csv.Error as exc:
        raise DataError(f"malformed CSV: {exc}", path=file, line=reader.line_num,
                        hint="check the quoting on this line") from None


# --- sampling ----------------------------------------------------------------

def sample_examples(examples: list[Example], n: int | None, seed: int) -> list[Example]:
    """The first ``n`` examples in a seeded hash order of their ids.

    Hashing ids (not positions) makes the sample independent of load order, and
    growing ``n`` keeps every example a smaller ``n`` picked.
    """
    if n is not None and n < 0:
        raise ValueError(f"sample size must be >= 0, not {n}")
    ordered = sorted(examples,
                     key=lambda e: hashlib.sha256(f"{seed}:{e.id}".encode()).hexdigest())
    return ordered if n is None else ordered[:n]

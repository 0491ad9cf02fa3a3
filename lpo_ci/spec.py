"""Find prompt templates and read each one's test spec.

A spec is the template's leading Jinja comment whose YAML body sits under the
key ``lpo`` (the file stays a valid template for the application that renders
it), or a table under ``[tool.lpo_ci.templates."<path>"]`` in pyproject.toml.
Values resolve as: built-in defaults < ``[tool.lpo_ci]`` < command-line
options < the template's own spec. Every error names the file and line.
"""

from __future__ import annotations

import dataclasses
import re
import tomllib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from .discovery import DEFAULT_GLOBS, discover, matches  # noqa: F401 - where callers look for them
from .errors import SpecError

PYPROJECT = "pyproject.toml"

_SPEC_COMMENT = re.compile(r"\A(\s*)\{#-?(\s*lpo\s*:.*?)-?#\}", re.DOTALL)


# The spec comment is a few lines of YAML: cap what it may hold, so an alias bomb
# (a billion laughs) is an error, not a hang.
MAX_SPEC_CHARS = 64 * 1024
MAX_SPEC_NODES = 10_000  # values after expanding YAML aliases
MAX_SEED = 2 ** 63  # providers take a 64-bit seed


def _integer(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def _positive_int(value: Any) -> bool:
    return _integer(value) and value > 0


def _real(value: Any) -> bool:
    """A finite number (YAML's .inf and .nan are numbers too, and would hang or slip through)."""
    import math

    return isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)


def _share(value: Any) -> bool:
    return _real(value) and 0 <= value <= 1


def _number(value: Any) -> bool:
    return _real(value) and value >= 0


def _seed(value: Any) -> bool:
    return _integer(value) and -MAX_SEED <= value < MAX_SEED


def _string(value: Any) -> bool:
    return isinstance(value, str) and value.strip() != ""


def _stop(value: Any) -> bool:
    return isinstance(value, str) or (
        isinstance(value, list) and all(isinstance(v, str) for v in value))


def _project_folder(value: Any) -> bool:
    return _string(value) and not value.startswith(("/", "\\")) and ".." not in re.split(r"[/\\]", value) \
        and ":" not in value[:2]


def _is_cache_url(value: str) -> bool:
    return value.split("://", 1)[0] in ("redis", "rediss", "unix") and "://" in value


def _anything(value: Any) -> bool:
    return True


# key -> (check, what the check wants, in words)
TEMPLATE_KEYS: dict[str, tuple[Any, str]] = {
    "benchmark": (_string, "a benchmark name such as gsm8k, multiarith or bbh/<task>"),
    "dataset": (lambda v: isinstance(v, (str, dict)), "a file path, 'hf:owner/name' or a mapping"),
    "scorer": (_string, "a scorer name or 'module:function'"),
    "pattern": (_string, "a regular expression (for scorer: regex)"),
    "rubric": (_string, "a Jinja2 rubric file, relative to the project root (for scorer: judge)"),
    "judge_model": (_string, "a litellm model name such as openai/gpt-4o-mini (for scorer: judge)"),
    "judge_api_base": (_string, "the URL of the judge model's OpenAI-compatible server"),
    "model": (_string, "a litellm model name such as openai/gpt-4o-mini"),
    "mode": (lambda v: v in ("chat", "completion"), "'chat' or 'completion'"),
    "samples": (_positive_int, "a positive integer"),
    "seed": (_seed, "an integer between -2**63 and 2**63 - 1"),
    "tolerance": (_share, "a number between 0 and 1"),
    "alpha": (lambda v: _share(v) and 0 < v < 1, "a number between 0 and 1 (exclusive)"),
    "min_accuracy": (_share, "a number between 0 and 1"),
    "max_error_rate": (_share, "a number between 0 and 1"),
    "temperature": (_number, "a number >= 0"),
    "max_tokens": (_positive_int, "a positive integer"),
    "stop": (_stop, "a string or a list of strings"),
    "api_base": (_string, "a URL such as http://127.0.0.1:8000/v1"),
    "timeout": (lambda v: _number(v) and v > 0, "a number of seconds > 0"),
    "drift_window": (_positive_int, "a positive integer (records of the base branch's history)"),
    "drift_tolerance": (_share, "a number between 0 and 1"),
    "router": (lambda v: (_string(v) or isinstance(v, dict)),
               "a YAML file (litellm proxy config layout) or a table with a litellm Router model_list"),
}

MAX_RETRIES = 10  # with backoff capped at 30 s, more would turn an outage into a hang

# Project-wide settings that make no sense per template.
PROJECT_KEYS: dict[str, tuple[Any, str]] = {
    "lpo": (lambda v: isinstance(v, bool), "true or false"),
    "prompts": (lambda v: isinstance(v, list) and all(_string(x) for x in v), "a list of glob patterns"),
    "exclude": (lambda v: isinstance(v, list) and all(_string(x) for x in v), "a list of glob patterns"),
    "search_path": (lambda v: isinstance(v, list) and all(_project_folder(x) for x in v),
                    "a list of folders inside the project (relative paths, no '..')"),
    "concurrency": (_positive_int, "a positive integer"),
    "batch_size": (_positive_int, "a positive integer (prompts per completion-mode request)"),
    "retries": (lambda v: _integer(v) and 0 <= v <= MAX_RETRIES, f"an integer from 0 to {MAX_RETRIES}"),
    "cache_dir": (_string, "a directory path"),
    "cache_url": (lambda v: _string(v) and _is_cache_url(v),
                  "a Redis URL such as redis://host:6379/0 (rediss:// for TLS, unix:// for a socket)"),
    "baseline": (_string, "a file path"),
    "data_dir": (_string, "a directory laid out like the benchmark mirror"),
    "templates": (lambda v: isinstance(v, dict), "a table of template path -> spec"),
    "history_dir": (_string, "a directory path"),
    "history_branch": (_string, "a git branch name"),
}


@dataclass(frozen=True)
class TestSpec:
    """Everything needed to score one template; resolved from all sources."""

    benchmark: str | None = None
    dataset: Any = None
    scorer: str | None = None
    pattern: str | None = None
    rubric: str | None = None
    judge_model: str | None = None
    judge_api_base: str | None = None
    model: str | None = None
    mode: str | None = None  # chat, or completion for a base model (see model_defaults)
    samples: int = 50
    seed: int = 0
    tolerance: float = 0.0
    alpha: float = 0.05
    min_accuracy: float | None = None
    max_error_rate: float = 0.05
    temperature: float = 0.0
    max_tokens: int | None = None  # 256, or fitted to the answers for a base model (see model_defaults)
    stop: Any = None
    api_base: str | None = None
    timeout: float = 120.0
    drift_window: int | None = None  # compare with the best of the last N history records
    drift_tolerance: float | None = None  # cumulative drop allowed (default: tolerance)
    router: Any = None  # see lpo_ci.router
    # Where each key was set, for error messages: key -> (file, line).
    origins: dict[str, tuple[str, int | None]] = field(default_factory=dict, compare=False)

    def where(self, key: str) -> dict[str, Any]:
        """``path=``/``line=`` keyword arguments locating ``key`` for an error."""
        file, line = self.origins.get(key, (None, None))
        return {"path": file, "line": line}


@dataclass(frozen=True)
class Settings:
    """Project-wide settings from ``[tool.lpo_ci]`` and the command line."""

    root: Path
    enabled: bool = False
    prompts: tuple[str, ...] = DEFAULT_GLOBS
    exclude: tuple[str, ...] = ()
    search_path: tuple[str, ...] = ()  # folders {% include %} names resolve in (default: see includes)
    max_samples: int | None = None  # a cap on every template's sample (--lpo-max-samples)
    concurrency: int = 8
    batch_size: int = 1  # completion mode: prompts per request to servers that take a list (lpo_ci.batch)
    retries: int = 4
    cache_dir: Path | None = None
    cache_url: str | None = None  # a shared Redis response cache; cache_dir is then its fallback
    baseline: Path | None = None
    data_dir: Path | None = None
    defaults: dict[str, Any] = field(default_factory=dict)
    default_origins: dict[str, tuple[str, int | None]] = field(default_factory=dict)
    template_tables: dict[str, dict[str, Any]] = field(default_factory=dict)
    pyproject: Path | None = None
    history_dir: Path | None = None
    history_branch: str = "lpo-ci-history"


@dataclass(frozen=True)
class TemplateFile:
    """A template found on disk with its source and resolved spec."""

    path: Path
    relpath: str
    source: str
    spec: TestSpec
    spec_line: int  # line of the spec comment in the template (1 when the spec is in pyproject.toml)
    samples_asked: int | None = None  # the spec's samples when --lpo-max-samples capped it


def short_repr(value: Any, limit: int = 80) -> str:
    """``repr`` cut to ``limit`` characters, in bounded time even for a huge nested value."""
    import reprlib

    shortener = reprlib.Repr()
    shortener.maxlevel, shortener.maxstring, shortener.maxother = 3, limit, limit
    text = shortener.repr(value)
    return text if len(text) <= limit else text[:limit - 3] + "..."


def _check(key: str, value: Any, table: dict[str, tuple[Any, str]], file: str | None,
           line: int | None, context: str) -> None:
    if key not in table:
        import difflib

        from .benchmarks import DATASET_KEYS
        close = difflib.get_close_matches(key, list(table), n=1)
        if key in DATASET_KEYS and "dataset" in table:
            hint = f"'{key}' belongs under 'dataset:', e.g. dataset: {{path: data/file.jsonl, {key}: ...}}"
        elif close:
            hint = f"did you mean '{close[0]}'?"
        else:
            hint = "valid keys: " + ", ".join(sorted(table))
        raise SpecError(f"unknown key {short_repr(key)} in {context}", path=file, line=line, hint=hint)
    check, wanted = table[key]
    if not check(value):
        raise SpecError(f"'{key}' must be {wanted}, got {short_repr(value)}", path=file, line=line,
                        hint=f"fix the value of '{key}'")


def option_type(check, wanted: str, parse=int):
    """An argparse ``type`` for a numeric option, checked like the spec key it stands for:
    argparse then names the option in the error (``argument --samples: must be ...``)."""
    import argparse

    def convert(text: str):
        try:
            value = parse(text)
        except ValueError:
            value = None
        if value is None or not check(value):
            raise argparse.ArgumentTypeError(f"must be {wanted}, got {text!r}")
        return value

    convert.__name__ = wanted
    return convert


POSITIVE_INT = option_type(_positive_int, "a positive integer")
SEED = option_type(_seed, "an integer between -2**63 and 2**63 - 1")
POSITIVE_NUMBER = option_type(lambda v: _real(v) and v > 0, "a number > 0", parse=float)


def _toml_line(text: str, key: str, after: int = 0) -> int | None:
    """Best-effort line of ``key = ...`` in a TOML file (tomllib keeps no positions)."""
    pattern = re.compile(rf"^[ \t]*\"?{re.escape(key)}\"?[ \t]*=", re.MULTILINE)
    for match in pattern.finditer(text):
        if match.start() >= after:
            return text.count("\n", 0, match.start()) + 1
    return None


def _toml_table_offset(text: str, relpath: str) -> int:
    """Offset of the ``[tool.lpo_ci.templates."relpath"]`` header (or its inline key)."""
    quoted = re.escape(f'"{relpath}"')
    match = re.search(rf"^[ \t]*\[[ \t]*tool\.lpo_ci\.templates\.{quoted}[ \t]*\]|^[ \t]*{quoted}[ \t]*=",
                      text, re.MULTILINE)
    return match.start() if match else 0


def lpo_table(pyproject: dict[str, Any]) -> Any:
    """``[tool.lpo_ci]`` of a parsed pyproject.toml ({} when absent; not a dict when malformed)."""
    tool = pyproject.get("tool", {})
    return tool.get("lpo_ci", {}) if isinstance(tool, dict) else {}


def load_settings(root: Path, overrides: dict[str, Any] | None = None) -> Settings:
    """Read ``[tool.lpo_ci]`` from ``root/pyproject.toml`` and apply command-line overrides."""
    root = Path(root).resolve()
    pyproject = root / "pyproject.toml"
    table: dict[str, Any] = {}
    text = ""
    if pyproject.is_file():
        try:
            text = pyproject.read_text(encoding="utf-8")
            data = tomllib.loads(text)
        except UnicodeDecodeError as exc:
            raise SpecError(f"not UTF-8 text: {exc.reason}", path=PYPROJECT,
                            hint="save pyproject.toml as UTF-8") from None
        except tomllib.TOMLDecodeError as exc:
            raise SpecError(f"invalid TOML: {exc}", path=PYPROJECT,
                            hint="fix the syntax of pyproject.toml") from None
        table = lpo_table(data)
        if not isinstance(table, dict):
            raise SpecError("'tool.lpo_ci' must be a table", path=PYPROJECT, line=_toml_line(text, "lpo_ci"),
                            hint="write the settings under a [tool.lpo_ci] header")
    shown = PYPROJECT  # errors name files relative to the project root, as the report does
    section = text.find("[tool.lpo_ci")
    project: dict[str, Any] = {}
    defaults: dict[str, Any] = {}
    origins: dict[str, tuple[str, int | None]] = {}
    for key, value in table.items():
        line = _toml_line(text, key, max(section, 0))
        if key in PROJECT_KEYS:
            _check(key, value, PROJECT_KEYS, shown, line, "[tool.lpo_ci]")
            project[key] = value
        else:
            _check(key, value, {**TEMPLATE_KEYS, **PROJECT_KEYS}, shown, line, "[tool.lpo_ci]")
            defaults[key] = value
            origins[key] = (shown, line)
    max_samples = None
    for key, value in (overrides or {}).items():
        if value is None:
            continue
        if key == "max_samples":  # a command-line cap only: the spec's samples are the gate's
            _check("samples", value, TEMPLATE_KEYS, None, None, "the options")
            max_samples = value
            continue
        if key in PROJECT_KEYS or key in TEMPLATE_KEYS:  # options checked at parsing; API callers here
            _check(key, value, {**TEMPLATE_KEYS, **PROJECT_KEYS}, None, None, "the options")
        if key in PROJECT_KEYS:
            project[key] = value
        else:
            defaults[key] = value
            origins[key] = ("command line", None)

    def path_setting(key: str, default: str | None) -> Path | None:
        value = project.get(key, default)
        return (root / value) if value else None

    import os
    data_dir = project.get("data_dir") or os.environ.get("LPO_CI_DATA_DIR")
    cache_dir = project.get("cache_dir") or os.environ.get("LPO_CI_CACHE_DIR") or ".lpo-ci/cache"
    cache_url = project.get("cache_url") or os.environ.get("LPO_CI_CACHE_URL")
    if cache_url and not _is_cache_url(cache_url):
        raise SpecError(f"LPO_CI_CACHE_URL must be {PROJECT_KEYS['cache_url'][1]}, got {cache_url!r}",
                        hint="fix or unset LPO_CI_CACHE_URL")
    templates = project.get("templates", {})
    return Settings(
        root=root,
        enabled=bool(project.get("lpo", False)),
        prompts=tuple(project.get("prompts", DEFAULT_GLOBS)),
        exclude=tuple(project.get("exclude", ())),
        search_path=tuple(project.get("search_path", ())),
        max_samples=max_samples,
        concurrency=project.get("concurrency", 8),
        batch_size=project.get("batch_size", 1),
        retries=project.get("retries", 4),
        cache_dir=(root / cache_dir) if cache_dir else None,
        cache_url=cache_url or None,
        baseline=path_setting("baseline", ".lpo-ci/baseline.json"),
        data_dir=(root / data_dir) if data_dir else None,
        defaults=defaults,
        default_origins=origins,
        template_tables=templates,
        pyproject=pyproject if pyproject.is_file() else None,
        history_dir=path_setting("history_dir", ".lpo-ci/history"),
        history_branch=project.get("history_branch", "lpo-ci-history"),
    )


def split_spec_comment(source: str) -> tuple[str | None, int, int]:
    """Return (comment body, line of the comment, offset after it), or (None, 1, 0)."""
    match = _SPEC_COMMENT.match(source)
    if not match:
        return None, 1, 0
    line = source.count("\n", 0, match.start() + len(match.group(1))) + 1
    return match.group(2), line, match.end()


def _expanded_size(node) -> int:
    """How many values ``node`` stands for once aliases are expanded (aliases share nodes,
    so this counts each shared node once per use, memoized: linear in the document)."""
    import yaml

    sizes: dict[int, int] = {}

    def size(n) -> int:
        if n is None:
            return 0
        if id(n) in sizes:
            return sizes[id(n)]
        sizes[id(n)] = 1  # a recursive alias counts once
        if isinstance(n, yaml.SequenceNode):
            total = 1 + sum(size(child) for child in n.value)
        elif isinstance(n, yaml.MappingNode):
            total = 1 + sum(size(k) + size(v) for k, v in n.value)
        else:
            total = 1
        sizes[id(n)] = total
        return total

    return size(node)


def _parse_yaml_spec(body: str, path: str | Path, first_line: int) -> tuple[dict[str, Any], dict[str, int]]:
    """Parse the YAML under ``lpo:``; return values and each key's file line."""
    import yaml

    if len(body) > MAX_SPEC_CHARS:
        raise SpecError(f"the lpo spec comment is {len(body):,} characters long (at most {MAX_SPEC_CHARS:,})",
                        path=path, line=first_line, hint="keep the spec to the keys lpo-ci reads")
    try:
        node = yaml.compose(body, Loader=yaml.SafeLoader)
        if _expanded_size(node) > MAX_SPEC_NODES:
            raise SpecError(f"the lpo spec comment expands to more than {MAX_SPEC_NODES:,} values "
                            f"(YAML aliases)", path=path, line=first_line,
                            hint="write the values out; a spec needs no anchors or aliases")
        data = yaml.safe_load(body)
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None) or getattr(exc, "context_mark", None)
        line = first_line + mark.line if mark is not None else first_line
        problem = getattr(exc, "problem", None) or str(exc)
        raise SpecError(f"malformed YAML in the lpo spec comment: {problem}", path=path, line=line,
                        hint="the comment body must be YAML: 'lpo:' then indented 'key: value' lines") from None
    except (RecursionError, ValueError, OverflowError) as exc:  # absurd nesting, a 5,000-digit number
        problem = "nested too deeply" if isinstance(exc, RecursionError) else short_repr(str(exc), 120)
        raise SpecError(f"the lpo spec comment cannot be read: {problem}", path=path, line=first_line,
                        hint="write plain 'key: value' lines") from None
    if not isinstance(data, dict) or set(data) != {"lpo"}:
        raise SpecError("the spec comment must hold one YAML mapping under the key 'lpo'",
                        path=path, line=first_line, hint="write {# lpo:\\n  benchmark: ... #}")
    spec = data["lpo"] or {}
    if not isinstance(spec, dict):
        raise SpecError("'lpo:' must hold a mapping of spec keys", path=path, line=first_line,
                        hint="indent 'key: value' lines under 'lpo:'")
    lines: dict[str, int] = {}
    for key_node, value_node in (node.value if node is not None else []):  # a mapping, as data is
        if key_node.value == "lpo" and isinstance(value_node, yaml.MappingNode):
            for inner_key, _ in value_node.value:
                lines[str(inner_key.value)] = first_line + inner_key.start_mark.line
    return spec, lines


def read_template(settings: Settings, path: Path, source: str | None = None) -> TemplateFile:
    """Read a template file and resolve its spec from every source."""
    path = Path(path)
    try:
        relpath = path.resolve().relative_to(settings.root).as_posix()
    except ValueError:
        relpath = path.as_posix()
    if source is None:
        try:
            source = path.read_text(encoding="utf-8")
        except UnicodeDecodeError as exc:
            raise SpecError(f"not UTF-8 text: {exc.reason}", path=relpath,
                            hint="save the template as UTF-8") from None
        except OSError as exc:
            raise SpecError(f"cannot read the template: {exc.strerror or exc}", path=relpath,
                            hint="check the file's permissions") from None
    values: dict[str, Any] = dict(settings.defaults)
    origins = dict(settings.default_origins)
    spec_line = 1  # in the template file; a spec in pyproject.toml is located there in errors
    where: dict[str, Any] = {"path": relpath, "line": 1}  # the spec as a whole, for errors about it
    table = settings.template_tables.get(relpath)
    if table is not None:
        text = settings.pyproject.read_text(encoding="utf-8") if settings.pyproject else ""
        offset = _toml_table_offset(text, relpath)
        where = {"path": PYPROJECT, "line": text.count("\n", 0, offset) + 1}
        if not isinstance(table, dict):
            raise SpecError(f"[tool.lpo_ci.templates] entry '{relpath}' must be a table", **where,
                            hint="write it as a table of spec keys")
        for key, value in table.items():
            line = _toml_line(text, key, offset) or where["line"]
            _check(key, value, TEMPLATE_KEYS, PYPROJECT, line,
                   f"[tool.lpo_ci.templates.\"{relpath}\"]")
            values[key] = value
            origins[key] = (PYPROJECT, line)
    body, comment_line, _ = split_spec_comment(source)
    spec: dict[str, Any] = {}
    if body is not None:
        spec_line = comment_line
        where = {"path": relpath, "line": comment_line}
        spec, lines = _parse_yaml_spec(body, relpath, comment_line)
        for key, value in spec.items():
            _check(str(key), value, TEMPLATE_KEYS, relpath, lines.get(str(key), comment_line),
                   "the lpo spec comment")
            values[key] = value
            origins[key] = (relpath, lines.get(str(key), comment_line))
    elif table is None:
        raise SpecError("no test spec: the template has no '{# lpo: ... #}' comment and no "
                        "[tool.lpo_ci.templates] entry", path=relpath, line=1,
                        hint="start the file with {# lpo:\n    benchmark: bbh/boolean_expressions\n  #}; "
                             "a shared partial is not a test subject: name it with a leading underscore "
                             "(_preamble.j2) or list it under exclude in [tool.lpo_ci]")
    own = set(table or {}) | (set(spec) if body is not None else set())
    if "benchmark" in values and "dataset" in values:
        chosen = [k for k in ("benchmark", "dataset") if k in own]
        if len(chosen) != 1:
            raise SpecError("the spec names both a 'benchmark' and a 'dataset'", **where, hint="keep one of them")
        values.pop("dataset" if chosen[0] == "benchmark" else "benchmark")
    if "benchmark" not in values and "dataset" not in values:
        raise SpecError("the spec needs a 'benchmark' or a 'dataset'", **where,
                        hint="add 'benchmark: bbh/<task>' (or gsm8k, multiarith) or 'dataset: data/my.jsonl'")
    if values.get("scorer") == "regex" and "pattern" not in values:
        raise SpecError("scorer 'regex' needs a 'pattern'", **where, hint="add 'pattern: \"Answer: (.*)\"'")
    if isinstance(values.get("stop"), str):
        values["stop"] = [values["stop"]]
    samples_asked = None
    if settings.max_samples is not None and values.get("samples", TestSpec.samples) > settings.max_samples:
        samples_asked, values["samples"] = values.get("samples", TestSpec.samples), settings.max_samples
    fields = {f.name for f in dataclasses.fields(TestSpec)}
    resolved = TestSpec(**{k: v for k, v in values.items() if k in fields}, origins=origins)
    return TemplateFile(path=path, relpath=relpath, source=source, spec=resolved, spec_line=spec_line,
                        samples_asked=samples_asked)

"""Runs a composite action's steps from its ``action.yml`` the way a runner does.

A test stand-in for the GitHub Actions runner, enough for ``action.yml``:
input defaults, ``${{ }}`` expressions (contexts ``inputs``, ``github``,
``runner``, ``steps``; ``== != && || !``; ``always() success() failure()``),
``if:`` conditions, per-step ``env`` and ``working-directory``, ``shell:
bash`` as ``bash --noprofile --norc -eo pipefail``, a fresh ``GITHUB_OUTPUT``
file per step (both ``name=value`` and ``name<<DELIMITER`` forms), the job
summary file, and workflow commands read from stdout with ``stop-commands``
honoured. ``uses:`` steps (other actions) cannot run offline: they are
recorded and skipped, as are the step ids a test names (the pip install).
"""

from __future__ import annotations

import re
import subprocess
from dataclasses import dataclass, field
from pathlib import Path

import yaml

_TOKEN = re.compile(r"\s*(?:(?P<str>'(?:[^']|'')*')|(?P<op>==|!=|&&|\|\||!|\(|\)|,)"
                    r"|(?P<num>\d+(?:\.\d+)?)|(?P<name>[A-Za-z_][\w.\-]*))")


class Expression:
    """A GitHub Actions expression, evaluated against a dict of contexts."""

    def __init__(self, text: str, contexts: dict, status_ok: bool):
        self.tokens = []
        position = 0
        text = text.strip()
        while position < len(text):
            match = _TOKEN.match(text, position)
            if not match:
                raise ValueError(f"cannot parse expression at {text[position:]!r}")
            kind = match.lastgroup
            self.tokens.append((kind, match.group(kind)))
            position = match.end()
        self.index, self.contexts, self.status_ok = 0, contexts, status_ok

    def value(self):
        result = self._or()
        if self.index != len(self.tokens):
            raise ValueError(f"unexpected {self.tokens[self.index]}")
        return result

    def _peek(self):
        return self.tokens[self.index] if self.index < len(self.tokens) else (None, None)

    def _take(self):
        token = self._peek()
        self.index += 1
        return token

    def _or(self):  # GitHub's || and && yield an operand, not a boolean
        return self._chain("||", self._and, lambda left, right: left if truthy(left) else right)

    def _and(self):
        return self._chain("&&", self._compare, lambda left, right: right if truthy(left) else left)

    def _chain(self, op: str, operand, combine):
        left = operand()
        while self._peek() == ("op", op):
            self._take()
            left = combine(left, operand())
        return left

    def _compare(self):
        left = self._unary()
        if self._peek() in (("op", "=="), ("op", "!=")):
            op = self._take()[1]
            right = self._unary()
            equal = str(left).lower() == str(right).lower()
            return equal if op == "==" else not equal
        return left

    def _unary(self):
        if self._peek() == ("op", "!"):
            self._take()
            return not truthy(self._unary())
        return self._primary()

    def _primary(self):
        kind, text = self._take()
        if kind == "str":
            return text[1:-1].replace("''", "'")
        if kind == "num":
            return float(text)
        if kind == "op" and text == "(":
            value = self._or()
            self._take()
            return value
        if kind == "name":
            if self._peek() == ("op", "("):
                self._take()
                self._take()
                return {"always": True, "success": self.status_ok, "failure": not self.status_ok,
                        "cancelled": False}[text]
            if text in ("true", "false"):
                return text == "true"
            value = self.contexts
            for part in text.split("."):
                value = value.get(part, "") if isinstance(value, dict) else ""
            return value
        raise ValueError(f"unexpected token {text!r}")


def truthy(value) -> bool:
    return value not in ("", None, False, 0, 0.0)


def substitute(text, contexts: dict, status_ok: bool = True):
    """``${{ expr }}`` inside a string replaced by its value."""
    if not isinstance(text, str):
        return text

    def one(match):
        value = Expression(match.group(1), contexts, status_ok).value()
        return str(value).lower() if isinstance(value, bool) else str(value)

    return re.sub(r"\$\{\{(.*?)\}\}", one, text)


def read_file_commands(path: Path) -> dict[str, str]:
    """``GITHUB_OUTPUT``: ``name=value`` lines and ``name<<DELIM`` ... ``DELIM`` blocks."""
    values, lines = {}, path.read_text(encoding="utf-8").split("\n") if path.exists() else []
    i = 0
    while i < len(lines):
        line = lines[i]
        if "<<" in line and ("=" not in line or line.index("<<") < line.index("=")):
            name, delimiter = line.split("<<", 1)
            end = lines.index(delimiter, i + 1)
            values[name] = "\n".join(lines[i + 1:end])
            i = end + 1
            continue
        if "=" in line:
            name, value = line.split("=", 1)
            values[name] = value
        i += 1
    return values


def workflow_commands(stdout: str) -> list[tuple[str, str, str]]:
    """(command, properties, message) of ``::cmd props::message`` lines, as the runner reads them
    (properties and message decoded)."""
    commands, stopped = [], None
    for line in stdout.splitlines():
        match = re.match(r"^::([\w-]+)(?: ([^:]*))?::(.*)$", line)
        if not match:
            continue
        name, props, message = match.group(1), match.group(2) or "", match.group(3)
        if stopped is not None:
            if name == stopped:
                stopped = None
            continue
        if name == "stop-commands":
            stopped = message
            continue
        commands.append((name, _unescape(props, True), _unescape(message, False)))
    return commands


def _unescape(text: str, is_property: bool) -> str:
    """The runner's decoding of workflow command escapes (``%0A``, and ``%3A %2C`` in properties)."""
    pairs = [("%0D", "\r"), ("%0A", "\n")] + ([("%3A", ":"), ("%2C", ",")] if is_property else [])
    for escaped, plain in pairs + [("%25", "%")]:
        text = text.replace(escaped, plain)
    return text


@dataclass
class StepResult:
    id: str
    name: str
    skipped: str = ""          # why, when it did not run
    returncode: int = 0
    stdout: str = ""
    stderr: str = ""
    outputs: dict = field(default_factory=dict)


@dataclass
class ActionRun:
    steps: list[StepResult]
    outputs: dict
    summary: str
    commands: list[tuple[str, str, str]]

    @property
    def failed(self) -> bool:
        return any(s.returncode != 0 for s in self.steps)

    def step(self, step_id: str) -> StepResult:
        return next(s for s in self.steps if s.id == step_id)

    @property
    def log(self) -> str:
        return "\n".join(f"--- {s.name} ({s.skipped or s.returncode})\n{s.stdout}{s.stderr}" for s in self.steps)


def run_composite(action_dir: Path, *, inputs: dict, env: dict, github: dict, runner_temp: Path,
                  skip_ids: tuple[str, ...] = ()) -> ActionRun:
    action = yaml.safe_load((action_dir / "action.yml").read_text(encoding="utf-8"))
    runner = {"temp": str(runner_temp), "os": "Linux"}
    github = {"action_path": str(action_dir), **github}
    contexts = {"github": github, "runner": runner, "steps": {}, "inputs": {}}
    for name, spec in (action.get("inputs") or {}).items():
        given = inputs.get(name)
        contexts["inputs"][name] = given if given is not None else substitute(str(spec.get("default", "")),
                                                                             contexts)
    summary_file = runner_temp / "step_summary.md"
    summary_file.write_text("", encoding="utf-8")
    results, ok, commands = [], True, []
    for number, step in enumerate(action["runs"]["steps"]):
        step_id = step.get("id", f"step{number}")
        result = StepResult(step_id, step.get("name", step_id))
        results.append(result)
        condition = step.get("if", "success()")
        condition = condition[3:-2] if condition.startswith("${{") else condition
        if not truthy(Expression(condition, contexts, ok).value()):
            result.skipped = "if: false"
            continue
        if "uses" in step:
            result.skipped = f"uses {step['uses']}"
            continue
        if step_id in skip_ids:
            result.skipped = "skipped by the test"
            continue
        output_file = runner_temp / f"output_{number}"
        output_file.write_text("", encoding="utf-8")
        step_env = {**env, "GITHUB_OUTPUT": str(output_file), "GITHUB_STEP_SUMMARY": str(summary_file),
                    "GITHUB_ACTION_PATH": str(action_dir), "RUNNER_TEMP": str(runner_temp)}
        step_env.update({k: substitute(str(v), contexts, ok) for k, v in (step.get("env") or {}).items()})
        workdir = Path(env["GITHUB_WORKSPACE"]) / substitute(step.get("working-directory", "."), contexts, ok)
        script = runner_temp / f"step_{number}.sh"
        script.write_text(substitute(step["run"], contexts, ok), encoding="utf-8")
        assert step.get("shell") == "bash", f"step {step_id}: a composite run step must name its shell"
        done = subprocess.run(["bash", "--noprofile", "--norc", "-eo", "pipefail", str(script)], cwd=workdir,
                              env=step_env, capture_output=True, text=True, timeout=900)
        result.returncode, result.stdout, result.stderr = done.returncode, done.stdout, done.stderr
        result.outputs = read_file_commands(output_file)
        commands += workflow_commands(done.stdout)
        contexts["steps"][step_id] = {"outputs": result.outputs,
                                      "outcome": "success" if done.returncode == 0 else "failure"}
        ok = ok and done.returncode == 0
    outputs = {name: substitute(spec["value"], contexts) for name, spec in (action.get("outputs") or {}).items()}
    return ActionRun(results, outputs, summary_file.read_text(encoding="utf-8"), commands)

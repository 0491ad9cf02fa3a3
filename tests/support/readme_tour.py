"""The README's 5-minute tour, taken verbatim from the README: the template, the
``pyproject.toml`` and the commands, written into a folder as a new user would."""

from __future__ import annotations

import re
import shlex
from pathlib import Path

README = Path(__file__).resolve().parents[2] / "README.md"


def tour_section(text: str | None = None) -> str:
    text = text if text is not None else README.read_text(encoding="utf-8")
    return text[text.index("## A 5-minute tour"):text.index("### Verdicts")]


def _block(section: str, language: str) -> str:
    match = re.search(rf"```{language}\n(.*?)```", section, re.DOTALL)
    assert match, f"the tour has no ```{language} block"
    return match.group(1)


def tour() -> tuple[str, str, str, list[list[str]]]:
    """(template path, template text, pyproject.toml text, commands as argument lists)."""
    section = tour_section()
    path = re.search(r"Save this as `([^`]+)`", section).group(1)
    commands = [shlex.split(line.split("#", 1)[0]) for line in _block(section, "bash").splitlines()
                if line.split("#", 1)[0].strip()]
    return path, _block(section, "jinja"), _block(section, "toml"), commands


def write_tour(folder: Path) -> list[list[str]]:
    """The tour's files in ``folder``; returns its commands."""
    path, template, pyproject, commands = tour()
    (folder / path).parent.mkdir(parents=True, exist_ok=True)
    (folder / path).write_text(template, encoding="utf-8")
    (folder / "pyproject.toml").write_text(pyproject, encoding="utf-8")
    return commands

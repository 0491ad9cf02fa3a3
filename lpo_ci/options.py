"""``--lpo-data-dir ../data``: a plugin option's value that pytest read as a test path.

pytest settles its rootdir and configuration file from the command line before
it loads the plugins installed as entry points (``Config._preparse`` parses
with only its own options known; pytest issue #8846). The value of a plugin
option written with a space is then an unknown positional argument: an
existing path there becomes a test path for that first parse, and the rootdir
and the ``[tool.pytest.ini_options]`` that apply are looked up from it. Once
the plugin is loaded the value is read correctly, but the rootdir stays wrong
(``ModuleNotFoundError`` for the project's own package, ``testpaths`` and
``addopts`` ignored). No hook of an installed plugin runs early enough to
prevent it; ``--opt=value`` is always read right. So the plugin detects it and
stops with the command line to type.
"""

from __future__ import annotations

import inspect
import os
import shlex
from collections.abc import Callable
from pathlib import Path


def _spaced_values(args: list[str], flags: list[str]) -> list[tuple[int, str, str]]:
    """(index, flag, value) for each ``FLAG VALUE`` written as two arguments."""
    found = []
    for index, (flag, value) in enumerate(zip(args, args[1:])):
        if flag == "--":
            break
        if flag in flags and not value.startswith("-"):
            found.append((index, flag, value))
    return found


def _setup(config, args: list[str]) -> tuple[Path, Path | None] | None:
    """The (rootdir, configuration file) pytest picks for ``args``; None if pytest's helper
    is not what this version expects."""
    try:
        from _pytest.config.findpaths import determine_setup

        known = config.known_args_namespace
        offered = {"inifile": getattr(known, "inifilename", None), "args": args,
                   "rootdir_cmd_arg": getattr(known, "rootdir", None) or None,
                   "invocation_dir": Path(config.invocation_params.dir),
                   "override_ini": getattr(known, "override_ini", None)}
        # private, and its keywords change between pytest versions: called with the ones this one takes,
        # relied on for the first two items it returns
        helper: Callable[..., tuple[Path, Path | None, *tuple[object, ...]]] = determine_setup
        wanted = inspect.signature(helper).parameters
        found = helper(**{k: v for k, v in offered.items() if k in wanted})
        return Path(found[0]), Path(found[1]) if found[1] else None
    except Exception:  # noqa: BLE001 - a private helper: without it, the plain comparison below
        return None


def misread_values(config, flags: list[str]) -> str | None:
    """The message to stop with when a value of ``flags`` moved pytest's rootdir or
    configuration file, else None."""
    here = Path(config.invocation_params.dir)
    command = list(config.invocation_params.args)
    env = shlex.split(os.environ.get("PYTEST_ADDOPTS", ""))
    spaced = [(where, i, flag, value) for where, args in (("command", command), ("PYTEST_ADDOPTS", env))
              for i, flag, value in _spaced_values(args, flags) if (here / value).exists()]
    if not spaced:
        return None
    actual = (Path(config.rootpath), Path(config.inipath) if config.inipath else None)
    paths = [str(p) for p in getattr(config.known_args_namespace, "file_or_dir", None) or []]
    intended = _setup(config, paths)
    if intended is None:  # the plain check: the rootdir is where a value points
        values = [(here / value).resolve() for *_, value in spaced]
        if not any(actual[0] == v or actual[0] in v.parents and not here.resolve().is_relative_to(actual[0])
                   for v in values):
            return None
    elif intended == actual:
        return None  # harmless here: the value is inside the project
    _, _, flag, value = spaced[0]
    message = (f"{flag} {value}: pytest read '{value}' as a test path before lpo-ci's options were known, "
               f"and took its rootdir ({actual[0]}) and configuration ({actual[1] or 'none'}) from there"
               + (f" instead of {intended[0]}" if intended else ""))
    fixed = list(command)
    for where, i, flag, value in reversed(spaced):
        if where == "command":
            fixed[i:i + 2] = [f"{flag}={value}"]
    fixes = ["pytest " + shlex.join(fixed)] if any(where == "command" for where, *_ in spaced) else []
    fixes += [f"in PYTEST_ADDOPTS, {flag}={value}" for where, _, flag, value in spaced if where == "PYTEST_ADDOPTS"]
    return f"{message}\n  hint: write the option and its value as one argument, with '=': {'; '.join(fixes)}"

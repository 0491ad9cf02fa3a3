"""Errors a user can act on: each names the file and line at fault and what to do."""

from __future__ import annotations

from pathlib import Path

# Exit statuses of the lpo-ci commands (the Action's verdict step reads them too).
EXIT_OK, EXIT_FAIL, EXIT_USAGE, EXIT_ERROR = 0, 1, 2, 3


class LpoError(Exception):
    """An error caused by the user's input, shown without a traceback.

    ``path`` and ``line`` (1-based) locate the fault; ``hint`` says what to do.
    """

    def __init__(self, message: str, *, path: str | Path | None = None,
                 line: int | None = None, hint: str | None = None):
        super().__init__(message)
        self.message = message
        self.path = str(path) if path is not None else None
        self.line = line
        self.hint = hint

    def __str__(self) -> str:
        where = ""
        if self.path:
            where = f"{self.path}:{self.line}: " if self.line else f"{self.path}: "
        text = f"{where}{self.message}"
        if self.hint:
            text += f"\n  hint: {self.hint}"
        return text


class SpecError(LpoError):
    """A template, its test spec or the project settings are invalid."""


class DataError(LpoError):
    """A benchmark or dataset could not be loaded or lacks a field."""


class GitError(LpoError):
    """A base version was asked for or expected but cannot be read from git
    (a missing ref, a shallow clone): the gate cannot compare, so it must not pass."""


class EvaluationError(LpoError):
    """The evaluation itself cannot be trusted (provider down, too many failed calls)."""


def exit_status(error: BaseException) -> int:
    """The command's exit status for an error that stopped one template: bad input
    (spec, data, git, options) is a usage error; anything else an evaluation error."""
    if isinstance(error, LpoError) and not isinstance(error, EvaluationError):
        return EXIT_USAGE
    return EXIT_ERROR


def internal_error(error: BaseException) -> str:
    """One line for a failure that is no user error (a bug, a library's surprise)."""
    text = str(error).strip().splitlines()[0][:300] if str(error).strip() else ""
    return f"internal error: {type(error).__name__}: {text}"

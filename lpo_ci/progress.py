"""Live progress while a template is scored: on an interactive terminal only.

``lpo-ci`` draws a tqdm bar on stderr. Under pytest the line pytest is
writing (``prompts/a.j2 `` or the verbose node id) gets a short suffix,
``[24/80 calls, 3.1 s]``, written around pytest's output capture and erased
again before pytest writes the outcome, so the log reads as without it. Both
stay silent when the output is not a terminal, under CI (``CI`` set), in a
pytest-xdist worker and with ``-qq``.
"""

from __future__ import annotations

import contextlib
import os
import sys
import time
from collections.abc import Iterator
from typing import Any

REDRAW_SECONDS = 0.1


def interactive(stream) -> bool:
    """A terminal a person watches: not a pipe or a file, not a CI log."""
    try:
        return stream.isatty() and not os.environ.get("CI")
    except (AttributeError, ValueError):  # closed or replaced stream
        return False


@contextlib.contextmanager
def progress_bar(label: str) -> Iterator[Any]:
    """A tqdm bar for ``lpo-ci``; None (no output) when stderr is not interactive."""
    if not interactive(sys.stderr):
        yield None
        return
    from tqdm import tqdm

    with tqdm(desc=label, unit="call", leave=False, dynamic_ncols=True) as bar:
        yield bar


class LineProgress:
    """Progress appended to pytest's current terminal line (a tqdm-like ``total``,
    ``update`` and ``refresh``), erased by ``close``."""

    def __init__(self, config, label: str = ""):
        self.config = config
        self.label = label
        self.total: int | None = None
        self.n = 0
        self.started = time.monotonic()
        self.shown = 0  # characters on screen
        self.drawn_at = 0.0

    def update(self, count: int = 1) -> None:
        self.n += count
        now = time.monotonic()
        if now - self.drawn_at >= REDRAW_SECONDS or (self.total and self.n >= self.total):
            self.refresh()

    def text(self) -> str:
        parts = [self.label] if self.label else []
        if self.total:  # counting calls: how many, and for how long
            parts += [f"{self.n}/{self.total} calls", f"{time.monotonic() - self.started:.1f} s"]
        return f" [{', '.join(parts)}]" if parts else ""

    def refresh(self) -> None:
        self.drawn_at = time.monotonic()
        writer = self.config.get_terminal_writer()
        room = writer.fullwidth - writer.width_of_current_line - 10  # pytest's "[100%]" stays clear
        text = self.text()
        if len(text) > room:  # a wrapped line could not be erased
            text = ""
        self._write("\b" * self.shown + text + " " * max(0, self.shown - len(text))
                    + "\b" * max(0, self.shown - len(text)))
        self.shown = len(text)

    def close(self) -> None:
        if self.shown:
            self._write("\b" * self.shown + " " * self.shown + "\b" * self.shown)
            self.shown = 0

    def _write(self, text: str) -> None:
        """Straight to the terminal, past pytest's capture, without moving pytest's notion
        of the current line (the cursor ends where pytest left it once erased)."""
        capture = self.config.pluginmanager.getplugin("capturemanager")
        with capture.global_and_fixture_disabled() if capture else contextlib.nullcontext():
            self.config.get_terminal_writer().flush()
            sys.stdout.write(text)
            sys.stdout.flush()


@contextlib.contextmanager
def item_progress(config: Any, label: str = "") -> Iterator[LineProgress | None]:
    """A ``LineProgress`` while the block runs, or None when progress would be noise."""
    terminal = config.pluginmanager.getplugin("terminalreporter")
    if (terminal is None or hasattr(config, "workerinput") or config.get_verbosity() < -1
            or not bool(getattr(terminal, "isatty", False)) or os.environ.get("CI")):
        yield None
        return
    progress = LineProgress(config, label)
    progress.refresh()
    try:
        yield progress
    finally:
        progress.close()

"""The terminal progress bar shared by the command line and the demo."""

from __future__ import annotations

import contextlib
import os
import sys
from collections.abc import Iterator
from typing import Any


@contextlib.contextmanager
def progress_bar(label: str) -> Iterator[Any]:
    """A tqdm bar on an interactive terminal; None (no output) in CI logs and pipes."""
    if not sys.stderr.isatty() or os.environ.get("CI"):
        yield None
        return
    from tqdm import tqdm

    with tqdm(desc=label, unit="call", leave=False, dynamic_ncols=True) as bar:
        yield bar

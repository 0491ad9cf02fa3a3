"""The stored baseline: per-example outcomes written by ``--lpo-update-baseline``.

Like a snapshot file it is meant to be committed; it is the reference when
there is no base version in git (not a repository, or a new template).
Keys are sorted so that its diffs stay readable.
"""

from __future__ import annotations

import json
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

from .errors import SpecError
from .scoring import Outcome

FORMAT_VERSION = 1


class Baseline:
    def __init__(self, path: Path | None):
        self.path = Path(path) if path else None
        self.entries: dict[str, dict[str, Any]] = {}
        if self.path and self.path.is_file():
            try:
                data = json.loads(self.path.read_text(encoding="utf-8"))
            except json.JSONDecodeError as exc:
                raise SpecError(f"the stored baseline is not valid JSON: {exc.msg}", path=self.path,
                                line=exc.lineno, hint="rewrite it with pytest --lpo --lpo-update-baseline") from None
            self.entries = data.get("templates", {})

    def outcomes(self, relpath: str, fingerprint: str) -> dict[str, Outcome] | None:
        """Stored outcomes for a template, if they were made with the same test setup."""
        entry = self.entries.get(relpath)
        if not entry or entry.get("fingerprint") != fingerprint:
            return None
        return {k: Outcome(v) for k, v in entry["outcomes"].items()}

    def record(self, relpath: str, fingerprint: str, summary: dict[str, Any],
               outcomes: dict[str, str]) -> None:
        self.entries[relpath] = {
            "fingerprint": fingerprint,
            "accuracy": summary.get("accuracy"),
            "n": summary.get("n"),
            "model": summary.get("model"),
            "benchmark": summary.get("benchmark"),
            "updated": datetime.now(timezone.utc).isoformat(timespec="seconds"),
            "outcomes": outcomes,
        }

    def save(self) -> None:
        if self.path is None:
            return
        self.path.parent.mkdir(parents=True, exist_ok=True)
        data = {"version": FORMAT_VERSION, "templates": self.entries}
        self.path.write_text(json.dumps(data, indent=2, sort_keys=True, ensure_ascii=False) + "\n",
                             encoding="utf-8")

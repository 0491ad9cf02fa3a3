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
        if self.path and self.path.exists() and not self.path.is_file():
            raise SpecError("the stored baseline's path is not a file", path=self.path,
                            hint="point 'baseline' under [tool.lpo_ci] at a file path")
        if self.path and self.path.is_file():
            try:
                data = json.loads(self.path.read_text(encoding="utf-8"))
            except json.JSONDecodeError as exc:
                raise SpecError(f"the stored baseline is not valid JSON: {exc.msg}", path=self.path,
                                line=exc.lineno, hint="rewrite it with pytest --lpo --lpo-update-baseline") from None
            entries = data.get("templates", {}) if isinstance(data, dict) else None
            if not isinstance(entries, dict) or not all(isinstance(e, dict) for e in entries.values()):
                raise SpecError("the stored baseline is not an lpo-ci baseline ('templates' must map "
                                "template paths to entries)", path=self.path,
                                hint="rewrite it with pytest --lpo --lpo-update-baseline")
            self.entries = entries

    def outcomes(self, relpath: str, fingerprint: str) -> dict[str, Outcome] | None:
        """Stored outcomes for a template, if they were made with the same test setup."""
        entry = self.entries.get(relpath)
        if not entry or entry.get("fingerprint") != fingerprint:
            return None
        try:
            return {str(k): Outcome(v) for k, v in entry["outcomes"].items()}
        except (AttributeError, KeyError, TypeError, ValueError):
            raise SpecError(f"the stored baseline's entry for {relpath} has no valid 'outcomes'",
                            path=self.path, hint="rewrite it with pytest --lpo --lpo-update-baseline") from None

    def lookup(self, keys: list[str], fingerprint: str) -> tuple[dict[str, Outcome] | None, str | None, str | None]:
        """(outcomes, the key they were stored under, a warning) for the first of ``keys``
        (a template's path, then the paths it had before a rename) with an entry. An entry
        made with another test setup is not used, and the warning says so."""
        for key in keys:
            if key not in self.entries:
                continue
            outcomes = self.outcomes(key, fingerprint)
            if outcomes is None:
                return None, None, (f"the stored baseline for {key} was recorded with another setup "
                                    f"(data, sample, model or parameters) and is not used; rerun with "
                                    f"--lpo-update-baseline to record this one")
            return outcomes, key, None
        return None, None, None

    def forget(self, relpath: str) -> None:
        """Drop the entry of a template that was renamed (its new path gets the new entry)."""
        self.entries.pop(relpath, None)

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

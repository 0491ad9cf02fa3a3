"""Secrets kept out of everything lpo-ci writes or posts.

The secrets are the values of environment variables named like ``*_TOKEN``,
``*_KEY``, ``*_SECRET``, ``*_PASSWORD`` (``OPENAI_API_KEY``, ``GITHUB_TOKEN``,
...). A value of 8 characters or more is replaced wherever it appears, even
inside a longer word. A shorter value is replaced only as a whole word (not
inside a longer word or number), and a value that is a setting rather than a
credential is left alone: fewer than 3 characters, a boolean or null word
(``true``, ``off``, ``none``, ...), or a number under 8 digits (a budget such
as ``MAX_TOKEN=256``). Redacting those would blank every ``1`` or ``true`` in a
report while protecting nothing a guess would not find.

The JSON report is redacted as it is written (CI uploads it as an artifact
anyone can download on a public repository); ``LPO_CI_REPORT_SECRETS=keep``
keeps it verbatim for local debugging.
"""

from __future__ import annotations

import os
import re
from collections.abc import Mapping
from typing import Any

SECRET_NAMES = re.compile(r"(TOKEN|SECRET|PASSWORD|PASSWD|API_KEY|APIKEY|_KEY)$", re.IGNORECASE)
REDACTED = "REDACTED"  # a word: no Markdown escaping can disguise it
LONG = 8  # characters from which a value is replaced even inside a longer word
SHORTEST = 3
SETTING_WORDS = frozenset({"true", "false", "yes", "no", "on", "off", "null", "none", "nil", "auto",
                           "default", "enabled", "disabled", "empty", "unset"})
KEEP_ENV = "LPO_CI_REPORT_SECRETS"


def is_secret(value: str) -> bool:
    """Whether an environment value of a secret-named variable is a credential worth hiding."""
    value = value.strip()
    if len(value) < SHORTEST or value.lower() in SETTING_WORDS:
        return False
    return not (value.isdigit() and len(value) < LONG)


def secrets_from_env(environ: Mapping[str, str] | None = None) -> list[str]:
    """Secret values in the environment, longest first (so a value inside another goes second)."""
    environ = os.environ if environ is None else environ
    values = {v.strip() for k, v in environ.items() if SECRET_NAMES.search(k) and is_secret(v)}
    return sorted(values, key=lambda v: (-len(v), v))


class Redactor:
    """Replaces the given secret values in text, long ones anywhere, short ones as whole words."""

    def __init__(self, secrets: list[str] | tuple[str, ...] = ()):
        self.secrets = tuple(s for s in secrets if s)
        longs = [re.escape(s) for s in self.secrets if len(s) >= LONG]
        shorts = [re.escape(s) for s in self.secrets if len(s) < LONG]
        parts = longs + ([rf"(?<!\w)(?:{'|'.join(shorts)})(?!\w)"] if shorts else [])
        self._pattern = re.compile("|".join(parts)) if parts else None

    def __call__(self, text: str) -> str:
        return text if self._pattern is None else self._pattern.sub(REDACTED, text)

    def __bool__(self) -> bool:
        return self._pattern is not None

    def data(self, value: Any) -> Any:
        """``value`` with every string inside (keys too) redacted: for JSON, before it is dumped,
        so no escaping can hide a secret from the replacement."""
        if self._pattern is None:
            return value
        if isinstance(value, str):
            return self(value)
        if isinstance(value, dict):
            return {self(k) if isinstance(k, str) else k: self.data(v) for k, v in value.items()}
        if isinstance(value, (list, tuple)):
            return [self.data(v) for v in value]
        return value


def redact(text: str, secrets) -> str:
    return Redactor(list(secrets))(text)


def redact_report(report: dict[str, Any], environ: Mapping[str, str] | None = None) -> dict[str, Any]:
    """The report as it may be written to disk: secrets of the environment redacted, unless
    ``LPO_CI_REPORT_SECRETS=keep``."""
    environ = os.environ if environ is None else environ
    if environ.get(KEEP_ENV, "").strip().lower() == "keep":
        return report
    return Redactor(secrets_from_env(environ)).data(report)

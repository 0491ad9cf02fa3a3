"""What a call sends when the spec leaves ``mode`` and ``max_tokens`` unset.

A base model (the embedded one, a text-completion model) follows no
instruction to stop: asked in chat mode with room for 256 tokens, it writes
the answer and goes on inventing more examples, slowly. So for a base model
the defaults are completion mode, the stop sequences read from the template
(``lpo_ci.stops``), and a token budget fitted to the answers the data
expects: a True/False, a Yes/No, an option letter or a number needs a few
tokens, free text about as many as its longest target; a prompt that asks for
reasoning ("step by step", "the answer is" in its worked examples) gets room
for it. A chat model keeps chat mode and 256 tokens.
"""

from __future__ import annotations

import math
import re
from functools import lru_cache

CHAT_MAX_TOKENS = 256
REASONING_MAX_TOKENS = 256
SHORT_ANSWER_TOKENS = 8  # True/False, Yes/No, valid/invalid, (A): one or two tokens and a margin
NUMBER_TOKENS = 16
TEXT_TOKENS_CAP = 128
CHARS_PER_TOKEN = 3  # conservative: English runs about 4 characters a token
TEXT_COMPLETION_PROVIDERS = ("text-completion-openai", "text-completion-codestral")
_REASONING = re.compile(r"step[- ]by[- ]step|\bthe (?:final )?answer is\b|\blet'?s think\b",
                        re.IGNORECASE)


@lru_cache(maxsize=64)
def is_base_model(model: str) -> bool:
    """The embedded model, a text-completion provider, or a model litellm maps as "completion"."""
    from . import local_model

    if local_model.is_local(model) or model.split("/", 1)[0] in TEXT_COMPLETION_PROVIDERS:
        return True
    completion = _bundled_completion_models()
    if completion is not None and model not in completion and model.split("/", 1)[-1] not in completion:
        return False  # no completion entry under either name: litellm's answer too, without importing it
    from .llm import import_litellm

    try:
        return import_litellm().get_model_info(model=model).get("mode") == "completion"
    except Exception:  # noqa: BLE001 - unmapped (a self-hosted name): taken as a chat model
        return False


@lru_cache(maxsize=1)
def _bundled_completion_models() -> frozenset[str] | None:
    """The names litellm's bundled model map lists in completion mode, read without importing
    litellm (only the names are kept, not the 3.5 MB map); None when litellm was imported
    first (ask it) or is told to use another map. Importing litellm takes seconds: asked for every model,
    it ran in the foreground of every run's set-up (a warm rerun with no call to make, too)
    instead of in the background import (``llm.start_litellm_import``). The file reads in a
    tenth of a second and settles the common case, a model it lists in no completion entry;
    litellm itself decides the few that may be one (its provider rules are its own)."""
    import importlib.util
    import json
    import os
    import sys
    from pathlib import Path

    if "litellm" in sys.modules or os.environ.get("LITELLM_LOCAL_MODEL_COST_MAP", "True").lower() != "true":
        return None
    try:
        spec = importlib.util.find_spec("litellm")
        locations = spec.submodule_search_locations if spec is not None else None
        if not locations:  # not installed, or not a package
            return None
        folder = Path(next(iter(locations)))
        entries = json.loads((folder / "model_prices_and_context_window_backup.json").read_text(encoding="utf-8"))
        return frozenset(name for name, entry in entries.items()
                         if isinstance(entry, dict) and entry.get("mode") == "completion")
    except Exception:  # noqa: BLE001 - another layout: ask litellm itself
        return None


def default_mode(model: str) -> str:
    return "completion" if is_base_model(model) else "chat"


def default_max_tokens(model: str, targets: list[str], prompt: str | None) -> int:
    """The answer budget: fitted to the targets' kind for a base model, else the chat default."""
    if not is_base_model(model):
        return CHAT_MAX_TOKENS
    if prompt and _REASONING.search(prompt):
        return REASONING_MAX_TOKENS
    from .scoring.answers import Kind, answer_kind

    budget = SHORT_ANSWER_TOKENS
    for target in targets:
        kind = answer_kind(target)
        if kind is Kind.NUMBER:
            budget = max(budget, NUMBER_TOKENS)
        elif kind is Kind.BRACKETS:
            budget = max(budget, len(target.split()) + SHORT_ANSWER_TOKENS)
        elif kind is Kind.TEXT:
            budget = max(budget, math.ceil(len(target) / CHARS_PER_TOKEN) + SHORT_ANSWER_TOKENS)
    return min(budget, TEXT_TOKENS_CAP)

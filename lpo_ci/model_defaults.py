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
    from .llm import import_litellm

    try:
        return import_litellm().get_model_info(model=model).get("mode") == "completion"
    except Exception:  # noqa: BLE001 - unmapped (a self-hosted name): taken as a chat model
        return False


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

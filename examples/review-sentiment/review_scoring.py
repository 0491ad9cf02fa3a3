"""A custom scorer: the first word of the answer, with a few synonyms, must be the label."""

from __future__ import annotations

import re

SYNONYMS = {"positive": "positive", "pos": "positive", "good": "positive",
            "negative": "negative", "neg": "negative", "bad": "negative"}


def sentiment_label(response: str, target: str) -> tuple[bool, str | None]:
    """lpo-ci calls this as fn(response, target); (correct, extracted answer)."""
    words = re.findall(r"[a-z]+", response.lower())
    label = SYNONYMS.get(words[0]) if words else None
    return label == target, label

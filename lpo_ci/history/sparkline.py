"""A Unicode sparkline: a trend on one line of a terminal or a comment."""

from __future__ import annotations

from collections.abc import Sequence, Set as AbstractSet

BLOCKS = "▁▂▃▄▅▆▇█"
GAP = " "  # between records that are not comparable (different fingerprints)
MIN_SPAN = 0.10  # a scale no narrower than ten points, so noise does not look like a cliff


def scale(values: Sequence[float | None]) -> tuple[float, float]:
    """The low and high ends of the scale for ``values`` (accuracies in [0, 1])."""
    known = [v for v in values if v is not None]
    if not known:
        return 0.0, 1.0
    low, high = min(known), max(known)
    if high - low < MIN_SPAN:
        middle = (low + high) / 2
        low = min(max(0.0, middle - MIN_SPAN / 2), 1.0 - MIN_SPAN)
        high = low + MIN_SPAN
    return low, high


def sparkline(values: Sequence[float | None], breaks: AbstractSet[int] = frozenset()) -> str:
    """One block per value between the lowest and highest; a gap before each index in
    ``breaks``; a space for a value that is unknown."""
    low, high = scale(values)
    span = high - low
    chars = []
    for index, value in enumerate(values):
        if index in breaks:
            chars.append(GAP)
        if value is None:
            chars.append(" ")
            continue
        level = round((value - low) / span * (len(BLOCKS) - 1)) if span else len(BLOCKS) - 1
        chars.append(BLOCKS[max(0, min(len(BLOCKS) - 1, level))])
    return "".join(chars)

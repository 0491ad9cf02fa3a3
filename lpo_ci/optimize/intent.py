"""What a fix keeps of the pull request's change.

A suggestion that only undoes the pull request tells its author nothing new. The PR's
change is measured in words: the head's words the PR added or rewrote, and the base's words
it deleted outright (a rewrite counts once, by its new words). A candidate *undoes* the added
words it changes and the deleted words it puts back; the revert (the base's text wherever
the two differ) undoes all of them.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass

from ..editable import EditableTemplate, align


def _changed(a: EditableTemplate, b: EditableTemplate) -> tuple[set[int], set[int]]:
    """Word tokens of ``a`` and of ``b`` outside the stretches the two share."""
    in_a: set[int] = set()
    in_b: set[int] = set()
    for tag, i1, i2, j1, j2 in align(a, b):
        if tag == "equal":
            continue
        in_a.update(_words(a, i1, i2))
        in_b.update(_words(b, j1, j2))
    return in_a, in_b


def _words(t: EditableTemplate, start: int, stop: int) -> Iterator[int]:
    """The token indices of the word units among units ``start`` to ``stop`` (Jinja syntax and
    whitespace left out)."""
    for text, index in t.units[start:stop]:
        if index is not None and not text.isspace():
            yield index


@dataclass(frozen=True)
class PullRequestChange:
    """The words the pull request wrote into the head and took out of the base."""

    base: EditableTemplate
    head: EditableTemplate
    added: frozenset[int]    # head token indices
    removed: frozenset[int]  # base token indices

    @classmethod
    def of(cls, base: EditableTemplate, head: EditableTemplate) -> "PullRequestChange":
        added: set[int] = set()
        removed: set[int] = set()
        for tag, i1, i2, j1, j2 in align(base, head):
            if tag in ("replace", "insert"):
                added.update(_words(head, j1, j2))
            elif tag == "delete":
                removed.update(_words(base, i1, i2))
        if not added and not removed:  # only whitespace moved: count what differs at all
            removed_all, added_all = _changed(base, head)
            added, removed = added_all, removed_all
        return cls(base, head, frozenset(added), frozenset(removed))

    @property
    def size(self) -> int:
        return len(self.added) + len(self.removed)

    def undone(self, candidate: EditableTemplate) -> int:
        """The PR's words the candidate takes back: added ones it changes, removed ones it restores."""
        changed_in_head, _ = _changed(self.head, candidate)
        still_missing, _ = _changed(self.base, candidate)
        restored = self.removed - still_missing
        return len(self.added & changed_in_head) + len(restored)

    def kept(self, candidate: EditableTemplate) -> int:
        return self.size - self.undone(candidate)

"""What a fix keeps of the pull request's change.

A suggestion that only undoes the pull request tells its author nothing new. The PR's
change is measured in words: the head's words the PR added or rewrote, and the base's words
it deleted outright (a rewrite counts once, by its new words). A candidate *undoes* the added
words it changes and the deleted words it puts back; the revert (the base's text wherever
the two differ) undoes all of them.
"""

from __future__ import annotations

from dataclasses import dataclass

from ..editable import EditableTemplate, align


def _changed(a: EditableTemplate, b: EditableTemplate) -> tuple[set[int], set[int]]:
    """Word tokens of ``a`` and of ``b`` outside the stretches the two share."""
    in_a, in_b = set(), set()
    for tag, i1, i2, j1, j2 in align(a, b):
        if tag == "equal":
            continue
        in_a.update(k for k in range(i1, i2) if _is_word(a, k))
        in_b.update(k for k in range(j1, j2) if _is_word(b, k))
    return {a.units[k][1] for k in in_a}, {b.units[k][1] for k in in_b}


def _is_word(t: EditableTemplate, unit: int) -> bool:
    text, index = t.units[unit]
    return index is not None and not text.isspace()


@dataclass(frozen=True)
class PullRequestChange:
    """The words the pull request wrote into the head and took out of the base."""

    base: EditableTemplate
    head: EditableTemplate
    added: frozenset[int]    # head token indices
    removed: frozenset[int]  # base token indices

    @classmethod
    def of(cls, base: EditableTemplate, head: EditableTemplate) -> "PullRequestChange":
        added, removed = set(), set()
        for tag, i1, i2, j1, j2 in align(base, head):
            if tag in ("replace", "insert"):
                added.update(head.units[k][1] for k in range(j1, j2) if _is_word(head, k))
            elif tag == "delete":
                removed.update(base.units[k][1] for k in range(i1, i2) if _is_word(base, k))
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

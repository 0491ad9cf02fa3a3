"""Which tokens the optimizer may change.

Three sources: the tokens the pull request changed (the prime suspects for a
regression), the tokens an LLM wraps in ``<edit>`` tags given failing
examples (the paper's step), and, with neither, an ablation that the search
runs itself. ``global_marks`` marks all literal text, for comparison.
"""

from __future__ import annotations

import re

from ..editable import EditableTemplate, align

FENCE = re.compile(r"```[^\n]*\n(.*?)```", re.DOTALL)


def _line_start(units, i: int) -> bool:
    return i == 0 or units[i - 1][0].endswith("\n")


def _slide(head: EditableTemplate, base: EditableTemplate, ops, k: int) -> tuple[int, int, int]:
    """Move a pure deletion (head lacks base[j1:j2]) to a line start when the same text allows it.

    difflib may put a deleted few-shot block anywhere among equal neighbours
    (``Q: <gap>{{ input }}``); at a line start both the marks and the restore
    read naturally. Only editable units slide: text never crosses Jinja syntax.
    """
    _, i, _, j1, j2 = ops[k]
    hu, bu = head.units, base.units
    if _line_start(hu, i):
        return i, j1, j2
    before = ops[k - 1][2] - ops[k - 1][1] if k > 0 and ops[k - 1][0] == "equal" else 0
    after = ops[k + 1][2] - ops[k + 1][1] if k + 1 < len(ops) and ops[k + 1][0] == "equal" else 0
    left = right = None
    for s in range(1, before + 1):  # shift left by s: base[j2-s] becomes the gap's last unit
        h, b = hu[i - s], bu[j2 - s]
        if h[1] is None or b[1] is None or h[0] != b[0]:
            break
        if _line_start(hu, i - s):
            left = s
            break
    for s in range(1, after + 1):  # shift right by s: base[j1+s-1] leaves the gap
        h, b = hu[i + s - 1], bu[j1 + s - 1]
        if h[1] is None or b[1] is None or h[0] != b[0]:
            break
        if _line_start(hu, i + s):
            right = s
            break
    shift = -left if left is not None and (right is None or left <= right) else (right or 0)
    return i + shift, j1 + shift, j2 + shift


def regions(head: EditableTemplate, base: EditableTemplate) -> list[tuple[int, int, int, int]]:
    """Unit ranges ``(i1, i2, j1, j2)`` where head and base differ.

    Pure deletions are slid to a line start; regions separated only by
    whitespace are one change ("Say what this is" for "Evaluate the result
    of ..."), not one per word that difflib pairs up across equal spaces.
    """
    ops = align(head, base)
    units = head.units
    found: list[tuple[int, int, int, int]] = []
    for k, (tag, i1, i2, j1, j2) in enumerate(ops):
        if tag == "equal":
            continue
        if tag == "insert":  # opcodes are head -> base: base text the head deleted
            i1, j1, j2 = _slide(head, base, ops, k)
            i2 = i1
        if found and all(units[u][1] is not None and units[u][0].isspace()
                         for u in range(found[-1][1], i1)):
            found[-1] = (found[-1][0], i2, found[-1][2], j2)
        else:
            found.append((i1, i2, j1, j2))
    return found


def diff_marks(head: EditableTemplate, base: EditableTemplate | None) -> frozenset[int]:
    """Head tokens in regions that differ from the base; around a pure deletion,
    the nearest editable words on each side, so that the deleted text can be restored."""
    if base is None:
        return frozenset()
    units, base_units = head.units, base.units
    marks: set[int] = set()
    for i1, i2, j1, j2 in regions(head, base):
        changed = [index for _, index in units[i1:i2] if index is not None]
        if changed:
            marks.update(range(min(changed), max(changed) + 1))
            continue
        if all(base_units[k][1] is None for k in range(j1, j2)):
            continue  # only Jinja syntax differs: no text to mark
        before = next((index for _, index in reversed(units[:i1])
                       if index is not None and not head.tokens[index].is_space), None)
        after = next((index for _, index in units[i2:]
                      if index is not None and not head.tokens[index].is_space), None)
        ends = [k for k in (before, after) if k is not None]
        if ends:  # the words on each side and the whitespace between them
            marks.update(range(min(ends), max(ends) + 1))
    return frozenset(marks)


def global_marks(head: EditableTemplate) -> frozenset[int]:
    """Every editable token: the global baseline the paper compares against."""
    return frozenset(t.index for t in head.tokens)


def combine(*marks: frozenset[int]) -> frozenset[int]:
    return frozenset().union(*marks)


def _unfence(text: str) -> str:
    """Models like to put their answer in a code fence, sometimes after a preamble."""
    match = FENCE.search(text)
    return match.group(1) if match else text


async def llm_marks(head: EditableTemplate, failures: list, client, task: str) -> frozenset[int]:
    """The paper's step: an LLM wraps the tokens responsible for the failures in ``<edit>`` tags.

    Anything but the template plus tags (a rewrite, a refusal, a failed call)
    yields no marks; the caller counts that and falls back to other marks.
    """
    from ..resources import render_resource

    prompt = render_resource("optimizer/tag.j2", template=head.source, failures=failures, task=task)
    completion = await client.complete(prompt)
    if not completion.text:
        return frozenset()
    candidates = [_unfence(completion.text), completion.text]
    for text in candidates:
        try:
            return head.marks_from_tags(text)
        except ValueError:
            continue
    return frozenset()

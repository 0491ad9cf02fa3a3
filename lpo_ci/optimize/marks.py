"""Which tokens the optimizer may change.

Three sources: the tokens the pull request changed (the prime suspects for a
regression), the tokens an LLM wraps in ``<edit>`` tags given failing
examples (the paper's step), and, with neither, an ablation that the search
runs itself. ``global_marks`` marks all literal text, for comparison.
"""

from __future__ import annotations

from ..editable import EditableTemplate, align


def diff_marks(head: EditableTemplate, base: EditableTemplate | None) -> frozenset[int]:
    """Head tokens in regions that differ from the base; around a pure deletion,
    the nearest editable words on each side, so that the deleted text can be restored."""
    if base is None:
        return frozenset()
    units = head.units
    marks: set[int] = set()
    for tag, i1, i2, j1, j2 in align(head, base):
        if tag == "equal":
            continue
        changed = [units[k][1] for k in range(i1, i2) if units[k][1] is not None]
        if changed:
            marks.update(range(min(changed), max(changed) + 1))
            continue
        # deleted in head: mark a word on each side of the gap (and what lies between)
        before = next((units[k][1] for k in range(i1 - 1, -1, -1)
                       if units[k][1] is not None and not head.tokens[units[k][1]].is_space), None)
        after = next((units[k][1] for k in range(i2, len(units))
                      if units[k][1] is not None and not head.tokens[units[k][1]].is_space), None)
        ends = [k for k in (before, after) if k is not None]
        if ends:
            marks.update(range(min(ends), max(ends) + 1))
    return frozenset(marks)


def global_marks(head: EditableTemplate) -> frozenset[int]:
    return frozenset(t.index for t in head.tokens)


def combine(*marks: frozenset[int]) -> frozenset[int]:
    return frozenset().union(*marks) if marks else frozenset()


async def llm_marks(head: EditableTemplate, failures: list, client, task: str) -> frozenset[int]:
    """Ask an LLM to wrap the tokens responsible for the failures in ``<edit>`` tags."""
    from ..resources import render_resource

    prompt = render_resource("optimizer/tag.j2", template=head.source, failures=failures, task=task)
    completion = await client.complete(prompt)
    if not completion.text:
        return frozenset()
    text = completion.text.strip()
    if text.startswith("```"):  # models like to fence their answer
        text = text.split("\n", 1)[-1].rsplit("```", 1)[0]
    try:
        return head.marks_from_tags(text)
    except ValueError:
        return frozenset()

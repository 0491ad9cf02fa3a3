"""What an optimizer may edit in a template: its literal text, token by token.

Jinja's own lexer splits the template: literal text (``data``) is editable;
variables, tags, comments (the spec comment among them) are frozen, and so is
any region the author fences between ``{# lpo-frozen #}`` and ``{# lpo-end #}``.
Editable text is cut into tokens (words, whitespace runs, punctuation); an
optimizer marks tokens, and a candidate is accepted only if it differs from
its parent inside the marked tokens alone, still compiles, and keeps the
same Jinja syntax and variables.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from functools import cached_property

from .errors import SpecError

FREEZE_OPEN = "lpo-frozen"
FREEZE_CLOSE = "lpo-end"
EDIT_OPEN, EDIT_CLOSE = "<edit>", "</edit>"
TOKEN_PATTERN = re.compile(r"\s+|\w+|[^\w\s]")


@dataclass(frozen=True)
class Token:
    index: int
    text: str
    start: int  # offset in the template source
    end: int

    @property
    def is_space(self) -> bool:
        return self.text.isspace()


def _lexer_tokens(source: str, label: str):
    from jinja2 import TemplateSyntaxError

    from .render import environment

    try:
        return list(environment().lexer.tokeniter(source, None, label))
    except TemplateSyntaxError as exc:
        raise SpecError(f"Jinja syntax error: {exc.message}", path=label, line=exc.lineno,
                        hint="fix the template syntax") from None


def _in_source(value: str) -> re.Pattern[str]:
    """A lexer token as it stands in the source: the lexer writes every line break
    (``\r\n``, ``\r``) as ``\n``."""
    return re.compile("(?:\r\n|\r|\n)".join(re.escape(part) for part in value.split("\n")))


def _editable_ranges(source: str, label: str) -> list[tuple[int, int]]:
    """Source ranges of literal text outside frozen fences."""
    ranges: list[tuple[int, int]] = []
    pos, frozen_since = 0, None
    for lineno, kind, value in _lexer_tokens(source, label):
        found = _in_source(value).search(source, pos)
        if found is None:  # the lexer rewrote this token (a string's escapes): syntax, hence frozen
            continue
        start, pos = found.start(), found.end()
        if kind == "comment":
            marker = value.strip()
            if marker == FREEZE_OPEN:
                frozen_since = lineno
            elif marker == FREEZE_CLOSE:
                if frozen_since is None:
                    raise SpecError(f"'{{# {FREEZE_CLOSE} #}}' without an opening '{{# {FREEZE_OPEN} #}}'",
                                    path=label, line=lineno, hint="open the frozen region first")
                frozen_since = None
        elif kind == "data" and frozen_since is None and value:
            ranges.append((start, pos))
    if frozen_since is not None:
        raise SpecError(f"'{{# {FREEZE_OPEN} #}}' is never closed", path=label, line=frozen_since,
                        hint=f"end the frozen region with {{# {FREEZE_CLOSE} #}}")
    return ranges


def syntax_skeleton(source: str, label: str = "<candidate>") -> list[tuple[str, str]]:
    """The template's Jinja syntax without its literal text, for structural comparison."""
    # A tag's value can carry the whitespace its '-' strips: that belongs to the text around it.
    return [(kind, value.strip()) for _, kind, value in _lexer_tokens(source, label)
            if kind not in ("data", "whitespace")]


class EditableTemplate:
    """A template source with its editable tokens."""

    def __init__(self, source: str, label: str = "<template>"):
        self.source = source
        self.label = label
        tokens: list[Token] = []
        for start, end in _editable_ranges(source, label):
            for match in TOKEN_PATTERN.finditer(source, start, end):
                tokens.append(Token(len(tokens), match.group(), match.start(), match.end()))
        self.tokens = tokens

    @cached_property
    def variables(self) -> set[str]:
        from .render import compile_template

        return compile_template(self.source, self.label).variables

    @cached_property
    def units(self) -> list[tuple[str, int | None]]:
        """The whole source as (text, token index) pairs; frozen stretches have index None.

        Aligning units rather than bare tokens keeps Jinja syntax as anchors, so
        text is never moved across a variable or a tag.
        """
        units: list[tuple[str, int | None]] = []
        pos = 0
        for token in self.tokens:
            if token.start > pos:
                units.append((self.source[pos:token.start], None))
            units.append((token.text, token.index))
            pos = token.end
        if pos < len(self.source):
            units.append((self.source[pos:], None))
        return units

    def words(self) -> list[Token]:
        return [t for t in self.tokens if not t.is_space]

    def runs(self, marks: frozenset[int] | set[int]) -> list[tuple[int, int]]:
        """Maximal runs [first, last+1) of marked tokens that are adjacent in the source."""
        runs: list[tuple[int, int]] = []
        for index in sorted(marks):
            if runs and runs[-1][1] == index and self.tokens[index - 1].end == self.tokens[index].start:
                runs[-1] = (runs[-1][0], index + 1)
            else:
                runs.append((index, index + 1))
        return runs

    def replace(self, replacements: dict[tuple[int, int], str]) -> str:
        """The source with token ranges [first, last) replaced by new text."""
        pieces, pos = [], 0
        for (first, last), text in sorted(replacements.items()):
            start, end = self.tokens[first].start, self.tokens[last - 1].end
            if start < pos:
                raise ValueError("overlapping replacements")
            pieces += [self.source[pos:start], text]
            pos = end
        pieces.append(self.source[pos:])
        return "".join(pieces)

    def span_text(self, first: int, last: int) -> str:
        return self.source[self.tokens[first].start:self.tokens[last - 1].end]

    def with_edit_tags(self, marks: frozenset[int] | set[int]) -> str:
        """The source with ``<edit>...</edit>`` around each marked run (for meta-prompts)."""
        return self.replace({run: EDIT_OPEN + self.span_text(*run) + EDIT_CLOSE for run in self.runs(marks)})

    def marks_from_tags(self, tagged: str) -> frozenset[int]:
        """Tokens an LLM wrapped in ``<edit>`` tags in a copy of this source.

        The copy must be the source itself plus tags; tags may cut a token, in
        which case the whole token is marked. Anything else is rejected.
        """
        plain = tagged.replace(EDIT_OPEN, "").replace(EDIT_CLOSE, "")
        if plain.strip() != self.source.strip():
            raise ValueError("the tagged text is not the template with <edit> tags added")
        offset = self.source.find(plain.strip()) - (len(plain) - len(plain.lstrip()))
        marked_chars: set[int] = set()
        position, inside = 0, False
        for part in re.split(f"({re.escape(EDIT_OPEN)}|{re.escape(EDIT_CLOSE)})", tagged):
            if part == EDIT_OPEN:
                inside = True
            elif part == EDIT_CLOSE:
                inside = False
            else:
                if inside:
                    marked_chars.update(range(offset + position, offset + position + len(part)))
                position += len(part)
        return frozenset(t.index for t in self.tokens
                         if not t.is_space and any(c in marked_chars for c in range(t.start, t.end)))

    def check(self, candidate: str, marks: frozenset[int] | set[int]) -> str | None:
        """Why ``candidate`` is not an acceptable edit of this template, or None if it is."""
        if candidate == self.source:
            return "no change"
        pattern, pos = [], 0
        for first, last in self.runs(marks):
            start, end = self.tokens[first].start, self.tokens[last - 1].end
            pattern += [re.escape(self.source[pos:start]), "(.*?)"]
            pos = end
        pattern.append(re.escape(self.source[pos:]))
        if re.fullmatch("".join(pattern), candidate, re.DOTALL) is None:
            return "changes text outside the marked tokens"
        try:
            skeleton = syntax_skeleton(candidate)
        except SpecError as exc:
            return f"breaks the Jinja syntax: {exc.message}"
        if skeleton != syntax_skeleton(self.source, self.label):
            return "changes the Jinja syntax (an edit may only change literal text)"
        try:
            from .render import compile_template

            variables = compile_template(candidate, "<candidate>").variables
        except SpecError as exc:
            return f"does not compile: {exc.message}"
        if variables != self.variables:
            return "changes the template's variables"
        return None


def align(a: EditableTemplate, b: EditableTemplate):
    """difflib opcodes between the units of two versions of a template."""
    import difflib

    matcher = difflib.SequenceMatcher(None, [u[0] for u in a.units], [u[0] for u in b.units], autojunk=False)
    return matcher.get_opcodes()

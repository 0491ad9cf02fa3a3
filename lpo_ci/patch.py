"""The smallest token-level diff of a template, as a unified diff and as GitHub suggestions.

The author sees exactly the tokens the optimizer changed: a patch that
``git apply`` accepts, and, per changed line range, the replacement lines
for a one-click ``suggestion`` block on the pull request.

Lines are always split on ``"\\n"`` only, as git does: ``str.splitlines`` would
also split on form feeds, ``\\x1c`` or ``\\u2028`` and miscount git's lines.
Offsets are character offsets into the ``str`` source.
"""

from __future__ import annotations

import difflib
import json
import re
from dataclasses import dataclass
from pathlib import PurePath

from .errors import LpoError

TOKEN_PATTERN = re.compile(r"\s+|\w+|[^\w\s]")


def tokenize(text: str) -> list[str]:
    """Words, whitespace runs and punctuation; joined they give ``text`` back."""
    return TOKEN_PATTERN.findall(text)


@dataclass(frozen=True)
class TokenChange:
    old: str    # replaced text ("" for an insertion)
    new: str    # replacement ("" for a deletion)
    start: int  # offset in the old source
    end: int    # end offset in the old source
    line: int   # 1-based line of ``start`` in the old source


def token_changes(old: str, new: str) -> list[TokenChange]:
    """The token-level differences, ordered; changes separated only by spaces on one line are merged
    so a reworded phrase reads as one change, not a word-by-word list."""
    a, b = tokenize(old), tokenize(new)
    offsets = [0]
    for token in a:
        offsets.append(offsets[-1] + len(token))
    changes: list[TokenChange] = []
    for tag, i1, i2, j1, j2 in difflib.SequenceMatcher(None, a, b, autojunk=False).get_opcodes():
        if tag == "equal":
            continue
        start, end = offsets[i1], offsets[i2]
        change = TokenChange("".join(a[i1:i2]), "".join(b[j1:j2]), start, end, old.count("\n", 0, start) + 1)
        if changes:
            gap = old[changes[-1].end:start]
            if gap == "" or (gap.isspace() and "\n" not in gap):
                previous = changes.pop()
                change = TokenChange(previous.old + gap + change.old, previous.new + gap + change.new,
                                     previous.start, end, previous.line)
        changes.append(change)
    return changes


def apply_changes(old: str, changes: list[TokenChange]) -> str:
    """Reapply ``changes`` to ``old``; refuses changes computed against another source."""
    pieces, pos = [], 0
    for change in sorted(changes, key=lambda c: (c.start, c.end)):
        if change.start < pos or old[change.start:change.end] != change.old:
            raise LpoError(f"token change at offset {change.start} does not match the source",
                           line=change.line, hint="compute the changes with token_changes() on this source")
        pieces += [old[pos:change.start], change.new]
        pos = change.end
    pieces.append(old[pos:])
    return "".join(pieces)


def describe(changes: list[TokenChange]) -> str:
    """One short line per change, for reports and the terminal."""
    def show(text: str) -> str:
        return json.dumps(text if len(text) <= 80 else text[:77] + "...", ensure_ascii=False)

    lines = []
    for c in changes:
        if not c.old:
            what = f"insert {show(c.new)}"
        elif not c.new:
            what = f"delete {show(c.old)}"
        else:
            what = f"{show(c.old)} -> {show(c.new)}"
        lines.append(f"line {c.line}: {what}")
    return "\n".join(lines) if lines else "no changes"


# --- unified diff ---------------------------------------------------------------------------

_C_ESCAPES = {7: "\\a", 8: "\\b", 9: "\\t", 10: "\\n", 11: "\\v", 12: "\\f", 13: "\\r", 34: '\\"', 92: "\\\\"}


def _git_quote(name: str) -> str:
    """A path as git writes it in a diff header: C-quoted (UTF-8 bytes in octal) when it has
    control characters, quotes, backslashes or non-ASCII, as ``core.quotePath`` does by default."""
    raw = name.encode("utf-8", "surrogateescape")
    if all(32 <= byte < 127 and byte not in (34, 92) for byte in raw):
        return name
    return '"' + "".join(_C_ESCAPES.get(byte) or (chr(byte) if 32 <= byte < 127 else f"\\{byte:03o}")
                         for byte in raw) + '"'


def _lines(text: str) -> list[str]:
    """Lines with their ``"\\n"`` kept (``"\\r\\n"`` stays byte-exact); the last may lack one."""
    lines = text.split("\n")
    return [line + "\n" for line in lines[:-1]] + ([lines[-1]] if lines[-1] else [])


def _range(start: int, length: int) -> str:
    """A hunk range as diff writes it: ``3`` for one line, ``2,0`` for none (the line before)."""
    if length == 1:
        return str(start + 1)
    return f"{start if length == 0 else start + 1},{length}"


def unified_diff(old: str, new: str, relpath: str, context: int = 3) -> str:
    """A patch that ``git apply`` turns ``old`` into ``new`` with; "" when they are equal."""
    if old == new:
        return ""
    a, b = _lines(old), _lines(new)
    path = PurePath(relpath).as_posix()
    a_name, b_name = _git_quote(f"a/{path}"), _git_quote(f"b/{path}")
    tab = "\t" if " " in path else ""  # git ends a name with a space this way, quoted or not
    out = [f"diff --git {a_name} {b_name}\n", f"--- {a_name}{tab}\n", f"+++ {b_name}{tab}\n"]

    def emit(mark: str, line: str) -> None:
        out.append(mark + line if line.endswith("\n") else f"{mark}{line}\n\\ No newline at end of file\n")

    matcher = difflib.SequenceMatcher(None, a, b, autojunk=False)
    for group in matcher.get_grouped_opcodes(context):
        i1, i2, j1, j2 = group[0][1], group[-1][2], group[0][3], group[-1][4]
        out.append(f"@@ -{_range(i1, i2 - i1)} +{_range(j1, j2 - j1)} @@\n")
        for tag, x1, x2, y1, y2 in group:
            if tag == "equal":
                for line in a[x1:x2]:
                    emit(" ", line)
                continue
            for line in a[x1:x2]:
                emit("-", line)
            for line in b[y1:y2]:
                emit("+", line)
    return "".join(out)


# --- GitHub suggestions ---------------------------------------------------------------------

@dataclass(frozen=True)
class Suggestion:
    start_line: int   # 1-based first line of the old text this replaces
    end_line: int     # 1-based last line (inclusive)
    replacement: str  # the new lines, without a final newline; "" deletes the lines

    def block(self) -> str:
        """The comment body; the fence outgrows any backtick run inside, and an empty
        block is GitHub's way to delete the lines."""
        fence = "```"
        while fence in self.replacement:
            fence += "`"
        body = self.replacement + "\n" if self.replacement else ""
        return f"{fence}suggestion\n{body}{fence}"


def _body(text: str) -> str:
    """The text without its final newline: GitHub counts that newline as a terminator, not a line."""
    return text[:-1] if text.endswith("\n") else text


def changed_lines(old: str, new: str) -> list[tuple[int, int, int, int]]:
    """Line ranges ``(i1, i2, j1, j2)``: lines ``old[i1:i2]`` became ``new[j1:j2]`` (0-based, lines
    split on ``"\\n"``), one range per run of token changes that share a line, trimmed to the
    lines that differ."""
    a, b = old.split("\n"), new.split("\n")
    groups: list[list[int]] = []
    shift = 0
    for c in token_changes(old, new):
        start, end = c.start + shift, c.start + shift + len(c.new)
        shift += len(c.new) - len(c.old)
        group = [c.line - 1, old.count("\n", 0, c.end) + 1, new.count("\n", 0, start), new.count("\n", 0, end) + 1]
        if groups and group[0] < groups[-1][1]:  # two changes on one line: one region
            groups[-1][1], groups[-1][3] = group[1], group[3]
        else:
            groups.append(group)
    trimmed = []
    for i1, i2, j1, j2 in groups:
        while i1 < i2 and j1 < j2 and a[i1] == b[j1]:  # keep only the lines that differ
            i1, j1 = i1 + 1, j1 + 1
        while i1 < i2 and j1 < j2 and a[i2 - 1] == b[j2 - 1]:
            i2, j2 = i2 - 1, j2 - 1
        trimmed.append((i1, i2, j1, j2))
    return trimmed


def suggestions(old: str, new: str) -> list[Suggestion]:
    """The token changes grouped into line ranges of ``old`` (ranges at most one unchanged line
    apart are merged), each with the new lines that replace it.

    A suggestion replaces whole existing lines, so a pure insertion is anchored on the line
    before (or after), and a range that would become one empty line is widened by a line, since
    an empty block means "delete". What no suggestion can say is left to the patch: whether the
    file ends with a newline, text for an empty file, a whole file turned into one blank line.
    """
    if not old or _body(old) == _body(new):
        return []
    if not new:
        return [Suggestion(1, _body(old).count("\n") + 1, "")]
    old, new = _body(old), _body(new)
    a, b = old.split("\n"), new.split("\n")
    merged: list[list[int]] = []
    for i1, i2, j1, j2 in changed_lines(old, new):
        if merged and i1 - merged[-1][1] <= 1:
            merged[-1][1], merged[-1][3] = i2, j2
        else:
            merged.append([i1, i2, j1, j2])

    result = []
    for i1, i2, j1, j2 in merged:
        if i1 == i2 or b[j1:j2] == [""]:  # anchor on a neighbouring unchanged line
            if i1 > 0:
                i1, j1 = i1 - 1, j1 - 1
            elif i2 < len(a):
                i2, j2 = i2 + 1, j2 + 1
            else:
                continue  # no line to anchor on: the whole file becomes one blank line
        result.append(Suggestion(i1 + 1, i2, "\n".join(b[j1:j2])))
    return result

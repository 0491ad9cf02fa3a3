"""The smallest token-level diff of a template, as a unified diff and as GitHub suggestions.

The author sees exactly the tokens the optimizer changed: a patch that
``git apply`` accepts, and, per changed line range, the replacement lines
for a one-click ``suggestion`` block on the pull request.
"""

from __future__ import annotations

import difflib
import re
from dataclasses import dataclass

TOKEN_PATTERN = re.compile(r"\s+|\w+|[^\w\s]")


def tokenize(text: str) -> list[str]:
    """Words, whitespace runs and punctuation; joined they give ``text`` back."""
    return TOKEN_PATTERN.findall(text)


@dataclass(frozen=True)
class TokenChange:
    old: str
    new: str
    start: int  # offset in the old source
    end: int
    line: int   # 1-based line of ``start`` in the old source


def token_changes(old: str, new: str) -> list[TokenChange]:
    """The token-level differences between ``old`` and ``new``, adjacent ones merged."""
    a, b = tokenize(old), tokenize(new)
    offsets = [0]
    for token in a:
        offsets.append(offsets[-1] + len(token))
    changes: list[TokenChange] = []
    matcher = difflib.SequenceMatcher(None, a, b, autojunk=False)
    for tag, i1, i2, j1, j2 in matcher.get_opcodes():
        if tag == "equal":
            continue
        start, end = offsets[i1], offsets[i2]
        change = TokenChange("".join(a[i1:i2]), "".join(b[j1:j2]), start, end, old.count("\n", 0, start) + 1)
        gap = old[changes[-1].end:start] if changes else None
        if gap is not None and (gap == "" or (gap.isspace() and "\n" not in gap)):
            previous = changes.pop()  # one readable change, not a word-by-word list
            change = TokenChange(previous.old + gap + change.old, previous.new + gap + change.new,
                                 previous.start, end, previous.line)
        changes.append(change)
    return changes


def apply_changes(old: str, changes: list[TokenChange]) -> str:
    pieces, pos = [], 0
    for change in sorted(changes, key=lambda c: c.start):
        pieces += [old[pos:change.start], change.new]
        pos = change.end
    pieces.append(old[pos:])
    return "".join(pieces)


def describe(changes: list[TokenChange]) -> str:
    """One short line per change, for reports."""
    def show(text: str) -> str:
        text = text if len(text) <= 80 else text[:77] + "..."
        return repr(text) if text else "(nothing)"

    return "\n".join(f"line {c.line}: {show(c.old)} -> {show(c.new)}" for c in changes)


def _git_path(path: str) -> str:
    """A path as git writes it in a diff header: C-quoted when it needs quoting."""
    if all(32 < ord(ch) < 127 and ch not in '"\\' for ch in path):
        return path
    quoted = []
    for byte in path.encode("utf-8"):
        ch = chr(byte)
        if ch == '"' or ch == "\\":
            quoted.append("\\" + ch)
        elif ch == "\t":
            quoted.append("\\t")
        elif ch == "\n":
            quoted.append("\\n")
        elif 32 <= byte < 127:
            quoted.append(ch)
        else:
            quoted.append(f"\\{byte:03o}")
    return '"' + "".join(quoted) + '"'


def unified_diff(old: str, new: str, relpath: str, context: int = 3) -> str:
    """A ``git apply``-able patch from ``old`` to ``new`` for the file ``relpath``."""
    a_lines, b_lines = old.splitlines(keepends=True), new.splitlines(keepends=True)
    a_name, b_name = _git_path(f"a/{relpath}"), _git_path(f"b/{relpath}")
    # Space in a path with no other special character: git ends the name with a tab.
    tab = "\t" if " " in relpath and not a_name.startswith('"') else ""
    header = [f"diff --git {a_name} {b_name}\n", f"--- {a_name}{tab}\n", f"+++ {b_name}{tab}\n"]
    body = []
    for line in list(difflib.unified_diff(a_lines, b_lines, n=context, lineterm=""))[2:]:
        if line.endswith("\n"):
            body.append(line)
        elif line.startswith("@@"):
            body.append(line + "\n")
        else:  # the last line of a file without a final newline
            body.append(line + "\n\\ No newline at end of file\n")
    return "".join(header + body) if body else ""


@dataclass(frozen=True)
class Suggestion:
    start_line: int  # 1-based, in the old text
    end_line: int    # inclusive
    replacement: str  # the new lines, without a final newline

    def block(self) -> str:
        fence = "```"
        while fence in self.replacement:
            fence += "`"
        body = self.replacement + "\n" if self.replacement else ""
        return f"{fence}suggestion\n{body}{fence}"


def suggestions(old: str, new: str) -> list[Suggestion]:
    """One suggestion per changed range of old lines, nearby ranges merged."""
    a, b = old.splitlines(), new.splitlines()
    groups: list[list[int]] = []  # [i1, i2, j1, j2]
    for tag, i1, i2, j1, j2 in difflib.SequenceMatcher(None, a, b, autojunk=False).get_opcodes():
        if tag == "equal":
            continue
        if tag == "insert":  # GitHub suggests on existing lines: anchor on the line before
            if i1 > 0:
                i1, j1 = i1 - 1, j1 - 1
            else:
                i2, j2 = i2 + 1, j2 + 1
        if groups and i1 <= groups[-1][1] + 1:
            groups[-1][1], groups[-1][3] = max(groups[-1][1], i2), max(groups[-1][3], j2)
            groups[-1][2] = min(groups[-1][2], j1)
            # keep the gap lines between merged ranges
            groups[-1][0] = min(groups[-1][0], i1)
        else:
            groups.append([i1, i2, j1, j2])
    return [Suggestion(i1 + 1, max(i1 + 1, i2), "\n".join(b[j1:j2])) for i1, i2, j1, j2 in groups]

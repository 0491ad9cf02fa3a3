"""Token-level diffs, patches that `git apply` accepts, and GitHub suggestion blocks."""

from __future__ import annotations

import random
import subprocess
from pathlib import Path

import pytest

from lpo_ci.patch import Suggestion, apply_changes, describe, suggestions, token_changes, tokenize, unified_diff

HEAD = "{# lpo:\n  benchmark: bbh/x\n#}\nSay what this is.\n\nQ: {{ input }}\nA:"
FIXED = "{# lpo:\n  benchmark: bbh/x\n#}\nEvaluate the result of a random Boolean expression.\n\nQ: {{ input }}\nA:"


def test_one_phrase_is_one_change_at_its_line():
    (change,) = token_changes(HEAD, FIXED)
    assert (change.old, change.new, change.line) == ("Say what this is", "Evaluate the result of a random "
                                                     "Boolean expression", 4)
    assert HEAD[change.start:change.end] == "Say what this is"
    assert describe([change]).startswith("line 4: 'Say what this is' -> 'Evaluate")


def test_variables_and_the_whitespace_around_them_are_untouched():
    old, new = "Q: {{ input }}\nA:", "Question: {{ input }}\nA:"
    (change,) = token_changes(old, new)
    assert (change.old, change.new) == ("Q", "Question")
    assert "{{ input }}" not in change.old + change.new


def test_round_trip_on_random_token_edits():
    rng = random.Random(7)
    words = ["Réponds", "à", "la", "question", "日本語", "{{ x }}", "\n", " ", ".", "Q:", "A:"]
    for _ in range(300):
        old = tokenize("".join(rng.choice(words) + rng.choice(["", " ", "\n"]) for _ in range(rng.randint(0, 20))))
        new = list(old)
        for _ in range(rng.randint(1, 4)):
            action = rng.choice(["insert", "delete", "replace"])
            position = rng.randint(0, len(new))
            if action == "insert" or not new:
                new.insert(position, rng.choice(words))
            elif action == "delete":
                del new[min(position, len(new) - 1)]
            else:
                new[min(position, len(new) - 1)] = rng.choice(words)
        a, b = "".join(old), "".join(new)
        assert apply_changes(a, token_changes(a, b)) == b


def git_apply(tmp_path: Path, relpath: str, old: str, new: str, newline: str = "") -> str:
    repo = tmp_path / "repo"
    path = repo / relpath
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(old.encode("utf-8"))
    subprocess.run(["git", "init", "-q", str(repo)], check=True)
    (repo / "fix.patch").write_bytes(unified_diff(old, new, relpath).encode("utf-8"))
    subprocess.run(["git", "apply", "fix.patch"], cwd=repo, check=True, capture_output=True)
    return path.read_bytes().decode("utf-8")


@pytest.mark.parametrize("relpath, old, new", [
    ("prompts/bool.j2", HEAD, FIXED),
    ("prompts/bool.j2", HEAD + "\n", FIXED + "\n"),
    ("prompts/résumé tests/quick check.j2", HEAD, FIXED),
    ("prompts/with space.j2", HEAD, FIXED),
    ("prompts/crlf.j2", HEAD.replace("\n", "\r\n"), FIXED.replace("\n", "\r\n")),
    ("prompts/first-last.j2", "First line.\nmiddle\nLast line.", "Premier.\nmiddle\nDernier."),
    ("prompts/grow.j2", "a\nQ: {{ q }}\n", "a\nExample one.\nExample two.\n\nQ: {{ q }}\n"),
])
def test_the_patch_applies_with_git(tmp_path, relpath, old, new):
    assert git_apply(tmp_path, relpath, old, new) == new


def apply_suggestions(old: str, items: list[Suggestion]) -> str:
    lines = old.split("\n")
    for s in sorted(items, key=lambda s: -s.start_line):
        lines[s.start_line - 1:s.end_line] = s.replacement.split("\n") if s.replacement else []
    return "\n".join(lines)


@pytest.mark.parametrize("old, new", [
    (HEAD, FIXED),
    ("a\nb\nc\nd\ne", "a\nB\nc\nd\nE"),
    ("a\nb\nc", "a\nX\nY\nb\nc"),
    ("a\nb\nc\nd", "a\nd"),
    ("only", "changed"),
])
def test_suggestions_reproduce_the_winner(old, new):
    items = suggestions(old, new)
    assert items and apply_suggestions(old, items) == new


def test_suggestion_ranges_and_fences():
    (s,) = suggestions(HEAD, FIXED)
    assert (s.start_line, s.end_line) == (4, 4)
    assert s.block() == "```suggestion\nEvaluate the result of a random Boolean expression.\n```"
    assert Suggestion(1, 1, "use ``` here").block().startswith("````suggestion\n")
    assert Suggestion(2, 3, "").block() == "```suggestion\n```"  # deletes the lines

"""Token-level diffs, patches that real `git apply` accepts, and GitHub suggestion blocks."""

from __future__ import annotations

import os
import random
import subprocess
from pathlib import Path

import pytest

from lpo_ci.errors import LpoError
from lpo_ci.patch import (
    Suggestion,
    TokenChange,
    apply_changes,
    describe,
    suggestions,
    token_changes,
    tokenize,
    unified_diff,
)

HEAD = "{# lpo:\n  benchmark: bbh/x\n#}\nSay what this is.\n\nQ: {{ input }}\nA:"
FIXED = "{# lpo:\n  benchmark: bbh/x\n#}\nEvaluate the result of a random Boolean expression.\n\nQ: {{ input }}\nA:"

# Git with no user or system configuration: autocrlf or apply.whitespace settings must not matter.
GIT_ENV = {**os.environ, "GIT_CONFIG_NOSYSTEM": "1", "GIT_CONFIG_GLOBAL": os.devnull,
           "GIT_AUTHOR_NAME": "t", "GIT_AUTHOR_EMAIL": "t@example.com",
           "GIT_COMMITTER_NAME": "t", "GIT_COMMITTER_EMAIL": "t@example.com"}


def git(repo: Path, *args: str) -> bytes:
    return subprocess.run(["git", *args], cwd=repo, env=GIT_ENV, check=True, capture_output=True).stdout


# --- tokens -----------------------------------------------------------------------------------

def test_tokens_are_words_whitespace_runs_and_single_punctuation():
    text = "Q: {{ input }}\n\n  Réponds, 日本語!"
    assert tokenize(text) == ["Q", ":", " ", "{", "{", " ", "input", " ", "}", "}", "\n\n  ",
                              "Réponds", ",", " ", "日本語", "!"]
    assert "".join(tokenize(text)) == text
    assert tokenize("") == []


def test_one_word_is_one_change_with_offsets_and_line():
    old = "Intro.\n\nAnswer the question.\n{{ input }}"
    (change,) = token_changes(old, old.replace("question", "query"))
    assert change == TokenChange("question", "query", 19, 27, 3)
    assert old[change.start:change.end] == "question"


def test_a_reworded_phrase_is_one_change():
    (change,) = token_changes(HEAD, FIXED)
    assert (change.old, change.new, change.line) == (
        "Say what this is", "Evaluate the result of a random Boolean expression", 4)
    assert HEAD[change.start:change.end] == "Say what this is"


def test_insertion_and_deletion():
    old = "Think and answer."
    (insert,) = token_changes(old, "Think step by step and answer.")
    assert insert == TokenChange("", " step by step", 5, 5, 1)
    (delete,) = token_changes("Think step by step and answer.", old)
    assert delete == TokenChange(" step by step", "", 5, 18, 1)
    assert token_changes(old, old) == []
    assert token_changes("", "Hi.") == [TokenChange("", "Hi.", 0, 0, 1)]


def test_changes_on_several_lines_stay_separate():
    old = "Read the text.\nKeep {{ rules }}.\nAnswer briefly."
    new = "Read the passage.\nKeep {{ rules }}.\nAnswer with one word."
    changes = token_changes(old, new)
    assert [(c.old, c.new, c.line) for c in changes] == [("text", "passage", 1), ("briefly", "with one word", 3)]
    assert [old[c.start:c.end] for c in changes] == ["text", "briefly"]


def test_jinja_variables_and_the_whitespace_around_them_are_untouched():
    old = "Q: {{ input }}\nA: {%- if hint %} {{ hint }}{% endif %}"
    (change,) = token_changes(old, old.replace("Q:", "Question:"))
    assert (change.old, change.new, change.start, change.end) == ("Q", "Question", 0, 1)
    (change,) = token_changes(old, old.replace("A: ", "Answer: "))
    assert (change.old, change.new, change.line) == ("A", "Answer", 2)
    for c in token_changes("Say {{ x }} now.", "Tell {{ x }} later."):
        assert "{" not in c.old + c.new and " " not in c.old + c.new


def test_non_ascii_offsets_are_characters():
    old = "Réponds à la question : {{ input }}\n日本語で答えてください。"
    new = "Réponds à la requête : {{ input }}\n日本語で簡潔に答えてください。"
    first, second = token_changes(old, new)
    assert (first.old, first.new, first.start, first.line) == ("question", "requête", 13, 1)
    assert (second.old, second.new, second.line) == ("日本語で答えてください", "日本語で簡潔に答えてください", 2)
    assert old[second.start:second.end] == second.old
    assert apply_changes(old, [first, second]) == new


WORDS = ["Réponds", "à", "la", "question", "日本語", "{{ x }}", "{% if y %}", "\n", "\r\n", "\n\n", " ", "  ",
         ".", ",", "Q:", "A:", "the", "é", "\t", "\u2028", "```"]


def random_text(rng: random.Random, n: int) -> str:
    return "".join(rng.choice(WORDS) + rng.choice(["", " ", "\n"]) for _ in range(n))


def random_edit(rng: random.Random, text: str) -> str:
    tokens = tokenize(text)
    for _ in range(rng.randint(1, 5)):
        action, position = rng.choice(["insert", "delete", "replace"]), rng.randint(0, len(tokens))
        if action == "insert" or not tokens:
            tokens.insert(position, rng.choice(WORDS))
        elif action == "delete":
            del tokens[min(position, len(tokens) - 1)]
        else:
            tokens[min(position, len(tokens) - 1)] = rng.choice(WORDS)
    return "".join(tokens)


def test_round_trip_on_random_token_edits():
    rng = random.Random(7)
    for _ in range(600):
        a = random_text(rng, rng.randint(0, 25))
        b = random_edit(rng, a)
        changes = token_changes(a, b)
        assert apply_changes(a, changes) == b
        for previous, change in zip(changes, changes[1:]):
            assert previous.end <= change.start
        for c in changes:
            assert a[c.start:c.end] == c.old and c.old != c.new
            assert c.line == a.count("\n", 0, c.start) + 1


def test_apply_changes_refuses_changes_of_another_source():
    changes = token_changes("Say hi.", "Say hello.")
    with pytest.raises(LpoError, match="does not match"):
        apply_changes("Tell me.", changes)


def test_describe_is_short_and_readable():
    changes = token_changes("Say what.\nThink step by step.\n", "Tell what.\nThink.\nBe brief.\n")
    assert describe(changes) == ('line 1: "Say" -> "Tell"\n'
                                 'line 2: delete " step by step"\n'
                                 'line 3: insert "Be brief.\\n"')
    assert describe([TokenChange("a", "é" * 200, 0, 1, 1)]).endswith('"' + "é" * 77 + '..."')
    assert describe([]) == "no changes"


# --- unified diff, checked with real git ------------------------------------------------------

def git_apply(repo: Path, relpath: str, old: str, new: str) -> str:
    """Apply our patch with real `git apply` and return the file's new content, byte for byte."""
    if not (repo / ".git").exists():
        git(repo, "init", "-q")
    path = repo / relpath
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(old.encode("utf-8"))
    (repo / "fix.patch").write_bytes(unified_diff(old, new, relpath).encode("utf-8"))
    git(repo, "apply", "fix.patch")
    return path.read_bytes().decode("utf-8")


def git_diff_lines(repo: Path, relpath: str, old: str, new: str) -> list[str]:
    """What `git diff` writes for ``old`` -> ``new`` at ``relpath``, its ``index`` line left out."""
    path = repo / relpath
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(old, encoding="utf-8")
    git(repo, "init", "-q")
    git(repo, "add", "-A")
    git(repo, "commit", "-q", "-m", "head")
    path.write_text(new, encoding="utf-8")
    theirs = git(repo, "diff", "--no-color", "--no-ext-diff").decode("utf-8").splitlines(keepends=True)
    return [line for line in theirs if not line.startswith("index ")]


@pytest.mark.parametrize("relpath, old, new", [
    ("prompts/bool.j2", HEAD, FIXED),
    ("prompts/bool.j2", HEAD + "\n", FIXED + "\n"),
    ("prompts/résumé tests/quick check.j2", HEAD, FIXED),
    ("prompts/with space.j2", HEAD, FIXED),
    ('prompts/say "hi"\\now.j2', HEAD, FIXED),
    ("prompts/日本語.j2", "質問に答えてください。\n{{ input }}\n", "質問に簡潔に答えてください。\n{{ input }}\n"),
    ("prompts/crlf.j2", HEAD.replace("\n", "\r\n"), FIXED.replace("\n", "\r\n")),
    ("prompts/crlf.j2", HEAD.replace("\n", "\r\n") + "\r\n", FIXED.replace("\n", "\r\n") + "\r\n"),
    ("prompts/first.j2", "First line.\nmiddle\nLast line.\n", "Premier.\nmiddle\nLast line.\n"),
    ("prompts/last.j2", "First line.\nmiddle\nLast line.", "First line.\nmiddle\nDernier."),
    ("prompts/first-last.j2", "First line.\nmiddle\nLast line.", "Premier.\nmiddle\nDernier."),
    ("prompts/grow.j2", "a\nQ: {{ q }}\n", "a\nExample one.\nExample two.\n\nQ: {{ q }}\n"),
    ("prompts/shrink.j2", "a\nb\nc\nd\ne\nf\ng\nh\ni\nj\n", "a\nc\nd\ne\nf\ng\nh\ni\nJ\n"),
    ("prompts/add-eol.j2", "a\nb", "a\nb\n"),
    ("prompts/drop-eol.j2", "a\nb\n", "a\nb"),
    ("prompts/separators.j2", "Rule one.\u2028Rule two.\x0cpage\nQ\r{{ q }}\n",  # git splits on \n only
     "Rule 1.\u2028Rule two.\x0cpage\nQ\r{{ q }}!\n"),
    ("prompts/empty.j2", "", "Answer.\n"),
    ("prompts/emptied.j2", "Answer.\n", ""),
])
def test_the_patch_applies_with_git(tmp_path, relpath, old, new):
    assert git_apply(tmp_path, relpath, old, new) == new


def test_random_patches_apply_with_git(tmp_path):
    rng = random.Random(11)
    for _ in range(40):
        old = random_text(rng, rng.randint(1, 30))
        new = random_edit(rng, old)
        if old != new:
            assert git_apply(tmp_path, "prompts/r.j2", old, new) == new


@pytest.mark.parametrize("relpath", [
    "prompts/plain.j2", "prompts/with space.j2", "prompts/résumé tests/quick check.j2",
    'prompts/q"uote.j2', "prompts/tab\there.j2", "prompts/back\\slash.j2", "prompts/del\x7f.j2",
])
def test_headers_and_hunks_are_what_git_diff_writes(tmp_path, relpath):
    old, new = "one\ntwo\nthree\nfour\nfive", "one\ntwo\n3\nfour\nfive"
    assert unified_diff(old, new, relpath).splitlines(keepends=True) == git_diff_lines(tmp_path, relpath, old, new)


def test_no_patch_without_a_change():
    assert unified_diff(HEAD, HEAD, "prompts/x.j2") == ""


def test_context_lines_follow_the_argument():
    old = "".join(f"line {n}\n" for n in range(1, 21))
    new = old.replace("line 10\n", "line ten\n")
    patch = unified_diff(old, new, "x.j2", context=1)
    assert "@@ -9,3 +9,3 @@\n line 9\n-line 10\n+line ten\n line 11\n" in patch
    assert "@@ -7,7 +7,7 @@" in unified_diff(old, new, "x.j2")


# --- GitHub suggestions -----------------------------------------------------------------------

def apply_suggestions(old: str, items: list[Suggestion]) -> str:
    """What GitHub does: replace lines start..end with the block's lines; an empty block deletes."""
    lines = old.split("\n")
    for s in sorted(items, key=lambda s: -s.start_line):
        lines[s.start_line - 1:s.end_line] = s.replacement.split("\n") if s.replacement else []
    return "\n".join(lines)


@pytest.mark.parametrize("old, new, expected", [
    (HEAD, FIXED, [(4, 4, "Evaluate the result of a random Boolean expression.")]),
    ("Say a and b now.\n", "Say x and y now.\n", [(1, 1, "Say x and y now.")]),
    ("a\nb\nc\nd\ne", "a\nB\nc\nd\nE", [(2, 2, "B"), (5, 5, "E")]),
    ("a\nb\nc\nd", "a\nB\nc\nD", [(2, 4, "B\nc\nD")]),                # one unchanged line apart: merged
    ("a\nb\nc\n", "A\nB\nc\n", [(1, 2, "A\nB")]),
    ("a\nb\nc\nd", "a\nd", [(2, 3, "")]),                              # whole lines deleted
    ("a\nb\nc\nd\n", "a\nb\nc\n", [(4, 4, "")]),
    ("a\nc", "a\nb\nc", [(1, 1, "a\nb")]),                             # insertion anchored on the line before
    ("b\nc\n", "a\nb\nc\n", [(1, 1, "a\nb")]),                         # ... or after, at the top
    ("a\nfoo\nc", "a\n\nc", [(1, 2, "a\n")]),                          # one blank line is not a deletion
    ("foo\nbar", "\nbar", [(1, 2, "\nbar")]),
    ("only", "changed", [(1, 1, "changed")]),
    ("Réponds.\n日本語\n", "Réponds vite.\n日本語\n", [(1, 1, "Réponds vite.")]),
    ("a\r\nb\r\nc\r\n", "a\r\nB\r\nc\r\n", [(2, 2, "B\r")]),           # CRLF kept byte-exact
    ("a\nb\n", "a\nb\n\n", [(2, 2, "b\n")]),                            # a blank line added at the end
    ("a\nb\n", "", [(1, 2, "")]),                                       # everything deleted
    ("a\n", "a", []),                                                  # a final newline cannot be suggested
    (".\n", "\n", []),                                                 # nor a file turned into one blank line
    ("", "Answer.\n", []),                                             # nor text for an empty file
    ("same", "same", []),
])
def test_suggestion_ranges_and_replacements(old, new, expected):
    items = suggestions(old, new)
    assert [(s.start_line, s.end_line, s.replacement) for s in items] == expected
    if expected or old == new:
        assert apply_suggestions(old, items) == new


def test_random_suggestions_reproduce_the_winner():
    rng = random.Random(3)
    for _ in range(600):
        old = random_text(rng, rng.randint(1, 30))
        new = random_edit(rng, old)
        if old.endswith("\n") != new.endswith("\n"):
            new = new + "\n" if old.endswith("\n") else new.rstrip("\n")
            if old.endswith("\n") != new.endswith("\n"):
                continue
        if new == "\n":
            continue
        items = suggestions(old, new)
        assert apply_suggestions(old, items) == new, (old, new, items)
        lines = old.split("\n")
        count = len(lines) - (lines[-1] == "")
        for s in items:
            assert 1 <= s.start_line <= s.end_line <= count
        for previous, s in zip(items, items[1:]):
            assert previous.end_line < s.start_line


def test_suggestion_blocks_and_fences():
    (s,) = suggestions(HEAD, FIXED)
    assert s.block() == "```suggestion\nEvaluate the result of a random Boolean expression.\n```"
    assert Suggestion(1, 1, "use ``` here").block() == "````suggestion\nuse ``` here\n````"
    assert Suggestion(1, 2, "````\nx").block() == "`````suggestion\n````\nx\n`````"
    assert Suggestion(2, 3, "").block() == "```suggestion\n```"  # GitHub deletes the lines
    assert Suggestion(1, 2, "a\n").block() == "```suggestion\na\n\n```"


def test_paths_are_quoted_as_git_quotes_them(tmp_path):
    from lpo_ci.patch import _git_quote

    names = ["plain.j2", "bell\a.j2", "back\bspace.j2", "tab\t.j2", "new\nline.j2", "vertical\v.j2",
             "form\ffeed.j2", "carriage\r.j2", 'quote".j2', "back\\slash.j2", "escape\x1b.j2", "del\x7f.j2",
             "résumé.j2", "日本語.j2", "space here.j2", "~tilde.j2"]
    for name in names:
        (tmp_path / name).write_text("x")
    git(tmp_path, "init", "-q")
    git(tmp_path, "add", "-A")
    listed = git(tmp_path, "ls-files").decode("utf-8").splitlines()  # quoted by core.quotePath's default
    assert sorted(_git_quote(name) for name in names) == sorted(listed)


def test_a_long_change_is_cut_at_80_characters_in_its_description():
    exactly = TokenChange("a", "é" * 80, 0, 1, 1)
    assert describe([exactly]) == 'line 1: "a" -> "' + "é" * 80 + '"'
    longer = TokenChange("b" * 81, "", 0, 81, 2)
    assert describe([longer]) == 'line 2: delete "' + "b" * 77 + '..."'


def test_token_changes_are_values():
    import dataclasses

    (change,) = token_changes("Say hi.", "Say hello.")
    with pytest.raises(dataclasses.FrozenInstanceError):
        change.new = "bye"  # type: ignore[misc]
    assert {change} == {TokenChange("hi", "hello", 4, 6, 1)}


def test_a_one_word_change_stays_one_word_in_a_long_repetitive_template():
    old = "yes no " * 60  # every token common: difflib's junk heuristic would rewrite the rest
    new = old.replace("no", "maybe", 1)
    assert token_changes(old, new) == [TokenChange("no", "maybe", 4, 6, 1)]


@pytest.mark.parametrize("old, new", [
    ("one line", "one word"),                                     # a hunk of one line: "@@ -1 +1 @@"
    ("a\nb\n", "a\nb\nc\n"),                                        # a line added at the end
    ("a\nb\nc\n", "b\nc\n"),                                        # the first line removed
])
def test_hunks_are_what_git_diff_writes(tmp_path, old, new):
    assert unified_diff(old, new, "p.j2").splitlines(keepends=True) == git_diff_lines(tmp_path, "p.j2", old, new)


def test_a_one_line_change_is_one_line_of_the_patch_in_a_long_repetitive_file(tmp_path):
    old = "".join(random.Random(5).choice("abc") + "\n" for _ in range(240))  # every line common
    new = old.replace("c\n", "maybe\n", 1)  # (difflib's junk heuristic would rewrite the whole file)
    patch = unified_diff(old, new, "p.j2")
    changed = [line for line in patch.splitlines()[3:] if line[:1] in "+-"]
    assert sorted(changed) == ["+maybe", "-c"]
    assert git_apply(tmp_path, "p.j2", old, new) == new


def test_changed_lines_joins_changes_that_share_a_line_only():
    from lpo_ci.patch import changed_lines

    assert changed_lines("a b c\nd", "A b C\nd") == [(0, 1, 0, 1)]            # two changes, one line
    assert changed_lines("a\nb\nc", "A\nB\nc") == [(0, 1, 0, 1), (1, 2, 1, 2)]  # next lines: apart
    assert changed_lines("one two\nthree four\nfive", "one 2\n3 four\nfive") == [(0, 1, 0, 1), (1, 2, 1, 2)]
    assert changed_lines("a\nb\nc", "a\nX\nY\nc") == [(1, 2, 1, 3)]            # one line became two
    assert changed_lines("Q\n\nA", "Q\n\n\nA") == [(2, 2, 2, 3)]             # a blank line added: no old line
    assert changed_lines("b\n\n", "") == [(0, 2, 0, 0)]                        # everything removed: no new line


def test_suggestions_are_values():
    import dataclasses

    with pytest.raises(dataclasses.FrozenInstanceError):
        Suggestion(1, 1, "x").replacement = "y"  # type: ignore[misc]
    assert {Suggestion(1, 1, "x")} == {Suggestion(1, 1, "x")}

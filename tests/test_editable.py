"""What the optimizer may edit: literal text only, and only the marked tokens."""

from __future__ import annotations

import pytest

from lpo_ci.editable import EditableTemplate
from lpo_ci.errors import SpecError

TEMPLATE = """{# lpo:
  benchmark: bbh/date_understanding
#}
Réponds à la question. 日本語 ok.
{% for shot in shots -%}
Q: {{ shot.q | trim }}
A: {{ shot.a }}
{% endfor %}
{#- a note -#}
Q: {{ input }}
{% raw %}{{ literal }}{% endraw %}
A:"""


def words(template: EditableTemplate) -> list[str]:
    return [t.text for t in template.words()]


def test_only_literal_text_is_editable():
    t = EditableTemplate(TEMPLATE)
    assert words(t) == ["Réponds", "à", "la", "question", ".", "日本語", "ok", ".",
                        "Q", ":", "A", ":", "Q", ":", "{", "{", "literal", "}", "}", "A", ":"]
    for token in t.tokens:  # every token is text of the source at its offsets
        assert TEMPLATE[token.start:token.end] == token.text
    assert not any("lpo" in t.text or "shot" in t.text or "input" in t.text for t in t.tokens)


def test_whitespace_control_leaves_the_stripped_whitespace_frozen():
    t = EditableTemplate("Hello   {{- name }}  world")
    assert [tok.text for tok in t.tokens] == ["Hello", "  ", "world"]
    assert t.tokens[0].end == 5  # the three spaces before {{- belong to the syntax


def test_fenced_regions_are_frozen():
    source = "Intro line.\n{# lpo-frozen #}Never touch this.{# lpo-end #}\nOutro."
    assert words(EditableTemplate(source)) == ["Intro", "line", ".", "Outro", "."]
    with pytest.raises(SpecError, match="never closed") as excinfo:
        EditableTemplate("a\n{# lpo-frozen #}\nb", "t.j2")
    assert excinfo.value.line == 2
    with pytest.raises(SpecError, match="without an opening"):
        EditableTemplate("a {# lpo-end #}", "t.j2")


def marks_of(t: EditableTemplate, *texts: str) -> frozenset[int]:
    return frozenset(tok.index for tok in t.tokens if tok.text in texts)


def test_edits_inside_the_marks_are_accepted():
    t = EditableTemplate(TEMPLATE)
    marks = marks_of(t, "Réponds", "question")
    assert t.check(TEMPLATE.replace("Réponds", "Answer").replace("question", "query"), marks) is None
    assert t.check(TEMPLATE.replace("Réponds à la question", "Answer à la"), marks) == \
        "changes text outside the marked tokens"  # 'question' is marked, but ' la ' moved


@pytest.mark.parametrize("candidate, reason", [
    (TEMPLATE, "no change"),
    (TEMPLATE.replace("ok.", "ko."), "changes text outside the marked tokens"),
    (TEMPLATE.replace("Réponds", "{{ extra }}"), "changes the Jinja syntax"),
    (TEMPLATE.replace("Réponds", "{% if x %}"), "changes the Jinja syntax"),
    (TEMPLATE.replace("Réponds", "{{"), "breaks the Jinja syntax"),
    (TEMPLATE.replace("{{ input }}", "{{ inputs }}"), "changes text outside the marked tokens"),
])
def test_out_of_mark_and_syntax_edits_are_rejected(candidate, reason):
    t = EditableTemplate(TEMPLATE)
    assert t.check(candidate, marks_of(t, "Réponds")).startswith(reason)


def test_replace_and_tags_round_trip():
    t = EditableTemplate(TEMPLATE)
    marks = marks_of(t, "Réponds", "question")
    tagged = t.with_edit_tags(marks)
    assert "<edit>Réponds</edit> à la <edit>question</edit>." in tagged
    assert t.marks_from_tags(tagged) == marks
    (first, last), = [run for run in t.runs(marks) if t.span_text(*run) == "question"]
    assert t.replace({(first, last): "demande"}) == TEMPLATE.replace("question", "demande")
    with pytest.raises(ValueError):
        t.marks_from_tags("something else entirely")


@pytest.mark.parametrize("newline", ["\r\n", "\r"])
def test_line_breaks_the_lexer_normalises_keep_their_place_in_the_source(newline):
    # Jinja's lexer reports every line break as "\n": the text around it stays editable, and
    # each token is still the source's own text at its offsets.
    lf = "Answer the question.\nQ: {{ input }}\n\nA: {{- ' x\\ny ' }} done"
    source = lf.replace("\n", newline)  # the string's escaped \\n is no line break
    crlf, plain = EditableTemplate(source), EditableTemplate(lf)
    assert words(crlf) == words(plain) == ["Answer", "the", "question", ".", "Q", ":", "A", ":", "done"]
    for token in crlf.tokens:
        assert source[token.start:token.end] == token.text
    assert [t.text for t in crlf.tokens if t.is_space] == [" ", " ", newline, " ", newline * 2, " "]
    marks = marks_of(crlf, "question")
    candidate = source.replace("question", "query")
    assert crlf.check(candidate, marks) is None
    assert crlf.check(source.replace(newline + "Q:", "\nQ:"), marks) == "changes text outside the marked tokens"


def test_a_token_the_lexer_rewrote_is_frozen_and_later_text_stays_in_place():
    source = "Say {{ 'a\\x41' }} hello {{ name }} world"
    t = EditableTemplate(source)
    assert words(t) == ["Say", "hello", "world"]
    for token in t.tokens:
        assert source[token.start:token.end] == token.text


def test_units_cover_the_source_with_frozen_stretches_between_the_tokens():
    source = "{{ greeting }} Hello world.{# lpo-frozen #} keep {# lpo-end #}"
    t = EditableTemplate(source)
    assert t.units == [("{{ greeting }}", None), (" ", 0), ("Hello", 1), (" ", 2), ("world", 3), (".", 4),
                       ("{# lpo-frozen #} keep {# lpo-end #}", None)]
    assert "".join(text for text, _ in t.units) == source
    # text first and last: no empty frozen stretch at either end or between adjacent tokens
    assert EditableTemplate("Hi {{ x }}!").units == [("Hi", 0), (" ", 1), ("{{ x }}", None), ("!", 2)]
    assert EditableTemplate("{{ x }}").units == [("{{ x }}", None)] and EditableTemplate("").units == []


def test_align_keeps_a_one_word_edit_local_in_a_long_repetitive_template():
    from lpo_ci.editable import align

    source = "yes no " * 60  # 240 units, every one common: difflib's junk heuristic would lose them
    edited = source.replace("no", "maybe", 1)
    assert align(EditableTemplate(source), EditableTemplate(edited)) == [
        ("equal", 0, 2, 0, 2), ("replace", 2, 3, 2, 3), ("equal", 3, 240, 3, 240)]


def test_tokens_are_values():
    import dataclasses

    token = EditableTemplate("Hello").tokens[0]
    assert token == EditableTemplate("Hello").tokens[0] and (token.start, token.end) == (0, 5)
    with pytest.raises(dataclasses.FrozenInstanceError):
        token.text = "Bye"  # type: ignore[misc]
    assert {token} == {EditableTemplate("Hello").tokens[0]}


def test_runs_join_marked_tokens_that_touch_in_the_source():
    t = EditableTemplate("Hello big world{{ x }}again now")
    # tokens: Hello, " ", big, " ", world, again, " ", now ("world" and "again" are apart: {{ x }})
    assert [tok.text for tok in t.tokens] == ["Hello", " ", "big", " ", "world", "again", " ", "now"]
    assert t.runs({0, 1, 2}) == [(0, 3)] and t.runs(frozenset({2, 0, 1})) == [(0, 3)]
    assert t.runs({0, 2}) == [(0, 1), (2, 3)]
    assert t.runs({4, 5}) == [(4, 5), (5, 6)]  # consecutive tokens, but a variable between them
    assert t.runs({5, 6, 7}) == [(5, 8)] and t.runs(set()) == []


def test_replace_takes_adjacent_ranges_and_refuses_overlapping_ones():
    t = EditableTemplate("Hello big world")
    assert t.replace({(2, 3): "small", (0, 1): "Hi"}) == "Hi small world"
    assert t.replace({(0, 1): "Hi", (1, 2): "_"}) == "Hi_big world"  # touching, not overlapping
    assert t.replace({}) == "Hello big world"
    with pytest.raises(ValueError, match="overlapping replacements"):
        t.replace({(0, 3): "x", (2, 5): "y"})


def test_marks_from_tags_marks_only_the_tagged_tokens_wherever_the_copy_starts():
    t = EditableTemplate("\nHello big world\n")
    # Jinja drops the final line break
    assert [tok.text for tok in t.tokens] == ["\n", "Hello", " ", "big", " ", "world"]
    assert t.marks_from_tags("Hello big <edit>world</edit>") == {5}  # the copy lost the outer line breaks
    assert t.marks_from_tags("   \nHello <edit>big</edit> world") == {3}  # or gained spaces
    assert t.marks_from_tags("\nHello <edit>big wor</edit>ld\n") == {3, 5}  # a cut token is marked whole
    assert t.marks_from_tags("\nHello<edit> </edit>big world\n") == frozenset()  # whitespace alone: nothing
    assert EditableTemplate("Hello world").marks_from_tags("Hello <edit>world</edit>") == {2}


def test_an_edit_of_a_template_that_does_not_compile_is_refused():
    # the lexer takes it (so the syntax matches), the parser does not: no edit can be checked against it
    t = EditableTemplate("Hello {% if x %} world")
    reason = t.check("Hi {% if x %} world", marks_of(t, "Hello"))
    assert reason.startswith("does not compile: Jinja syntax error: Unexpected end of template")

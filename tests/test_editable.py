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

"""Stop sequences read from a prompt template's own few-shot structure.

A base model in completion mode does not stop after its answer: it goes on
and invents the next example ("…So the answer is (C).\\n\\nQ: …\\nA: … (A)").
The template says where an example starts, so it says where to stop:

* when the prompt ends with an answer prefix (a labelled line such as ``A:``),
  the label of the line that opens the final example (``Q:``, ``Question:``,
  ``Input:`` …; the first labelled line holding a variable, after the last
  blank line of the template's literal text) gives the stop ``"\\n" + label``;
* when the rendered prompt holds earlier examples that are separated by a
  blank line and contain none, a blank line (``"\\n\\n"``) is a stop too.

``derive_stops`` returns them (at most two, within every provider's limit of
four); ``cut_at_stops`` applies any stop list after the fact, to cached
responses and to providers that ignore the request parameter.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Sequence

MAX_STOPS = 4  # OpenAI's limit on the ``stop`` parameter
_VARIABLE = "\x00"
_BLOCK = "\x01"
_LABEL = re.compile(r"^[ \t]*([A-Z][A-Za-z0-9]*(?:[ \t][A-Za-z0-9]+){0,2})[ \t]*:")
_BLANK_LINE = re.compile(r"\n[ \t]*\n")


def _skeleton(template_source: str) -> str:
    """The template's literal text, variables as ``\\x00``, tags as ``\\x01``, comments dropped."""
    from jinja2 import Environment

    parts: list[str] = []
    depth = None
    try:
        tokens = list(Environment().lex(template_source))
    except Exception:  # noqa: BLE001 - a broken template is reported when it is rendered
        return template_source
    for _, kind, value in tokens:
        if kind == "data":
            parts.append(value)
        elif kind == "variable_begin":
            depth = "variable"
        elif kind == "block_begin":
            depth = "block"
        elif kind in ("variable_end", "block_end"):
            parts.append(_VARIABLE if depth == "variable" else _BLOCK)
            depth = None
    return "".join(parts)


def _label(line: str) -> str | None:
    match = _LABEL.match(line)
    return match.group(1) + ":" if match else None


def example_label(template_source: str) -> tuple[str | None, str | None]:
    """(label opening the final example, label of the answer line), e.g. ("Q:", "A:")."""
    skeleton = _skeleton(template_source).rstrip()
    blanks = [m.end() for m in _BLANK_LINE.finditer(skeleton)]
    block = skeleton[max([0, *blanks, skeleton.rfind(_BLOCK) + 1]):]
    lines = [line.replace(_BLOCK, "") for line in block.split("\n")]
    lines = [line for line in lines if line.strip()]
    if not lines:
        return None, None
    answer = _label(lines[-1]) if _VARIABLE not in lines[-1] else None
    if answer is None:
        return None, None  # the prompt does not end with an answer prefix: no Q/A structure
    body = lines[:-1]
    opening = None
    for index, line in enumerate(body):
        if _VARIABLE in line:
            labelled = [_label(above) for above in body[:index + 1] if _label(above)]
            opening = _label(line) or (labelled[-1] if labelled else None)
            break
    if opening is None:
        opening = next((_label(line) for line in body if _label(line)), None)
    if opening == answer:
        opening = None
    return opening, answer


def _separated_by_blank_lines(prompt: str, label: str) -> bool:
    """The prompt holds earlier examples, each followed by a blank line and holding none."""
    starts = [m.start() for m in re.finditer(rf"(?m)^[ \t]*{re.escape(label)}", prompt)]
    if len(starts) < 2:
        return False
    for begin, end in zip(starts, starts[1:]):
        example = prompt[begin:end]
        if not re.search(r"\n[ \t]*\n\s*$", example) or _BLANK_LINE.search(example.rstrip()):
            return False
    return True


def derive_stops(template_source: str, rendered_example: str) -> list[str]:
    """Stops for a completion-mode call of ``template_source``; ``rendered_example`` is the
    template rendered for one example (the prompt as the model sees it)."""
    opening, _ = example_label(template_source)
    if opening is None:
        return []
    stops = ["\n" + opening]
    if _separated_by_blank_lines(rendered_example, opening):
        stops.append("\n\n")
    return stops


def cut_at_stops(text: str | None, stops: Iterable[str] | None) -> str | None:
    """``text`` up to the earliest stop sequence, as a provider honouring ``stop`` returns it."""
    if text is None or not stops:
        return text
    cut = min((i for i in (text.find(s) for s in stops if s) if i >= 0), default=-1)
    return text if cut < 0 else text[:cut]


def request_stops(mode: str, user_stop: Sequence[str] | None, versions: Iterable,
                  variables: dict | None) -> tuple[str, ...] | None:
    """The ``stop`` parameter of a run: the user's when set (it always wins); else, in
    completion mode, the stops derived from every version of the template (head and
    base, so neither is cut where the other is not). A version is its source text, or a
    compiled ``render.PromptTemplate`` (one with a loader renders its included files)."""
    if user_stop:
        return tuple(user_stop)
    if mode != "completion" or variables is None:
        return None
    from .render import compile_template

    stops: list[str] = []
    for version in versions:
        try:
            template = compile_template(version, "<stops>") if isinstance(version, str) else version
            rendered = template.render(variables)
        except Exception:  # noqa: BLE001 - a broken template is reported when it is rendered
            continue
        stops += [s for s in derive_stops(template.source, rendered) if s not in stops]
    return tuple(stops[:MAX_STOPS]) or None

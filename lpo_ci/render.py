"""Render prompt templates in a sandboxed Jinja2 environment.

The sandbox keeps a template from reaching Python internals; undefined
variables are errors, so a typo in a variable name never renders as an empty
string and silently costs accuracy.
"""

from __future__ import annotations

import sys
from dataclasses import dataclass
from functools import cached_property
from pathlib import Path
from typing import Any

from .errors import SpecError


def environment():
    """The sandboxed environment, with Jinja's default whitespace rules.

    Those defaults (a single trailing newline dropped) are what an application
    that renders the file with plain Jinja2 gets, so the prompt scored is the
    prompt shipped.
    """
    from jinja2 import StrictUndefined
    from jinja2.sandbox import SandboxedEnvironment

    return SandboxedEnvironment(undefined=StrictUndefined, autoescape=False)


@dataclass
class PromptTemplate:
    """A compiled template; ``label`` names it in errors (a path, or ``BASE:path``)."""

    source: str
    label: str
    template: Any

    @cached_property
    def variables(self) -> set[str]:
        """Variables the template reads from its context."""
        from jinja2 import meta

        return set(meta.find_undeclared_variables(environment().parse(self.source)))

    def render(self, variables: dict[str, Any]) -> str:
        """Render for one example; errors name the template line."""
        from jinja2 import TemplateError

        try:
            return self.template.render(**variables)
        except TemplateError as exc:
            line = _template_line(exc, self.label)
            missing = sorted(self.variables - set(variables))
            hint = (f"the data provides {', '.join(sorted(variables)) or 'no variables'}; "
                    f"the template also reads {', '.join(missing)}") if missing else \
                "fix the template expression on that line"
            raise SpecError(f"cannot render the template: {exc.message or exc}", path=self.label,
                            line=line, hint=hint) from None


def _template_line(exc: BaseException, label: str) -> int | None:
    """The template line where rendering failed, from Jinja's rewritten traceback."""
    line = None
    tb = exc.__traceback__ or sys.exc_info()[2]
    while tb is not None:
        if tb.tb_frame.f_code.co_filename == label:
            line = tb.tb_lineno
        tb = tb.tb_next
    return line or getattr(exc, "lineno", None)


def compile_template(source: str, label: str | Path) -> PromptTemplate:
    """Compile ``source``; a syntax error becomes a SpecError at its line.

    The label is the compiled code's file name, so render errors can be traced
    back to a template line.
    """
    from jinja2 import TemplateSyntaxError

    label = str(label)
    env = environment()
    try:
        code = env.compile(source, name=label, filename=label)
    except TemplateSyntaxError as exc:
        raise SpecError(f"Jinja syntax error: {exc.message}", path=label, line=exc.lineno,
                        hint="fix the template syntax (see the Jinja2 template designer docs)") from None
    template = env.template_class.from_code(env, code, env.make_globals(None), None)
    return PromptTemplate(source=source, label=label, template=template)

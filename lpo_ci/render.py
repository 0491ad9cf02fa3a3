"""Render prompt templates in a sandboxed Jinja2 environment.

The sandbox keeps a template from reaching Python internals; undefined
variables are errors, so a typo in a variable name never renders as an empty
string and silently costs accuracy. Every failure to compile or render, of
whatever exception type, becomes a ``SpecError`` at the template line: one
broken template is one errored item, never a traceback.
"""

from __future__ import annotations

import math
import sys
from dataclasses import dataclass
from functools import cached_property, lru_cache
from pathlib import Path
from typing import Any

from .errors import SpecError

# Results a template expression may build: a prompt is text, not a memory or CPU bomb.
MAX_SEQUENCE_LENGTH = 1_000_000  # characters or items from '*'
MAX_INTEGER_BITS = 65_536  # from '*' or '**' on integers


@lru_cache(maxsize=1)
def _sandbox_class():
    from jinja2.sandbox import SandboxedEnvironment, SecurityError

    class PromptSandbox(SandboxedEnvironment):
        """The sandbox, with '*' and '**' bounded (Jinja leaves them unbounded, so
        ``'x' * 10**10`` or ``10**10**10`` would exhaust memory or time)."""

        intercepted_binops = frozenset({"*", "**"})

        def call_binop(self, context, operator, left, right):
            if operator == "*":
                for seq, count in ((left, right), (right, left)):
                    if isinstance(seq, (str, bytes, list, tuple)) and isinstance(count, int) \
                            and len(seq) * max(count, 0) > MAX_SEQUENCE_LENGTH:
                        raise SecurityError(f"'*' would build {len(seq) * count:,} items, more than "
                                            f"the sandbox allows ({MAX_SEQUENCE_LENGTH:,})")
                if _is_int(left) and _is_int(right) \
                        and left.bit_length() + right.bit_length() > MAX_INTEGER_BITS:
                    raise SecurityError("'*' would build an integer too large for a prompt")
            elif operator == "**" and _is_int(left) and _is_int(right) and abs(left) > 1 and right > 0 \
                    and right * math.log2(abs(left)) > MAX_INTEGER_BITS:
                raise SecurityError("'**' would build an integer too large for a prompt")
            return super().call_binop(context, operator, left, right)

    return PromptSandbox


def _is_int(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def environment(loader=None):
    """The sandboxed environment, with Jinja's default whitespace rules.

    Those defaults (a single trailing newline dropped) are what an application
    that renders the file with plain Jinja2 gets, so the prompt scored is the
    prompt shipped. ``loader`` (an ``includes.ProjectLoader``) serves
    ``{% include %}``, ``{% import %}`` and ``{% extends %}``; without one they are errors.
    """
    from jinja2 import StrictUndefined

    return _sandbox_class()(undefined=StrictUndefined, autoescape=False, loader=loader)


class IncludeError(SpecError):
    """A file the template includes, imports or extends cannot be found or read."""


@dataclass
class PromptTemplate:
    """A compiled template; ``label`` names it in errors (a path, or ``BASE:path``)."""

    source: str
    label: str
    template: Any
    loader: Any = None  # the includes.ProjectLoader, whose ``loaded`` lists the files read

    @cached_property
    def variables(self) -> set[str]:
        """Variables the template reads from its context."""
        from jinja2 import meta

        return set(meta.find_undeclared_variables(environment().parse(self.source)))

    def render(self, variables: dict[str, Any]) -> str:
        """Render for one example; any failure is a SpecError naming the template line
        (the line of an included file when the failure is in it)."""
        from jinja2 import TemplateError, TemplateNotFound, TemplateSyntaxError, UndefinedError

        from .errors import LpoError

        try:
            return self.template.render(**variables)
        except LpoError:  # an included file that cannot be read says so itself
            raise
        except Exception as exc:  # noqa: BLE001 - a template can fail in any way; none may escape raw
            labels = {self.label} | ({self.loader.label(p) for p in self.loader.loaded} if self.loader else set())
            label, line = _template_location(exc, self.label, labels)
            exc_note = f" (included by {self.label})" if label != self.label else ""
            missing = sorted(self.variables - set(variables))
            if isinstance(exc, TemplateSyntaxError):  # in an included file, as it was loaded
                raise IncludeError(f"Jinja syntax error: {exc.message} (included by {self.label})",
                                path=exc.filename or label, line=exc.lineno, hint="fix the template syntax") from None
            if isinstance(exc, TemplateNotFound):
                raise IncludeError(f"cannot render the template: {_not_found(exc, self.loader)}{exc_note}",
                                   path=label, line=line, hint=INCLUDE_HINT) from None
            if isinstance(exc, UndefinedError) and missing:
                hint = (f"the data provides {', '.join(sorted(variables)) or 'no variables'}; "
                        f"the template also reads {', '.join(missing)}")
            else:
                hint = "fix the template expression on that line"
            message = (exc.message or str(exc)) if isinstance(exc, TemplateError) else _describe(exc)
            raise SpecError(f"cannot render the template: {message}{exc_note}", path=label, line=line,
                            hint=hint) from None


INCLUDE_HINT = ("names resolve in the template's folder, then each folder above it up to the project root "
                "(or in search_path under [tool.lpo_ci]); files outside the project are never read")


def _not_found(exc, loader) -> str:
    """What TemplateNotFound means here: no loader, a name refused, or not in the folders searched."""
    if loader is None:
        return f"{{% include %}}, {{% import %}} and {{% extends %}} need the project's files ({exc.name!r})"
    if exc.message and exc.message != exc.name:
        return exc.message
    return f"{exc.name!r} is not a file inside the project"


def _describe(exc: BaseException) -> str:
    """``Type: message``, short (the message of a bomb can be huge too)."""
    text = str(exc).strip().splitlines()[0] if str(exc).strip() else ""
    if isinstance(exc, RecursionError):
        text = "the template nests or recurses too deeply"
    return f"{type(exc).__name__}: {text[:300]}" if text else type(exc).__name__


def _template_location(exc: BaseException, label: str, labels: set[str]) -> tuple[str, int | None]:
    """The innermost template file (``label`` or an included one) and line where rendering
    failed, from Jinja's rewritten traceback."""
    where: tuple[str, int | None] = (label, None)
    tb = exc.__traceback__ or sys.exc_info()[2]
    while tb is not None:
        if tb.tb_frame.f_code.co_filename in labels:
            where = (tb.tb_frame.f_code.co_filename, tb.tb_lineno)
        tb = tb.tb_next
    if where[1] is None:
        where = (getattr(exc, "filename", None) or label, getattr(exc, "lineno", None))
    return where


def compile_template(source: str, label: str | Path, loader=None) -> PromptTemplate:
    """Compile ``source``; any failure becomes a SpecError (at its line when Jinja knows it).

    The label is the compiled code's file name, so render errors can be traced
    back to a template line. ``loader`` serves the files it includes (see ``includes``).
    """
    from jinja2 import TemplateSyntaxError

    label = str(label)
    env = environment(loader)
    try:
        code = env.compile(source, name=label, filename=label)
        template = env.template_class.from_code(env, code, env.make_globals(None), None)
    except TemplateSyntaxError as exc:
        raise SpecError(f"Jinja syntax error: {exc.message}", path=label, line=exc.lineno,
                        hint="fix the template syntax (see the Jinja2 template designer docs)") from None
    except Exception as exc:  # noqa: BLE001 - e.g. RecursionError on absurd nesting
        raise SpecError(f"cannot compile the template: {_describe(exc)}", path=label,
                        hint="simplify the template") from None
    return PromptTemplate(source=source, label=label, template=template, loader=loader)


def distinct_prompts(template: PromptTemplate, examples: list) -> list[str]:
    """Every example's prompt, raising when they are all the same: a template that
    reads none of the data scores one prompt over and over, which measures nothing."""
    prompts = [template.render(example.variables) for example in examples]
    if len(examples) > 1 and len(set(prompts)) == 1:
        fields = sorted(set().union(*(e.variables for e in examples)))
        read = sorted(template.variables & set(fields))
        what = (f"it reads {', '.join(read)} but its output does not change" if read
                else "it reads none of the data's fields")
        raise SpecError(f"the template renders the same prompt for all {len(examples)} examples: {what}",
                        path=template.label, line=None,
                        hint=f"use the data's fields in the prompt, e.g. {{{{ {fields[0]} }}}}" if fields
                        else "use the data's fields in the prompt")
    return prompts

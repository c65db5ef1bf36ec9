"""Jinja2 templates for subjects and bodies, rendered in a sandbox.

Templates come from the operator's configuration; values come from
orchestrators and are only ever data: they are inserted as text and never
rendered as templates themselves. An undefined name is an error, so a typo
in a template fails the attempt with a message instead of sending a blank.
A rendering is bounded in time and size (see :mod:`._template_limits`).
"""

from __future__ import annotations

from typing import Any

from jinja2 import Template, TemplateError

from jobhooks import JobCompleteContext
from jobhooks.handlers._template_limits import Group, bounded_output, environment, within_limits

__all__ = ["CompiledTemplate", "compile_template", "render", "template_variables"]


class CompiledTemplate:
    """A template compiled in the sandbox. Sent to a child process (``isolation =
    "process"``) as its source, and compiled again there."""

    def __init__(self, source: str, what: str) -> None:
        self.source = source
        self.what = what
        try:
            self.template: Template = environment().from_string(source)
        except TemplateError as exc:
            line = getattr(exc, "lineno", None)
            where = f" (template line {line})" if line else ""
            raise ValueError(
                f"property {what}: the template does not compile: {exc}{where}"
            ) from None

    def __reduce__(self) -> tuple[type[CompiledTemplate], tuple[str, str]]:
        return CompiledTemplate, (self.source, self.what)


def compile_template(source: str, what: str) -> CompiledTemplate:
    """Compile a template; raises ValueError naming ``what`` if it does not compile."""
    return CompiledTemplate(source, what)


def template_variables(context: JobCompleteContext) -> dict[str, Any]:
    """The names a template can use: every context field, plus ``failed``, and ``group``
    (every completion of a digest as a mapping of the same fields, oldest first; a list of
    one outside a digest) with ``group_size``."""
    return {
        **context.to_dict(),
        "failed": context.failed,
        "group": Group(member.to_dict() for member in context.group),
        "group_size": len(context.group),
    }


def render(template: CompiledTemplate, context: JobCompleteContext, what: str) -> str:
    """Render a template for a context; raises ValueError saying what went wrong."""
    try:
        with within_limits():
            return bounded_output(template.template.generate(template_variables(context)))
    except TemplateError as exc:  # a limit (TemplateLimitError) among them
        raise ValueError(f"the {what} template failed: {exc}") from None
    except RecursionError:
        raise ValueError(f"the {what} template failed: it recursed too deeply") from None
    except Exception as exc:  # what the template's own expressions raise (1/0, ...)
        raise ValueError(f"the {what} template failed: {type(exc).__name__}: {exc}") from None

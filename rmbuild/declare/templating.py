"""Rendering command and config templates, safely.

Templates run in Jinja's immutable sandbox with ``StrictUndefined``: a typo in a variable is an
error naming the template line, never an empty argument. An argv template renders one argument
per line; the result is passed to ``subprocess`` as a list, never through a shell, so a value
such as ``"x; rm -rf ~"`` is one literal argument.
"""

from __future__ import annotations

import traceback
from functools import cache
from pathlib import Path
from typing import Any

from rmbuild.config import search_path
from rmbuild.errors import TemplateError

# In argv templates every ``{{ value }}`` is bracketed by these while the lines are split, so a
# value is never trimmed or taken for a ``#`` comment: ``"# x"`` as a flag value would otherwise
# vanish and shift every argument after it by one. Neither character can appear in an argv.
_OPEN, _CLOSE = "\x00", "\x01"


def _bracket(value: Any) -> str:
    return f"{_OPEN}{value}{_CLOSE}"


@cache
def _environment(folders: tuple[Path, ...], argv: bool = False) -> Any:
    import jinja2
    from jinja2.sandbox import ImmutableSandboxedEnvironment

    env = ImmutableSandboxedEnvironment(
        loader=jinja2.FileSystemLoader([str(f) for f in folders]),
        undefined=jinja2.StrictUndefined,
        autoescape=False,
        trim_blocks=True,
        lstrip_blocks=True,
        keep_trailing_newline=True,
        finalize=_bracket if argv else None,
    )
    return env


def _template_line(exc: BaseException, name: str) -> int | None:
    lineno = getattr(exc, "lineno", None)
    if lineno:
        return int(lineno)
    for frame in reversed(traceback.extract_tb(exc.__traceback__)):
        if frame.filename.endswith(name):
            return frame.lineno
    return None


def render(name: str, context: dict[str, Any], start: Path | None = None) -> str:
    """Render template ``name`` (found on the templates search path) with ``context``."""
    return _render(name, context, start, argv=False)


def _render(name: str, context: dict[str, Any], start: Path | None, *, argv: bool) -> str:
    import jinja2

    folders = tuple(search_path("templates", start))
    env = _environment(folders, argv)
    try:
        template = env.get_template(name)
    except jinja2.TemplateNotFound:
        raise TemplateError(
            "template not found",
            file=name,
            context=[f"searched: {', '.join(str(f) for f in folders)}"],
        ) from None
    except jinja2.TemplateSyntaxError as exc:
        raise TemplateError(
            f"template syntax error: {exc.message}", file=exc.filename or name, line=exc.lineno
        ) from None
    try:
        return template.render(**context)
    except jinja2.UndefinedError as exc:
        raise TemplateError(
            f"template uses an undefined variable: {exc.message}",
            file=template.filename or name,
            line=_template_line(exc, name),
            hint="define it in the profile's flags, or fix the template",
        ) from None
    except jinja2.TemplateError as exc:
        raise TemplateError(
            f"template failed: {exc}",
            file=template.filename or name,
            line=_template_line(exc, name),
        ) from None


def render_argv(name: str, context: dict[str, Any], start: Path | None = None) -> list[str]:
    """Render an argv template: each non-blank line is one argument, ``#`` lines are comments."""
    text = _render(name, context, start, argv=True)
    argv = []
    # Split on "\n" only: str.splitlines() also breaks on U+2028, \x85, \x0c..., which a flag
    # value may hold, and would turn one value into several arguments.
    for line in text.split("\n"):
        line = line.removesuffix("\r")
        # Only the template's own text is trimmed and can be a comment; values are bracketed.
        arg = line.strip()
        if arg.startswith("#"):
            continue
        arg = arg.replace(_OPEN, "").replace(_CLOSE, "")
        if arg:
            argv.append(arg)
    if not argv:
        raise TemplateError("template rendered an empty command", file=name)
    return argv

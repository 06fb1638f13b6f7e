"""Typed errors of rmbuild.

One root class. User-facing errors carry a code, a message, context lines and a hint, and the
CLI renders them in one place (`rmbuild.cli.main`) and maps them to exit codes. Anything that is
not an :class:`RmbuildError` is an internal bug and shows a traceback only with ``-v``.
"""

from __future__ import annotations

from pathlib import Path

# Exit codes, documented in the README. Click itself uses 2 for usage errors.
EXIT_OK = 0
EXIT_INTERNAL = 1
EXIT_USAGE = 2
EXIT_SPEC = 3
EXIT_TOOL = 4
EXIT_NOT_FOUND = 5
EXIT_INCOMPATIBLE = 6
EXIT_UNAVAILABLE = 7
EXIT_STORE = 8


class RmbuildError(Exception):
    """Root of every error rmbuild raises on purpose."""

    code: str = "error"
    exit_code: int = EXIT_INTERNAL

    def __init__(
        self,
        message: str,
        *,
        context: list[str] | None = None,
        hint: str | None = None,
    ) -> None:
        super().__init__(message)
        self.message = message
        self.context = list(context or [])
        self.hint = hint

    def __reduce__(self) -> tuple[object, ...]:
        # Subclasses take keyword-only arguments, which default exception pickling loses; a
        # build running in a worker process (`compile -j`) must hand its error back intact.
        return (_restore, (type(self), self.args, self.__dict__))

    def to_dict(self) -> dict[str, object]:
        """A machine-readable form, used by ``--json`` output."""
        return {
            "error": self.code,
            "message": self.message,
            "context": self.context,
            "hint": self.hint,
        }


def _restore(
    cls: type[RmbuildError], args: tuple[object, ...], state: dict[str, object]
) -> RmbuildError:
    error = cls.__new__(cls)
    Exception.__init__(error, *args)
    error.__dict__.update(state)
    return error


class SpecError(RmbuildError):
    """A model.yaml or profile is malformed: names the file, line and field."""

    code = "spec-error"
    exit_code = EXIT_SPEC

    def __init__(
        self,
        message: str,
        *,
        file: Path | str | None = None,
        line: int | None = None,
        field: str | None = None,
        context: list[str] | None = None,
        hint: str | None = None,
    ) -> None:
        where = str(file) if file else "<input>"
        if line is not None:
            where += f":{line}"
        if field:
            where += f": field '{field}'"
        super().__init__(f"{where}: {message}", context=context, hint=hint)
        self.file = file
        self.line = line
        self.field = field


class ProfileNotFound(SpecError):
    code = "profile-not-found"


class TemplateError(SpecError):
    code = "template-error"


class ModelSourceError(SpecError):
    code = "model-source-missing"


class ToolError(RmbuildError):
    """A compiler or tool failed; the message says it came from the tool, not from rmbuild."""

    code = "tool-failed"
    exit_code = EXIT_TOOL

    def __init__(
        self,
        message: str,
        *,
        tool: str,
        log_path: Path | None = None,
        tail: list[str] | None = None,
        hint: str | None = None,
    ) -> None:
        context = []
        if tail:
            context.append(f"last lines of the log of {tool}:")
            context.extend(f"  {line}" for line in tail)
        if log_path is not None:
            context.append(f"full log: {log_path}")
        super().__init__(message, context=context, hint=hint)
        self.tool = tool
        self.log_path = log_path
        self.tail = list(tail or [])


class ToolNotFound(ToolError):
    code = "tool-not-found"


class ToolTimeout(ToolError):
    code = "tool-timeout"


class OutputsMissing(ToolError):
    code = "outputs-missing"


class ArtifactNotFound(RmbuildError):
    code = "artifact-not-found"
    exit_code = EXIT_NOT_FOUND


class AmbiguousArtifact(ArtifactNotFound):
    code = "artifact-ambiguous"


class IncompatibleArtifact(RmbuildError):
    """An artifact cannot run on this machine; the message says why."""

    code = "artifact-incompatible"
    exit_code = EXIT_INCOMPATIBLE


class BackendUnavailable(RmbuildError):
    """A backend's toolchain is not installed; the hint names the extra to install."""

    code = "backend-unavailable"
    exit_code = EXIT_UNAVAILABLE


class StoreCorrupt(RmbuildError):
    code = "store-corrupt"
    exit_code = EXIT_INCOMPATIBLE


class InvalidName(RmbuildError):
    """A name given on the command line is not acceptable (e.g. an alias)."""

    code = "invalid-name"
    exit_code = EXIT_USAGE


class BuildLockTimeout(RmbuildError):
    """Another process held a key's build lock for longer than the stage may take."""

    code = "build-lock-timeout"
    exit_code = EXIT_TOOL


class StoreUnavailable(RmbuildError):
    """The store folder or its index cannot be opened."""

    code = "store-unavailable"
    exit_code = EXIT_STORE

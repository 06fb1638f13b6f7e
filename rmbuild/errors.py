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
EXIT_DISK_FULL = 9
EXIT_REMOTE = 10  # the remote cache: unreachable, refused credentials, corrupt
EXIT_TERMINATED = 143  # SIGTERM (CI cancel, systemd stop): 128 + 15, like a shell reports it


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
        """A machine-readable form: what a command given ``--json`` prints on stdout when it
        fails (``rmbuild.cli.main``), the exit code included."""
        return {
            "error": self.code,
            "message": self.message,
            "context": self.context,
            "hint": self.hint,
            "exit_code": self.exit_code,
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
        returncode: int | None = None,
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
        # The tool's own exit status, where it exited with one (failure records keep it).
        self.returncode = returncode


class UnsupportedArchitecture(ToolError):
    """The tool cannot handle the model's architecture (an exporter with no config for it):
    one line naming the architecture and what the tool supports, not the tool's traceback."""

    code = "unsupported-architecture"


class ToolStopped(ToolError):
    """rmbuild stopped the tool (SIGTERM, Ctrl-C reached its supervisor): a cancelled build,
    not a failure of the key, so it is never recorded as one."""

    code = "tool-stopped"


class ToolNotFound(ToolError):
    code = "tool-not-found"


class ToolTimeout(ToolError):
    code = "tool-timeout"


class OutputsMissing(ToolError):
    code = "outputs-missing"


class UnsafeToolOutput(ToolError):
    """A tool left something the store refuses in its output: a symlink leading out of the
    output folder, a dangling link, a special file (the tool's fault, exit 4)."""

    code = "unsafe-tool-output"


class OpenVINOError(RmbuildError):
    """OpenVINO refused a request made through rmbuild's binding (exit 4).

    Lives here, not in the backend, so every error is in one hierarchy.
    """

    code = "openvino-error"
    exit_code = EXIT_TOOL


class OpenVINOCallError(OpenVINOError):
    """A ``libopenvino_c`` function returned an error status (named in the message)."""

    code = "openvino-call-failed"

    def __init__(
        self,
        message: str,
        *,
        function: str = "",
        status: int = 0,
        status_name: str = "",
        context: list[str] | None = None,
        hint: str | None = None,
    ) -> None:
        super().__init__(message, context=context, hint=hint)
        self.function = function
        self.status = status
        self.status_name = status_name


class ArtifactNotFound(RmbuildError):
    code = "artifact-not-found"
    exit_code = EXIT_NOT_FOUND


class AmbiguousArtifact(ArtifactNotFound):
    code = "artifact-ambiguous"


class ReadOnlyMiss(ArtifactNotFound):
    """``--cache-policy readonly`` and a stage is neither stored nor pullable (exit 5)."""


class IncompatibleArtifact(RmbuildError):
    """An artifact cannot run on this machine; the message says why."""

    code = "artifact-incompatible"
    exit_code = EXIT_INCOMPATIBLE


class ArtifactUnloadable(IncompatibleArtifact):
    """The backend's runtime refused an artifact whose files passed the integrity check (a
    vendor library that cannot parse or place it). Exit 6 with the runtime's own words, not an
    internal error: the artifact, not rmbuild, is what cannot run here."""

    code = "artifact-unloadable"


class ArtifactNotRunnable(IncompatibleArtifact):
    """The artifact is no model at all: an internal one, such as a vendor compiler's cache kept
    in the store to speed up later builds. Exit 6, saying what it is, never a backend's guess
    at what its files should have been."""

    code = "artifact-not-runnable"


class BackendUnavailable(RmbuildError):
    """A backend's toolchain is not installed; the hint names the extra to install."""

    code = "backend-unavailable"
    exit_code = EXIT_UNAVAILABLE


class PluginConflict(RmbuildError):
    """Two installed packages provide one name (a profile, template, toolchain file or CLI
    command): an installation conflict for the user to resolve, named with both packages (exit
    7, like two plugins claiming one backend), never a silent pick of one."""

    code = "plugin-conflict"
    exit_code = EXIT_UNAVAILABLE


class StoreCorrupt(RmbuildError):
    code = "store-corrupt"
    exit_code = EXIT_INCOMPATIBLE


class UsageError(RmbuildError):
    """The command line asks for something it does not say enough about (exit 2), e.g.
    ``ls --remote`` without a URL where no remote is configured."""

    code = "usage-error"
    exit_code = EXIT_USAGE


class InvalidName(UsageError):
    """A name given on the command line is not acceptable (e.g. an alias)."""

    code = "invalid-name"


class DestinationNotEmpty(RmbuildError):
    """``checkout REF DIR`` was given a DIR that holds something else: files are never
    overwritten (exit 2)."""

    code = "destination-exists"
    exit_code = EXIT_USAGE


class EngineRefused(UsageError):
    """``export --to ENGINE`` cannot hand this off: an engine rmbuild does not write bundles
    for (one archived upstream), or an artifact that engine cannot load. Exit 2, naming why
    and the engines that do take it."""

    code = "engine-refused"


class UnknownTarget(SpecError):
    """``--target`` names no target of the model (nor a resource class): a mistyped command
    line, so a usage error (exit 2), not a bad model.yaml. The message still names the file
    that lists the targets, with the closest name."""

    code = "unknown-target"
    exit_code = EXIT_USAGE


class BuildLockTimeout(RmbuildError):
    """Another process held a key's build lock for longer than the stage may take."""

    code = "build-lock-timeout"
    exit_code = EXIT_TOOL


class StoreUnavailable(RmbuildError):
    """The store folder or its index cannot be opened."""

    code = "store-unavailable"
    exit_code = EXIT_STORE


class InternalError(RmbuildError):
    """A bug in rmbuild or a caller's misuse of its API, not a user mistake (exit 1).

    Kept apart from the root class so that "we meant to say this" and "this should not
    happen" never share an exit code by accident.
    """

    code = "internal-error"
    exit_code = EXIT_INTERNAL


class DiskFull(RmbuildError):
    """No space left (ENOSPC/EDQUOT) while writing under ``path``: says how much is free."""

    code = "disk-full"
    exit_code = EXIT_DISK_FULL

    def __init__(
        self,
        message: str,
        *,
        path: Path | str | None = None,
        needed: int | None = None,
        free: int | None = None,
        context: list[str] | None = None,
        hint: str
        | None = "free space, e.g. `rmbuild gc --max-size SIZE`, or point --store elsewhere",
    ) -> None:
        lines = list(context or [])
        if path is not None:
            lines.append(f"path: {path}")
        if needed is not None:
            lines.append(f"bytes needed: {needed}")
        if free is not None:
            lines.append(f"bytes free: {free}")
        super().__init__(message, context=lines, hint=hint)
        self.path = path
        self.needed = needed
        self.free = free

    @classmethod
    def from_oserror(
        cls, exc: OSError, path: Path | str, *, needed: int | None = None, what: str = "writing"
    ) -> DiskFull:
        """Build from an ENOSPC/EDQUOT OSError, reading the free bytes of ``path``'s disk."""
        import shutil

        free: int | None = None
        probe = Path(path)
        while not probe.exists() and probe != probe.parent:
            probe = probe.parent
        try:
            free = shutil.disk_usage(probe).free
        except OSError:
            pass
        return cls(
            f"no space left on the device while {what} {path} ({exc.strerror or exc})",
            path=path,
            needed=needed,
            free=free,
        )


def is_disk_full(exc: BaseException) -> bool:
    """True for the OSErrors a full disk or an exhausted quota raise."""
    import errno

    return isinstance(exc, OSError) and exc.errno in (errno.ENOSPC, errno.EDQUOT)


class ArtifactInputMismatch(IncompatibleArtifact):
    """An artifact's graph cannot take an input rmbuild feeds it: a KV cache of
    the wrong head count or dtype, a token count a static-shape graph does not allow. Exit 6,
    like any artifact that cannot run here, naming the input and the expected and given shapes;
    never "a tool failed" (exit 4) nor an internal error (exit 1)."""

    code = "artifact-input-mismatch"

    def __init__(
        self,
        message: str,
        *,
        input: str = "",
        expected: str = "",
        given: str = "",
        context: list[str] | None = None,
        hint: str | None = None,
    ) -> None:
        super().__init__(message, context=context, hint=hint)
        self.input = input
        self.expected = expected
        self.given = given


class ContextTooLong(IncompatibleArtifact):
    """A prompt plus the tokens asked for exceed a session's context limit (its
    ``max_model_len``: the model's declared maximum or the artifact's compiled one, whichever
    is smaller). Refused before the backend runs, exit 6, naming the limit, the lengths and how
    many new tokens still fit; past the limit a learned position table gives wrong text and a
    long prompt only costs memory."""

    code = "context-too-long"

    def __init__(
        self,
        message: str,
        *,
        limit: int,
        prompt_tokens: int,
        max_tokens: int,
        context: list[str] | None = None,
        hint: str | None = None,
    ) -> None:
        super().__init__(message, context=context, hint=hint)
        self.limit = limit
        self.prompt_tokens = prompt_tokens
        self.max_tokens = max_tokens


class InvalidPrompt(RmbuildError):
    """A prompt a session cannot start from (it encodes to no tokens and the model has no BOS
    token to begin with): a usage error, exit 2, before the backend sees a zero-length input."""

    code = "invalid-prompt"
    exit_code = EXIT_USAGE


class SessionClosed(RmbuildError):
    """A session was used after ``close()`` (or after its ``with`` block): the caller's
    mistake, exit 2, the same on every backend."""

    code = "session-closed"
    exit_code = EXIT_USAGE


class RemoteError(RmbuildError):
    """The remote cache failed: unreachable, credentials refused, a missing bucket,
    or content that does not match its digest (``remote-corrupt``). Exit 10. The message names
    the remote without credentials; the local store is left as it was."""

    code = "remote-error"
    exit_code = EXIT_REMOTE

    def __init__(
        self,
        message: str,
        *,
        remote: str = "",
        code: str | None = None,
        context: list[str] | None = None,
        hint: str | None = None,
    ) -> None:
        super().__init__(message, context=context, hint=hint)
        self.remote = remote
        if code:
            self.code = code

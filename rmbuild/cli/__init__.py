"""The ``rmbuild`` command line.

One module per command, each a thin shell over a library function; commands are imported only
when invoked so ``rmbuild --help`` stays fast. This is the one place that turns exceptions into
messages and exit codes: an :class:`~rmbuild.errors.RmbuildError` is a user-facing message, any
other exception is an internal bug and shows its traceback only with ``-v`` / ``RMBUILD_DEBUG``.
A command given ``--json`` that fails also prints the error as one JSON object on stdout
(:meth:`~rmbuild.errors.RmbuildError.to_dict`), unless it already printed its JSON result.

The global options (``--store``, ``--index-url``, ``-v``) are accepted after the command too
(``rmbuild ls --store DIR``): :class:`LazyGroup` adds them to every command it loads.
"""

from __future__ import annotations

import importlib
import os
import sys
from typing import Any

import click

from rmbuild import __version__

# name -> (module, one-line help). The help lives here so listing commands imports nothing.
COMMANDS: dict[str, tuple[str, str]] = {
    "compile": ("rmbuild.cli.compile", "Build a model.yaml's targets (cached by action key)."),
    "redo": ("rmbuild.cli.redo", "Build targets again, replacing what is stored (= --rebuild)."),
    "why": ("rmbuild.cli.why", "Why a target would be built: its key factors vs the stored ones."),
    "check": ("rmbuild.cli.check", "Grade an artifact for this host: optimal/rebuild/unsupported."),
    "run": ("rmbuild.cli.run", "Generate text from an artifact, streaming tokens."),
    "serve": ("rmbuild.cli.serve", "Serve a model over OpenAI's HTTP API (/v1/completions...)."),
    "ls": ("rmbuild.cli.ls", "List the artifacts in the store."),
    "show": ("rmbuild.cli.show", "Show an artifact's provenance: stages, argv, versions, files."),
    "tag": ("rmbuild.cli.tag", "Give an artifact an alias (or remove one)."),
    "verify": ("rmbuild.cli.verify", "Re-hash artifacts' files against their manifests."),
    "sign": ("rmbuild.cli.sign", "Sign artifacts and their provenance (OpenSSF Model Signing)."),
    "checkout": ("rmbuild.cli.checkout", "Put an artifact's files in a folder (read-only links)."),
    "export": ("rmbuild.cli.export", "Write a serving engine's bundle: files, serve.sh, versions."),
    "push": ("rmbuild.cli.push", "Upload artifacts to a remote cache (s3://, gs://, file://…)."),
    "pull": ("rmbuild.cli.pull", "Download artifacts from a remote cache, verified by digest."),
    "gc": ("rmbuild.cli.gc", "Remove unreferenced blobs and stale temp files; cap the size."),
    "info": ("rmbuild.cli.info", "This machine: CPU, GPUs/NPUs, toolchains and versions."),
    "backends": ("rmbuild.cli.backends", "Installed backends, and why not where unavailable."),
    "profiles": ("rmbuild.cli.profiles", "Build profiles visible from here."),
    "schema": ("rmbuild.cli.schema", "Print the JSON Schema of model.yaml or of a profile."),
    "toolchain": ("rmbuild.cli.toolchain", "Provisioned toolchains: install, ls, rm, path."),
}


def _plugin_commands() -> dict[str, Any]:
    """Commands installed plugin packages add (entry-point group ``rmbuild.commands``), by
    name; read only when a name is not rmbuild's own or for ``--help``."""
    from rmbuild.plugins import plugin_commands

    return plugin_commands(frozenset(COMMANDS))


class LazyGroup(click.Group):
    """A group whose subcommands are imported on first use; plugin packages' commands too."""

    def list_commands(self, ctx: click.Context) -> list[str]:
        return [*COMMANDS, *sorted(_plugin_commands())]

    def get_command(self, ctx: click.Context, name: str) -> click.Command | None:
        if name not in COMMANDS:
            entry = _plugin_commands().get(name)
            if entry is None:
                return None
            command = entry.load()
            _add_late_options(command)
            return command
        module = importlib.import_module(COMMANDS[name][0])
        _add_late_options(module.command)
        return module.command

    def resolve_command(
        self, ctx: click.Context, args: list[str]
    ) -> tuple[str | None, click.Command | None, list[str]]:
        # click says only "No such command"; name the closest one.
        name = click.utils.make_str(args[0])
        if name not in COMMANDS and not name.startswith("-") and name not in _plugin_commands():
            import difflib

            known = [*COMMANDS, *_plugin_commands()]
            close = difflib.get_close_matches(name, known, n=1, cutoff=0.6)
            if close:
                ctx.fail(f"No such command {name!r}. Did you mean {close[0]!r}?")
        return super().resolve_command(ctx, args)

    def format_commands(self, ctx: click.Context, formatter: click.HelpFormatter) -> None:
        with formatter.section("Commands"):
            formatter.write_dl([(name, help_) for name, (_, help_) in COMMANDS.items()])
        plugin = _plugin_commands()
        if plugin:
            # The package, not the command's own help: listing must not import plugin code.
            with formatter.section("Commands of plugin packages"):
                formatter.write_dl([(n, f"(from {e.package})") for n, e in sorted(plugin.items())])


class AppContext:
    """Global options, and the store opened on first use."""

    def __init__(self, store: str | None, index_url: str | None, verbose: bool) -> None:
        self.store_path = store
        self.index_url = index_url
        self.verbose = verbose
        # Whether the command was given --json: its failure is then also a JSON object.
        self.as_json = False
        self._store: Any = None

    def store(self) -> Any:
        if self._store is None:
            from rmbuild.storage.store import open_store

            self._store = open_store(self.store_path, self.index_url)
        return self._store


@click.group(cls=LazyGroup, context_settings={"help_option_names": ["-h", "--help"]})
@click.option(
    "--store",
    metavar="DIR",
    help="Artifact store folder [env: RMBUILD_STORE; default: the user cache dir].",
)
@click.option(
    "--index-url",
    metavar="URL",
    help="SQLAlchemy URL of the index [env: RMBUILD_INDEX_URL; default: SQLite in the store].",
)
@click.option("-v", "--verbose", is_flag=True, help="Show tracebacks and debug output.")
@click.version_option(__version__, prog_name="rmbuild")
@click.pass_context
def cli(ctx: click.Context, store: str | None, index_url: str | None, verbose: bool) -> None:
    """rmbuild: build LLM artifacts for every accelerator, cache them, run them.

    \b
    Exit codes: 0 ok, 1 internal error, 2 usage error (also an unknown --target),
    3 bad model.yaml/profile/template, 4 a tool failed (not found, exit code, timeout, missing
    outputs), 5 artifact not found or ambiguous, 6 artifact incompatible with this machine,
    corrupt or not runnable, 7 backend unavailable (or claimed by two plugins), 8 store or index
    unavailable, 9 disk full, 10 remote cache failed (unreachable, credentials refused, corrupt
    copy), 130 interrupted (Ctrl-C), 143 terminated (SIGTERM). With --json, a failure is also
    one JSON object on stdout. Global options may follow the command too.
    """
    ctx.obj = AppContext(store, index_url, verbose or bool(os.environ.get("RMBUILD_DEBUG")))
    _record_app(ctx)


# The AppContext of the command being run (set by ``cli``), read by ``main`` when it fails.
_current: AppContext | None = None


def _record_app(ctx: click.Context) -> None:
    global _current
    _current = ctx.obj


def _late_option(decls: tuple[str, ...], attr: str, **kwargs: Any) -> click.Option:
    """A global option given after the command: sets the AppContext's ``attr``."""

    def apply(ctx: click.Context, _param: click.Parameter, value: Any) -> None:
        app = ctx.find_object(AppContext)
        if app is not None and value not in (None, False):
            setattr(app, attr, value)

    return click.Option(list(decls), expose_value=False, callback=apply, **kwargs)


def _late_options() -> list[click.Option]:
    return [
        _late_option(
            ("--store",), "store_path", metavar="DIR", help="Artifact store folder (global option)."
        ),
        _late_option(
            ("--index-url",), "index_url", metavar="URL", help="Index URL (global option)."
        ),
        _late_option(
            ("-v", "--verbose"), "verbose", is_flag=True, help="Tracebacks (global option)."
        ),
    ]


def _add_late_options(command: click.Command) -> None:
    """Accept the global options after ``command`` (and its subcommands) too, and note --json.

    Users write ``rmbuild ls --store DIR`` as often as ``rmbuild --store DIR ls``; click only
    takes a group's options before the subcommand. Done once per command object.
    """
    if getattr(command, "_rmbuild_late", False):
        return
    command._rmbuild_late = True  # type: ignore[attr-defined]
    taken = {opt for param in command.params for opt in param.opts}
    for option in _late_options():
        if not taken.intersection(option.opts):
            command.params.append(option)
    for param in command.params:
        if param.name == "as_json":
            param.callback = _noting_json(param.callback)
    if isinstance(command, click.Group):
        for sub in command.commands.values():
            _add_late_options(sub)


def _noting_json(callback: Any) -> Any:
    def note(ctx: click.Context, param: click.Parameter, value: Any) -> Any:
        app = ctx.find_object(AppContext)
        if app is not None and value:
            app.as_json = True
        return callback(ctx, param, value) if callback is not None else value

    return note


def _print_error(exc: Any) -> None:
    from rich.console import Console
    from rich.markup import escape

    from rmbuild.toolrun.toolproc import strip_ansi

    # A vendor tool's colour codes inside a message are noise in a log or a CI page.
    clean = (lambda s: s) if sys.stderr.isatty() else strip_ansi
    console = Console(stderr=True, highlight=False, soft_wrap=True)
    message = clean(exc.message)
    console.print(f"[bold red]error[/][dim]{escape(f'[{exc.code}]')}[/]: {escape(message)}")
    for line in exc.context:
        console.print(f"  {escape(clean(line))}")
    if exc.hint:
        console.print(f"[bold]hint[/]: {escape(clean(exc.hint))}")


def _json_error(error: dict[str, Any]) -> None:
    """The failure as one JSON object on stdout, for a command given --json (never after the
    command's own JSON result: verify and check print theirs, then fail)."""
    from rmbuild.cli import _output
    from rmbuild.toolrun.toolproc import strip_ansi

    if _output.json_written():
        return
    for name in ("message", "hint"):
        if isinstance(error.get(name), str):
            error[name] = strip_ansi(error[name])
    error["context"] = [strip_ansi(str(line)) for line in error["context"] or []]
    try:
        _output.emit_json(error)
        sys.stdout.flush()
    except (BrokenPipeError, ValueError):
        pass  # the reader went away (or stdout is closed): the exit code still tells


def main(argv: list[str] | None = None) -> int:
    """Entry point of the ``rmbuild`` script; returns (and exits with) the exit code."""
    global _current
    from rmbuild.cli import _output
    from rmbuild.cli._signals import Terminated, sigterm_raises
    from rmbuild.errors import EXIT_INTERNAL, EXIT_TERMINATED, EXIT_USAGE, RmbuildError

    args = list(argv if argv is not None else sys.argv[1:])
    verbose = bool(os.environ.get("RMBUILD_DEBUG")) or any(a in ("-v", "--verbose") for a in args)
    _current = None
    _output.reset_json_written()
    code = 0
    error: dict[str, Any] | None = None  # the failure, for --json
    refused = False  # click refused the command line, maybe before reading --json
    try:
        with sigterm_raises():  # SIGTERM unwinds like Ctrl-C, then exits 143
            cli.main(args=args, prog_name="rmbuild", standalone_mode=False)
    except Terminated:
        click.echo("terminated", err=True)
        code = EXIT_TERMINATED
        error = {"error": "terminated", "message": "terminated (SIGTERM)", "exit_code": code}
    except click.exceptions.Exit as exc:
        code = exc.exit_code
    except click.Abort:
        click.echo("aborted", err=True)
        code = 130
        error = {"error": "interrupted", "message": "aborted", "exit_code": code}
    except click.ClickException as exc:
        exc.show()
        code = exc.exit_code
        refused = True
        error = {
            "error": "usage-error" if code == EXIT_USAGE else "error",
            "message": exc.format_message(),
            "exit_code": code,
        }
    except RmbuildError as exc:
        if verbose:
            import traceback

            traceback.print_exc()
        _print_error(exc)
        code = exc.exit_code
        error = exc.to_dict()
    except KeyboardInterrupt:
        click.echo("interrupted", err=True)
        code = 130
        error = {"error": "interrupted", "message": "interrupted (Ctrl-C)", "exit_code": code}
    except BrokenPipeError:
        code = 0
    except Exception as exc:
        translated = _translate(exc)
        if translated is not None:
            if verbose:
                import traceback

                traceback.print_exc()
            _print_error(translated)
            code = translated.exit_code
            error = translated.to_dict()
        else:
            import traceback

            if verbose:
                traceback.print_exc()
            click.echo(
                f"internal error: {type(exc).__name__}: {exc}\n"
                "this is a bug in rmbuild; run again with -v for the traceback and report it",
                err=True,
            )
            code = EXIT_INTERNAL
            error = {
                "error": "internal-error",
                "message": f"{type(exc).__name__}: {exc}",
                "hint": "this is a bug in rmbuild; run again with -v for the traceback",
                "exit_code": code,
            }
    if error is not None and _wants_json(args, refused):
        fields = ("error", "message", "context", "hint", "exit_code")
        _json_error({**{name: error.get(name) for name in fields}, **error})
    return code


def _wants_json(args: list[str], refused: bool) -> bool:
    """Was the failed command given --json? Its parsed options say so; a command line click
    refused (perhaps before it read --json, e.g. an unknown option) is judged by its words."""
    if _current is not None and _current.as_json:
        return True
    if not refused:
        return False
    return "--json" in (args[: args.index("--")] if "--" in args else args)


def _translate(exc: BaseException) -> Any:
    """artifact_store's own errors are about the store's state or the user's input, not bugs."""
    if "artifact_store" not in sys.modules or not isinstance(exc, Exception):
        return None
    from rmbuild.storage.store import translate

    return translate(exc)

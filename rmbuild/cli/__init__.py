"""The ``rmbuild`` command line.

One module per command, each a thin shell over a library function; commands are imported only
when invoked so ``rmbuild --help`` stays fast. This is the one place that turns exceptions into
messages and exit codes: an :class:`~rmbuild.errors.RmbuildError` is a user-facing message, any
other exception is an internal bug and shows its traceback only with ``-v`` / ``RMBUILD_DEBUG``.
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
    "ls": ("rmbuild.cli.ls", "List the artifacts in the store."),
    "show": ("rmbuild.cli.show", "Show an artifact's provenance: stages, argv, versions, files."),
    "tag": ("rmbuild.cli.tag", "Give an artifact an alias (or remove one)."),
    "verify": ("rmbuild.cli.verify", "Re-hash artifacts' files against their manifests."),
    "push": ("rmbuild.cli.push", "Upload artifacts to a remote cache (s3://, gs://, file://…)."),
    "pull": ("rmbuild.cli.pull", "Download artifacts from a remote cache, verified by digest."),
    "gc": ("rmbuild.cli.gc", "Remove unreferenced blobs and stale temp files; cap the size."),
    "info": ("rmbuild.cli.info", "This machine: CPU, GPUs/NPUs, toolchains and versions."),
    "backends": ("rmbuild.cli.backends", "Installed backends, and why not where unavailable."),
    "profiles": ("rmbuild.cli.profiles", "Build profiles visible from here."),
    "schema": ("rmbuild.cli.schema", "Print the JSON Schema of model.yaml or of a profile."),
    "toolchain": ("rmbuild.cli.toolchain", "Provisioned toolchains: install, ls, rm, path."),
}


class LazyGroup(click.Group):
    """A group whose subcommands are imported on first use."""

    def list_commands(self, ctx: click.Context) -> list[str]:
        return list(COMMANDS)

    def get_command(self, ctx: click.Context, name: str) -> click.Command | None:
        if name not in COMMANDS:
            return None
        module = importlib.import_module(COMMANDS[name][0])
        return module.command

    def resolve_command(
        self, ctx: click.Context, args: list[str]
    ) -> tuple[str | None, click.Command | None, list[str]]:
        # click says only "No such command"; name the closest one (issue 6 #17).
        name = click.utils.make_str(args[0])
        if name not in COMMANDS and not name.startswith("-"):
            import difflib

            close = difflib.get_close_matches(name, list(COMMANDS), n=1, cutoff=0.6)
            if close:
                ctx.fail(f"No such command {name!r}. Did you mean {close[0]!r}?")
        return super().resolve_command(ctx, args)

    def format_commands(self, ctx: click.Context, formatter: click.HelpFormatter) -> None:
        with formatter.section("Commands"):
            formatter.write_dl([(name, help_) for name, (_, help_) in COMMANDS.items()])


class AppContext:
    """Global options, and the store opened on first use."""

    def __init__(self, store: str | None, index_url: str | None, verbose: bool) -> None:
        self.store_path = store
        self.index_url = index_url
        self.verbose = verbose
        self._store: Any = None

    def store(self) -> Any:
        if self._store is None:
            from rmbuild.store import open_store

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
    Exit codes: 0 ok, 1 internal error, 2 usage error, 3 bad model.yaml/profile/template,
    4 a tool failed (not found, exit code, timeout, missing outputs), 5 artifact not found or
    ambiguous, 6 artifact incompatible with this machine or corrupt, 7 backend unavailable,
    8 store or index unavailable, 9 disk full, 10 remote cache failed (unreachable, credentials
    refused, corrupt copy), 130 interrupted (Ctrl-C), 143 terminated (SIGTERM).
    """
    ctx.obj = AppContext(store, index_url, verbose or bool(os.environ.get("RMBUILD_DEBUG")))


def _print_error(exc: Any) -> None:
    from rich.console import Console
    from rich.markup import escape

    console = Console(stderr=True, highlight=False, soft_wrap=True)
    console.print(f"[bold red]error[/][dim]{escape(f'[{exc.code}]')}[/]: {escape(exc.message)}")
    for line in exc.context:
        console.print(f"  {escape(line)}")
    if exc.hint:
        console.print(f"[bold]hint[/]: {escape(exc.hint)}")


def main(argv: list[str] | None = None) -> int:
    """Entry point of the ``rmbuild`` script; returns (and exits with) the exit code."""
    from rmbuild.cli._signals import Terminated, sigterm_raises
    from rmbuild.errors import EXIT_INTERNAL, EXIT_TERMINATED, RmbuildError

    verbose = bool(os.environ.get("RMBUILD_DEBUG")) or any(
        a in ("-v", "--verbose") for a in (argv if argv is not None else sys.argv[1:])
    )
    code = 0
    try:
        with sigterm_raises():  # issue 6 #11: SIGTERM unwinds like Ctrl-C, then exits 143
            cli.main(args=argv, prog_name="rmbuild", standalone_mode=False)
    except Terminated:
        click.echo("terminated", err=True)
        code = EXIT_TERMINATED
    except click.exceptions.Exit as exc:
        code = exc.exit_code
    except click.Abort:
        click.echo("aborted", err=True)
        code = 130
    except click.ClickException as exc:
        exc.show()
        code = exc.exit_code
    except RmbuildError as exc:
        if verbose:
            import traceback

            traceback.print_exc()
        _print_error(exc)
        code = exc.exit_code
    except KeyboardInterrupt:
        click.echo("interrupted", err=True)
        code = 130
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
    return code


def _translate(exc: BaseException) -> Any:
    """artifact_store's own errors are about the store's state or the user's input, not bugs."""
    if "artifact_store" not in sys.modules or not isinstance(exc, Exception):
        return None
    from rmbuild.store import translate

    return translate(exc)

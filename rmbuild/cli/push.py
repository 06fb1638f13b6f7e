"""``rmbuild push <id|alias|--all> --remote URL``: upload artifacts to a remote cache."""

from __future__ import annotations

import contextlib
import sys
from collections.abc import Callable, Iterator
from typing import Any

import click

from rmbuild.cli._output import emit_json, human_size

REMOTE_HELP = (
    "Remote cache: any fsspec URL (s3://bucket/prefix, gs://…, az://…, file:///path) or an "
    "OCI registry (oci://host[:port]/repo) "
    "[env: RMBUILD_REMOTE; config: remote in rmbuild.toml or ~/.config/rmbuild/config.toml]."
)


@contextlib.contextmanager
def progress_bar(label: str, quiet: bool = False) -> Iterator[Callable[[int, int], None] | None]:
    """A rich progress bar (bytes, speed, time left) on a terminal; nothing otherwise.

    Yields the ``on_progress(done, total)`` callback for :class:`artifact_store.remote.Remote`;
    it is called from transfer threads, which rich's Progress allows.
    """
    if quiet or not sys.stderr.isatty():
        yield None
        return
    from rich.console import Console
    from rich.progress import (
        BarColumn,
        DownloadColumn,
        Progress,
        TextColumn,
        TimeRemainingColumn,
        TransferSpeedColumn,
    )

    progress = Progress(
        TextColumn(label),
        BarColumn(),
        DownloadColumn(),
        TransferSpeedColumn(),
        TimeRemainingColumn(),
        console=Console(stderr=True),
        transient=True,
    )
    task = progress.add_task(label, total=None)

    def update(done: int, total: int) -> None:
        progress.update(task, completed=done, total=total)

    with progress:
        yield update


def summary(verb: str, report: Any, remote: str) -> str:
    named = getattr(report, "aliases", None) or {}
    aliases = "".join(f"; alias {a} -> {k[:12]}" for a, k in sorted(named.items()))
    return (
        f"{verb} {len(report.keys)} artifact(s), {report.blobs} object(s), "
        f"{human_size(report.bytes)} in {report.seconds:.1f} s; "
        f"{len(report.present)} already on {remote}{aliases}"
    )


@click.command("push")
@click.argument("refs", nargs=-1)
@click.option("--all", "push_all", is_flag=True, help="Push every artifact in the store.")
@click.option("--remote", "remote_url", metavar="URL", help=REMOTE_HELP)
@click.option(
    "--no-parents",
    is_flag=True,
    help="Push only the artifacts named, not the upstream stages they were built from.",
)
@click.option("--json", "as_json", is_flag=True, help="Machine-readable output.")
@click.pass_obj
def command(
    app: Any,
    refs: tuple[str, ...],
    push_all: bool,
    remote_url: str | None,
    no_parents: bool,
    as_json: bool,
) -> None:
    """Upload REFS (ids, prefixes, aliases, or MODEL:TARGET for the newest) to the remote
    cache, with their upstream stages.

    Objects the remote holds are not sent again; each artifact's entry is written last, so
    an interrupted push shows nothing half-done and running it again completes it. Aliases
    go too, also of artifacts the remote already holds (an alias given after a push). A push
    that fails removes what it began; `rmbuild gc --remote` collects what a killed one left.
    """
    from rmbuild.storage import remotes
    from rmbuild.storage.store import resolve

    if push_all == bool(refs):
        raise click.UsageError("give artifact ids/aliases, or --all (not both)")
    remote = remotes.open_remote(remote_url, required=True)
    assert remote is not None
    store = app.store()
    keys = [r.key for r in store.list()] if push_all else [resolve(store, r).key for r in refs]
    if not keys:
        click.echo("nothing to push: the store holds no artifact", err=True)
        return
    with progress_bar(f"push → {remote.display}", quiet=as_json) as on_progress:
        report = remotes.call(
            remote.push, store, keys, parents=not no_parents, on_progress=on_progress
        )
    if as_json:
        emit_json(
            {
                "remote": remote.display,
                "pushed": report.keys,
                "present": report.present,
                "aliases": report.aliases,
                "objects": report.blobs,
                "bytes": report.bytes,
                "seconds": round(report.seconds, 3),
            }
        )
        return
    click.echo(summary("pushed", report, remote.display))

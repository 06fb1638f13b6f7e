"""``rmbuild gc``: drop unreferenced blobs and stale temp dirs, optionally cap the store size."""

from __future__ import annotations

from dataclasses import asdict
from typing import Any

import click

from rmbuild.cli._output import emit_json, parse_size


class Size(click.ParamType):
    """A byte size such as 500M, 5G or 1024."""

    name = "size"

    def convert(
        self, value: object, param: click.Parameter | None, ctx: click.Context | None
    ) -> int:
        if isinstance(value, int):
            return value
        try:
            size = parse_size(str(value))
        except ValueError:
            self.fail(f"{value!r} is not a size (e.g. 500M, 5G, 1024)", param, ctx)
        if size < 0:
            self.fail("a size cannot be negative", param, ctx)
        return size


@click.command("gc")
@click.option("--dry-run", is_flag=True, help="Say what would be freed; delete nothing.")
@click.option(
    "--max-size",
    type=Size(),
    help="Evict least-recently-used artifacts until the store fits (e.g. 5G).",
)
@click.option(
    "--keep-logs",
    "keep_logs_days",
    type=click.FloatRange(0),
    default=14,
    show_default=True,
    metavar="DAYS",
    help="Keep failed builds' logs (the store's logs/) this many days.",
)
@click.option("--json", "as_json", is_flag=True, help="Machine-readable output.")
@click.option(
    "--remote",
    "remote_url",
    metavar="URL",
    is_flag=False,
    flag_value="",
    help="Collect this remote cache's leftovers instead: temp objects of pushes that died "
    "(untouched for an hour) and S3 multipart uploads never finished (started over a day "
    "ago). Without URL, the configured one (RMBUILD_REMOTE, rmbuild.toml, config.toml).",
)
@click.pass_obj
def command(
    app: Any,
    dry_run: bool,
    max_size: int | None,
    keep_logs_days: float,
    as_json: bool,
    remote_url: str | None = None,
) -> None:
    """Collect garbage in the store.

    Removes blobs no artifact references, stale scratch dirs and trees, failed builds' logs
    older than --keep-logs, lock files of keys without an artifact that no process holds,
    and stat-cache rows of files gone or changed. gc waits for builds that are storing their
    results and never evicts an artifact a build or `rmbuild run` is using.

    With --remote, the remote cache instead: what pushes that died left there (a failed push
    cleans up after itself). Its artifacts are never removed.
    """
    if remote_url is not None:
        if max_size is not None:
            raise click.UsageError("--max-size caps the local store; it does not go with --remote")
        _collect_remote(remote_url, dry_run=dry_run, as_json=as_json)
        return
    report = app.store().gc(
        dry_run=dry_run, max_size=max_size, log_retention=keep_logs_days * 86400
    )
    if as_json:
        emit_json(asdict(report))
        return
    click.echo(f"gc {report.summary()}")


def _collect_remote(url: str, *, dry_run: bool, as_json: bool) -> None:
    """``gc --remote``: see :mod:`artifact_store.remote_gc`."""
    from artifact_store.remote_gc import collect_remote
    from rmbuild import remotes

    remote = remotes.open_remote(url or None, required=True)
    assert remote is not None
    report = remotes.call(collect_remote, remote, dry_run=dry_run)
    if as_json:
        emit_json(asdict(report))
        return
    click.echo(f"gc {report.summary()}")

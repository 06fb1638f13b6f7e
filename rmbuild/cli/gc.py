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
@click.pass_obj
def command(
    app: Any, dry_run: bool, max_size: int | None, keep_logs_days: float, as_json: bool
) -> None:
    """Collect garbage in the store.

    Removes blobs no artifact references, stale scratch dirs and trees, failed builds' logs
    older than --keep-logs, lock files of keys without an artifact that no process holds,
    and stat-cache rows of files gone or changed. gc waits for builds that are storing their
    results and never evicts an artifact a build or `rmbuild run` is using.
    """
    report = app.store().gc(
        dry_run=dry_run, max_size=max_size, log_retention=keep_logs_days * 86400
    )
    if as_json:
        emit_json(asdict(report))
        return
    click.echo(f"gc {report.summary()}")

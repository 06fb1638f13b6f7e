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
@click.option("--json", "as_json", is_flag=True, help="Machine-readable output.")
@click.pass_obj
def command(app: Any, dry_run: bool, max_size: int | None, as_json: bool) -> None:
    """Collect garbage in the store."""
    report = app.store().gc(dry_run=dry_run, max_size=max_size)
    if as_json:
        emit_json(asdict(report))
        return
    click.echo(f"gc {report.summary()}")

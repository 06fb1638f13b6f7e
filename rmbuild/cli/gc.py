"""``rmbuild gc``: drop unreferenced blobs and stale temp dirs, optionally cap the store size."""

from __future__ import annotations

from dataclasses import asdict, is_dataclass
from typing import Any

import click

from rmbuild.cli._output import emit_json, parse_size


@click.command("gc")
@click.option("--dry-run", is_flag=True, help="Say what would be freed; delete nothing.")
@click.option("--max-size", help="Evict least-recently-used artifacts until the store fits "
              "(e.g. 5G).")
@click.option("--json", "as_json", is_flag=True, help="Machine-readable output.")
@click.pass_obj
def command(app: Any, dry_run: bool, max_size: str | None, as_json: bool) -> None:
    """Collect garbage in the store."""
    limit = parse_size(max_size) if max_size else None
    report = app.store().gc(dry_run=dry_run, max_size=limit)
    data = asdict(report) if is_dataclass(report) else dict(vars(report))
    if as_json:
        emit_json(data)
        return
    verb = "would free" if dry_run else "freed"
    click.echo(f"gc {verb}: " + ", ".join(f"{k}={v if not isinstance(v, list) else len(v)}"
                                          for k, v in data.items()))

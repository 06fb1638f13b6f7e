"""``rmbuild backends``: installed backend plugins and whether they can run here."""

from __future__ import annotations

import click

from rmbuild.cli._output import console, emit_json, plain


@click.command("backends")
@click.option("--json", "as_json", is_flag=True, help="Machine-readable output.")
def command(as_json: bool) -> None:
    """List backends (entry-point group rmbuild.backends): the package each comes from,
    availability and reasons."""
    from rmbuild.plugins import registry

    rows = []
    for name, entry in sorted(registry().items()):
        avail = entry.availability()
        plugin = entry.plugin
        rows.append(
            {
                "name": name,
                "plugin": entry.target,
                "package": entry.package,
                "available": avail.ok,
                "reason": avail.reason,
                "install": avail.install,
                "versions": avail.versions,
                "profiles": plugin.required_build_profiles() if plugin else [],
                "devices": [r.name for r in plugin.probe()] if plugin and avail.ok else [],
            }
        )
    if as_json:
        emit_json(rows)
        return
    from rich.table import Table

    table = Table(box=None, pad_edge=False, header_style="bold")
    for column in ("BACKEND", "PACKAGE", "STATUS", "VERSIONS / REASON", "PROFILES", "INSTALL"):
        table.add_column(column)
    for row in rows:
        status = "[green]available[/]" if row["available"] else "[red]unavailable[/]"
        detail = (
            ", ".join(f"{k} {v}" for k, v in row["versions"].items())
            if row["available"]
            else row["reason"]
        )
        table.add_row(
            plain(row["name"]),
            plain(row["package"]),
            status,
            plain(detail),
            plain(", ".join(row["profiles"])),
            plain(row["install"]),
        )
    console().print(table)

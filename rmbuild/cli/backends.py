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
    _warn_broken_resources()
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


def _warn_broken_resources() -> None:
    """A package whose ``rmbuild.resources`` entry does not resolve ships nothing: say so (on
    stderr, so that --json stays one array)."""
    from rmbuild.config import plugin_resources

    for res in plugin_resources():
        if res.error:
            click.echo(
                f"warning: package {res.package} registers resources {res.name!r} "
                f"({res.module}), which cannot be found: {res.error}; its profiles and "
                "templates are not searched",
                err=True,
            )

"""``rmbuild tag ID ALIAS``: name an artifact, e.g. chat-main-cpu."""

from __future__ import annotations

from typing import Any

import click


@click.command("tag")
@click.argument("ref")
@click.argument("alias", required=False)
@click.option("-d", "--delete", is_flag=True, help="Remove the alias REF instead.")
@click.pass_obj
def command(app: Any, ref: str, alias: str | None, delete: bool) -> None:
    """Point ALIAS at artifact REF (re-pointing it if it exists); -d REF removes alias REF."""
    from rmbuild.storage.store import resolve

    store = app.store()
    if delete:
        store.untag(ref)
        click.echo(f"removed alias {ref}")
        return
    if not alias:
        raise click.UsageError("give an ALIAS (or -d ALIAS to remove one)")
    record = resolve(store, ref)
    store.tag(alias, record.key)
    click.echo(f"{alias} -> {record.key}")

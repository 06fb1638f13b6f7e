"""``rmbuild ls``: the artifacts in the store, newest first."""

from __future__ import annotations

from typing import Any

import click

from rmbuild.cli._output import age, console, emit_json, human_size, plain, record_summary


@click.command("ls")
@click.option("--model", help="Only this model.")
@click.option("--target", help="Only this target.")
@click.option("--backend", help="Only this backend.")
@click.option("--json", "as_json", is_flag=True, help="Machine-readable output.")
@click.option(
    "--remote",
    "remote_url",
    metavar="URL",
    help="List what this remote cache holds instead (nothing is pulled); see `rmbuild push`.",
)
@click.pass_obj
def command(
    app: Any,
    model: str | None,
    target: str | None,
    backend: str | None,
    as_json: bool,
    remote_url: str | None = None,
) -> None:
    """List artifacts: id, model, target, profile, backend, toolchain, size, age."""
    from rmbuild.store import open_store

    if remote_url is not None:  # issue 9: the remote's entries, read without pulling
        from rmbuild.cli.pull import remote_records

        records = remote_records(remote_url, model=model, target=target, backend=backend)
    else:
        # Read-only index: listing works on a full disk (issue 6 #13).
        store = open_store(app.store_path, app.index_url, read_only=True)
        records = store.list(model=model, target=target, backend=backend)
    if as_json:
        emit_json([record_summary(r) for r in records])
        return
    if not records:
        click.echo("no artifacts yet; build one with `rmbuild compile model.yaml`")
        return
    from rich.table import Table

    table = Table(box=None, pad_edge=False, header_style="bold")
    for column in (
        "ID",
        "MODEL",
        "TARGET",
        "PROFILE",
        "BACKEND",
        "TOOLCHAIN",
        "SIZE",
        "AGE",
        "ALIASES",
    ):
        table.add_column(column, no_wrap=column != "TOOLCHAIN")
    for r in records:
        info = record_summary(r)
        versions = info["toolchain"]
        tool = next(iter(versions.items()), None)
        targets = ",".join(sorted({t for m, t in r.uses if m == r.model})) or r.target
        cells = (
            r.key[:12],
            r.model,
            targets,
            info["profile"] or "",
            r.backend,
            f"{tool[0]} {tool[1]}" if tool else "",
            human_size(r.size),
            age(r.created_at),
            ",".join(r.aliases),
        )
        table.add_row(*map(plain, cells))  # stored values are text, never markup (#16)
    console().print(table)

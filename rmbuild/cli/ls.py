"""``rmbuild ls``: the artifacts in the store, newest first."""

from __future__ import annotations

import json
import sys
from typing import Any

import click

from rmbuild.cli._output import age, console, human_size, plain, record_summary

# `ls` on a terminal shows this many (issue 9: 100,000 rows took rich 69 s and 1.8 GiB).
DEFAULT_LIMIT = 50
# Beyond this many rows, plain aligned columns instead of a rich table.
RICH_ROWS = 1000


@click.command("ls")
@click.option("--model", help="Only this model.")
@click.option("--target", help="Only this target.")
@click.option("--backend", help="Only this backend.")
@click.option("--json", "as_json", is_flag=True, help="Machine-readable output.")
@click.option(
    "--remote",
    "remote_url",
    metavar="URL",
    is_flag=False,
    flag_value="",
    help="List what this remote cache holds instead (nothing is pulled); without URL, the "
    "configured one (RMBUILD_REMOTE, rmbuild.toml, config.toml).",
)
@click.option(
    "--failed",
    is_flag=True,
    help="List failed builds instead: key, exit code, attempts, log (issue 9).",
)
@click.option(
    "--limit",
    type=click.IntRange(1),
    metavar="N",
    help=f"Show the N newest (default on a terminal: {DEFAULT_LIMIT}; elsewhere all).",
)
@click.option("--all", "show_all", is_flag=True, help="Show every artifact, also on a terminal.")
@click.pass_obj
def command(
    app: Any,
    model: str | None,
    target: str | None,
    backend: str | None,
    as_json: bool,
    remote_url: str | None = None,
    failed: bool = False,
    limit: int | None = None,
    show_all: bool = False,
) -> None:
    """List artifacts, newest first: id, model, target, profile, backend, toolchain, size, age.

    On a terminal the newest 50 are shown (--limit N, --all); piped or --json, all of them.
    Filters and the limit run in the index, so a store of 100,000 artifacts lists in well
    under a second (issue 9).
    """
    from rmbuild.store import open_store

    if limit is None and not show_all and not as_json and sys.stdout.isatty():
        limit = DEFAULT_LIMIT
    total: int | None = None
    if remote_url is not None:  # issue 9: the remote's entries, read without pulling
        from rmbuild.cli.pull import remote_records

        records = remote_records(remote_url, model=model, target=target, backend=backend)
        total, records = len(records), records[:limit] if limit else records
    else:
        # Read-only index: listing works on a full disk (issue 6 #13).
        store = open_store(app.store_path, app.index_url, read_only=True)
        if failed:
            _failures(store, model, target, backend, limit, as_json)
            return
        # summary: only the metadata shown below is read (issue 9: decoding every row's whole
        # metadata was most of `ls --json` on 100,000 artifacts).
        records = store.list(model=model, target=target, backend=backend, limit=limit, summary=True)
        if limit is not None and len(records) == limit:
            total = store.count(model=model, target=target, backend=backend)
    if as_json:
        _stream_json(record_summary(r) for r in records)
        return
    if not records:
        click.echo("no artifacts yet; build one with `rmbuild compile model.yaml`")
        return
    from rich.table import Table

    table = Table(box=None, pad_edge=False, header_style="bold")
    columns = ("ID", "MODEL", "TARGET", "PROFILE", "BACKEND", "TOOLCHAIN", "SIZE", "AGE", "ALIASES")
    for column in columns:
        table.add_column(column, no_wrap=column != "TOOLCHAIN")
    rows: list[tuple[str, ...]] = []
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
        rows.append(cells)
    if len(rows) > RICH_ROWS:
        _print_columns(columns, rows)  # rich takes ~0.6 ms a row to lay out (issue 9)
    else:
        for cells in rows:
            table.add_row(*map(plain, cells))  # stored values are text, never markup (#16)
        console().print(table)
    if total is not None and total > len(records):
        click.echo(
            f"showing the {len(records)} newest of {total} artifacts; "
            "--limit N or --all for more, --model/--target/--backend to filter",
            err=True,
        )


def _stream_json(items: Any) -> None:
    """A JSON array, one item a line, written in batches as it is encoded (issue 9: the
    indented form goes through json's pure-Python encoder, seconds for 100,000 items)."""
    encode = json.JSONEncoder(default=str, ensure_ascii=False).encode
    out = sys.stdout
    out.write("[")
    batch: list[str] = []
    sep = "\n"
    for item in items:
        batch.append(sep + encode(item))
        sep = ",\n"
        if len(batch) == 1000:
            out.write("".join(batch))
            batch.clear()
    out.write("".join(batch) + ("\n]\n" if sep == ",\n" else "]\n"))


def _print_columns(columns: tuple[str, ...], rows: list[tuple[str, ...]]) -> None:
    """Plain aligned columns, written as they are formatted (no markup is ever read)."""
    widths = [max([len(c), *(len(str(r[i])) for r in rows)]) for i, c in enumerate(columns)]
    write = sys.stdout.write

    def line(cells: tuple[str, ...]) -> str:
        return "  ".join(str(v).ljust(w) for v, w in zip(cells, widths, strict=True)).rstrip()

    write(line(columns) + "\n")
    for i in range(0, len(rows), 1000):
        write("".join(line(r) + "\n" for r in rows[i : i + 1000]))


def _failures(
    store: Any,
    model: str | None,
    target: str | None,
    backend: str | None,
    limit: int | None,
    as_json: bool,
) -> None:
    """``ls --failed``: recorded failed builds, newest first (issue 9)."""
    failures = store.list_failures(model=model, target=target, backend=backend, limit=limit)
    if as_json:
        _stream_json(f.to_dict() for f in failures)
        return
    if not failures:
        click.echo("no failed builds recorded")
        return
    from rich.table import Table

    table = Table(box=None, pad_edge=False, header_style="bold")
    for column in ("ID", "MODEL", "TARGET", "PROFILE", "EXIT", "ATTEMPTS", "AGE", "LOG"):
        table.add_column(column, no_wrap=column != "LOG")
    for f in failures:
        cells = (
            f.key[:12],
            f.model,
            f.target,
            f.profile,
            "" if f.exit_code is None else str(f.exit_code),
            str(f.attempts),
            age(f.failed_at),
            f.log_path or "",
        )
        table.add_row(*map(plain, cells))
    console().print(table)

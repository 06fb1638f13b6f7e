"""``rmbuild ls``: the artifacts in the store, newest first.

Three outputs. On a terminal, a table of the newest 50. Piped, tab-separated plain columns (a
header line, then one artifact a line: no padding, no wrapping, for ``cut``/``awk`` and people
alike). With ``--json``, a JSON array with one artifact a line. The piped and JSON outputs are
streamed: rows are written as the index yields them, so the first comes at once and memory
stays flat at any store size. Internal artifacts (a vendor compiler's cache, kept as an
artifact of its own to speed up later builds) are listed only with ``--all``.
"""

from __future__ import annotations

import json
import sys
from collections.abc import Iterable, Iterator
from typing import Any

import click

from rmbuild.cli._output import (
    age,
    console,
    human_size,
    note_json_written,
    plain,
    record_summary,
    toolchain_versions,
)

# `ls` on a terminal shows this many (rich took 69 s and 1.8 GiB to lay out 100,000 rows).
DEFAULT_LIMIT = 50
# Beyond this many rows, plain aligned columns instead of a rich table.
RICH_ROWS = 1000
COLUMNS = ("ID", "MODEL", "TARGET", "PROFILE", "BACKEND", "TOOLCHAIN", "SIZE", "AGE", "ALIASES")
# Lines written to stdout at a time while streaming.
WRITE_BATCH = 1000


def internal_targets() -> tuple[str, ...]:
    """Targets of internal artifacts: stored for rmbuild's own use, not built by a user."""
    from rmbuild.build.compcache import KIND

    return (KIND,)


@click.command("ls")
@click.option("--model", help="Only this model.")
@click.option("--target", help="Only this target.")
@click.option("--backend", help="Only this backend.")
@click.option(
    "--json", "as_json", is_flag=True, help="Machine-readable output: a JSON array, one a line."
)
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
    help="List failed builds instead: key, exit code, attempts, log.",
)
@click.option(
    "--limit",
    type=click.IntRange(1),
    metavar="N",
    help=f"Show the N newest (default on a terminal: {DEFAULT_LIMIT}; elsewhere all).",
)
@click.option(
    "--all",
    "show_all",
    is_flag=True,
    help="Everything: no limit on a terminal, and internal artifacts (compiler caches) too.",
)
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

    On a terminal the newest 50 are shown (--limit N, --all) as a table; piped, all of them as
    tab-separated columns; with --json, a JSON array, one artifact a line. Piped and --json
    output is streamed. Internal artifacts (compiler caches) are shown with --all, or when
    --target names their target. Filters and the limit run in the index.
    """
    from rmbuild.storage.store import open_store

    terminal = sys.stdout.isatty() and not as_json
    if limit is None and not show_all and terminal:
        limit = DEFAULT_LIMIT
    # Asking for a target by name shows it, internal or not.
    hidden = () if show_all or target is not None else internal_targets()
    total: int | None = None
    records: Iterable[Any]
    if remote_url is not None:  # the remote's entries, read without pulling
        from rmbuild.cli.pull import remote_records

        found = remote_records(remote_url, model=model, target=target, backend=backend)
        found = [r for r in found if r.target not in hidden]
        total, records = len(found), found[:limit] if limit else found
    else:
        # Read-only index: listing works on a full disk.
        store = open_store(app.store_path, app.index_url, read_only=True)
        if failed:
            _failures(store, model, target, backend, limit, as_json)
            return
        filters = {"model": model, "target": target, "backend": backend}
        # summary: only the metadata shown below is read (decoding every row's whole
        # metadata was most of `ls --json` on 100,000 artifacts).
        records = store.iter_list(**filters, limit=limit, summary=True, exclude_targets=hidden)
        if limit is not None:
            records = list(records)
            if len(records) == limit:
                total = store.count(**filters, exclude_targets=hidden)
    if as_json:
        _stream_json(record_summary(r) for r in records)
    elif terminal:
        if not _table(records):
            click.echo("no artifacts yet; build one with `rmbuild compile model.yaml`")
    elif not _write_tsv(COLUMNS, (_cells(r) for r in records)):
        click.echo("no artifacts yet; build one with `rmbuild compile model.yaml`", err=True)
    if total is not None and limit is not None and total > limit:
        click.echo(
            f"showing the {limit} newest of {total} artifacts; "
            "--limit N or --all for more, --model/--target/--backend to filter",
            err=True,
        )


def _cells(r: Any) -> tuple[str, ...]:
    """One artifact's row, as text."""
    meta = r.metadata
    versions = toolchain_versions(meta)
    tool = next(iter(versions.items()), None)
    targets = ",".join(sorted({t for m, t in r.uses if m == r.model})) or r.target
    return (
        r.key[:12],
        r.model,
        targets,
        meta.get("profile") or "",
        r.backend,
        f"{tool[0]} {tool[1]}" if tool else "",
        human_size(r.size),
        age(r.created_at),
        ",".join(r.aliases),
    )


def _table(records: Iterable[Any]) -> bool:
    """A terminal's table (rich up to RICH_ROWS rows, aligned columns beyond); False if empty."""
    rows = [_cells(r) for r in records]
    if not rows:
        return False
    if len(rows) > RICH_ROWS:
        _print_columns(COLUMNS, rows)  # rich takes ~0.6 ms a row to lay out
        return True
    from rich.table import Table

    table = Table(box=None, pad_edge=False, header_style="bold")
    for column in COLUMNS:
        table.add_column(column, no_wrap=column != "TOOLCHAIN")
    for cells in rows:
        table.add_row(*map(plain, cells))  # stored values are text, never markup
    console().print(table)
    return True


def _tsv_field(value: str) -> str:
    # A tab or a line break inside a value would shift every column after it.
    return value.replace("\t", " ").replace("\n", " ").replace("\r", " ")


def _write_tsv(columns: tuple[str, ...], rows: Iterator[tuple[str, ...]]) -> bool:
    """Tab-separated lines, header first, written as the rows come; False if there were none."""
    write = sys.stdout.write
    batch: list[str] = []
    any_row = False
    for cells in rows:
        if not any_row:
            batch.append("\t".join(columns) + "\n")
            any_row = True
        batch.append("\t".join(map(_tsv_field, cells)) + "\n")
        if len(batch) >= WRITE_BATCH:
            write("".join(batch))
            batch.clear()
    write("".join(batch))
    return any_row


def _stream_json(items: Iterable[Any]) -> None:
    """A JSON array, one item a line, written in batches as the items come (the
    indented form goes through json's pure-Python encoder, seconds for 100,000 items). The
    output is the same document whether or not it is read line by line."""
    encode = json.JSONEncoder(default=str, ensure_ascii=False).encode
    out = sys.stdout
    note_json_written()
    batch: list[str] = ["["]
    sep = "\n"
    for item in items:
        batch.append(sep + encode(item))
        sep = ",\n"
        if len(batch) >= WRITE_BATCH:
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
    """``ls --failed``: recorded failed builds, newest first."""
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

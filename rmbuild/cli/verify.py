"""``rmbuild verify [ID]``: re-hash artifacts against their manifests."""

from __future__ import annotations

from typing import Any

import click

from rmbuild.cli._output import emit_json


@click.command("verify")
@click.argument("refs", nargs=-1)
@click.option(
    "--repair",
    is_flag=True,
    help="Move damaged blobs to the store's quarantine/ and mark their artifacts corrupt, so "
    "the next `rmbuild compile` rebuilds them.",
)
@click.option("--json", "as_json", is_flag=True, help="Machine-readable output.")
@click.pass_obj
def command(app: Any, refs: tuple[str, ...], repair: bool, as_json: bool) -> None:
    """Verify REFS (default: every artifact). Exits 6 if any is corrupt."""
    from rmbuild.errors import StoreCorrupt
    from rmbuild.store import open_store, resolve

    # Without --repair verify only reads, so it works on a full disk (issue 6 #13).
    store = open_store(app.store_path, app.index_url, read_only=not repair)
    records = [resolve(store, r) for r in refs] if refs else store.list()
    report: dict[str, list[str]] = {}
    # A shared index lists other stores' artifacts too: those whose files this store never
    # held are not corrupt, only not here (their own store verifies them).
    elsewhere: list[str] = []
    for r in records:
        problems = store.check(r.key, rehash=True, repair=repair)
        if problems and problems[0].absent:
            elsewhere.append(r.key)
        else:
            report[r.key] = [str(p) for p in problems]
    bad = {k: v for k, v in report.items() if v}
    if as_json:
        out: dict[str, Any] = {"checked": len(report), "corrupt": bad}
        if elsewhere:
            out["not_in_this_store"] = elsewhere
        if repair:
            out["quarantined"] = bool(bad)
        emit_json(out)
    else:
        for key, problems in report.items():
            click.echo(f"{key[:12]}  {'ok' if not problems else 'CORRUPT'}")
            for problem in problems:
                click.echo(f"    {problem}")
        for key in elsewhere:
            click.echo(f"{key[:12]}  not in this store (another store sharing the index has it)")
    if bad:
        if repair:
            hint = (
                "damaged blobs are in the store's quarantine/; `rmbuild compile` rebuilds "
                "the artifacts that used them"
            )
        else:
            hint = (
                "`rmbuild verify --repair` quarantines the damaged blobs, then `rmbuild "
                "compile` rebuilds (or `rmbuild compile --rebuild` at once)"
            )
        raise StoreCorrupt(f"{len(bad)} of {len(report)} artifacts are corrupt", hint=hint)
